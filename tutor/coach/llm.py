"""LLM backends for the coach: one interface, ``stream(system, messages)``, yielding the
reply's text deltas.

- :class:`AnthropicBackend`: the Messages API through the ``anthropic`` SDK (Claude with
  ``ANTHROPIC_API_KEY``, or any Anthropic-compatible server by ``base_url``).
- :class:`OpenAIBackend`: OpenAI-compatible ``/chat/completions`` with ``stream: true``
  (``mlx_lm.server``, Ollama, llama.cpp, vLLM) through the official ``openai`` SDK.

Every failure -- missing key, refused key, rate limit, overload, timeout, no network, a
stream cut midway, a reply still unfinished at ``llm.deadline_s`` -- becomes one :class:`BackendError` carrying a one-line notice for the
learner and the text received so far. Notices are built from our own words, the HTTP
status and the server's host only: never from a server's or library's message, so a key
can never travel through them. One attempt per question: no retries.
"""

from __future__ import annotations

from typing import Iterator, Protocol
from urllib.parse import parse_qsl, urlsplit

from tutor.coach.deadline import Deadline, response_socket, shut
from tutor.config import LLMConfig, server_host

CONNECT_TIMEOUT_S = 5.0


class BackendError(Exception):
    """A reply failed. ``notice`` is one key-free line; ``partial`` the text streamed
    before the failure ("" when nothing arrived)."""

    def __init__(self, notice: str, partial: str = ""):
        notice = _cap(" ".join(str(notice).split()))
        super().__init__(notice)
        self.notice = notice
        self.partial = partial


class Backend(Protocol):
    name: str

    def stream(self, system: str, messages: list[dict]) -> Iterator[str]: ...


def make_backend(config: LLMConfig) -> Backend | None:
    """The backend of ``config``; None for the offline coach."""
    if config.backend == "anthropic":
        return AnthropicBackend(config)
    if config.backend == "openai":
        return OpenAIBackend(config)
    return None


def clean_messages(messages: list[dict]) -> list[dict]:
    """``role``/``content`` only, starting with a user turn and alternating (consecutive
    turns of one role are joined), as both APIs expect."""
    out: list[dict] = []
    for m in messages:
        role, content = m.get("role"), str(m.get("content") or "")
        if role not in ("user", "assistant") or not content.strip():
            continue
        if not out and role != "user":
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"] += "\n\n" + content
        else:
            out.append({"role": role, "content": content})
    return out


def _within_deadline(who: str, seconds: float, run) -> Iterator[str]:
    """``run(deadline)``'s deltas; a failure after the deadline passed is reported as the
    deadline (the shut socket looks like a broken connection to the code reading it)."""
    with Deadline(seconds) as deadline:
        try:
            yield from run(deadline)
        except BackendError as exc:
            if deadline.expired:
                raise BackendError(deadline.notice(who, exc.partial), exc.partial) from None
            raise


def _class_names(exc: BaseException) -> set[str]:
    """Class names of ``exc`` and of the exceptions it was raised from (a library's
    ConnectError wraps the OS's ConnectionRefusedError, for instance)."""
    names: set[str] = set()
    seen = 0
    while exc is not None and seen < 8:
        names |= {c.__name__ for c in type(exc).__mro__}
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return names


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _transport_notice(exc: BaseException, who: str, partial: str, timeout: float) -> str:
    """A notice for a network-level failure, judged by exception class names so that it
    works with httpx, httpx2 and the standard library alike."""
    names = _class_names(exc)
    if names & {"TimeoutException", "APITimeoutError", "TimeoutError", "timeout", "ReadTimeout",
                "ConnectTimeout"}:
        if partial:
            return f"{who} stopped sending midway (no data for {timeout:g} s); the reply was cut off."
        return f"{who} did not answer within {timeout:g} s."
    if partial:
        return f"The connection to {who} broke midway; the reply was cut off."
    if names & {"ConnectionRefusedError"}:
        return f"{who} refused the connection (is the server running?)."
    if names & {"gaierror"}:
        return f"{who} cannot be reached (no network, or the host name is wrong)."
    return f"{who} cannot be reached (network down or wrong base_url)."


# --------------------------------------------------------------------------- Anthropic


