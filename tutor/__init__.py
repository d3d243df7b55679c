"""tiny-llm-tutor: a terminal tutor for the tiny-llm course (Qwen2 edition).

Kept import-free on purpose: the check child process and the CLI both import this
package, and start-up time is a feature.
"""

__version__ = "0.1.0"
