"""Tool calling and an agent loop (day 3.6): tool definitions written into the system
prompt the way Qwen2.5-style chat templates do it, a parser for the model's
``<tool_call>`` blocks that survives broken output, safe tools, and a loop that feeds tool
results (and tool errors) back to the model until it answers or runs out of steps.

The messages are the chat format of Hugging Face chat templates:

- ``{"role": "system" | "user", "content": str}``;
- ``{"role": "assistant", "content": str, "tool_calls": [{"type": "function",
  "function": {"name": str, "arguments": dict}}]}`` (``tool_calls`` left out when there
  are none);
- ``{"role": "tool", "name": str, "content": str}``: one tool result.

A tool definition is ``{"type": "function", "function": {"name": str, "description":
str, "parameters": <JSON schema of the arguments>}}``.
"""

from __future__ import annotations

import ast
import json
import operator
import re
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = [
    "DEFAULT_SYSTEM",
    "TOOLS_INTRO",
    "TOOLS_OUTRO",
    "ToolCall",
    "ParsedOutput",
    "AgentResult",
    "tool_system_prompt",
    "build_tool_prompt",
    "parse_tool_calls",
    "calculator",
    "search_corpus",
    "check_results",
    "run_agent",
]

# The fixed text of the system prompt's tool section. These are the words Qwen2.5-Instruct
# models were trained to read (a model follows the format it was trained on), so they are
# given, not written by you.
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


@dataclass
class ToolCall:
    """One call the model asked for: the tool's name and its arguments (a dict)."""

    name: str
    arguments: dict


