"""Which part of a lesson a learner's message is about: a BM25 ranking (the `bm25s`
library) over the lesson's concepts, guiding questions and pitfalls.

    ranked = rank(lesson, "why do we scale by sqrt(d)?")   # [(Item, score), ...] best first
    ranked[0][0].key                                        # "concept:why-divide-by-d"

Item keys: ``concept:<slug of the name>``, ``<task>:gq:<i>`` (guiding question ``i`` of a
task, the id the coach remembers as asked) and ``pitfall:<id>``.

Learners and lessons word the same idea differently ("square root" / "√D", "normalize" /
"normalise", "kv" / "key value"), so both sides go through one tokenizer that folds
spellings and a few course terms onto shared tokens before BM25 sees them. The phrasing
tips near ties (:func:`intent`): "why ..." leans to a concept, "how do I ..." to a guiding
question, "my output ..." to a pitfall. The index is tiny (a few dozen short documents),
built on the first question about a lesson, then cached.
"""

from __future__ import annotations

import re
import sys
import threading
from dataclasses import dataclass

__all__ = ["Item", "rank", "intent", "tokens", "items", "slug"]


@dataclass(frozen=True)
class Item:
    kind: str  # "concept" | "question" | "pitfall"
    key: str
    text: str  # what is shown or asked: the concept's name, the question
    task: int | None = None  # the task of a guiding question


# Words that carry no topic. Question words stay out of the index too: every guiding
# question has "which" or "what", so they would only add noise.
_STOP = frozenset("""a an the and or but if then so of to in on at by for with from into onto
    as is are was were be been being am do does did doing done have has had i me my mine you
    your we our us it its this that these those there here what which who whom whose why how
    when where can could should would will shall may might must not no yes just only also
    very too more most some any all each every get got make made use used using need want
    know think see look like really still again please thanks thank ok okay hi hello hey
    about after before than them they their he she his her up out over same other another
    because while until let lets im ive dont doesnt didnt cant isnt whats way thing things
    something anything actually seem seems supposed go goes going put one even""".split())

# Spellings and course terms folded onto one token (applied after lower-casing, before
# stemming). A value with several words adds all of them: "sqrt" is about the scale.
_FOLD = {
    "√d": "sqrt scale", "√": "sqrt", "root": "sqrt", "sqrt": "sqrt scale",
    "scaling": "scale", "scaled": "scale", "scales": "scale", "divide": "scale",
    "dividing": "scale", "divided": "scale",
    "normalize": "normalise", "normalized": "normalise", "normalization": "normalise",
    "normalisation": "normalise", "normalizing": "normalise", "normalising": "normalise",
    "softmax": "softmax normalise",  # what a softmax does, in the words learners use
    "masking": "mask", "masked": "mask", "masks": "mask",
    "multiplied": "multiply", "multiplying": "multiply", "multiplication": "multiply",
    "added": "add", "adding": "add", "addition": "add", "additive": "add",
    "kv": "key value", "gqa": "group", "grouped": "group", "grouping": "group",
    "transpose": "transpose swap", "transposed": "transpose swap", "swapaxes": "swap",
    "swapped": "swap", "rotary": "rope rotate", "rotation": "rotate", "rotated": "rotate",
    "rotating": "rotate", "epsilon": "eps", "fp16": "float16", "half": "float16",
    "fp32": "float32", "bf16": "bfloat16", "nans": "nan", "infinity": "inf", "-inf": "inf",
    "logit": "logits", "temp": "temperature", "nucleus": "top_p", "topk": "top_k",
    "topp": "top_p", "eos": "eos end", "freq": "frequency", "frequencies": "frequency",
    "dim": "dimension", "dims": "dimension", "dimensions": "dimension", "axes": "axis",
    "matmul": "matrix product", "dot": "product", "probabilities": "probability",
    "probs": "probability", "spiky": "peaked", "peaky": "peaked", "sharp": "peaked",
    "variance": "spread", "gpu": "metal", "threadgroups": "threadgroup",
    "max": "maximum", "eval": "evaluate", "evaluating": "evaluate", "evaluated": "evaluate",
    "ban": "exclude", "forbid": "exclude", "excluded": "exclude", "excluding": "exclude",
    "fast": "speed", "faster": "speed", "slow": "speed", "slower": "speed", "speedup": "speed",
    "unpack": "unpack dequantize", "unpacking": "unpack dequantize", "unpacked": "unpack dequantize",
    "dequantizing": "dequantize", "dequantized": "dequantize", "dequantization": "dequantize",
    "copy": "copy repeat", "copying": "copy repeat", "duplicate": "copy repeat",
    "repeating": "repeat",
    "big": "large", "huge": "large", "future": "future later",
    "∞": "inf", "-∞": "inf", "infinite": "inf",
    # a dtype named is a question about dtypes
    "float16": "float16 dtype", "float32": "float32 dtype", "bfloat16": "bfloat16 dtype",
}

