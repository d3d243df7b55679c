"""Day 3.6 -- tool calling and an agent loop: the tool section of the system prompt and the
prompt of a conversation with tool calls (``tool_system_prompt``, ``build_tool_prompt``),
the parser of ``<tool_call>`` blocks (``parse_tool_calls``), safe tools (``calculator``,
``search_corpus``, ``check_results``) and the loop (``run_agent``).

Oracles: prompts come from transformers' own ``apply_chat_template`` with ``tools=`` on a
Qwen2.5-style template with tool support written for the tutor (``tool_oracle``); the
learner's ``build_tool_prompt`` is given a tokenizer with the same vocabulary whose
template knows only plain roles, so the tool format must be the learner's. The parser is
judged on a corpus of model outputs labelled by hand (``PARSE_CORPUS``); the calculator
against Python's arithmetic on the same expressions (``eval`` with no names, on the
checks' own vetted strings); the search against the scoring rule written out here, over
the week-3 lessons' concept texts (the shipped corpus); the loop against the loop written
out here (``loop_oracle``), driven by scripted models, and end to end by a tiny random
mlx_lm Qwen2 on the oracle tokenizer's vocabulary.

Isolation: the loop checks run with the checks' own tools and scripted models. When the
loop's history or prompts are wrong, the learner's own ``build_tool_prompt`` and
``parse_tool_calls`` are first judged on exactly the prompts and outputs of that run, so a
mistake in one of them is named there and not blamed on the loop. Tool error messages are
free text: they must start with ``Error:`` and name the unknown tool or the exception.

The tiny model is why the oracle's vocabulary is a trained BPE and not one token per byte:
attention over a thousand-byte prompt costs seconds on a CPU, over its 300 tokens almost
nothing. Time: about 1.5 s for the day on the answer key, most of it importing
transformers and training the oracle tokenizer's 250 merges.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path

import mlx.core as mx

from ..harness import CheckFailed, LearnerError, check, import_mlx_lm, measure
from . import tool_oracle

SYSTEM_PROMPT = "agent.tool_system_prompt"
BUILD = "agent.build_tool_prompt"
PARSE = "agent.parse_tool_calls"
CALC = "agent.calculator"
SEARCH = "agent.search_corpus"
RESULTS = "agent.check_results"
RUN = "agent.run_agent"


def _tool(name, description, properties, required=()):
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": properties, "required": list(required)}}}


CALC_TOOL = _tool("calculator", "Evaluate an arithmetic expression and return the number.",
                  {"expression": {"type": "string", "description": "for example 2 * (3 + 4)"}},
                  ["expression"])
SEARCH_TOOL = _tool("search_lessons", "Find the course's lesson texts about a topic.",
                    {"query": {"type": "string"}, "k": {"type": "integer", "minimum": 1}},
                    ["query"])
# Non-ASCII text in a definition: the template writes it as it is.
WEATHER_TOOL = _tool("weather", "Température actuelle en °C à une ville donnée (Zürich, 東京).",
                     {"city": {"type": "string", "enum": ["Zürich", "東京", "Paris"]}}, ["city"])
TOOLS = [CALC_TOOL, SEARCH_TOOL]
ALL_TOOLS = [CALC_TOOL, SEARCH_TOOL, WEATHER_TOOL]


def _call(name, arguments):
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


# --------------------------------------------------------------------------- prompt judging


def _first_difference(got: str, want: str) -> str:
    """The first line where two prompts differ, both sides shown."""
    g, w = got.split("\n"), want.split("\n")
    for i, (a, b) in enumerate(zip(g, w)):
        if a != b:
            return f"line {i + 1}: got {a[:160]!r}, expected {b[:160]!r}"
    if len(g) != len(w):
        i = min(len(g), len(w))
        extra = (g if len(g) > len(w) else w)[i]
        side = "got an extra" if len(g) > len(w) else "missing the"
        return f"line {i + 1}: {side} line {extra[:160]!r}"
    return "they differ in a character the lines do not show"


def _ascii_variant(text: str, messages: list[dict], tools: list[dict], *,
                   definitions: bool = True, arguments: bool = True) -> str:
    """``text`` with the JSON the template wrote (tool definitions, call arguments, or
    both) ASCII-escaped."""
    pieces = [json.dumps(t, ensure_ascii=False) for t in tools] if definitions else []
    for m in messages if arguments else []:
        for c in m.get("tool_calls") or []:
            pieces.append(json.dumps(c["function"]["arguments"], ensure_ascii=False))
    for p in sorted(set(pieces), key=len, reverse=True):
        text = text.replace(p, json.dumps(json.loads(p)))
    return text


SEPARATE = ("\n</tool_response>\n<tool_response>\n",
            "\n</tool_response><|im_end|>\n<|im_start|>user\n<tool_response>\n")


def prompt_candidates(want: str, messages: list[dict], tools: list[dict]) -> dict:
    """The prompt each catalogued prompt mistake produces (a list of variants each)."""
    out: dict = {}
    for d, a in ((True, True), (True, False), (False, True)):
        v = _ascii_variant(want, messages, tools, definitions=d, arguments=a)
        if v != want:
            out.setdefault("agent-tools-json-ascii", []).append(v)
    if SEPARATE[0] in want:
        out["agent-tool-results-separate-turns"] = [want.replace(*SEPARATE)]
    if messages and messages[0]["role"] == "system":
        # the default system text with the tools, the caller's dropped or in a turn of its own
        alone = tool_oracle.render(messages[1:], tools)
        cut = alone.index("<|im_end|>\n") + len("<|im_end|>\n")
        own = f"<|im_start|>system\n{messages[0]['content']}<|im_end|>\n"
        out["agent-system-message-replaced"] = [alone, alone[:cut] + own + alone[cut:]]
    return out


def judge_prompt(got, messages, tools, case: str, what: str) -> None:
    want = tool_oracle.render(messages, tools)
    if got == want:
        return
    if not isinstance(got, str):
        raise CheckFailed(f"[{case}] {what} is a {type(got).__name__}, expected a str.",
                          {"case": case, "type": type(got).__name__})
    pit = next((p for p, texts in prompt_candidates(want, messages, tools).items()
                if got in texts), None)
    raise CheckFailed(
        f"[{case}] {what} differs from the chat template's rendering with tools, at "
        f"{_first_difference(got, want)}.",
        {"case": case, "got_chars": len(got), "expected_chars": len(want)}, pitfall=pit)


# --------------------------------------------------------------------------- task 1


def _oracle_system(tools, system):
    """The system turn's content, cut out of the template's rendering."""
    msgs = ([{"role": "system", "content": system}] if system is not None else []) + [
        {"role": "user", "content": "x"}]
    text = tool_oracle.render(msgs, tools)
    head = "<|im_start|>system\n"
    return text[len(head):text.index("<|im_end|>\n<|im_start|>user\nx")]


SYSTEM_CASES = [
    ("two tools, default system text", TOOLS, None),
    ("one tool, the caller's system text", [CALC_TOOL], "Answer in one sentence."),
    ("no tools", [], "Be brief."),
    ("no tools, default system text", [], None),
    ("non-ASCII in a definition", ALL_TOOLS, None),
]


@check("agent-tool-system-prompt", 1, "The system message describes the tools in the template's tool format")
def agent_tool_system_prompt(ctx):
    fn = ctx.symbol(SYSTEM_PROMPT)
    for case, tools, system in SYSTEM_CASES:
        got = ctx.call(fn, copy.deepcopy(tools), system)
        want = _oracle_system(tools, system)
        if got == want:
            continue
        if not isinstance(got, str):
            ctx.fail(f"[{case}] tool_system_prompt returned a {type(got).__name__}, "
                     "expected a str.", {"case": case})
        pit = None
        if got == _ascii_variant(want, [], tools):
            pit = "agent-tools-json-ascii"
        elif system is not None and got == _oracle_system(tools, None):
            pit = "agent-system-message-replaced"
        ctx.fail(f"[{case}] the system text differs from the template's, at "
                 f"{_first_difference(got, want)}.", {"case": case}, pitfall=pit)


USER_Q = {"role": "user", "content": "What is 17 * 23, and which lesson explains KV caches?"}
CALLS_1 = {"role": "assistant", "content": "", "tool_calls": [
    _call("calculator", {"expression": "17 * 23"}),
    _call("search_lessons", {"query": "KV cache", "k": 2})]}
RESULTS_1 = [{"role": "tool", "name": "calculator", "content": "391"},
             {"role": "tool", "name": "search_lessons",
              "content": '[{"id": "2.1/kv", "score": 2}]'}]
CALLS_2 = {"role": "assistant", "content": "Let me check the weather too.",
           "tool_calls": [_call("weather", {"city": "Zürich"})]}
RESULTS_2 = [{"role": "tool", "name": "weather", "content": "Error: unknown tool 'weather'"}]
ANSWER = {"role": "assistant", "content": "17 * 23 = 391; day 2.1 explains KV caches."}

PROMPT_CASES = [
    ("a question, no system message", [USER_Q], TOOLS),
    ("a question with the caller's system message",
     [{"role": "system", "content": "You are a course assistant."}, USER_Q], TOOLS),
    ("two calls and their two results", [USER_Q, CALLS_1, *RESULTS_1], TOOLS),
    ("text before a call, non-ASCII arguments",
     [USER_Q, CALLS_1, *RESULTS_1, CALLS_2, *RESULTS_2], ALL_TOOLS),
    ("a finished conversation and a follow-up",
     [{"role": "system", "content": "Be exact."}, USER_Q, CALLS_1, *RESULTS_1, ANSWER,
      {"role": "user", "content": "And 391 / 17?"}], TOOLS),
    ("no tools at all", [USER_Q], []),
]


@check("agent-prompt-template", 1, "A conversation with tool calls and results is rendered as the tool-aware template renders it")
def agent_prompt_template(ctx):
    fn = ctx.symbol(BUILD)
    plain = tool_oracle.tokenizers()["plain"]
    for case, messages, tools in PROMPT_CASES:
        got = ctx.call(fn, plain, copy.deepcopy(messages), copy.deepcopy(tools))
        judge_prompt(got, messages, tools, case, "the prompt")


# --------------------------------------------------------------------------- task 2

# (case, model output, expected content, expected calls [(name, arguments)], errors)
TC = "<tool_call>\n{}\n</tool_call>"
GOOD_CALC = '{"name": "calculator", "arguments": {"expression": "2 + 2"}}'
GOOD_SEARCH = '{"name": "search_lessons", "arguments": {"query": "rope", "k": 1}}'
PARSE_WELL_FORMED = [
    ("a plain answer", "The answer is 4.", "The answer is 4.", [], 0),
    ("one call", TC.format(GOOD_CALC), "", [("calculator", {"expression": "2 + 2"})], 0),
    ("two calls", TC.format(GOOD_CALC) + "\n" + TC.format(GOOD_SEARCH), "",
     [("calculator", {"expression": "2 + 2"}), ("search_lessons", {"query": "rope", "k": 1})], 0),
    ("text around the calls", "Let me compute.\n" + TC.format(GOOD_CALC) + "\nThen search.\n"
     + TC.format(GOOD_SEARCH) + "\n", "Let me compute.\n\nThen search.",
     [("calculator", {"expression": "2 + 2"}), ("search_lessons", {"query": "rope", "k": 1})], 0),
    ("no whitespace inside the tags", '<tool_call>{"name":"calculator","arguments":{}}</tool_call>',
     "", [("calculator", {})], 0),
    ("arguments left out", '<tool_call>{"name": "now"}</tool_call>', "", [("now", {})], 0),
    ("arguments as a JSON string",
     '<tool_call>{"name": "calculator", "arguments": "{\\"expression\\": \\"1/3\\"}"}</tool_call>',
     "", [("calculator", {"expression": "1/3"})], 0),
    ("nested arguments, non-ASCII",
     ('<tool_call>{"name": "weather", "arguments": {"city": "Zürich", "days": [1, 2], '
      '"opts": {"unit": "°C"}}}</tool_call> ok'), "ok",
     [("weather", {"city": "Zürich", "days": [1, 2], "opts": {"unit": "°C"}})], 0),
]
PARSE_BROKEN = [
    ("invalid JSON", TC.format('{"name": "calculator", "arguments": {"expression": 2 + 2}}'),
     "", [], 1),
    ("a trailing comma", TC.format('{"name": "calculator", "arguments": {},}'), "", [], 1),
    ("an array, not an object", TC.format('["calculator", {}]'), "", [], 1),
    ("no name", TC.format('{"arguments": {"x": 1}}'), "", [], 1),
    ("an empty name", TC.format('{"name": "", "arguments": {}}'), "", [], 1),
    ("a name that is not a string", TC.format('{"name": 7, "arguments": {}}'), "", [], 1),
    ("arguments that are a list", TC.format('{"name": "calculator", "arguments": [1]}'),
     "", [], 1),
    ("arguments a string that is not JSON",
     TC.format('{"name": "calculator", "arguments": "2 + 2"}'), "", [], 1),
    ("an empty block", "<tool_call></tool_call>", "", [], 1),
    ("a broken call between two good ones",
     "First.\n" + TC.format(GOOD_CALC) + "\n" + TC.format('{"name": "calculator", "argu')
     + "\n" + TC.format(GOOD_SEARCH) + "\nDone.", "First.\n\n\n\nDone.",
     [("calculator", {"expression": "2 + 2"}), ("search_lessons", {"query": "rope", "k": 1})], 1),
    ("a broken call first", TC.format("{name: calculator}") + TC.format(GOOD_SEARCH), "",
     [("search_lessons", {"query": "rope", "k": 1})], 1),
    ("cut off inside the JSON", "I will compute it.\n<tool_call>\n{\"name\": \"calcul",
     "I will compute it.", [], 1),
    ("cut off after a good call", TC.format(GOOD_CALC) + "\n<tool_call>\n" + GOOD_SEARCH,
     "", [("calculator", {"expression": "2 + 2"})], 1),
    ("only an opening tag", "<tool_call>", "", [], 1),
]


def parse_oracle(text, *, stop_at_error=False, drop_all_on_error=False,
                 partial_as_text=False, rest_as_text=False):
    """The parse rule written out; the flags make the catalogued parser mistakes."""
    content, calls, errors, pos = [], [], 0, 0
    while True:
        s = text.find("<tool_call>", pos)
        if s < 0:
            content.append(text[pos:])
            break
        content.append(text[pos:s])
        e = text.find("</tool_call>", s)
        if e < 0:
            if partial_as_text:
                content.append(text[s:])
            else:
                errors += 1
            break
        call = _oracle_call(text[s + len("<tool_call>"):e])
        pos = e + len("</tool_call>")
        if call is None:
            errors += 1
            if stop_at_error:
                if rest_as_text:
                    content.append(text[pos:])
                break
        else:
            calls.append(call)
    if drop_all_on_error and errors:
        calls = []
    return "".join(content).strip(), calls, errors


def _oracle_call(body):
    try:
        obj = json.loads(body)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        return None
    args = obj.get("arguments", {})
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    return (obj["name"], args) if isinstance(args, dict) else None


PARSE_MISTAKES = {
    "agent-parse-error-drops-calls": [{"stop_at_error": True}, {"drop_all_on_error": True},
                                      {"stop_at_error": True, "rest_as_text": True}],
    "agent-parse-partial-as-text": [{"partial_as_text": True}],
}


def _parsed(ctx, out, case):
    """(content, [(name, arguments)], number of errors) from the learner's ParsedOutput."""
    try:
        calls = [(c.name, c.arguments) for c in out.calls]
        return out.content, calls, len(out.errors)
    except (AttributeError, TypeError):
        ctx.fail(f"[{case}] parse_tool_calls returned a {type(out).__name__}; expected a "
                 "ParsedOutput with content, calls (each with name and arguments) and "
                 "errors.", {"case": case})


