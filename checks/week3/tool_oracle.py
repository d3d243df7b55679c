"""Day 3.6's oracles: two tokenizers that share one tiny byte-level vocabulary and differ
only in their chat templates, both written for the tutor.

- ``tools``: a Qwen2.5-style template with tool support. Given ``tools=``, the system turn
  carries the tool section (the fixed words are the learner's ``TOOLS_INTRO`` /
  ``TOOLS_OUTRO``, the words Qwen2.5-Instruct reads); assistant turns render their
  ``tool_calls`` as ``<tool_call>`` blocks; runs of tool messages become one user turn of
  ``<tool_response>`` blocks. It is rendered by transformers' own ``apply_chat_template``
  (its jinja environment and its ``tojson``), which is what a real Qwen2.5 tokenizer runs.
- ``plain``: the ChatML roles only. It refuses ``tools=``, tool calls and the role
  ``tool``, so a prompt built on it has had the tool format written by the learner.

The vocabulary is a byte-level BPE (Qwen2's kind) of 512 entries trained on the tool
section's fixed words: the 256 byte symbols, merges, and the three ChatML special tokens,
so any text encodes and decodes back exactly.
"""

from __future__ import annotations

import functools

# Wording of the tool section: the same text the learner's module is given.
DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
TOOLS_INTRO = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_OUTRO = (
    "\n</tools>\n\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB = 512

# The system turn always exists (the caller's first system message or the default); the
# tool section is appended to it when tools are given. Written with explicit string
# pieces rather than whitespace-sensitive blocks so that its output does not depend on
# trim_blocks/lstrip_blocks.
TOOLS_TEMPLATE = (
    "{%- set sys = messages[0].content if messages and messages[0].role == 'system' "
    "else default_system -%}"
    "{{- '<|im_start|>system\\n' + sys -}}"
    "{%- if tools -%}"
    "{{- tools_intro -}}"
    "{%- for t in tools -%}{{- '\\n' + (t | tojson) -}}{%- endfor -%}"
    "{{- tools_outro -}}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- for m in messages -%}"
    "{%- if loop.first and m.role == 'system' -%}"
    "{%- elif m.role == 'tool' -%}"
    "{%- if loop.first or loop.previtem.role != 'tool' -%}{{- '<|im_start|>user' -}}{%- endif -%}"
    "{{- '\\n<tool_response>\\n' + m.content + '\\n</tool_response>' -}}"
    "{%- if loop.last or loop.nextitem.role != 'tool' -%}{{- '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- elif m.role == 'assistant' and m.tool_calls -%}"
    "{{- '<|im_start|>assistant' -}}"
    "{%- if m.content -%}{{- '\\n' + m.content -}}{%- endif -%}"
    "{%- for c in m.tool_calls -%}"
    "{%- set f = c.function if c.function is defined else c -%}"
    "{{- '\\n<tool_call>\\n{\"name\": \"' + f.name + '\", \"arguments\": ' "
    "+ (f.arguments | tojson) + '}\\n</tool_call>' -}}"
    "{%- endfor -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

PLAIN_TEMPLATE = (
    "{%- if tools -%}{{- raise_exception('this chat template has no tool support') -}}"
    "{%- endif -%}"
    "{%- for m in messages -%}"
    "{%- if m.role not in ['system', 'user', 'assistant'] -%}"
    "{{- raise_exception('this chat template has no role ' + m.role) -}}{%- endif -%}"
    "{%- if m.tool_calls -%}"
    "{{- raise_exception('this chat template cannot render tool calls') -}}{%- endif -%}"
    "{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def _with_constants(template: str) -> str:
    """Inline the fixed wording as jinja string literals (json strings are valid ones)."""
    import json

    consts = {"default_system": DEFAULT_SYSTEM, "tools_intro": TOOLS_INTRO,
              "tools_outro": TOOLS_OUTRO}
    head = "".join("{%- set " + k + " = " + json.dumps(v) + " -%}" for k, v in consts.items())
    return head + template


# Text a byte-level BPE is trained on, so that a prompt with tools is a few hundred tokens
# rather than one per byte (attention over a thousand positions is slow on a CPU).
_TRAINING = [DEFAULT_SYSTEM, TOOLS_INTRO, TOOLS_OUTRO,
             ('{"type": "function", "function": {"name": "calculator", "description": '
              '"Evaluate an arithmetic expression and return the number.", "parameters": '
              '{"type": "object", "properties": {"expression": {"type": "string", '
              '"description": "for example 2 * (3 + 4)"}}, "required": ["expression"]}}}'),
             '{"name": "search_lessons", "arguments": {"query": "the lessons", "k": 2}}',
             "<tool_response>\n</tool_response>\nsystem\nuser\nassistant\n"]


@functools.cache
def tokenizers() -> dict:
    """``{"tools": ..., "plain": ...}``: transformers tokenizers over one byte-level BPE."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(_TRAINING * 4, trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=SPECIALS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    out = {}
    for name, template in (("tools", TOOLS_TEMPLATE), ("plain", PLAIN_TEMPLATE)):
        tok = PreTrainedTokenizerFast(
            tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
            additional_special_tokens=["<|im_start|>"])
        tok.chat_template = _with_constants(template)
        out[name] = tok
    return out


def render(messages: list[dict], tools: list[dict]) -> str:
    """The reference prompt: the tool-aware template with ``tools=``."""
    return tokenizers()["tools"].apply_chat_template(
        messages, tools=tools or None, add_generation_prompt=True, tokenize=False)