# "weights that sum to 1" is what normalising (a softmax) means; the lessons say it that
# way, learners say "normalise" or "softmax".
_SUMS_TO_ONE = re.compile(r"\bsums? (up )?to (1|one)\b")
# "top-p", "top p", "top k": one name each, or the letter that tells them apart is lost
_TOP_KP = re.compile(r"\btop[- _]?([kp])\b")
_WORD = re.compile(r"-inf|-∞|∞|√d|√|[a-z_0-9]+")


def _stem(w: str) -> str:
    """Strip the common English endings so "heads"/"head" and "masking"/"mask" meet."""
    if len(w) > 5 and w.endswith("ing"):
        return w[:-3]
    if len(w) > 4 and w.endswith("ed"):
        return w[:-2]
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("es") and not w.endswith(("ses", "zes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us")):
        return w[:-1]
    return w


def tokens(text: str, *, expand: bool = True) -> list[str]:
    """The BM25 tokens of a text: lower-cased, stop words dropped, spellings folded,
    stemmed; ``snake_case`` names also give their parts. ``expand=False`` keeps one token
    per word (the folded spelling only), for comparing what two texts literally say."""
    out: list[str] = []
    text = _SUMS_TO_ONE.sub(" normalise ", text.lower().replace("−", "-").replace("'", ""))
    text = _TOP_KP.sub(r"top_\1", text)
    for w in _WORD.findall(text):
        if w in _STOP or (len(w) < 2 and w not in "lsdehkv√"):
            continue
        folded = _FOLD.get(w, w).split()
        out += [_stem(f) for f in (folded if expand else folded[:1])]
        if "_" in w and expand:
            out += [_stem(p) for p in w.split("_") if p and p not in _STOP]
    return out


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower().replace("'", "")).strip("-")


def items(lesson) -> list[Item]:
    """The lesson's matchable items, each with the text its BM25 document is made of."""
    return [it for it, _ in _documents(lesson)]


def _documents(lesson):
    # A concept's name is repeated so that it weighs more than any single sentence of
    # its explanation; a pitfall's id is written in words ("attn-mask-ignored").
    for c in lesson.concepts:
        yield Item("concept", f"concept:{slug(c.name)}", c.name), \
            f"{c.name} {c.name} {c.explanation}"
    for t in lesson.tasks:
        for i, q in enumerate(t.guiding_questions):
            yield Item("question", f"{t.id}:gq:{i}", q, t.id), q
    for p in lesson.pitfalls:
        yield Item("pitfall", f"pitfall:{p.id}", p.question), \
            f"{p.id.replace('-', ' ')} {p.symptom} {p.question}"