def _show(parsed):
    content, calls, errors = parsed
    return {"content": content, "calls": [[n, a] for n, a in calls], "errors": errors}


def judge_parse(ctx, fn, case, text, want, *, what="parse_tool_calls"):
    got = _parsed(ctx, ctx.call(fn, text), case)
    if got == want:
        return
    pit = None
    for pitfall, variants in PARSE_MISTAKES.items():
        if any(parse_oracle(text, **v) == got for v in variants):
            pit = pitfall
            break
    diffs = [name for name, g, w in zip(("content", "calls", "number of errors"), got, want)
             if g != w]
    raise CheckFailed(
        f"[{case}] {what}: the {', '.join(diffs)} differ for the output {text[:120]!r}: got "
        f"{json.dumps(_show(got), ensure_ascii=False)[:300]}, expected "
        f"{json.dumps(_show(want), ensure_ascii=False)[:300]}.",
        {"case": case, "output": text, "got": _show(got), "expected": _show(want)},
        pitfall=pit)


@check("agent-parse-well-formed", 2, "Well-formed tool calls and the text around them are read back")
def agent_parse_well_formed(ctx):
    fn = ctx.symbol(PARSE)
    for case, text, content, calls, errors in PARSE_WELL_FORMED:
        judge_parse(ctx, fn, case, text, (content, calls, errors))


