"""Whether a learner's message explicitly asks to be given the solution.

One function for both coaches: the offline coach refuses such a request below the top of
the hint ladder, and the LLM coach lets a solution through the guardrail only after one
(CLAUDE.md's exception). Two versions used to disagree on negations ("don't show me the
solution") and on phrasings like "how do I write the function?".
"""

from __future__ import annotations

import re

_ASK = r"(?:show|give|tell|write|send|post|paste|provide|reveal|share|spell out)"
_WHOLE = r"(?:full|complete|whole|working|correct|actual|final|entire|right)"
_SOLUTION = r"(?:solution|answer|implementation|code|fix)"

_REQUESTS = [re.compile(p, re.I) for p in (
    rf"\b{_ASK}\b(?:\s+(?:me|us))?(?:\s+(?:the|a|your))?(?:\s+{_WHOLE})?\s+{_SOLUTION}\b",
    rf"\b(?:can i (?:see|have|get)|i (?:want|need))\s+(?:the\s+|a\s+)?(?:{_WHOLE}\s+)?"
    rf"{_SOLUTION}\b",
    # Not "code" here: "what is the code doing?" is a question about the learner's own.
    rf"\bwhat(?:'s| is)\s+(?:the\s+|a\s+)?(?:{_WHOLE}\s+)?(?:solution|answer|implementation)\b",
    r"\b(?:just|please)\s+(?:write|implement|solve|code|do)\s+(?:it|this|that)\b",
    r"\b(?:write|implement|solve|code|do)\s+(?:it|this|that|the function|the class|the method)"
    r"\s+for me\b",
    r"\b(?:do (?:my|the) (?:homework|task|exercise) for me|just do (?:my|the) "
    r"(?:homework|task|exercise))\b",
    # A bare "full code please": the whole message, so "is my working code right?" is not one.
    rf"^\W*(?:the\s+)?{_WHOLE}\s+(?:code|solution|implementation)(?:\s+please)?\W*$",
    r"\bcopy[- ]?paste(?:able)?\s+(?:solution|code|answer|implementation)\b",
)]
# A negation just before the request ("don't show me the solution", "I do not need the
# full code") turns it into the opposite.
# The negation reaches across at most three words and no punctuation, so "I don't know,
# just show me the solution" still asks.
_NEGATED = re.compile(r"\b(?:don'?t|do not|never|without|no|not)\b(?:\s+[\w']+){0,3}\s*$", re.I)


def is_solution_request(text: str) -> bool:
    """Does the learner explicitly ask to be given the solution?"""
    text = text or ""
    for rx in _REQUESTS:
        for m in rx.finditer(text):
            if not _NEGATED.search(text[:m.start()]):
                return True
    return False


__all__ = ["is_solution_request"]
