"""Validation of YAML node trees against a small declarative schema.

Working on ``yaml.compose`` nodes (not on loaded Python objects) keeps every value's line
number, so an error can say file, line and field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml


class CurriculumError(Exception):
    """A lesson file is broken; the message names file, line and field."""


@dataclass(frozen=True)
class Field:
    type: Any  # str, int, float, bool, "any", ListOf(...), Record(...), OneOf(...)
    required: bool = True
    min_items: int | None = None
    max_items: int | None = None
    choices: tuple | None = None


@dataclass(frozen=True)
class ListOf:
    item: Any


@dataclass(frozen=True)
class Record:
    fields: dict[str, Field]


@dataclass(frozen=True)
class OneOf:
    types: tuple


_SCALAR_TAGS = {
    str: ("tag:yaml.org,2002:str",),
    int: ("tag:yaml.org,2002:int",),
    float: ("tag:yaml.org,2002:float", "tag:yaml.org,2002:int"),
    bool: ("tag:yaml.org,2002:bool",),
}
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true/false"}


def _type_name(t) -> str:
    if isinstance(t, ListOf):
        return "a list"
    if isinstance(t, Record):
        return "a mapping"
    if isinstance(t, OneOf):
        return " or ".join(_type_name(x) for x in t.types)
    return _TYPE_NAMES.get(t, str(t))


class Validator:
    def __init__(self, filename: str):
        self.filename = filename

    def error(self, node: yaml.Node | None, path: str, msg: str) -> CurriculumError:
        line = node.start_mark.line + 1 if node is not None else 1
        where = f" {path}:" if path else ""
        return CurriculumError(f"{self.filename}:{line}:{where} {msg}")

    def convert(self, node: yaml.Node, t, path: str) -> Any:
        if t == "any":
            return _construct(node)
        if isinstance(t, OneOf):
            for option in t.types:
                try:
                    return self.convert(node, option, path)
                except CurriculumError:
                    continue
            raise self.error(node, path, f"expected {_type_name(t)}")
        if isinstance(t, ListOf):
            if not isinstance(node, yaml.SequenceNode):
                raise self.error(node, path, "expected a list")
            return [self.convert(item, t.item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        if isinstance(t, Record):
            return self.record(node, t, path)
        if not isinstance(node, yaml.ScalarNode) or node.tag not in _SCALAR_TAGS[t]:
            raise self.error(node, path, f"expected {_type_name(t)}")
        value = _construct(node)
        if t is float:
            return float(value)
        if t is str and not str(value).strip():
            raise self.error(node, path, "must not be empty")
        return value

    def record(self, node: yaml.Node, rec: Record, path: str) -> dict:
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, path, "expected a mapping")
        out: dict[str, Any] = {}
        seen: dict[str, yaml.Node] = {}
        for knode, vnode in node.value:
            key = knode.value
            sub = f"{path}.{key}" if path else key
            if key not in rec.fields:
                known = ", ".join(rec.fields)
                raise self.error(knode, sub, f"unknown key '{key}' (allowed: {known})")
            if key in seen:
                raise self.error(knode, sub, "duplicate key")
            seen[key] = vnode
            spec = rec.fields[key]
            value = self.convert(vnode, spec.type, sub)
            if isinstance(value, list):
                if spec.min_items is not None and len(value) < spec.min_items:
                    raise self.error(vnode, sub, f"needs at least {spec.min_items} items, has {len(value)}")
                if spec.max_items is not None and len(value) > spec.max_items:
                    raise self.error(vnode, sub, f"allows at most {spec.max_items} items, has {len(value)}")
            if spec.choices is not None and value not in spec.choices:
                allowed = ", ".join(map(str, spec.choices))
                raise self.error(vnode, sub, f"must be one of {allowed}, not {value!r}")
            out[key] = value
        for key, spec in rec.fields.items():
            if spec.required and key not in out:
                sub = f"{path}.{key}" if path else key
                raise self.error(node, sub, f"missing required field '{key}'")
        out["__line__"] = node.start_mark.line + 1
        return out


def _construct(node: yaml.Node) -> Any:
    """The Python value of a composed node (what ``safe_load`` would give for it). Much
    faster than serialising the node and loading it again, which dominated start-up."""
    return yaml.constructor.SafeConstructor().construct_object(node, deep=True)


def compose(text: str, filename: str) -> yaml.Node:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        node = yaml.compose(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CurriculumError(f"{filename}:{line}: not valid YAML: {problem}") from None
    if node is None:
        raise CurriculumError(f"{filename}:1: the file is empty")
    return node