@check("agent-parse-broken", 2, "Broken and cut-off tool calls become errors and the good calls around them survive")
def agent_parse_broken(ctx):
    fn = ctx.symbol(PARSE)
    for case, text, content, calls, errors in PARSE_BROKEN:
        judge_parse(ctx, fn, case, text, (content, calls, errors))


# --------------------------------------------------------------------------- task 3

ARITHMETIC = ["2 + 3 * 4", "(2 + 3) * 4", "-2 ** 2", "2 ** -1", "2 ** 3 ** 2", "7 // 2",
              "-7 // 2", "7 % 3", "-7 % 3", "1 / 4", "0.1 + 0.2", "1e3 * 2", "+5 - -5",
              "(1 + 2) * (3 - 4) / 5  ", "2 ** -1001", "10 ** 20 + 1", "2 ** 0.5", "3.5 // 1"]
# Each of these runs as Python code; none is arithmetic.
NOT_ARITHMETIC = ["abs(-3)", "(7).real", "'ab' * 3", "[1, 2][0]", "x + 1", "True + 1",
                  "1 if 2 else 3", "2 < 3", "(lambda: 4)()", "__import__('os').getpid()",
                  "().__class__", "{1: 2}[1]", "1; 2", "1j * 1j", "", "2 +"]
TOO_LARGE = ["10 ** 5000", "(10 ** 101) ** 2", "(-10 ** 101) ** 2", "2 ** 1000.5"]


