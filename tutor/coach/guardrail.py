"""The solution-leak guardrail: every coach reply passes :func:`filter_reply` before the
learner sees it.

Code that implements the task is removed and replaced by a nudge toward a guiding
question. Allowed through: formulas (LaTeX, Unicode or plain), shapes, plain-language or
numbered pseudo-code, function signatures of the book's API, code that builds test
inputs or prints shapes and dtypes, shell commands, inline single identifiers.

How a piece of code is judged (a fenced block, a markdown-indented block, a run of
unfenced code lines inside prose, or an inline `code span`):

1. **Defines the task.** A ``def``/``class`` of one of the lesson's symbols (or a method
   of a lesson class, such as ``__call__``) whose body is more than a stub
   (``pass``/``...``/``raise NotImplementedError``/docstring/comments).
2. **Near-copy of the answer key.** Tokens are normalised (every identifier that is not
   part of the tensor API becomes ``v``, so renaming variables does not help); a line
   equal to a substantive answer-key line, or whose token 4-grams are mostly the key's,
   is a copy. Day-independent: the whole answer key is the reference.
3. **Computes what the task computes.** Each statement gets a score from the tensor
   operations it performs (matmul/``@``, transposes, softmax, reductions, ``sqrt``,
   masks with ``-inf``, RoPE trigonometry, sorting and sampling, casts, the course's own
   building blocks such as ``linear``/``softmax``...), arithmetic on top, calls into
   ``self.<module>``, and the lesson's own names (``input_layernorm``,
   ``eos_token_id``...). Inspection (``print``, ``.shape``, ``mx.eval``, ``allclose``),
   test inputs (``mx.random.normal``, literal shapes) and MLX shortcuts the checks
   reject (``mx.fast.*``, ``nn.*``) score nothing. One statement scoring
   >= ``LINE_LIMIT`` or a block totalling >= ``BLOCK_LIMIT`` is an implementation.

A line counts as code when it is inside a fence, or carries unmistakable Python (``mx.``,
``self.``, a method call, a keyword argument, slicing, ``@``, ``.T``, ``**``, ``def``,
``return``, ``lambda``...). A line with formula marks (``√ · ² ᵀ ^ \\frac``...) and none
of those is a formula, never code.

Pieces are also judged together: when the statements that could be pasted (assignments,
returns, lambdas) across the whole reply add up to more than ``BLOCK_LIMIT + 0.5``, all of
them go, so an implementation spread over inline spans or small blocks is caught. REPL
lines (``>>> a.sum(axis=-1)``) evaluated for display count half. Lines quoted verbatim
from ``learner_code`` (the learner's own code) are not judged.

The filter is pure, fast (about 2-3 ms for a 4 KB reply; the answer-key index costs
about 25 ms once per process, see :func:`prepare`) and never raises: on an internal error
it falls back to removing every code-looking line.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

__all__ = ["FilterResult", "filter_reply", "prepare", "LINE_LIMIT", "BLOCK_LIMIT", "code_score"]

LINE_LIMIT = 1.25
BLOCK_LIMIT = 2.5
NGRAM = 4

NUDGE_PREFIX = "I won't write that part for you"


@dataclass
class FilterResult:
    text: str
    removed: int = 0  # pieces of code removed (blocks, line runs or inline spans)
    reasons: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.removed == 0


# --------------------------------------------------------------------------- vocabulary

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

# --------------------------------------------------------------------------- regexes

_TOKEN = re.compile(
    r"""(?P<name>[A-Za-z_][A-Za-z_0-9]*)
      |(?P<num>\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+)
      |(?P<str>"[^"\n]*"|'[^'\n]*')
      |(?P<op>\*\*|//|->|==|!=|<=|>=|[-+*/@%]=|\.\.\.|[-+*/@%<>=~&|^:,.;()\[\]{}])""",
    re.VERBOSE,
)
_PROSE_FENCES = {"text", "txt", "plain", "plaintext", "console", "bash", "sh", "shell", "zsh",
                 "math", "latex", "tex", "output", "none", "markdown", "md"}
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")
_INLINE = re.compile(r"(`+)([^`\n]+?)\1")
_UNICODE_MATH = re.compile(r"[√·²³ᵀ∑Σ∞≈≤≥−×∝∈⊙]")
_FORMULA = re.compile(r"[√·²³ᵀ∑Σ∞θφσ≈≤≥−×∝∈ⁱ⁻₀₁₂]|\^|\\(frac|sqrt|mathrm|text|top|cdot|left|right|sum|exp|operatorname)\b")
_STRONG = re.compile(
    r"\b(?:mx|np|torch|jnp|nn|math)(?:\.|::)\w"  # library calls (Python or C++)
    r"|\bself\.\w"
    r"|[\w)\]]\.[A-Za-z_]\w*\("  # method call
    r"|\(\s*[^()]*?\b[A-Za-z_]\w*=(?!=)[^\s)]"  # keyword argument
    r"|\w\[[^\]\n]*:[^\]\n]*\]"  # slicing
    r"|\[\s*None\b|\[\s*\.\.\.\s*,"
    r"|[\w)\]]\s*@\s*[\w(]"  # matmul operator
    r"|[\w)\]]\.T\b|\*\*|[-+*/@]=(?!=)|==|!="
    r"|^\s*(?:def|class)\s+\w+|^\s*lambda\b|\blambda\s+\w*\s*:"
    r"|^\s*(?:from\s+\S+\s+)?import\s+\w"
    r"|-\s*(?:mx|np|torch)\.inf\b|float\(\s*['\"]-inf"
)
_BLOCK_HEADER = re.compile(r"^\s*(?:for\s.+\sin\s.+|while\s.+|if\s.+|elif\s.+|else|try|except.*|with\s.+|finally)\s*:\s*(\S.*)?$")
_RETURN = re.compile(r"^\s*(?:return|yield)\s+\S")
_ASSIGN_CALL = re.compile(
    r"^\s*[A-Za-z_][\w.]*(?:\[[^\]]*\])?(?:\s*,\s*[A-Za-z_][\w.]*)*\s*=(?!=)\s*.*[A-Za-z_]\w*\s*\(")