class AnthropicBackend:
    """Claude through the ``anthropic`` SDK's Messages streaming API."""

    name = "anthropic"

    def __init__(self, config: LLMConfig):
        self.config = config
        self.who = "Claude" if not config.base_url else \
            f"the Anthropic-compatible server at {server_host(config.base_url)}"
        self._client = None

    def _make_client(self):
        import anthropic  # heavy: only when a reply is actually wanted

        cfg = self.config
        kwargs = dict(
            # Always pass the key explicitly so the SDK never goes looking for other
            # credentials (profiles, token files) on its own.
            api_key=cfg.api_key or "no-key",
            max_retries=0,
            timeout=anthropic.Timeout(cfg.timeout_s, connect=min(CONNECT_TIMEOUT_S, cfg.timeout_s)),
        )
        if cfg.base_url:
            kwargs["base_url"] = cfg.base_url
        return anthropic.Anthropic(**kwargs)

    def stream(self, system: str, messages: list[dict]) -> Iterator[str]:
        return _within_deadline(self.who, self.config.deadline_s,
                                lambda deadline: self._stream(system, messages, deadline))

    def _stream(self, system: str, messages: list[dict], deadline: Deadline) -> Iterator[str]:
        cfg = self.config
        if not cfg.api_key and not cfg.base_url:
            raise BackendError("Claude is not set up: ANTHROPIC_API_KEY is not set.")
        partial = ""
        try:
            import anthropic
        except ImportError:
            raise BackendError("The anthropic package is not installed "
                               "(python -m pip install anthropic).") from None
        try:
            if self._client is None:
                self._client = self._make_client()
            finished = False
            with self._client.messages.stream(
                model=cfg.model, max_tokens=cfg.max_tokens, system=system,
                messages=clean_messages(messages),
            ) as events:
                deadline.on_expire(lambda: _close_response(events.response))
                for event in events:
                    if deadline.expired:
                        raise BackendError(deadline.notice(self.who, partial), partial)
                    etype = getattr(event, "type", "")
                    if etype == "content_block_delta":
                        delta = getattr(event, "delta", None)
                        if getattr(delta, "type", "") == "text_delta" and delta.text:
                            partial += delta.text
                            yield delta.text
                    elif etype == "message_stop":
                        finished = True
            if not finished:
                raise BackendError(f"The connection to {self.who} broke midway; the reply "
                                   "was cut off.", partial)
        except BackendError:
            raise
        except anthropic.APIStatusError as exc:
            notice = self._status_notice(exc)
            if partial and "cut off" not in notice:
                notice += " The reply was cut off."
            raise BackendError(notice, partial) from None
        except anthropic.APITimeoutError as exc:
            raise BackendError(_transport_notice(exc, self.who, partial, cfg.timeout_s),
                               partial) from None
        except anthropic.APIConnectionError as exc:
            raise BackendError(_transport_notice(exc, self.who, partial, cfg.timeout_s),
                               partial) from None
        except Exception as exc:  # noqa: BLE001 - transport errors mid-stream, bad data
            raise BackendError(_transport_notice(exc, self.who, partial, cfg.timeout_s)
                               if partial or _is_transport(exc) else
                               f"{self.who} sent a reply the tutor could not read "
                               f"({type(exc).__name__}).", partial) from None

    def _status_notice(self, exc) -> str:
        status = getattr(exc, "status_code", 0) or 0
        etype = getattr(exc, "type", None) or ""
        who = self.who
        if status in (401, 403) or etype in ("authentication_error", "permission_error"):
            return f"{who} refused the API key ({status}); check ANTHROPIC_API_KEY."
        if status == 429 or etype == "rate_limit_error":
            return f"{who} is rate-limiting requests (429); try again in a minute."
        if status == 529 or etype == "overloaded_error":
            return f"{who} is overloaded right now (529); try again in a minute."
        if status in (400, 404) or etype in ("invalid_request_error", "not_found_error"):
            return (f"{who} rejected the request ({status}); check the model name "
                    f"{self.config.model!r} and the base_url.")
        if status >= 500:
            return f"{who} had a server error ({status})."
        if status == 200:  # an error event inside the stream
            return f"{who} reported an error midway ({etype or 'unknown'}); the reply was cut off."
        return f"{who} answered with HTTP {status}."


def _close_response(response) -> None:
    sock = response_socket(response)
    if sock is not None:
        shut(sock)
    else:
        response.close()


def _is_transport(exc: BaseException) -> bool:
    return bool(_class_names(exc) & {"TransportError", "NetworkError", "TimeoutException",
                                     "OSError", "HTTPException"})


# --------------------------------------------------------------------------- OpenAI-compatible


