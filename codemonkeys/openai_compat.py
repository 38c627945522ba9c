"""The lean path to an OpenAI-compatible `/chat/completions` endpoint given with `--api-base` (vLLM, sglang,
Ollama, a proxy).

litellm spends 11–13 ms of CPU per call (request transforms over every message, response objects, cost
diagnostics, logging tasks); on one event loop that queues a burst of calls behind each other and caps a
process near 100 calls/s. Here a call is one POST on a connection pool shared by the event loop, JSON in and
out. Errors are mapped the way litellm maps them, so `ModelClient` treats both paths alike: a status code and
the provider's headers on `ProviderError`, a context-window refusal as `ContextWindowExceeded` (a 400, like
litellm's `ContextWindowExceededError`), connection failures and timeouts as the builtin kinds.

aiohttp, not httpx: httpcore's pool costs 20–30 ms of CPU per call with 160 calls in flight
(scripts/bench/client.py measures both). orjson, not the json module: it encodes a prompt seven times faster
(20 µs against 3 µs for a relevance prompt, and prompts with whole files are far larger).
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel

if TYPE_CHECKING:
    import aiohttp

# Providers litellm itself sends to an api_base as plain OpenAI chat completions.
LEAN_PROVIDERS = frozenset({"openai", "hosted_vllm"})
_KINDS = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    408: "Timeout",
    409: "ConflictError",
    413: "RequestTooLargeError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
    503: "ServiceUnavailableError",
}
# litellm's `is_error_str_context_window_exceeded`, which it applies to every provider's error text.
_CONTEXT_WINDOW = (
    "exceed context limit",
    "this model's maximum context length is",
    "string too long. expected a string with maximum length",
    "model's maximum context limit",
    "is longer than the model's context length",
    "input tokens exceed the configured limit",
    "`inputs` tokens + `max_new_tokens` must be",
    "exceeds the available context size",
    "exceeds the maximum number of tokens allowed",
    "context_length_exceeded",
)
_NOT_CONTEXT = ("string_above_max_length", "invalid 'user'")


class Completion(BaseModel):
    """One answer and its usage, whichever path produced it."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


class GarbageResponse(Exception):
    """A 200 answer without usable text: retried like a 5xx."""


class ProviderError(Exception):
    """An HTTP error answer: `status_code` and `headers` (Retry-After) as litellm's exceptions carry them."""

    def __init__(self, message: str, status_code: int, headers: Mapping[str, str]) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.headers = headers


class ContextWindowExceeded(ProviderError):
    """The prompt does not fit the model: refused for what it is, never retried (status 400, as in litellm)."""


class ProviderConnectionError(ConnectionError):
    """The server could not be reached or dropped the connection: retried."""


class ProviderTimeout(TimeoutError):
    """No answer within the request timeout: retried."""


def serves(model: str, api_base: str | None) -> bool:
    """Whether `model` at `api_base` is a plain OpenAI-compatible chat endpoint this path can talk to."""
    provider, _, name = model.partition("/")
    return bool(api_base) and bool(name) and provider in LEAN_PROVIDERS


_SESSIONS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = weakref.WeakKeyDictionary()
_CLOSERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncGenerator[None, None]] = weakref.WeakKeyDictionary()


async def _close_at_shutdown(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    """Suspended for the loop's lifetime: `asyncio.run` closes open async generators before it closes the loop,
    and this one closes the session then, so no connection outlives its loop."""
    try:
        yield
    finally:
        await session.close()


async def _session() -> aiohttp.ClientSession:
    """One pool per event loop, shared by every client on it: aiohttp sessions are bound to their loop."""
    loop = asyncio.get_running_loop()
    session = _SESSIONS.get(loop)
    if session is None or session.closed:
        import aiohttp

        # No limit of its own (the client's per-model semaphores bound the calls); idle connections are kept
        # aiohttp's 15 s: one the server closes sooner is dropped when its close arrives, and the rare request
        # that races the close fails as a connection error, which is retried.
        connector = aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True)
        session = aiohttp.ClientSession(connector=connector, json_serialize=json.dumps)
        _SESSIONS[loop] = session
        closer = _close_at_shutdown(session)
        await closer.__anext__()
        _CLOSERS[loop] = closer
    return session


async def chat(
    api_base: str, body: dict[str, Any], *, api_key: str, headers: Mapping[str, str], timeout: float
) -> Completion:
    """POSTs one chat completion; the model name is sent without its provider prefix, as litellm does."""
    import aiohttp

    session = await _session()
    payload = _encode({**body, "model": body["model"].partition("/")[2]})
    url = api_base.rstrip("/") + "/chat/completions"
    request_headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json", **headers}
    try:
        async with session.post(
            url, data=payload, headers=request_headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            raw = await response.read()
            status, response_headers = response.status, response.headers
    except TimeoutError:
        raise ProviderTimeout(f"Timeout: no answer from {url} within {timeout:g} s") from None
    except aiohttp.ClientError as exc:
        raise ProviderConnectionError(f"APIConnectionError: {url}: {type(exc).__name__}: {exc}") from None
    if status >= 400:
        raise _error(status, response_headers, raw)
    return _completion(raw)


def _encode(body: dict[str, Any]) -> bytes:
    """orjson refuses lone surrogates (from a file read with surrogateescape); the json module escapes them."""
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:
        return json.dumps(body).encode()


def _error(status: int, headers: Mapping[str, str], raw: bytes) -> ProviderError:
    text = raw.decode(errors="replace")
    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        error = None
    message = str(error.get("message") or error) if isinstance(error, dict) else (str(error) if error else text)
    lowered = text.lower()
    if any(s in lowered for s in _CONTEXT_WINDOW) and not any(s in lowered for s in _NOT_CONTEXT):
        return ContextWindowExceeded(f"ContextWindowExceededError: {status}: {message}", 400, headers)
    kind = _KINDS.get(status, "InternalServerError" if status >= 500 else "APIError")
    return ProviderError(f"{kind}: {status}: {message}", status, headers)


def _completion(raw: bytes) -> Completion:
    try:
        body = orjson.loads(raw)
        message = body["choices"][0]["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise GarbageResponse(f"response is not a chat completion: {raw[:200]!r}") from None
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str):
        raise GarbageResponse("response has no text content")
    usage = body.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    return Completion(
        text=text,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
    )
