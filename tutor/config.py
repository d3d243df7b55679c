"""Workspace settings (``tiny-llm-tutor.toml``) and the environment variables that
override them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

CONFIG_NAME = "tiny-llm-tutor.toml"
CONFIG_HINT = f"the [llm] table in {CONFIG_NAME}"
DEFAULT_ANTHROPIC_MODEL = "claude-sonnet-4-5"
BACKENDS = ("offline", "anthropic", "openai")


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class LLMConfig:
    backend: str = "offline"
    model: str = ""
    base_url: str = ""
    api_key: str = ""


def read_config(workspace: Path | None) -> dict:
    if workspace is None:
        return {}
    path = workspace / CONFIG_NAME
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise ConfigError(f"{CONFIG_NAME} is not valid TOML: {exc}") from None


def load_llm_config(workspace: Path | None) -> LLMConfig:
    """The coach's backend: the workspace file, overridden by TINY_LLM_TUTOR_LLM,
    TINY_LLM_TUTOR_MODEL and TINY_LLM_TUTOR_BASE_URL; keys come from the environment only
    (ANTHROPIC_API_KEY, OPENAI_API_KEY)."""
    table = read_config(workspace).get("llm", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{CONFIG_NAME}: [llm] must be a table")
    backend = os.environ.get("TINY_LLM_TUTOR_LLM") or table.get("backend") or "offline"
    if backend not in BACKENDS:
        raise ConfigError(f"{CONFIG_NAME}: llm.backend must be one of {', '.join(BACKENDS)}, "
                          f"not {backend!r}")
    model = os.environ.get("TINY_LLM_TUTOR_MODEL") or table.get("model") or (
        DEFAULT_ANTHROPIC_MODEL if backend == "anthropic" else "")
    base_url = os.environ.get("TINY_LLM_TUTOR_BASE_URL") or table.get("base_url") or ""
    key_var = "ANTHROPIC_API_KEY" if backend == "anthropic" else "OPENAI_API_KEY"
    return LLMConfig(backend, str(model), str(base_url), os.environ.get(key_var, ""))
