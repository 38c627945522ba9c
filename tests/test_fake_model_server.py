"""The fake server speaks the OpenAI chat wire format, counts what it sees and injects faults on demand."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.fake_model_server import FakeModelServer


def post(server: FakeModelServer, messages: list[dict], model: str = "fake", key: str = "sk-t") -> tuple[int, bytes]:
    body = json.dumps({"model": model, "messages": messages}).encode()
    request = urllib.request.Request(
        f"{server.url}/chat/completions",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_answers_in_chat_completion_format_with_usage(fake_server) -> None:
    server = fake_server(lambda messages, model: f"{model} says {len(messages)}")
    messages = [{"role": "system", "content": "s" * 400}, {"role": "user", "content": "u" * 40}]
    status, raw = post(server, messages)
    assert status == 200
    body = json.loads(raw)
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "fake says 2"}
    assert body["usage"]["prompt_tokens"] == 110
    assert body["usage"]["completion_tokens"] == len("fake says 2") // 4
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert server.requests == 1
    assert [(c.model, c.messages, c.response) for c in server.calls] == [("fake", messages, "fake says 2")]
    assert server.api_keys == {"sk-t"}


def test_a_repeated_prefix_is_reported_as_cached(fake_server) -> None:
    server = fake_server()
    prefix = [{"role": "system", "content": "s" * 400}, {"role": "user", "content": "u" * 40}]
    post(server, prefix)
    _, raw = post(server, [*prefix, {"role": "assistant", "content": "a" * 8}, {"role": "user", "content": "more"}])
    assert json.loads(raw)["usage"]["prompt_tokens_details"]["cached_tokens"] == 110
    _, raw = post(server, [{"role": "system", "content": "t" * 400}, {"role": "user", "content": "x"}])
    assert json.loads(raw)["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


def test_list_content_counts_its_text_blocks(fake_server) -> None:
    server = fake_server()
    blocks = [{"type": "text", "text": "b" * 80, "cache_control": {"type": "ephemeral"}}]
    _, raw = post(server, [{"role": "user", "content": blocks}])
    assert json.loads(raw)["usage"]["prompt_tokens"] == 20


@pytest.mark.parametrize(
    ("fault", "status"), [("429", 429), ("500", 500), ("503", 503), ("401", 401), ("garbage", 200), ("empty", 200)]
)
def test_injected_faults(fake_server, fault: str, status: int) -> None:
    server = fake_server(fault_rate=1.0, faults=(fault,))
    got, raw = post(server, [{"role": "user", "content": "hi"}], key="sk-echoed")
    assert got == status
    assert server.calls == []
    assert server.requests == server.faulted == 1
    if fault == "garbage":
        with pytest.raises(json.JSONDecodeError):
            json.loads(raw)
    elif fault == "empty":
        assert json.loads(raw)["choices"] == []
    elif fault == "401":
        assert "sk-echoed" in json.loads(raw)["error"]["message"]


def test_timeout_fault_holds_the_answer_back(fake_server) -> None:
    server = fake_server(fault_rate=1.0, faults=("timeout",), timeout_delay=30)
    request = urllib.request.Request(
        f"{server.url}/chat/completions", data=b'{"model": "m", "messages": []}', method="POST"
    )
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        urllib.request.urlopen(request, timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 5


def test_fault_choice_is_seeded_and_near_the_rate(fake_server) -> None:
    def run(seed: int) -> list[int]:
        server = fake_server(fault_rate=1 / 3, faults=("429", "500"), seed=seed)
        return [post(server, [{"role": "user", "content": "x"}])[0] for _ in range(60)]

    first = run(7)
    assert first == run(7)
    assert first != run(8)
    faults = sum(status != 200 for status in first)
    assert 8 <= faults <= 32
    assert {429, 500} <= set(first)


def test_a_raising_responder_gives_500(fake_server) -> None:
    def boom(messages: list[dict], model: str) -> str:
        raise RuntimeError("script ran out of answers")

    server = fake_server(boom)
    status, raw = post(server, [{"role": "user", "content": "hi"}])
    assert status == 500
    assert "script ran out of answers" in json.loads(raw)["error"]["message"]
    assert server.calls == []


def test_latency_and_in_flight_counting(fake_server) -> None:
    server = fake_server(latency=0.3)
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda i: post(server, [{"role": "user", "content": str(i)}])[0], range(4)))
    assert statuses == [200] * 4
    assert 0.3 <= time.monotonic() - started < 1.2
    assert server.max_in_flight == 4
    assert server.in_flight == 0
    assert sorted(c.messages[0]["content"] for c in server.calls) == ["0", "1", "2", "3"]


def test_context_manager_stops_the_server() -> None:
    with FakeModelServer(lambda m, model: "ok") as server:
        assert post(server, [{"role": "user", "content": "x"}])[0] == 200
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{server.url}/chat/completions", data=b"{}", timeout=2)
