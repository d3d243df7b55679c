"""The guiding question that replaces removed code: the lesson task's question that
shares most words with what was removed."""

from __future__ import annotations

import re

from tutor.coach.guard.vocab import OPS

NUDGE_PREFIX = "I won't write that part for you"


_OP_WORDS = {
    "matmul": "product match", "@": "product match", "transpose": "swap axes axis",
    "softmax": "softmax axis sum", "sqrt": "spread scale", "-inf": "mask", "tri": "mask",
    "where": "mask", "trig": "rotate rotation angle", "concat": "halves weave", "index": "rows",
}


_NUDGE_STOP = set("""a an the and or of to in on at by for with from is are be do does it its this
    that what which how why when where you your one two can must should would if so as not
    than then there their they them into""".split())


def _nudge(task, removed_words: set[str]) -> str:
    questions = list(getattr(task, "guiding_questions", ()) or ())
    if not questions:
        return f"*({NUDGE_PREFIX}.)* What do you expect this step to produce, and what shape should it have?"
    best, best_score = questions[0], -1
    for q in questions:
        words = set(re.findall(r"[a-z]+", q.lower())) - _NUDGE_STOP
        sc = len(words & removed_words)
        if sc > best_score:
            best, best_score = q, sc
    return f"*({NUDGE_PREFIX} -- try this question instead.)* {best}"


def _words_of(lines: list[str]) -> set[str]:
    words = set()
    for ln in lines:
        for w in re.findall(r"[A-Za-z]+", ln):
            words.add(w.lower())
            if w in OPS:
                words |= set(_OP_WORDS.get(OPS[w], "").split())
    if any("@" in ln for ln in lines):
        words |= set(_OP_WORDS["@"].split())
    return words