def _bm25s():
    """The bm25s module, imported on first use. At import it probes for scipy and numba
    only to offer backends this index does not use (the numpy ones are its defaults and
    plenty for a few dozen documents); that probe costs more than everything else a
    `tiny-llm-tutor ask` does, so while neither is loaded yet it is made to find neither.
    Hiding a module is process-wide, so it is done only while this is the one thread: a
    thread importing scipy meanwhile would be told it is missing."""
    if "bm25s" not in sys.modules:
        alone = threading.active_count() == 1
        hidden = [m for m in ("scipy", "numba") if alone and m not in sys.modules]
        # (only for the duration of this one import; importing scipy works again after)
        for m in hidden:
            sys.modules[m] = None  # type: ignore[assignment]  # import then fails fast
        try:
            import bm25s  # noqa: F401
        finally:
            for m in hidden:
                if m in sys.modules and sys.modules[m] is None:
                    del sys.modules[m]
    return sys.modules["bm25s"]


class _Index:
    def __init__(self, lesson):
        docs = list(_documents(lesson))
        self.items = [it for it, _ in docs]
        self.bm25 = _bm25s().BM25(backend="numpy", csc_backend="numpy")
        self.bm25.index([tokens(text) or ["_"] for _, text in docs], show_progress=False)

    def scores(self, query: list[str]) -> list[float]:
        if not query:
            return [0.0] * len(self.items)
        return self.bm25.get_scores(query).tolist()


# How much the phrasing's kind weighs against the words: enough to settle a near tie
# between a concept and a pitfall on the same topic, not enough to override the topic.
INTENT_BOOST = 1.5

_CACHE: dict[int, tuple[object, _Index]] = {}


def _index(lesson) -> _Index:
    """Built once per lesson object. Lessons hold lists, so they are not hashable: the
    cache is keyed by identity and keeps the lesson alive so the id is not reused."""
    hit = _CACHE.get(id(lesson))
    if hit is not None and hit[0] is lesson:
        return hit[1]
    index = _Index(lesson)
    if len(_CACHE) > 64:
        _CACHE.clear()
    _CACHE[id(lesson)] = (lesson, index)
    return index


def rank(lesson, message: str, *, kinds: tuple[str, ...] | None = None,
         extra: str = "") -> list[tuple[Item, float]]:
    """The lesson's items scored against ``message`` (plus ``extra`` words, e.g. a concept
    name to steer a follow-up question), best first; zero scores are dropped."""
    query = tokens(f"{message} {extra}")
    if not query:  # "I'm stuck", "": nothing to rank, and no index (or import) needed
        return []
    index = _index(lesson)
    scores = index.scores(query)
    want = intent(message)
    out = [(it, s * (INTENT_BOOST if it.kind == want else 1.0))
           for it, s in zip(index.items, scores) if s > 0 and (kinds is None or it.kind in kinds)]
    out.sort(key=lambda x: -x[1])
    return out


# --------------------------------------------------------------------------- intent

# How a message is phrased says which kind of item it wants, whatever its topic: "why" and
# "what is" ask for an idea (a concept), "how do I" and "which" for a step of the work (a
# guiding question), a plain statement about one's output describes a symptom (a pitfall).
_CONCEPT_ASK = re.compile(
    r"^(why|explain|what('?s| is| are) the (point|difference|idea|meaning|purpose)|"
    r"what (is|are|does|do)\b(?! (i|we)\b)|what'?s\b|how (does|do) (?!i\b|we\b).*\bwork|"
    r"(is|are|does|isn'?t) \w)", re.I)
_HOWTO_ASK = re.compile(
    r"^(how|which|where|when|should|do (i|we)|can (i|we)|what (if|happens|\w+ should)|"
    r"what (do|does|should) (i|we)|what \w+ (do|does|should|must) )", re.I)
_LEAD = re.compile(r"^\W*((so|ok|okay|hmm|hi|hey|but|and|also|um|sorry)\W+)*", re.I)


def intent(message: str) -> str | None:
    """"concept", "question" or "pitfall": the kind of item the phrasing asks for."""
    m = _LEAD.sub("", (message or "").strip())
    if not m:
        return None
    if _CONCEPT_ASK.match(m):
        return "concept"
    if _HOWTO_ASK.match(m):
        return "question"
    return "pitfall" if not m.rstrip().endswith("?") or re.match(r"^(my|i|the|it)\b", m, re.I) \
        else None
