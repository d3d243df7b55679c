"""The guardrail's vocabulary: the tensor operations it scores, the words that are the
API rather than the learner's names, a Python tokenizer, and the normal form in which
two statements that differ only by variable names are equal."""

from __future__ import annotations

import re
from functools import lru_cache

from tutor.textcode import strip_comment

NGRAM = 4

_OP_GROUPS = {
    "matmul": "matmul einsum tensordot dot bmm mm inner addmm",
    "transpose": "swapaxes transpose moveaxis permute swapdims movedim",
    "reshape": "reshape view flatten unflatten expand_dims squeeze unsqueeze split",
    "broadcast": "broadcast_to repeat tile expand repeat_interleave",
    "concat": "concatenate concat cat stack hstack vstack",
    "softmax": "softmax log_softmax",
    "exp": "exp expm1 log log1p",
    "logsumexp": "logsumexp",
    "reduce": "sum mean max min amax amin prod var std",
    "sqrt": "sqrt rsqrt",
    "power": "power pow square",
    "activation": "sigmoid silu swish tanh relu gelu",
    "where": "where masked_fill clip maximum minimum",
    "tri": "tril triu",
    "create": "zeros ones full arange linspace zeros_like ones_like full_like eye",
    "trig": "cos sin",
    "outer": "outer",
    "sort": "argsort sort argpartition partition topk argmax argmin",
    "cumsum": "cumsum cumprod",
    "gather": "take_along_axis put_along_axis take gather scatter index_select",
    "sample": "categorical multinomial",
    "cast": "astype",
    "dequant": "dequantize dequantize_linear quantize",
}
OPS: dict[str, str] = {name: group for group, names in _OP_GROUPS.items()
                       for name in names.split()}
_LITERAL_DISCOUNT = {"reshape", "create", "broadcast"}  # cheap with literal arguments

# Never an implementation: inspection, test inputs, shortcuts the checks reject.
_NEUTRAL = set("""print len range int float str bool list tuple dict isinstance type repr
    enumerate zip sorted abs eval allclose isclose array_equal isnan isinf isfinite any all
    item tolist shape dtype size ndim seed normal uniform randint random array asarray
    assert format round set_printoptions time perf_counter""".split())
_SHORTCUT_ROOTS = {"fast", "nn", "F", "mlx_lm"}
_TENSOR_LIBS = {"mx", "np", "torch", "jnp", "numpy", "F", "nn", "tf"}
_SCALAR_LIBS = {"math"}
_SEMANTIC_KWARGS = {"axis", "axes", "keepdims", "k", "kth", "dim", "inclusive"}

_KEYWORDS = set("""return if else elif for while in is not and or None True False def
    class lambda yield break continue pass raise with as import from try except finally
    assert del global nonlocal""".split())
_API_WORDS = (set(OPS) | _NEUTRAL | _KEYWORDS | _TENSOR_LIBS | _SCALAR_LIBS | _SEMANTIC_KWARGS
              | {"self", "T", "mT", "inf", "float32", "float16", "bfloat16", "int32",
                 "random", "linalg", "dtype", "shape"})
_UNINFORMATIVE = {"v", "(", ")", ",", ".", "=", "[", "]", ":", "self"}

_TOKEN = re.compile(
    r"""(?P<name>[A-Za-z_][A-Za-z_0-9]*)
      |(?P<num>\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+)
      |(?P<str>"[^"\n]*"|'[^'\n]*')
      |(?P<op>\*\*|//|->|==|!=|<=|>=|[-+*/@%]=|\.\.\.|[-+*/@%<>=~&|^:,.;()\[\]{}])""",
    re.VERBOSE,
)


@lru_cache(maxsize=4096)
def _tokens(s: str) -> tuple[tuple[str, str], ...]:
    return tuple((m.lastgroup, m.group()) for m in _TOKEN.finditer(s))


def _norm(tokens: list[tuple[str, str]]) -> tuple[str, ...]:
    out = []
    for i, (kind, tok) in enumerate(tokens):
        if kind == "name":
            if tok in _SEMANTIC_KWARGS:  # keyword names only as keywords: `k` is also a variable
                nxt = tokens[i + 1][1] if i + 1 < len(tokens) else ""
                out.append(tok if nxt == "=" else "v")
            else:
                out.append(tok if tok in _API_WORDS else "v")
        elif kind == "str":
            out.append("s")
        else:
            out.append(tok)
    return tuple(out)


def _core(norm: tuple[str, ...]) -> tuple[str, ...]:
    """A statement without its ``return`` or ``name =`` head: the expression that matters."""
    if norm[:1] in (("return",), ("yield",)):
        return norm[1:]
    for i, t in enumerate(norm[:12]):
        if t in ("=", "+=", "-=", "*=", "/=", "@="):
            head = norm[:i]
            if all(x in ("v", ",", ".", "self", "[", "]") for x in head):
                return norm[i + 1:]
            break
    return norm


def _generic_call(core: tuple[str, ...]) -> bool:
    """One API call on plain names (``x.swapaxes(-1, -2)``, ``mx.where(c, a, b)``): how an
    op is called, not how the task is built."""
    if "self" in core or any(t in ("@", "[", "**", "*", "+", "/", "//") for t in core):
        return False
    apis = [t for t in core if t in _API_WORDS and t not in _TENSOR_LIBS
            and t not in _SEMANTIC_KWARGS and t not in ("dtype", "float32", "float16", "random")]
    return len(apis) <= 1


def _grams(seq: tuple[str, ...], n: int = NGRAM) -> set[tuple[str, ...]]:
    return {seq[i:i + n] for i in range(len(seq) - n + 1)}




def bracket_walk(line: str, depth: int = 0):
    """Each token of ``line`` (its comment left out) as a match, with the bracket depth
    after it, starting from ``depth``; a closing bracket never takes it below 0."""
    for m in _TOKEN.finditer(strip_comment(line)):
        if m.lastgroup == "op" and m.group() in "([{":
            depth += 1
        elif m.lastgroup == "op" and m.group() in ")]}":
            depth = max(0, depth - 1)
        yield m, depth


@lru_cache(maxsize=4096)
def bracket_depth(line: str, depth: int = 0) -> int:
    """The bracket depth after ``line``, starting from ``depth``."""
    for _, depth in bracket_walk(line, depth):
        pass
    return depth
