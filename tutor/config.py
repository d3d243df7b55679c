"""Workspace settings (``tiny-llm-tutor.toml``) and the environment variables that
override them."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_NAME = "tiny-llm-tutor.toml"
CONFIG_HINT = f"the [llm] table in {CONFIG_NAME}"
DEFAULT_ANTHROPIC_MODEL = "claude-sonnet-5-5"
DEFAULT_OPENAI_BASE_URL = "http://127.0.0.1:8080/v1"  # mlx_lm.server's default port
BACKENDS = ("offline", "anthropic", "openai")
KEY_VARS = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
LLM_KEYS = ("backend", "model", "base_url", "max_tokens", "timeout_s", "deadline_s")
DEFAULT_MAX_TOKENS = 1024
DEFAULT_TIMEOUT_S = 30.0
# A whole reply's limit, apart from timeout_s (which a server's keep-alives or a slow
# trickle of text keep resetting): long enough for 1024 tokens from a slow local model.
DEFAULT_DEADLINE_S = 300.0


class ConfigError(Exception):
    """A bad setting; ``env`` names the environment variable to blame ("" for the file)."""

    def __init__(self, message: str, env: str = ""):
        super().__init__(message)
        self.env = env


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
    deadline_s: float = DEFAULT_DEADLINE_S  # the whole reply, however the server trickles

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


ENV_VARS = {"backend": "TINY_LLM_TUTOR_LLM", "model": "TINY_LLM_TUTOR_MODEL",
            "base_url": "TINY_LLM_TUTOR_BASE_URL", "timeout_s": "TINY_LLM_TUTOR_TIMEOUT",
            "deadline_s": "TINY_LLM_TUTOR_DEADLINE"}


def _setting(table: dict, key: str, default):
    """A setting's value and the name of the environment variable it came from ("" when
    from the file or the default), so that an error blames the right place."""
    env = ENV_VARS.get(key, "")
    if env and os.environ.get(env):
        return os.environ[env], env
    return table.get(key, default), ""


def _bad(key: str, env: str, problem: str) -> ConfigError:
    where = f"the environment variable {env}" if env else f"{CONFIG_NAME}: llm.{key}"
    return ConfigError(f"{where} {problem}", env)


def _number(table: dict, key: str, default, kind, low, high):
    value, env = _setting(table, key, default)
    try:
        v = kind(value)
    except (TypeError, ValueError):
        raise _bad(key, env, f"must be a number, not {value!r}") from None
    if not low <= v <= high:
        raise _bad(key, env, f"must be between {low} and {high}, not {value!r}")
    return v


def load_llm_config(workspace: Path | None) -> LLMConfig:
    """The coach's backend: the workspace file, overridden by the environment variables of
    ``ENV_VARS``; keys come from the environment only (ANTHROPIC_API_KEY, OPENAI_API_KEY)."""
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
    backend, env = _setting(table, "backend", "offline")
    if backend not in BACKENDS:
        raise _bad("backend", env, f"must be one of {', '.join(BACKENDS)}, not {backend!r}")
    model, _ = _setting(table, "model", "")
    model = model or (DEFAULT_ANTHROPIC_MODEL if backend == "anthropic" else "")
    base_url, env = _setting(table, "base_url", "")
    base_url = str(base_url or (DEFAULT_OPENAI_BASE_URL if backend == "openai" else "")).strip()
    if base_url and not base_url.startswith(("http://", "https://")):
        raise _bad("base_url", env, "must start with http:// or https://")
    max_tokens = _number(table, "max_tokens", DEFAULT_MAX_TOKENS, int, 16, 32000)
    timeout = _number(table, "timeout_s", DEFAULT_TIMEOUT_S, float, 0.1, 600)
    deadline = _number(table, "deadline_s", DEFAULT_DEADLINE_S, float, 1, 3600)
    key = os.environ.get(KEY_VARS.get(backend, ""), "") if backend in KEY_VARS else ""
    return LLMConfig(backend, str(model), base_url, key.strip(), max_tokens, timeout, deadline)