class OpenAIBackend:
    """``POST {base_url}/chat/completions`` with ``stream: true`` through the official
    ``openai`` SDK: ``chat.completion.chunk`` events, ended by ``data: [DONE]``."""

    name = "openai"

    def __init__(self, config: LLMConfig):
        self.config = config
        self.who = f"the local model server at {server_host(config.base_url)}" \
            if config.base_url else "the OpenAI-compatible server"
        self._client = None

    def _make_client(self):
        import openai  # heavy: only when a reply is actually wanted

        cfg = self.config
        u = urlsplit(cfg.base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise BackendError("llm.base_url is not an http(s) URL; the offline coach answers.")
        # The key is the config's (never the SDK's own look in OPENAI_* variables); with
        # none, no Authorization header at all, as local servers expect. Organization and
        # project headers from the environment are not ours to send to a local server.
        headers = {"Authorization": f"Bearer {cfg.api_key}" if cfg.api_key else openai.Omit(),
                   "OpenAI-Organization": openai.Omit(), "OpenAI-Project": openai.Omit()}
        return openai.OpenAI(
            api_key=cfg.api_key or "no-key", admin_api_key="", default_headers=headers,
            # a query in base_url goes on every request, after the path the SDK appends
            base_url=u._replace(query="", fragment="").geturl(),
            default_query=dict(parse_qsl(u.query)) or None,
            max_retries=0,
            timeout=openai.Timeout(cfg.timeout_s, connect=min(CONNECT_TIMEOUT_S, cfg.timeout_s)))

    def stream(self, system: str, messages: list[dict]) -> Iterator[str]:
        return _within_deadline(self.who, self.config.deadline_s,
                                lambda deadline: self._stream(system, messages, deadline))

    def _stream(self, system: str, messages: list[dict], deadline: Deadline) -> Iterator[str]:
        cfg = self.config
        try:
            import openai
        except ImportError:
            raise BackendError("The openai package is not installed "
                               "(python -m pip install openai).") from None
        if self._client is None:
            self._client = self._make_client()
        partial = ""
        try:
            chunks = self._client.chat.completions.create(
                model=cfg.model or openai.omit,  # none: the server's own model
                messages=[{"role": "system", "content": system}, *clean_messages(messages)],
                stream=True, max_tokens=cfg.max_tokens,
                # the SDK asks for an explicit omission when there is no key
                extra_headers=None if cfg.api_key else {"Authorization": openai.omit})
            # The SDK ends the iteration at [DONE] but does not say whether it came, so a
            # finish_reason is what tells a whole reply from a body that just stopped.
            finished = False
            with chunks:
                deadline.on_expire(lambda: _close_response(chunks.response))
                for chunk in chunks:
                    if deadline.expired:
                        raise BackendError(deadline.notice(self.who, partial), partial)
                    for choice in (getattr(chunk, "choices", None) or [])[:1]:
                        text = getattr(getattr(choice, "delta", None), "content", None)
                        if isinstance(text, str) and text:
                            partial += text
                            yield text
                        if getattr(choice, "finish_reason", None):
                            finished = True
            if not finished:
                raise BackendError(f"The connection to {self.who} broke midway; the reply was "
                                   "cut off." if partial else
                                   f"{self.who} closed the connection without a reply.", partial)
        except BackendError:
            raise
        except openai.APIStatusError as exc:
            raise BackendError(self._status_notice(exc.status_code)) from None
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            raise BackendError(_transport_notice(exc, self.who, partial, cfg.timeout_s),
                               partial) from None
        except openai.APIError:  # an ``error`` object inside the stream
            raise BackendError(f"{self.who} reported an error midway; the reply was cut off."
                               if partial else f"{self.who} reported an error.", partial) from None
        except ValueError:  # an event whose data is not JSON
            raise BackendError(f"{self.who} sent a reply the tutor could not read.",
                               partial) from None
        except Exception as exc:  # noqa: BLE001 - transport errors the SDK let through
            raise BackendError(_transport_notice(exc, self.who, partial, cfg.timeout_s)
                               if partial or _is_transport(exc) else
                               f"{self.who} sent a reply the tutor could not read "
                               f"({type(exc).__name__}).", partial) from None

    def _status_notice(self, status: int) -> str:
        who = self.who
        if status in (401, 403):
            return f"{who} refused the API key ({status}); check OPENAI_API_KEY."
        if status == 404:
            return (f"{who} has no chat completions endpoint or model here (404); check "
                    "base_url (it usually ends in /v1) and the model name.")
        if status == 429:
            return f"{who} is rate-limiting requests (429); try again in a minute."
        if status in (503, 529):
            return f"{who} is busy or still loading the model ({status}); try again shortly."
        if status >= 500:
            return f"{who} had a server error ({status})."
        return f"{who} answered with HTTP {status}."


__all__ = ["Backend", "BackendError", "AnthropicBackend", "OpenAIBackend", "make_backend",
           "clean_messages"]