def _python(expression):
    return eval(expression.strip(), {"__builtins__": {}}, {})  # the checks' own strings


@check("agent-calculator", 3, "The calculator computes arithmetic as Python's arithmetic does")
def agent_calculator(ctx):
    fn = ctx.symbol(CALC)
    for expr in ARITHMETIC:
        want = _python(expr)
        try:
            got = ctx.call(fn, expr)
        except LearnerError as exc:
            if exc.message.startswith("Your code raised ValueError"):
                exc.message = f"calculator({expr!r}) refused arithmetic: {exc.message}"
                exc.pitfall = "agent-calculator-refuses-arithmetic"
            raise
        if type(got) is not type(want) or got != want:
            ctx.fail(f"calculator({expr!r}) returned {got!r} ({type(got).__name__}), "
                     f"expected {want!r} ({type(want).__name__}).", {"expression": expr})
    _must_raise(ctx, "ZeroDivisionError", "calculator('1 / (3 - 3)') returned a value; a "
                "division by zero must raise ZeroDivisionError.", {"expression": "1 / (3 - 3)"},
                fn, "1 / (3 - 3)")


def _must_raise(ctx, error: str, message: str, evidence: dict, fn, *args) -> None:
    """The learner's ``fn(*args)`` raises ``error`` (a class name); another error is the
    learner's crash as usual, a returned value fails with ``message``."""
    try:
        ctx.call(fn, *args)
    except LearnerError as exc:
        if error not in exc.message:
            raise
    else:
        ctx.fail(message, evidence)


def _refusal(ctx, fn, expr):
    """None when the calculator raised ValueError, else what it did."""
    try:
        got = ctx.call(fn, expr)
    except LearnerError as exc:
        return None if exc.message.startswith("Your code raised ValueError") else exc.message
    return f"returned {got!r}"


@check("agent-calculator-refuses-code", 3, "The calculator refuses everything that is not arithmetic, and powers too large to compute")
def agent_calculator_refuses_code(ctx):
    fn = ctx.symbol(CALC)
    ran = [(e, r) for e in NOT_ARITHMETIC if (r := _refusal(ctx, fn, e)) is not None]
    if ran:
        returned = [(e, r) for e, r in ran if r.startswith("returned")]
        expr, what = (returned or ran)[0]
        ctx.fail(f"calculator({expr!r}) {what}; anything but numbers, parentheses and the "
                 "arithmetic operators must raise ValueError "
                 f"({len(ran)} of {len(NOT_ARITHMETIC)} such inputs were not refused).",
                 {"not_refused": [e for e, _ in ran]},
                 pitfall="agent-calculator-runs-code" if returned else None)
    for expr in TOO_LARGE:
        what = _refusal(ctx, fn, expr)
        if what is not None:
            ctx.fail(f"calculator({expr!r}) {what[:80]}; a power whose exponent is above 1000 "
                     "or whose base is above 10**100 must raise ValueError, or a model can "
                     "make the agent compute for hours.", {"expression": expr})


WORD = re.compile(r"[a-z0-9]+")