_BOLD = re.compile(r"\*\*([A-Za-z`][^*\n]*?)\*\*")
_ASSIGNMENT = re.compile(
    r"^\s*[A-Za-z_][\w.]*(\[[^\]]*\])?(\s*,\s*[A-Za-z_][\w.]*)*\s*[-+*/@]?=(?!=)|^\s*(return|yield|lambda)\b")
_REPL = re.compile(r"^\s*(?:>>>|\.\.\.)\s?")
_LIST_MARKER = re.compile(r"^\s*(?:\d+[.)]|[-*+])\s+")
_DEF = re.compile(r"^(\s*)(def|class)\s+([A-Za-z_]\w*)")
_STUB_LINE = re.compile(
    r"^\s*(?:pass|\.\.\.|raise\s+NotImplementedError\b.*|#.*|[rbu]?(\"\"\"|''').*|\"[^\"]*\"|'[^']*')?\s*$")


@lru_cache(maxsize=4096)
def _tokens(s: str) -> tuple[tuple[str, str], ...]:
    return tuple((m.lastgroup, m.group()) for m in _TOKEN.finditer(s))


def _strip_comment(line: str) -> str:
    if "#" not in line:
        return line
    out, quote = [], None
    for ch in line:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        out.append(ch)
    return "".join(out)


def _is_formula(line: str) -> bool:
    """Math, not code: Unicode math symbols (which no Python line contains outside a
    comment or a string), or ASCII/LaTeX math marks with no unmistakable Python."""
    bare = _strip_comment(line)
    if _UNICODE_MATH.search(re.sub(r"([\"']).*?\1", "", bare)):
        return True
    return bool(_FORMULA.search(bare)) and not _STRONG.search(bare)


def _unmark(line: str) -> str:
    """Prose without markdown emphasis (``**bold**`` is not Python's power operator)."""
    return _BOLD.sub(r"\1", line) if "**" in line else line


def _looks_code(line: str, *, fenced: bool) -> bool:
    """Is this line (outside a fence, or a list-marked line inside one) Python?"""
    s = line.strip() if fenced else _unmark(line).strip()
    if "`" in s:  # prose with inline spans: the spans are judged on their own
        s = _INLINE.sub(" ", s).strip()
    if not s:
        return False
    if _is_formula(s):
        return False
    if fenced and not _LIST_MARKER.match(line):
        return True
    if _STRONG.search(s):
        return True
    if _BLOCK_HEADER.match(s) or _RETURN.match(s):
        return True
    return bool(_ASSIGN_CALL.match(s))


# --------------------------------------------------------------------------- scoring


