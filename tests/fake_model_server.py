"""An OpenAI-compatible chat server on 127.0.0.1 for tests and benchmarks: the real HTTP path without a paid model.

litellm talks to it as `openai/<name>` with `api_base=server.url`. It can add latency and inject faults
(HTTP status codes such as 429/500/401, a garbage 200 body, or a response slower than the client's timeout).
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[list[dict], str], str]
STAGE_HEADER = "X-CodeMonkeys-Stage"
_request = threading.local()


def current_stage() -> str:
    """The stage the client named in its request header, for a responder to route on (each request is served
    in a thread of its own); never guessed from the prompt's wording."""
    return getattr(_request, "stage", "")


@dataclass
class FakeCall:
    model: str
    messages: list[dict]
    response: str
    stage: str = ""


def _text(content: Any) -> str:
    """Message content is a string or a list of blocks (the form that carries cache markers)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(block.get("text", "") for block in content if isinstance(block, dict))
    return ""


def _tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


def _prefix_keys(messages: list[dict]) -> list[tuple[str, int]]:
    """(hash, tokens) of every message prefix, so repeated prefixes can be reported as cached like OpenAI does."""
    keys, digest, tokens = [], hashlib.sha256(), 0
    for message in messages:
        text = _text(message.get("content"))
        digest.update(f"{message.get('role')}\0{text}\0".encode(errors="surrogatepass"))
        tokens += _tokens(text)
        keys.append((digest.hexdigest(), tokens))
    return keys


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 overflows on a cold burst of connections, and each overflowed one
    # waits out a 1 s SYN retry: benchmarks would measure the fake, not the client.
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client killed mid-request (the resume tests do that on purpose) is not a server error."""


class FakeModelServer:
    """Serves POST /v1/chat/completions; `responder(messages, model)` writes the assistant text.

    `fault_rate` of the requests (chosen by a seeded random) get a fault from `faults`: an HTTP status code
    ("429", "500", "401", ...; a 429 carries `Retry-After: retry_after` when that is set), "garbage" (200 with a non-JSON body), "empty" (200 JSON without choices) or
    "timeout" (no answer for `timeout_delay` seconds). With `fault_stages`, only requests of those stages
    (the client's stage header) can fault. With `context_window`, a prompt of more tokens (four characters
    a token) is refused with the 400 that OpenAI-compatible servers send. A responder that raises gives HTTP 500. A "401" echoes
    the bearer token, as real providers partly do, so tests can check that it never reaches a record.
    """

    def __init__(
        self,
        responder: Responder,
        *,
        latency: float = 0.0,
        fault_rate: float = 0.0,
        faults: tuple[str, ...] = ("429", "500"),
        seed: int = 0,
        timeout_delay: float = 30.0,
        retry_after: float | None = None,
        fault_stages: frozenset[str] | None = None,
        context_window: int | None = None,
    ) -> None:
        self.fault_stages = fault_stages
        self.context_window = context_window
        self.largest_prompt = 0
        self.responder = responder
        self.retry_after = retry_after
        self.latency = latency
        self.fault_rate = fault_rate
        self.faults = faults
        self.timeout_delay = timeout_delay
        self.calls: list[FakeCall] = []
        self.requests = 0
        self.faulted = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.api_keys: set[str] = set()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._seen_prefixes: set[str] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def __enter__(self) -> FakeModelServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in separate writes: without this, Nagle + delayed ACK add 40 ms a call.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                server._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="fake-model-server", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        api_key = handler.headers.get("Authorization", "").removeprefix("Bearer ")
        stage = handler.headers.get(STAGE_HEADER, "")
        _request.stage = stage
        with self._lock:
            self.requests += 1
            self.api_keys.add(api_key)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            fault = self._random.choice(self.faults) if self._random.random() < self.fault_rate else None
            if self.fault_stages is not None and stage not in self.fault_stages:
                fault = None
            if fault:
                self.faulted += 1
        try:
            if self.latency:
                self._stopping.wait(self.latency)
            if not handler.path.rstrip("/").endswith("/chat/completions"):
                self._send(handler, 404, {"error": {"message": f"no route {handler.path}", "type": "not_found"}})
            elif fault == "timeout":
                self._stopping.wait(self.timeout_delay)
                self._send(handler, 504, {"error": {"message": "too late", "type": "timeout"}})
            elif fault == "garbage":
                self._send_raw(handler, 200, b"<html>upstream exploded</html>", "application/json")
            elif fault == "empty":
                self._send(handler, 200, {"id": "chatcmpl-empty", "object": "chat.completion", "choices": []})
            elif fault == "401":
                message = f"Incorrect API key provided: {api_key}"
                self._send(handler, 401, {"error": {"message": message, "type": "invalid_request_error"}})
            elif fault:
                status = int(fault)
                headers = {"Retry-After": f"{self.retry_after:g}"} if status == 429 and self.retry_after else {}
                error = {"error": {"message": f"injected {status}", "type": "injected"}}
                self._send_raw(handler, status, json.dumps(error).encode(), "application/json", headers)
            else:
                self._answer(handler, json.loads(raw), stage)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(self, handler: BaseHTTPRequestHandler, body: dict, stage: str) -> None:
        model, messages = body.get("model", ""), body.get("messages", [])
        try:
            text = self.responder(messages, model)
        except Exception as exc:
            self._send(handler, 500, {"error": {"message": f"responder failed: {exc}", "type": "server_error"}})
            return
        keys = _prefix_keys(messages)
        prompt_tokens = keys[-1][1] if keys else 0
        with self._lock:
            self.largest_prompt = max(self.largest_prompt, prompt_tokens)
        if self.context_window is not None and prompt_tokens > self.context_window:
            message = (
                f"This model's maximum context length is {self.context_window} tokens. However, your messages "
                f"resulted in {prompt_tokens} tokens. Please reduce the length of the messages."
            )
            error = {"message": message, "type": "invalid_request_error", "param": "messages"}
            self._send(handler, 400, {"error": error | {"code": "context_length_exceeded"}})
            return
        with self._lock:
            cached = max((tokens for key, tokens in keys[:-1] if key in self._seen_prefixes), default=0)
            self._seen_prefixes.update(key for key, _ in keys)
            self.calls.append(FakeCall(model=model, messages=messages, response=text, stage=stage))
            number = len(self.calls)
        completion_tokens = _tokens(text)
        self._send(
            handler,
            200,
            {
                "id": f"chatcmpl-fake-{number}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                    "prompt_tokens_details": {"cached_tokens": cached},
                },
            },
        )

    def _send(self, handler: BaseHTTPRequestHandler, status: int, payload: dict) -> None:
        self._send_raw(handler, status, json.dumps(payload).encode(), "application/json")

    def _send_raw(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        try:
            handler.send_response(status)
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