@dataclass
class ParsedOutput:
    """What a model's output holds: ``content`` is the text outside the call blocks
    (stripped of surrounding whitespace), ``calls`` the well-formed calls in the order they
    were written, ``errors`` one message per block that could not be used."""

    content: str
    calls: list[ToolCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class AgentResult:
    """The end of a ``run_agent``: ``answer`` is the final text (None when the step limit
    stopped the loop), ``messages`` the whole conversation including the messages passed
    in, ``steps`` the number of model calls, ``stopped`` is ``"answer"`` or
    ``"step_limit"``."""

    answer: str | None
    messages: list[dict]
    steps: int
    stopped: str


# --------------------------------------------------------------------------- task 1


def tool_system_prompt(tools: list[dict], system: str | None = None) -> str:
    """The content of the system message that describes ``tools`` to the model.

    ``system`` (or ``DEFAULT_SYSTEM`` when it is None) comes first. When ``tools`` is not
    empty, ``TOOLS_INTRO`` follows, then each tool definition as one line of JSON (in the
    order given, each line starting with a newline; keys in their own order, non-ASCII
    characters written as they are), then ``TOOLS_OUTRO``. With no tools, the result is
    the system text alone.
    """
    text = DEFAULT_SYSTEM if system is None else system
    if not tools:
        return text
    lines = "".join("\n" + json.dumps(tool, ensure_ascii=False) for tool in tools)
    return text + TOOLS_INTRO + lines + TOOLS_OUTRO


def build_tool_prompt(tokenizer: Any, messages: list[dict], tools: list[dict]) -> str:
    """The prompt text for the model's next turn, ending with the assistant's header.

    It must equal ``tokenizer.apply_chat_template(messages, tools=tools,
    add_generation_prompt=True, tokenize=False)`` on a Qwen2.5-style template with tool
    support, while the ``tokenizer`` you are given has a plain chat template that knows
    only the roles system, user and assistant (no ``tools=``, no tool calls, no role
    "tool"). So write the tool format yourself and let the template wrap the roles:

    - the system message: ``tool_system_prompt(tools, <content of messages[0] if it is a
      system message, else None>)``;
    - an assistant message with ``tool_calls``: its content (when not empty) and a newline,
      then each call as ``<tool_call>\\n{"name": "<name>", "arguments": <arguments as
      JSON>}\\n</tool_call>``, calls separated by a newline;
    - tool messages: consecutive ones become ONE user message, each result written as
      ``<tool_response>\\n<content>\\n</tool_response>``, separated by a newline;
    - other messages as they are.
    """
    system = None
    rest = messages
    if messages and messages[0]["role"] == "system":
        system, rest = messages[0]["content"], messages[1:]
    plain = [{"role": "system", "content": tool_system_prompt(tools, system)}]
    responses: list[str] = []
    for msg in rest:
        if msg["role"] == "tool":
            responses.append(f"<tool_response>\n{msg['content']}\n</tool_response>")
            continue
        if responses:
            plain.append({"role": "user", "content": "\n".join(responses)})
            responses = []
        if msg["role"] == "assistant" and msg.get("tool_calls"):
            parts = [msg["content"]] if msg.get("content") else []
            for call in msg["tool_calls"]:
                fn = call.get("function", call)
                args = json.dumps(fn["arguments"], ensure_ascii=False)
                parts.append(f'<tool_call>\n{{"name": "{fn["name"]}", "arguments": {args}}}\n</tool_call>')
            plain.append({"role": "assistant", "content": "\n".join(parts)})
        else:
            plain.append({"role": msg["role"], "content": msg["content"]})
    if responses:
        plain.append({"role": "user", "content": "\n".join(responses)})
    return tokenizer.apply_chat_template(plain, add_generation_prompt=True, tokenize=False)


# --------------------------------------------------------------------------- task 2


OPEN, CLOSE = "<tool_call>", "</tool_call>"


def parse_tool_calls(text: str) -> ParsedOutput:
    """Split a model's output into text and tool calls, never raising.

    A call is a ``<tool_call>`` ... ``</tool_call>`` block holding one JSON object with a
    non-empty string ``"name"`` and an ``"arguments"`` object (missing: ``{}``; a string
    holding a JSON object is decoded). A block that fails any of this adds one message to
    ``errors`` and no call; the blocks after it are still read. A ``<tool_call>`` that is
    never closed (the model was cut off) is a broken block, not text. Everything outside
    the blocks, joined in order and stripped, is ``content``.
    """
    content: list[str] = []
    calls: list[ToolCall] = []
    errors: list[str] = []
    pos = 0
    while True:
        start = text.find(OPEN, pos)
        if start < 0:
            content.append(text[pos:])
            break
        content.append(text[pos:start])
        end = text.find(CLOSE, start + len(OPEN))
        if end < 0:
            errors.append("a <tool_call> block is never closed (the output was cut off?)")
            break
        call, error = _read_call(text[start + len(OPEN):end])
        if call is None:
            errors.append(error)
        else:
            calls.append(call)
        pos = end + len(CLOSE)
    return ParsedOutput("".join(content).strip(), calls, errors)



def _read_call(body: str) -> tuple[ToolCall | None, str]:
    try:
        obj = json.loads(body)
    except ValueError as exc:
        return None, f"the tool call is not valid JSON ({exc})"
    if not isinstance(obj, dict):
        return None, "the tool call is not a JSON object"
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return None, "the tool call has no name"
    args = obj.get("arguments", {})
    if isinstance(args, str):
        # some models write the arguments as a JSON string, OpenAI-style
        try:
            args = json.loads(args)
        except ValueError as exc:
            return None, f"the arguments of {name} are not valid JSON ({exc})"
    if not isinstance(args, dict):
        return None, f"the arguments of {name} are not a JSON object"
    return ToolCall(name, args), ""


# --------------------------------------------------------------------------- task 3


def calculator(expression: str) -> int | float:
    """Evaluate an arithmetic expression without running it as code.

    Allowed: int and float literals, parentheses, unary + and -, and the binary operators
    ``+ - * / // % **``. Anything else (names, calls, attributes, strings, comparisons...)
    raises ``ValueError``, as does a power whose exponent is above 1000 or whose base is
    above 10**100 in absolute value (so that ``9**9**9`` cannot hang the agent); a negative
    exponent is fine. Division by zero raises
    ``ZeroDivisionError``. The result is what Python's arithmetic gives for the same
    expression.
    """
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not an arithmetic expression: {exc.msg}") from None
    return _arith(tree.body)


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
           ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
MAX_EXPONENT = 1000
MAX_BASE = 10**100


def _arith(node: ast.AST) -> int | float:
    # bool is an int subclass, and True is not a number a user typed
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_arith(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _arith(node.left), _arith(node.right)
        if isinstance(node.op, ast.Pow) and (right > MAX_EXPONENT or abs(left) > MAX_BASE):
            raise ValueError("the power is too large to compute")
        return _BINARY[type(node.op)](left, right)
    raise ValueError(f"not allowed in an arithmetic expression: {type(node).__name__}")


def search_corpus(query: str, documents: dict[str, str], k: int = 3,
                  max_chars: int = 300) -> list[dict]:
    """Read-only keyword search: the ``k`` documents that share the most words with the
    query.

    Words are the runs of ``[a-z0-9]`` in the lower-cased text. A document's score is the
    number of DISTINCT query words that occur in it. Documents scoring 0 are left out;
    ties go to the smaller id. Return ``[{"id": id, "score": score, "text": the
    document's first max_chars characters}, ...]``, best first. ``documents`` is not
    changed.
    """
    words = set(_words(query))
    scored = []
    for doc_id, text in documents.items():
        score = len(words & set(_words(text)))
        if score > 0:
            scored.append((-score, doc_id))
    scored.sort()
    return [{"id": doc_id, "score": -neg, "text": documents[doc_id][:max_chars]}
            for neg, doc_id in scored[:k]]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def check_results(state: dict, day: str) -> dict:
    """Read-only view of the learner's check results for one day, from the dict of
    ``progress/state.json``.

    ``day`` is ``"3.6"`` or ``"day3.6"``. Return ``{"day": "3.6", "last_result":
    state["days"][day]["last_result"], "failing": sorted ids of the day's checks whose
    "failing" is true}``. An unknown day raises ``KeyError``. ``state`` is not changed.
    """
    key = day.removeprefix("day")
    record = state["days"][key]
    failing = sorted(cid for cid, c in record.get("checks", {}).items() if c.get("failing"))
    return {"day": key, "last_result": record.get("last_result"), "failing": failing}


# --------------------------------------------------------------------------- task 4


def run_agent(
    generate: Callable[[str], str],
    tokenizer: Any,
    messages: list[dict],
    tools: list[dict],
    functions: dict[str, Callable[..., Any]],
    max_steps: int = 5,
) -> AgentResult:
    """Let the model call tools until it answers, for at most ``max_steps`` model calls.

    A step: ``build_tool_prompt`` over the conversation so far, ``generate(prompt) -> text``,
    ``parse_tool_calls``, and an assistant message appended (``content`` the parsed text,
    ``tool_calls`` the parsed calls, left out when there are none). With no calls and no
    errors, that text is the answer. Otherwise one tool message per call, in order, then
    one per parse error, and the next step:

    - a known tool is run as ``functions[name](**arguments)``; its result is the message's
      content (a str as it is, anything else as JSON);
    - an unknown tool, a tool that raises (bad arguments included) and a parse error are
      never raised out of the loop: each becomes a tool message whose content starts
      with ``"Error:"`` and says what went wrong (the unknown tool's name, the exception).

    A tool message's ``name`` is the call's name (``""`` for a parse error).

    The caller's ``messages`` list is not changed. Return an ``AgentResult``; after
    ``max_steps`` steps without an answer (the last step's calls still run),
    ``stopped="step_limit"`` and ``answer=None``.
    """
    history = list(messages)
    for step in range(1, max_steps + 1):
        text = generate(build_tool_prompt(tokenizer, history, tools))
        parsed = parse_tool_calls(text)
        turn: dict = {"role": "assistant", "content": parsed.content}
        if parsed.calls:
            turn["tool_calls"] = [
                {"type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in parsed.calls]
        history.append(turn)
        if not parsed.calls and not parsed.errors:
            return AgentResult(parsed.content, history, step, "answer")
        for call in parsed.calls:
            history.append({"role": "tool", "name": call.name,
                            "content": _run_tool(functions, call)})
        for error in parsed.errors:
            history.append({"role": "tool", "name": "", "content": f"Error: {error}"})
    return AgentResult(None, history, max_steps, "step_limit")


def _run_tool(functions: dict[str, Callable[..., Any]], call: ToolCall) -> str:
    fn = functions.get(call.name)
    if fn is None:
        known = ", ".join(sorted(functions)) or "none"
        return f"Error: unknown tool {call.name!r} (the tools are: {known})"
    try:
        result = fn(**call.arguments)
    except Exception as exc:  # noqa: BLE001 - the model reads the error and can retry
        return f"Error: {call.name} raised {type(exc).__name__}: {exc}"
    return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