@dataclass
class _Profile:
    """What the answer key says about the lesson: its ops, names and key lines."""
    symbols: frozenset = frozenset()  # the current task's symbols (calling them is testing)
    lesson_symbols: frozenset = frozenset()
    methods: frozenset = frozenset()  # methods of the lesson's classes
    ops: frozenset = frozenset()  # op groups and course functions the lesson's key uses
    names: frozenset = frozenset()  # distinctive attribute names of the lesson's key
    course_fns: frozenset = frozenset()  # every public symbol of the answer key
    key_lines: frozenset = frozenset()  # normalised substantive key lines
    key_cores: frozenset = frozenset()  # the same without their return/assignment head
    key_grams: frozenset = frozenset()


_EMPTY = _Profile()


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


def code_score(line: str, profile: _Profile = _EMPTY) -> tuple[float, list[str]]:
    """How much tensor computation one statement performs, with the ops found."""
    src = _strip_comment(line)
    toks = _tokens(src)
    if not toks:
        return 0.0, []
    names = [t for k, t in toks if k == "name"]
    inspect = bool(names) and names[0] in {"print", "assert", "eval"} or (
        len(names) >= 2 and names[0] == "mx" and names[1] == "eval")
    statement = bool(names) and (names[0] in ("return", "yield", "lambda") or bool(
        re.match(r"^\s*[A-Za-z_][\w.]*(\[[^\]]*\])?(\s*,\s*[A-Za-z_][\w.]*)*\s*[-+*/@]?=(?!=)", src)))
    if not statement and re.search(r"\.(shape|dtype|ndim|size)\s*$|\.(item|tolist)\(\)\s*$",
                                   src.strip()):
        inspect = True
    score, found, arith, lesson_names = 0.0, [], 0.0, 0.0
    n = len(toks)
    for i, (kind, tok) in enumerate(toks):
        prev = toks[i - 1][1] if i else ""
        prev2 = toks[i - 2][1] if i > 1 else ""
        nxt = toks[i + 1][1] if i + 1 < n else ""
        if kind == "name":
            if prev == "." and prev2 in _SHORTCUT_ROOTS or prev2 == "fast":
                continue
            if tok in _SHORTCUT_ROOTS and nxt == ".":
                continue
            called = nxt == "("
            if tok == "T" and prev == "." or tok == "mT" and prev == ".":
                score += 1.0
                found.append("transpose")
                continue
            if tok == "inf" and prev == "." and i > 2 and toks[i - 3][1] == "-":
                score += 1.0
                found.append("-inf")
                continue
            if tok in ("inf",) and prev == "-":
                score += 1.0
                found.append("-inf")
                continue
            if called and tok in _NEUTRAL:
                continue
            if called and prev == "." and prev2 in _SCALAR_LIBS:
                score += 0.5
                found.append(tok)
                continue
            if called and tok in OPS:
                group = OPS[tok]
                args = _call_args(toks, i + 1)
                literal = args is not None and all(k in ("num", "op") for k, _ in args)
                if group == "reduce" and args is not None and not args:
                    w = 0.25  # x.max(): a whole-array summary, inspection-like
                elif group in _LITERAL_DISCOUNT and literal:
                    w = 0.25
                else:
                    w = 1.0 if (group in profile.ops or not profile.ops) else 0.75
                if group == "cast":
                    w = 0.5  # a cast alone computes nothing
                score += w
                found.append(tok)
                continue
            if called and tok in profile.course_fns:
                if tok in profile.symbols:
                    continue  # calling the learner's own function: testing it
                score += 1.0  # a course building block: composing the solution
                found.append(tok)
                continue
            if called and prev == "." and prev2 == "self":
                score += 0.5
                found.append(f"self.{tok}")
                continue
            if tok in profile.names and prev == ".":
                lesson_names += 0.25
            if tok in _SEMANTIC_KWARGS and nxt == "=" and i + 2 < n and toks[i + 2][1] not in ("...", "None"):
                score += 0.5 if tok in ("axis", "dim", "k", "kth") else 0.25
        elif kind == "str" and re.fullmatch(r"[rbfuRBFU]{0,2}['\"]\s*-\s*inf(inity)?\s*['\"]", tok):
            score += 1.0  # float("-inf"): a blocked entry
            found.append("-inf")
        elif kind == "num" and prev == "-" and _is_huge(tok):
            score += 1.0  # -1e9 standing in for -inf
            found.append("-inf")
        elif kind == "op":
            if tok == "@" and prev not in ("", "(", ",", "="):
                score += 1.0
                found.append("@")
            elif tok == "**":
                score += 0.5
                found.append("**")
            elif tok in ("+", "-", "*", "/", "//", "+=", "-=", "*=", "/=", "@="):
                if tok == "-" and (prev in ("", "(", ",", "=", "[", ":") or toks[i - 1][0] == "op"
                                   and prev not in (")", "]")):
                    continue  # unary minus
                arith += 0.25
            elif tok == "[" and i and (toks[i - 1][0] == "name" and toks[i - 1][1] not in _API_WORDS
                                       or prev in (")", "]")):
                inner = _bracket(toks, i)
                if any(k == "name" for k, _ in inner) or any(t in (":", "...", "None") for _, t in inner):
                    score += 0.5
                    found.append("index")
    score += min(arith, 1.0)
    if found:  # the lesson's own names only matter where something is computed
        score += min(lesson_names, 0.75)
    if score and names and names[0] in ("return", "yield"):
        score += 0.25
    if inspect:
        score *= 0.5
    return score, found