@functools.lru_cache(maxsize=1)
def lesson_documents() -> dict:
    """The week-3 lessons' concept texts: ``{"<day>/<concept name>": explanation}``."""
    import yaml

    folder = Path(__file__).resolve().parents[2] / "curriculum" / "week3"
    docs = {}
    for path in sorted(folder.glob("day*.yaml")):
        lesson = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        for c in lesson.get("concepts") or []:
            docs[f"{lesson['id']}/{c['name']}"] = c["explanation"]
    return docs


def search_oracle(query, documents, k=3, max_chars=300, *, ties_by_id=True):
    """The search rule written out; ``ties_by_id=False`` leaves ties in the documents'
    own order (agent-search-ties-unordered)."""
    words = set(WORD.findall(query.lower()))
    scored = sorted(((-len(words & set(WORD.findall(t.lower()))), i)
                     for i, t in documents.items()),
                    key=None if ties_by_id else (lambda si: si[0]))
    return [{"id": i, "score": -s, "text": documents[i][:max_chars]}
            for s, i in scored if s < 0][:k]


SEARCHES = [("speculative draft target rewind", {}), ("page pool", {"k": 5}),
            ("Experts, ROUTER & softmax!!", {"k": 2, "max_chars": 40}),
            ("zzz qqq", {}), ("the a of", {"k": 4})]


def _state():
    check = {"task": 1, "title": "t", "runs": 2, "fails": 1, "failing": False}
    return {"schema": "tiny-llm-tutor/state", "days": {
        "3.6": {"last_result": "fail", "checks": {
            "agent-parse-broken": {**check, "failing": True},
            "agent-calculator": dict(check),
            "agent-loop-errors": {**check, "failing": True}}},
        "3.4": {"last_result": "pass", "checks": {"spec-verify-greedy": dict(check)}},
        "1.1": {"last_result": None, "checks": {}}}}


RESULT_CASES = [("3.6", {"day": "3.6", "last_result": "fail",
                         "failing": ["agent-loop-errors", "agent-parse-broken"]}),
                ("day3.4", {"day": "3.4", "last_result": "pass", "failing": []}),
                ("1.1", {"day": "1.1", "last_result": None, "failing": []})]


@check("agent-read-only-tools", 3, "Searching the lessons and reading check results give the right records and change nothing")
def agent_read_only_tools(ctx):
    search = ctx.symbol(SEARCH)
    docs = lesson_documents()
    if not docs:
        raise CheckFailed("the checks found no lesson texts to search: the curriculum "
                          "folder is missing from this installation of the tutor.", {},
                          status="error")
    kept = copy.deepcopy(docs)
    for query, kw in SEARCHES:
        got = ctx.call(search, query, docs, **kw)
        want = search_oracle(query, kept, **kw)
        if got != want:
            pit = None
            if got == search_oracle(query, kept, **kw, ties_by_id=False):
                pit = "agent-search-ties-unordered"
            ctx.fail(f"search_corpus({query!r}, <{len(docs)} lesson texts>, {kw}) returned "
                     f"{[(d.get('id'), d.get('score')) for d in got] if isinstance(got, list) and all(isinstance(d, dict) for d in got) else got!r}"
                     f" as (id, score), expected {[(d['id'], d['score']) for d in want]}"
                     " (or the same ids with other texts).", {"query": query}, pitfall=pit)
        if docs != kept:
            ctx.fail("search_corpus changed the documents it searched; a tool the model "
                     "can call must only read.", {"query": query})
    results = ctx.symbol(RESULTS)
    state = _state()
    for day, want in RESULT_CASES:
        got = ctx.call(results, state, day)
        if got != want:
            ctx.fail(f"check_results(state, {day!r}) returned {got!r}, expected {want!r}.",
                     {"day": day})
    if state != _state():
        ctx.fail("check_results changed the state it read; a tool the model can call must "
                 "only read.", {})
    _must_raise(ctx, "KeyError", "check_results(state, '9.9') returned a value for a day "
                "that is not in the records; it must raise KeyError.", {"day": "9.9"},
                results, state, "9.9")


# --------------------------------------------------------------------------- task 4


class Runaway(Exception):
    pass


class Scripted:
    """A model that answers from a list, whatever the prompt; records every prompt. The
    last output repeats when the list runs out; past ``limit`` calls it stops the run."""

    def __init__(self, outputs, limit=40):
        self.outputs, self.limit, self.prompts = list(outputs), limit, []

    def __call__(self, prompt):
        self.prompts.append(prompt)
        if len(self.prompts) > self.limit:
            raise Runaway(f"the model was called {len(self.prompts)} times")
        return self.outputs[min(len(self.prompts), len(self.outputs)) - 1]


class ToolFailure(RuntimeError):
    pass


def _functions(log):
    def calculator(expression):
        log.append(("calculator", expression))
        if expression == "boom":
            raise ToolFailure("the expression 'boom' blew up")
        return {"2 + 2": 4, "17 * 23": 391}.get(expression, 0)

    def search_lessons(query, k=1):
        log.append(("search_lessons", query))
        return [{"id": f"lesson-{i + 1}", "about": query, "exact": i == 0} for i in range(k)]

    return {"calculator": calculator, "search_lessons": search_lessons}


def tc(name, arguments):
    return TC.format(json.dumps({"name": name, "arguments": arguments}))


