"""Workspace settings (``tiny-llm-tutor.toml``) and the environment variables that
override them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

CONFIG_NAME = "tiny-llm-tutor.toml"
CONFIG_HINT = f"the [llm] table in {CONFIG_NAME}"
DEFAULT_ANTHROPIC_MODEL = "claude-sonnet-5-5"
DEFAULT_OPENAI_BASE_URL = "http://127.0.0.1:8080/v1"  # mlx_lm.server's default port
BACKENDS = ("offline", "anthropic", "openai")
KEY_VARS = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
LLM_KEYS = ("backend", "model", "base_url", "max_tokens", "timeout_s")
DEFAULT_MAX_TOKENS = 1024
DEFAULT_TIMEOUT_S = 30.0


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class LLMConfig:
    """The coach's backend. ``api_key`` comes from the environment only and is kept out
    of ``repr`` so that no log, traceback or error message can show it."""

    backend: str = "offline"
    model: str = ""
    base_url: str = ""
    api_key: str = field(default="", repr=False)
    max_tokens: int = DEFAULT_MAX_TOKENS
    timeout_s: float = DEFAULT_TIMEOUT_S  # connect and per-read timeout of a reply

    @property
    def key_var(self) -> str:
        return KEY_VARS.get(self.backend, "")

    def describe(self) -> str:
        """One line naming the backend, model and server host, never the key."""
        if self.backend == "offline":
            return "offline coach"
        name = {"anthropic": "Claude", "openai": "OpenAI-compatible server"}[self.backend]
        host = server_host(self.base_url) if self.base_url else ""
        model = f" {self.model}" if self.model else ""
        return f"{name}{model}" + (f" at {host}" if host else "")


def server_host(url: str) -> str:
    """``host:port`` of a URL, without credentials, path or query."""
    from urllib.parse import urlsplit

    try:
        u = urlsplit(url)
        host = u.hostname or ""
        return f"{host}:{u.port}" if u.port else host
    except ValueError:
        return "the configured server"


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


def _number(value, name: str, kind, low, high):
    try:
        v = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{CONFIG_NAME}: llm.{name} must be a number, not {value!r}") from None
    if not low <= v <= high:
        raise ConfigError(f"{CONFIG_NAME}: llm.{name} must be between {low} and {high}")
    return v


def load_llm_config(workspace: Path | None) -> LLMConfig:
    """The coach's backend: the workspace file, overridden by TINY_LLM_TUTOR_LLM,
    TINY_LLM_TUTOR_MODEL, TINY_LLM_TUTOR_BASE_URL and TINY_LLM_TUTOR_TIMEOUT; keys come
    from the environment only (ANTHROPIC_API_KEY, OPENAI_API_KEY)."""
    table = read_config(workspace).get("llm", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{CONFIG_NAME}: [llm] must be a table")
    for k in table:
        if "key" in k.lower() or "token" in k.lower() or "secret" in k.lower():
            raise ConfigError(f"{CONFIG_NAME}: llm.{k} is not read: API keys come from the "
                              "environment only (ANTHROPIC_API_KEY, OPENAI_API_KEY); remove it "
                              "from the file")
        if k not in LLM_KEYS:
            raise ConfigError(f"{CONFIG_NAME}: unknown key llm.{k} (allowed: {', '.join(LLM_KEYS)})")
    backend = os.environ.get("TINY_LLM_TUTOR_LLM") or table.get("backend") or "offline"
    if backend not in BACKENDS:
        raise ConfigError(f"{CONFIG_NAME}: llm.backend must be one of {', '.join(BACKENDS)}, "
                          f"not {backend!r}")
    model = os.environ.get("TINY_LLM_TUTOR_MODEL") or table.get("model") or (
        DEFAULT_ANTHROPIC_MODEL if backend == "anthropic" else "")
    base_url = os.environ.get("TINY_LLM_TUTOR_BASE_URL") or table.get("base_url") or (
        DEFAULT_OPENAI_BASE_URL if backend == "openai" else "")
    base_url = str(base_url).strip()
    if base_url and not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{CONFIG_NAME}: llm.base_url must start with http:// or https://")
    max_tokens = _number(table.get("max_tokens", DEFAULT_MAX_TOKENS), "max_tokens", int, 16, 32000)
    timeout = _number(os.environ.get("TINY_LLM_TUTOR_TIMEOUT") or table.get("timeout_s", DEFAULT_TIMEOUT_S),
                      "timeout_s", float, 0.1, 600)
    key = os.environ.get(KEY_VARS.get(backend, ""), "") if backend in KEY_VARS else ""
    return LLMConfig(backend, str(model), base_url, key.strip(), max_tokens, timeout)