def _is_huge(num: str) -> bool:
    try:
        return float(num) >= 1e4
    except ValueError:
        return False


def _call_args(toks, open_idx: int):
    if open_idx >= len(toks) or toks[open_idx][1] != "(":
        return None
    depth, out = 0, []
    for k, t in toks[open_idx:]:
        if t in "([{" and k == "op":
            depth += 1
            if depth == 1:
                continue
        elif t in ")]}" and k == "op":
            depth -= 1
            if depth == 0:
                return [x for x in out if x[1] != ","]
        out.append((k, t))
    return None


def _bracket(toks, open_idx: int):
    depth, out = 0, []
    for k, t in toks[open_idx:]:
        if t == "[" and k == "op":
            depth += 1
            if depth == 1:
                continue
        elif t == "]" and k == "op":
            depth -= 1
            if depth == 0:
                break
        out.append((k, t))
    return out


# --------------------------------------------------------------------------- answer key


def _default_key_dir() -> Path | None:
    try:
        from tutor import paths

        d = paths.answer_key_dir()
    except Exception:
        return None
    return d if d.is_dir() else None


@lru_cache(maxsize=4)
def _key_index(key_dir: str, stamp: float) -> dict:
    """Parse every answer-key module: symbol -> (source, names, attributes, methods), plus
    the normalised substantive lines (docstrings, signatures and imports left out) and
    their n-grams."""
    symbols: dict[str, dict] = {}
    lines: set[tuple[str, ...]] = set()
    candidates: list[str] = []
    for path in sorted(Path(key_dir).glob("*.py")):
        try:
            src = path.read_text(encoding="utf-8")
            tree = ast.parse(src)
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            continue
        src_lines = src.splitlines()
        doc_lines: set[int] = set()
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                doc_lines.update(range(body[0].lineno, body[0].end_lineno + 1))
        for node in tree.body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            seg = "\n".join(src_lines[node.lineno - 1:node.end_lineno])
            methods = {n.name for n in node.body
                       if isinstance(node, ast.ClassDef)
                       and isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
            symbols[node.name] = {"src": seg, "calls": set(_NAME_RE.findall(seg)),
                                  "attrs": set(_ATTR_RE.findall(seg)), "methods": methods,
                                  "cls": isinstance(node, ast.ClassDef)}
        for no, raw in enumerate(src_lines, 1):
            if no in doc_lines:
                continue
            s = _strip_comment(raw).strip()
            if not s or _DEF.match(raw) or s.startswith(("import ", "from ", "assert ", "@")):
                continue
            candidates.append(s)
    fns = [n for n in symbols if not n.startswith("_")]
    course_call = re.compile(r"\b(?:" + "|".join(map(re.escape, fns)) + r")\s*\(") if fns else None
    for s in candidates:
        if _SUBSTANTIVE.search(s) or course_call is not None and course_call.search(s):
            toks = _tokens(s)
            if len(toks) >= 6:
                lines.add(_norm(toks))
    grams: set[tuple[str, ...]] = set()
    for ln in lines:
        grams |= _grams(ln)
    cores = frozenset(c for c in (_core(ln) for ln in lines) if len(c) >= 6)
    return {"symbols": symbols, "lines": frozenset(lines), "grams": frozenset(grams),
            "cores": cores}


_NAME_RE = re.compile(r"(?<![.\w])([A-Za-z_]\w*)")
_ATTR_RE = re.compile(r"\.([A-Za-z_]\w*)")
_SUBSTANTIVE = re.compile(r"@|\w\[|\bself\.\w+\(|\binf\b|\b(?:" + "|".join(sorted(OPS)) + r")\s*\(")


def _key_stamp(key_dir: Path | None) -> tuple[str, float]:
    key_dir = key_dir or _default_key_dir()
    if key_dir is None or not Path(key_dir).is_dir():
        return "", 0.0
    try:
        stamp = max((os.stat(p).st_mtime for p in Path(key_dir).glob("*.py")), default=0.0)
    except OSError:
        return "", 0.0
    return str(Path(key_dir).resolve()), stamp


def _closure(symbols: dict, start: set[str], depth: int = 3) -> set[str]:
    seen, frontier = set(), set(start)
    for _ in range(depth):
        nxt = set()
        for s in frontier:
            if s in seen or s not in symbols:
                continue
            seen.add(s)
            nxt |= {c for c in symbols[s]["calls"] if c in symbols}
        frontier = nxt
    return seen


_GENERIC_NAMES = set("""x y h q k v w b t out args model weight bias scale mask dims shape dtype
    step append reset encode""".split())


@lru_cache(maxsize=64)
def _profile(key_dir: str, stamp: float, task_symbols: tuple, lesson_symbols: tuple) -> _Profile:
    index = _key_index(key_dir, stamp) if key_dir else None
    if index is None:
        return _Profile(symbols=frozenset(task_symbols), lesson_symbols=frozenset(lesson_symbols))
    syms = index["symbols"]
    reach = _closure(syms, set(lesson_symbols))
    ops, names, methods = set(), set(), set()
    for s in reach:
        info = syms[s]
        for tok in re.findall(r"[A-Za-z_]\w*", info["src"]):
            if tok in OPS:
                ops.add(OPS[tok])
        ops |= {c for c in info["calls"] if c in syms}
        if "@" in info["src"]:
            ops.add("matmul")
        names |= {a for a in info["attrs"] if a not in OPS and a not in _NEUTRAL
                  and a not in _GENERIC_NAMES and len(a) > 3}
    for s in lesson_symbols:
        if s in syms:
            methods |= syms[s]["methods"]
    course_fns = frozenset(n for n in syms if not n.startswith("_"))
    return _Profile(
        symbols=frozenset(task_symbols), lesson_symbols=frozenset(lesson_symbols),
        methods=frozenset(methods), ops=frozenset(ops), names=frozenset(names),
        course_fns=course_fns, key_lines=index["lines"], key_grams=index["grams"],
        key_cores=index["cores"])


def _profile_for(lesson, task, key_dir: Path | None) -> _Profile:
    task_syms = tuple(getattr(task, "symbols", ()) or ())
    lesson_syms = tuple(dict.fromkeys(
        s for t in (getattr(lesson, "tasks", ()) or ()) for s in (getattr(t, "symbols", ()) or ())))
    lesson_syms = tuple(dict.fromkeys(lesson_syms + task_syms))
    return _profile(*_key_stamp(key_dir), task_syms, lesson_syms)


# --------------------------------------------------------------------------- judging


def _near_copy(line: str, profile: _Profile, found: list[str]) -> bool:
    """Equal to a substantive answer-key line after normalisation, or mostly made of its
    4-grams. Only statements that compute something (``found``) are compared, and
    signatures (``def``/``class`` lines) never are: they are the book's API."""
    if not profile.key_lines or not found or _DEF.match(line):
        return False
    toks = _tokens(_strip_comment(line).strip())
    norm = _core(_norm(toks))
    if len(norm) < 6 or _generic_call(norm):
        return False
    if norm in profile.key_cores:
        return True
    if len(norm) < 10:
        return False
    grams = [g for g in _grams(norm) if not set(g) <= _UNINFORMATIVE]
    if len(grams) < 4:
        return False
    hit = sum(1 for g in grams if g in profile.key_grams)
    return hit >= 4 and hit / len(grams) >= 0.7


def _statements(lines: list[str]) -> list[str]:
    """Join bracket continuations so one statement is scored once."""
    out, buf, depth = [], [], 0
    for ln in lines:
        s = _strip_comment(ln)
        if not s.strip() and not buf:
            continue
        buf.append(s.strip())
        for k, t in _tokens(s):
            if k == "op" and t in "([{":
                depth += 1
            elif k == "op" and t in ")]}":
                depth = max(0, depth - 1)
        if depth == 0:
            out.append(" ".join(buf))
            buf = []
    if buf:
        out.append(" ".join(buf))
    return out


def _header_end(lines: list[str], i: int) -> tuple[int, str]:
    """The line where a def/class header starting at ``i`` ends (the colon at bracket
    depth 0) and whatever follows that colon on the same line."""
    depth = 0
    for j in range(i, len(lines)):
        line = _strip_comment(lines[j])
        quote = None
        for pos, ch in enumerate(line):
            if quote:
                if ch == quote:
                    quote = None
            elif ch in "\"'":
                quote = ch
            elif ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
            elif ch == ":" and depth <= 0:
                return j, line[pos + 1:]
    return len(lines) - 1, ""


def _defines_task(lines: list[str], profile: _Profile) -> str | None:
    """A def/class of a lesson symbol (or a lesson class's method) with a real body."""
    targets = profile.lesson_symbols | profile.methods
    i = 0
    while i < len(lines):
        m = _DEF.match(lines[i])
        if not m or m.group(3) not in targets:
            i += 1
            continue
        indent = len(m.group(1).expandtabs())
        j, inline = _header_end(lines, i)
        if inline.strip() and not _STUB_LINE.match(inline):
            return m.group(3)  # a one-line def with its body after the colon
        in_doc = False
        for body in lines[j + 1:]:
            if not body.strip():
                continue
            ind = len(body) - len(body.lstrip())
            if ind <= indent:
                break
            s = body.strip()
            if in_doc:
                if '"""' in s or "'''" in s:
                    in_doc = False
                continue
            if s.startswith(('"""', "'''", 'r"""')):
                q = s[:3] if not s.startswith("r") else s[1:4]
                if s.count(q) == 1:
                    in_doc = True
                continue
            if _DEF.match(body):
                continue  # a nested method header; its body is judged line by line
            if not _STUB_LINE.match(body):
                return m.group(3)
        i = j + 1
    return None


def _judge(lines: list[str], profile: _Profile, *, fenced: bool) -> tuple[list[str], float]:
    """Reasons this piece of code is an implementation (empty: it is fine), and its total
    score (for the reply-level sum)."""
    reasons: list[str] = []
    code_lines = [ln for ln in lines if ln.strip() and (fenced or _looks_code(ln, fenced=False)
                                                        or ln[:1].isspace())]
    if not fenced:
        code_lines = [_unmark(ln) for ln in code_lines]
    if fenced:
        code_lines = [ln for ln in code_lines if not _is_formula(ln)
                      and not (_LIST_MARKER.match(ln) and not _looks_code(ln, fenced=False))]
    repl = {_REPL.sub("", ln).strip() for ln in code_lines if _REPL.match(ln)}
    code_lines = [_REPL.sub("", ln) if _REPL.match(ln) else ln for ln in code_lines]
    if not code_lines:
        return reasons, 0.0
    sym = _defines_task(code_lines, profile)
    if sym:
        reasons.append(f"defines {sym}")
    total, ops = 0.0, []
    for st in _statements(code_lines):
        sc, found = code_score(st, profile)
        if st.strip() in repl and not _ASSIGNMENT.match(st):
            sc *= 0.5  # a REPL line evaluated for display: a demonstration
        if _near_copy(st, profile, found):
            reasons.append("near-copy of the answer key")
            total += max(sc, LINE_LIMIT)
            break
        if sc >= LINE_LIMIT:
            reasons.append(f"computes the task ({', '.join(dict.fromkeys(found))})")
            total += sc
            break
        total += sc
        ops += found
    else:
        if total >= BLOCK_LIMIT:
            reasons.append(f"computes the task ({', '.join(dict.fromkeys(ops))})")
    return reasons, total


# --------------------------------------------------------------------------- nudges

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


# --------------------------------------------------------------------------- the filter


def filter_reply(text: str, *, lesson, task, answer_key_dir: Path | None = None,
                 allow_solution: bool = False, learner_code: str = "") -> FilterResult:
    """Remove code that implements the task from a coach reply.

    ``lesson``/``task`` are :mod:`tutor.curriculum` objects (duck-typed: ``tasks``,
    ``symbols``, ``guiding_questions``); ``answer_key_dir`` defaults to the installed
    answer key. ``allow_solution`` (the learner asked explicitly after the whole ladder)
    returns the text unchanged. Lines quoted verbatim from ``learner_code`` (the
    learner's own code) are not judged. Never raises.
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    if allow_solution or not text.strip():
        return FilterResult(text, 0, [])
    try:
        profile = _profile_for(lesson, task, answer_key_dir)
        return _filter(text, profile, task, learner_code)
    except Exception as exc:  # never let the guardrail break a reply: fail closed
        return _fallback(text, exc)


def prepare(answer_key_dir: Path | None = None) -> None:
    """Build the answer-key index now (once per process, about 25 ms) so the first
    filtered reply is not slower than the rest. Optional; never raises."""
    try:
        key = _key_stamp(answer_key_dir)
        if key[0]:
            _key_index(*key)
    except Exception:
        pass


def _fallback(text: str, exc: Exception) -> FilterResult:
    out, removed, in_fence = [], 0, False
    for ln in text.splitlines():
        if _FENCE.match(ln):
            in_fence = not in_fence
            if in_fence:
                removed += 1
                out.append(f"*({NUDGE_PREFIX}.)*")
            continue
        if in_fence:
            continue
        if _STRONG.search(ln):
            removed += 1
            out.append(f"*({NUDGE_PREFIX}.)*")
            continue
        out.append(ln)
    return FilterResult("\n".join(out), removed,
                        [f"guardrail error ({type(exc).__name__}); code-looking lines removed"])


@dataclass
class _Piece:
    """A piece of code in a reply: a fenced block, a run of code lines, or an inline span."""
    kind: str  # "block" | "run" | "span"
    start: int  # first line (0-based)
    end: int  # one past the last line
    code: list[str]
    reasons: list[str]
    score: float
    statement: bool = True  # spans: an assignment/return that could be pasted
    span: tuple[int, int] = (0, 0)  # spans: character range within the line


def _filter(text: str, profile: _Profile, task, learner_code: str) -> FilterResult:
    lines = text.split("\n")
    own = {re.sub(r"\s+", " ", ln.strip()) for ln in learner_code.splitlines() if len(ln.strip()) > 8}

    def judged(chunk: list[str], fenced: bool) -> tuple[list[str], float]:
        if own:
            chunk = [ln for ln in chunk if re.sub(r"\s+", " ", ln.strip()) not in own]
        return _judge(chunk, profile, fenced=fenced)

    # pass 1: find every piece of code and judge it on its own
    pieces: list[_Piece] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        fm = _FENCE.match(line)
        if fm:
            marker = fm.group(2)
            j = i + 1
            while j < n and not lines[j].strip().startswith(marker[0] * len(marker)):
                j += 1
            lang = fm.group(3).strip().lower().split(" ")[0] if fm.group(3).strip() else ""
            why, score = judged(lines[i + 1:j], lang not in _PROSE_FENCES)
            pieces.append(_Piece("block", i, min(j + 1, n), lines[i + 1:j], why, score))
            i = j + 1
            continue
        if _looks_code(line, fenced=False) or _indented_code_start(lines, i):
            j = _code_run_end(lines, i)
            why, score = judged(lines[i:j], False)
            pieces.append(_Piece("run", i, j, lines[i:j], why, score))
            if not why:
                for k in range(i, j):
                    pieces += _spans(lines[k], k, profile, judged)
            i = j
            continue
        pieces += _spans(line, i, profile, judged)
        i += 1

    # pass 2: code spread over many small pieces is judged as a whole
    kept = [p for p in pieces if not p.reasons and p.score >= 0.75 and p.statement]
    total = sum(p.score for p in pieces if p.statement and (p.reasons or p.score >= 0.75))
    if total >= BLOCK_LIMIT + 0.5 and len(kept) + sum(1 for p in pieces if p.reasons) > 1:
        for p in kept:
            p.reasons = [f"one of several pieces that together compute the task "
                             f"(score {total:.1f})"]

    # pass 3: rebuild the text
    bad = [p for p in pieces if p.reasons]
    if not bad:
        return FilterResult(text, 0, [])
    nudged = False

    def nudge(code: list[str]) -> str:
        nonlocal nudged
        if nudged:
            return f"*({NUDGE_PREFIX}.)*"
        nudged = True
        return _nudge(task, _words_of(code))

    drop: dict[int, _Piece] = {}
    spans: dict[int, list[_Piece]] = {}
    for p in bad:
        if p.kind == "span":
            spans.setdefault(p.start, []).append(p)
        else:
            drop[p.start] = p
    out: list[str] = []
    reasons: list[str] = []
    i = 0
    while i < n:
        if i in drop:
            p = drop[i]
            out.append(nudge(p.code))
            reasons.append(f"lines {p.start + 1}-{p.end}: " + "; ".join(p.reasons))
            i = p.end
            continue
        line = lines[i]
        if i in spans:
            codes = []
            for p in sorted(spans[i], key=lambda p: -p.span[0]):
                a, b = p.span
                line = line[:a] + "(code removed)" + line[b:]
                codes.append(p.code[0])
                reasons.append(f"inline `{p.code[0][:40]}`: " + "; ".join(p.reasons))
            line = line.rstrip() + " " + nudge(codes)
        out.append(line)
        i += 1
    return FilterResult("\n".join(out), len(bad), reasons)


def _indented_code_start(lines: list[str], i: int) -> bool:
    """A markdown indented code block: >= 4 spaces after a blank line, code-looking."""
    ln = lines[i]
    if not ln.startswith(("    ", "\t")) or not ln.strip():
        return False
    if i > 0 and lines[i - 1].strip():
        return False
    s = ln.strip()
    return bool(_STRONG.search(s) or _BLOCK_HEADER.match(s) or _RETURN.match(s)
                or re.match(r"^[A-Za-z_][\w.]*(\s*,\s*[A-Za-z_][\w.]*)*\s*=[^=]", s))


def _code_run_end(lines: list[str], i: int) -> int:
    """End (exclusive) of the run of code lines starting at ``i``."""
    base = len(lines[i]) - len(lines[i].lstrip())
    depth = 0
    j = i
    n = len(lines)
    while j < n:
        ln = lines[j]
        s = ln.strip()
        if _FENCE.match(ln):
            break
        if j > i:
            if not s:
                # a blank line continues the run only if deeper-indented code follows
                k = j + 1
                while k < n and not lines[k].strip():
                    k += 1
                if k < n and depth == 0 and (len(lines[k]) - len(lines[k].lstrip()) > base
                                             and _looks_code(lines[k], fenced=False)
                                             or _looks_code(lines[k], fenced=False)
                                             and len(lines[k]) - len(lines[k].lstrip()) >= base
                                             and base >= 4):
                    j = k
                    continue
                break
            ind = len(ln) - len(ln.lstrip())
            cont = depth > 0 or _looks_code(ln, fenced=False) or (
                ind > base and not s.endswith("?") and not re.match(r"^[A-Z][a-z]+ [a-z]+ [a-z]+", s)
            ) or s in (")", "]", "}", "):", "pass", "...", "else:", "break", "continue") or (
                s.startswith("#") and ind >= base and j + 1 < n and _looks_code(lines[j + 1], fenced=False))
            if not cont:
                break
        for k, t in _tokens(_strip_comment(ln)):
            if k == "op" and t in "([{":
                depth += 1
            elif k == "op" and t in ")]}":
                depth = max(0, depth - 1)
        j += 1
    return max(j, i + 1)


def _spans(line: str, i: int, profile: _Profile, judged) -> list[_Piece]:
    """The inline code spans of a prose line that are code (not an identifier, a shape or
    a formula), each judged on its own."""
    if "`" not in line:
        return []
    out = []
    for m in _INLINE.finditer(line):
        code = m.group(2).strip()
        if _is_formula(code):
            continue
        if not (_STRONG.search(code) or _RETURN.match(code) or _ASSIGN_CALL.match(code)):
            continue
        statement = bool(_RETURN.match(code) or re.match(
            r"^\s*[A-Za-z_][\w.]*(\[[^\]]*\])?(\s*,\s*[A-Za-z_][\w.]*)*\s*[-+*/@]?=(?!=)|^\s*lambda\b",
            code))
        why, score = judged([code], False)
        if not why and not statement and _generic_call(_core(_norm(_tokens(code)))):
            continue  # how one op is called (`mx.tril(m, k=0)`), not the task
        if why and not statement and _generic_call(_core(_norm(_tokens(code)))) \
                and score < LINE_LIMIT + 0.5 and "answer key" not in " ".join(why):
            continue
        out.append(_Piece("span", i, i + 1, [code], why, score, statement, m.span()))
    return out