def loop_oracle(outputs, messages, max_steps, *, dump=json.dumps):
    """The expected history, the number of model calls and how the run stops; a tool
    message's content is exact text or ("error", words it must contain). ``dump=str``
    makes the agent-tool-result-not-json mistake."""
    history = [dict(m) for m in messages]
    functions = _functions([])
    for step in range(1, max_steps + 1):
        text = outputs[min(step, len(outputs)) - 1]
        content, calls, errors = parse_oracle(text)
        turn = {"role": "assistant", "content": content}
        if calls:
            turn["tool_calls"] = [_call(n, a) for n, a in calls]
        history.append(turn)
        if not calls and not errors:
            return history, step, "answer"
        for name, args in calls:
            fn = functions.get(name)
            if fn is None:
                result = ("error", [name])
            else:
                try:
                    out = fn(**args)
                    result = out if isinstance(out, str) else dump(out)
                except ToolFailure as exc:
                    result = ("error", [str(exc)])
                except TypeError:
                    result = ("error", [])
            history.append({"role": "tool", "name": name, "content": result})
        history.extend({"role": "tool", "name": "", "content": ("error", [])}
                       for _ in range(errors))
    return history, max_steps, "step_limit"


QUESTION = [{"role": "system", "content": "Use the tools."},
            {"role": "user", "content": "What is 17 * 23?"}]

LOOP_CASES = [
    ("an answer at once", ["391."], 5),
    ("one call, then the answer", [tc("calculator", {"expression": "17 * 23"}), "It is 391."], 5),
    ("two calls at once, then the answer",
     ["Checking. " + tc("calculator", {"expression": "17 * 23"})
      + tc("search_lessons", {"query": "arithmetic", "k": 2}), "391, see the lessons."], 5),
    ("calls over three steps",
     [tc("calculator", {"expression": "2 + 2"}), tc("search_lessons", {"query": "kv"}),
      tc("calculator", {"expression": "17 * 23"}), "Done: 391."], 6),
]
ERROR_CASES = [
    ("a call to an unknown tool", [tc("web_browser", {"url": "http://x"}), "Sorry."], 5),
    ("arguments the tool does not take",
     [tc("calculator", {"expr": "17 * 23"}), tc("calculator", {"expression": "17 * 23"}), "391."], 5),
    ("a tool that raises", [tc("calculator", {"expression": "boom"}), "It failed."], 5),
    ("a broken call, then a good one",
     ['<tool_call>{"name": "calculator", "arguments": {"expression": "17 *</tool_call>',
      tc("calculator", {"expression": "17 * 23"}), "391."], 5),
    ("a call cut off", ["Let me compute: <tool_call>\n{\"name\": \"calc", "391."], 5),
    ("a good call, an unknown one and a broken one in one output",
     [tc("calculator", {"expression": "2 + 2"}) + tc("nope", {}) + "<tool_call>[1]</tool_call>",
      "Four."], 5),
]
LIMIT_CASES = [
    ("a model that never stops calling tools, 3 steps",
     [tc("calculator", {"expression": "2 + 2"})], 3),
    ("a model that never stops calling tools, 1 step",
     [tc("search_lessons", {"query": "rope"})], 1),
    ("a model that answers on the last allowed step",
     [tc("calculator", {"expression": "2 + 2"}), tc("calculator", {"expression": "2 + 2"}),
      "Four."], 3),
]


def _norm_calls(calls):
    out = []
    for c in calls or []:
        f = c.get("function", c) if isinstance(c, dict) else None
        out.append((f.get("name"), f.get("arguments")) if isinstance(f, dict) else repr(c))
    return out


def _compare_history(got, want):
    """None, or what is wrong with the first message that differs."""
    for i, (g, w) in enumerate(zip(got, want)):
        if not isinstance(g, dict):
            return f"message {i + 1} is a {type(g).__name__}, expected a dict"
        if g.get("role") != w["role"]:
            return f"message {i + 1} has role {g.get('role')!r}, expected {w['role']!r}"
        if w["role"] == "assistant":
            if g.get("content") != w["content"]:
                return (f"message {i + 1} (assistant) has content {g.get('content')!r}, "
                        f"expected {w['content']!r}")
            if _norm_calls(g.get("tool_calls")) != _norm_calls(w.get("tool_calls")):
                return (f"message {i + 1} (assistant) has tool calls "
                        f"{_norm_calls(g.get('tool_calls'))}, expected "
                        f"{_norm_calls(w.get('tool_calls'))}")
        elif w["role"] == "tool":
            if g.get("name") != w["name"]:
                return f"message {i + 1} (tool) has name {g.get('name')!r}, expected {w['name']!r}"
            content = g.get("content")
            if isinstance(w["content"], tuple):
                words = w["content"][1]
                if not (isinstance(content, str) and content.startswith("Error:")
                        and all(x in content for x in words)):
                    need = f" naming {', '.join(map(repr, words))}" if words else ""
                    return (f"message {i + 1} (tool {w['name']!r}) is {content!r}; expected "
                            f"an error starting with 'Error:'{need}")
            elif content != w["content"]:
                return f"message {i + 1} (tool {w['name']!r}) is {content!r}, expected {w['content']!r}"
        elif g != w:
            return f"message {i + 1} is {g!r}, expected {w!r}"
    if len(got) != len(want):
        return f"the history has {len(got)} messages, expected {len(want)}"
    return None


def _renderable(history):
    """The expected history with a stand-in text for each error message (whose wording is
    the learner's), so that it can be rendered."""
    return [{**m, "content": "Error: something went wrong"} if isinstance(m.get("content"), tuple)
            else m for m in history]


def _blame_parts(ctx, case, outputs, history):
    """Judge the learner's own parser and prompt builder on this run's inputs, so that a
    mistake in one of them is named there and not blamed on the loop."""
    parse = ctx.symbol(PARSE)
    for text in dict.fromkeys(outputs):
        judge_parse(ctx, parse, case, text, parse_oracle(text),
                    what="parse_tool_calls, which the loop uses")
    build = ctx.symbol(BUILD)
    plain = tool_oracle.tokenizers()["plain"]
    history = _renderable(history)
    for end in [i for i, m in enumerate(history) if m["role"] == "assistant"]:
        prefix = copy.deepcopy(history[:end])
        judge_prompt(ctx.call(build, plain, prefix, copy.deepcopy(TOOLS)), prefix, TOOLS,
                     case, "build_tool_prompt, which the loop uses,")


ERROR_PITFALL = "agent-tool-error-raised"


def _loop_pitfall(outputs, calls, want_steps, want_stop, max_steps):
    if want_stop == "step_limit" and abs(calls - max_steps) == 1:
        return "agent-step-limit-off-by-one"
    if 0 < calls < want_steps:
        last = parse_oracle(outputs[min(calls, len(outputs)) - 1])
        if not last[1] and last[2]:
            return "agent-broken-call-taken-as-answer"
    return None


def _times(n):
    return "once" if n == 1 else f"{n} times"


def run_case(ctx, case, outputs, max_steps, *, escaped_pitfall=None):
    """Run the learner's loop on a scripted model; judge the history, the model calls, the
    result and every prompt."""
    fn = ctx.symbol(RUN)
    model = Scripted(outputs, limit=max_steps + 10)
    messages = copy.deepcopy(QUESTION)
    plain = tool_oracle.tokenizers()["plain"]
    want_history, want_steps, want_stop = loop_oracle(outputs, QUESTION, max_steps)
    try:
        result = ctx.call(fn, model, plain, messages, copy.deepcopy(TOOLS), _functions([]),
                          max_steps)
    except LearnerError as exc:
        if "Runaway" in exc.message:
            raise CheckFailed(
                f"[{case}] run_agent was still calling the model after {model.limit} calls "
                f"with max_steps={max_steps}: it does not stop at the step limit.",
                {"case": case, "max_steps": max_steps}) from None
        if escaped_pitfall and any(w in exc.message for w in ("ToolFailure", "KeyError", "TypeError")):
            _blame_parts(ctx, case, outputs[:len(model.prompts)], want_history)
            exc.pitfall = escaped_pitfall
            exc.message = (f"[{case}] a tool error escaped run_agent instead of going back to "
                           f"the model as a tool message: {exc.message}")
        raise
    if messages != QUESTION:
        ctx.fail(f"[{case}] run_agent changed the caller's messages list; keep the "
                 "conversation in a list of your own.", {"case": case})
    try:
        answer, history, steps, stopped = (result.answer, result.messages, result.steps,
                                           result.stopped)
    except AttributeError:
        ctx.fail(f"[{case}] run_agent returned a {type(result).__name__}; expected an "
                 "AgentResult (answer, messages, steps, stopped).", {"case": case})
    calls = len(model.prompts)
    facts = {"case": case, "max_steps": max_steps, "model_calls": calls,
             "expected_model_calls": want_steps}
    want_answer = want_history[-1]["content"] if want_stop == "answer" else None
    problem = None
    if calls != want_steps:
        problem = (f"the model was called {_times(calls)} with max_steps={max_steps}, expected "
                   f"{want_steps} ({'it never answers' if want_stop == 'step_limit' else 'the last output is its answer'})")
    problem = problem or _compare_history(history if isinstance(history, list) else [],
                                          want_history)
    if not problem and (steps, stopped, answer) != (want_steps, want_stop, want_answer):
        problem = (f"run_agent returned steps={steps!r}, stopped={stopped!r}, answer="
                   f"{answer!r}; expected steps={want_steps}, stopped={want_stop!r}, "
                   f"answer={want_answer!r}")
    if problem:
        _blame_parts(ctx, case, outputs[:max(calls, 1)], want_history)
        pit = _loop_pitfall(outputs, calls, want_steps, want_stop, max_steps)
        if pit is None and isinstance(history, list) and _compare_history(
                history, loop_oracle(outputs, QUESTION, max_steps, dump=str)[0]) is None:
            pit = "agent-tool-result-not-json"
        ctx.fail(f"[{case}] {problem}.", facts, pitfall=pit)
    ends = [j for j, m in enumerate(history) if m["role"] == "assistant"]
    for i, (prompt, end) in enumerate(zip(model.prompts, ends)):
        expected = tool_oracle.render(history[:end], TOOLS)
        if prompt != expected:
            _blame_parts(ctx, case, outputs, want_history)
            ctx.fail(f"[{case}] the prompt of step {i + 1} is not the conversation so far "
                     f"rendered with the tools, at {_first_difference(prompt, expected)}.",
                     facts)
    return result


@check("agent-loop-scripted", 4, "The loop runs the tools the model asks for, feeds the results back and stops at the answer")
def agent_loop_scripted(ctx):
    for case, outputs, max_steps in LOOP_CASES:
        run_case(ctx, case, outputs, max_steps)


@check("agent-loop-errors", 4, "Unknown tools, bad arguments and broken calls go back to the model as tool errors")
def agent_loop_errors(ctx):
    for case, outputs, max_steps in ERROR_CASES:
        run_case(ctx, case, outputs, max_steps, escaped_pitfall=ERROR_PITFALL)


@check("agent-loop-step-limit", 4, "A model that never stops calling tools is stopped at the step limit")
def agent_loop_step_limit(ctx):
    for case, outputs, max_steps in LIMIT_CASES:
        run_case(ctx, case, outputs, max_steps)


# --------------------------------------------------------------------------- end to end

E2E_SEED, E2E_NEW_TOKENS = 36, 24


@functools.lru_cache(maxsize=1)
def _e2e_model():
    from ..week1.tiny_models import tiny_qwen2

    vocab = len(tool_oracle.tokenizers()["tools"])
    return tiny_qwen2(seed=E2E_SEED, tie_word_embeddings=False, quantize=False, vocab=vocab,
                      hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2,
                      max_position_embeddings=8192)


class TinyModelGenerate:
    """Greedy generation on a tiny random Qwen2 over the oracle's byte vocabulary. The
    model reads every prompt; its first reply is steered to a calculator call (a random
    model would not write one), its later replies are its own greedy bytes."""

    def __init__(self, steer: str, limit: int = 12):
        self.steer = steer
        self.prompts: list[str] = []
        self.limit = limit

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if len(self.prompts) > self.limit:
            raise Runaway(f"the model was called {len(self.prompts)} times")
        return _greedy_reply(prompt, self.steer if len(self.prompts) == 1 else None)


@functools.lru_cache(maxsize=16)
def _greedy_reply(prompt: str, steer: str | None) -> str:
    """The reply to one prompt (cached: the oracle's run asks for the same prompts)."""
    make_prompt_cache = import_mlx_lm("mlx_lm.models.cache").make_prompt_cache
    tok = tool_oracle.tokenizers()["tools"]
    model = _e2e_model()
    cache = make_prompt_cache(model)
    logits = model(mx.array([tok.encode(prompt)]), cache=cache)[:, -1, :]
    mx.eval(logits)
    if steer is not None:
        return steer
    out: list[int] = []
    for _ in range(E2E_NEW_TOKENS):
        nxt = int(mx.argmax(logits, axis=-1).item())
        if nxt == tok.eos_token_id:
            break
        out.append(nxt)
        logits = model(mx.array([[nxt]]), cache=cache)[:, -1, :]
    return tok.decode(out)


E2E_CALL = tc("calculator", {"expression": "17 * 23"})


@check("agent-end-to-end", 4, "A tiny random model runs through the loop: its prompts, its tool call and its answer")
def agent_end_to_end(ctx):
    fn = ctx.symbol(RUN)
    model = TinyModelGenerate(E2E_CALL)
    log: list = []
    plain = tool_oracle.tokenizers()["plain"]
    case = "tiny random model"
    result = ctx.call(fn, model, plain, copy.deepcopy(QUESTION), copy.deepcopy(TOOLS),
                      _functions(log), 4)
    # The oracle run: the same model on the template's prompts, the rule written out.
    history = [dict(m) for m in QUESTION]
    oracle = TinyModelGenerate(E2E_CALL)
    functions = _functions([])
    replies = []
    for _ in range(4):
        replies.append(oracle(tool_oracle.render(history, TOOLS)))
        content, calls, errors = parse_oracle(replies[-1])
        turn = {"role": "assistant", "content": content}
        if calls:
            turn["tool_calls"] = [_call(n, a) for n, a in calls]
        history.append(turn)
        if not calls and not errors:
            break
        for name, args in calls:
            out = functions[name](**args) if name in functions else None
            history.append({"role": "tool", "name": name,
                            "content": json.dumps(out) if out is not None else ("error", [name])})
        history.extend({"role": "tool", "name": "", "content": ("error", [])} for _ in range(errors))
    facts = {"case": case, "model_calls": len(model.prompts),
             "expected_model_calls": len(oracle.prompts)}
    got_history = getattr(result, "messages", None)
    problem = _compare_history(got_history if isinstance(got_history, list) else [], history)
    if problem:
        _blame_parts(ctx, case, replies, history)
        ctx.fail(f"[{case}] {problem}.", facts)
    for i, (got, want) in enumerate(zip(model.prompts, oracle.prompts)):
        if got != want:
            _blame_parts(ctx, case, replies, history)
            ctx.fail(f"[{case}] the prompt of step {i + 1} differs from the template's, at "
                     f"{_first_difference(got, want)}.", facts)
    if log != [("calculator", "17 * 23")]:
        ctx.fail(f"[{case}] the tools ran as {log}; expected the one calculator call the "
                 "model made.", facts)
    want_answer = history[-1]["content"] if history[-1]["role"] == "assistant" else None
    if getattr(result, "answer", None) != want_answer:
        ctx.fail(f"[{case}] the answer is {getattr(result, 'answer', None)!r}, expected the "
                 f"model's last reply {want_answer!r}.", facts)


# --------------------------------------------------------------------------- predict

MEASURE_STEPS = 3


@measure("tool-messages-at-limit", unit="tool messages")
def measure_tool_messages_at_limit(ctx):
    """The learner's run_agent with a model whose every reply calls the calculator and a
    tool that does not exist, max_steps 3: the number of tool messages in the history."""
    fn = ctx.symbol(RUN)
    model = Scripted([tc("calculator", {"expression": "2 + 2"}) + tc("weather", {"city": "Paris"})],
                     limit=MEASURE_STEPS + 20)
    result = ctx.call(fn, model, tool_oracle.tokenizers()["plain"], copy.deepcopy(QUESTION),
                      copy.deepcopy(TOOLS), _functions([]), MEASURE_STEPS)
    return sum(1 for m in result.messages if isinstance(m, dict) and m.get("role") == "tool")


__all__ = ["parse_oracle", "search_oracle", "loop_oracle", "prompt_candidates",
           "PARSE_WELL_FORMED", "PARSE_BROKEN"]
