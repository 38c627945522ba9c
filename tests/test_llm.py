"""ModelClient over real HTTP (litellm → the fake OpenAI-compatible server)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codemonkeys import openai_compat
from codemonkeys.config import Settings
from codemonkeys.jsonfiles import read_jsonl
from codemonkeys.llm import (
    STAGE_HEADER,
    BudgetExceeded,
    CallRecord,
    ModelCallError,
    ModelClient,
    RequestRefused,
    RunStopped,
    Transcript,
    check_provider_key,
    mark_cache_prefix,
)

ROOT = Path(__file__).resolve().parent.parent
USER = [{"role": "user", "content": "fix the bug please"}]


@pytest.fixture(params=["lean", "litellm"])
def settings_for(settings_for, request):
    """Every promise holds on both paths to an api_base: the lean OpenAI-compatible client and litellm."""

    def build(server, tmp=None, **overrides):
        return settings_for(server, tmp, lean_client=request.param == "lean", **overrides)

    return build


def client_from(settings: Settings, usage_path: Path | None = None) -> ModelClient:
    return ModelClient(settings.models, settings.budget, usage_path=usage_path)


def records(path: Path) -> list[CallRecord]:
    return [CallRecord.model_validate(r) for r in read_jsonl(path)]


async def test_plain_call_and_its_usage_record(fake_server, settings_for, tmp_path) -> None:
    server = fake_server(lambda messages, model: "the answer is 42")
    usage = tmp_path / "usage.jsonl"
    client = client_from(settings_for(server), usage_path=usage)

    text = await client.complete(USER, model="openai/fake", instance="i-1", stage="testing")

    assert text == "the answer is 42"
    assert [c.messages for c in server.calls] == [USER]
    assert server.calls[0].model == "fake"
    assert server.calls[0].stage == "testing"
    [record] = records(usage)
    assert (record.instance, record.stage, record.model) == ("i-1", "testing", "openai/fake")
    assert (record.prompt_tokens, record.completion_tokens, record.cached_tokens) == (4, 4, 0)
    assert record.ok and record.error is None and record.attempts == 1
    assert record.cost_usd == 0.0
    assert 0 < record.latency_s < 5
    totals = client.stage_totals("i-1")
    assert set(totals) == {"testing"}
    assert (totals["testing"].calls, totals["testing"].prompt_tokens, totals["testing"].errors) == (1, 4, 0)
    assert client.stage_totals("other") == {}


def test_request_bodies_encode_any_prompt() -> None:
    """The lean path encodes with orjson, which refuses lone surrogates; such a prompt goes out escaped."""
    for content in ('plain text, ünïcode, "quotes"', "bytes \udcff\udcfe kept"):
        body = {"model": "m", "messages": [{"role": "user", "content": content}], "temperature": 0.0}
        assert json.loads(openai_compat._encode(body)) == body


async def test_cached_tokens_are_recorded(fake_server, settings_for, tmp_path) -> None:
    server = fake_server()
    usage = tmp_path / "usage.jsonl"
    client = client_from(settings_for(server), usage_path=usage)
    prefix = [{"role": "system", "content": "context " * 200}, {"role": "user", "content": "write a test"}]

    await client.complete(prefix, model="openai/fake", instance="i", stage="editing", cache_prefix=2)
    await client.complete(
        [*prefix, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "again"}],
        model="openai/fake",
        instance="i",
        stage="editing",
        cache_prefix=2,
    )

    assert [r.cached_tokens for r in records(usage)] == [0, 403]
    assert all(isinstance(m["content"], str) for c in server.calls for m in c.messages)
    assert client.stage_totals()["editing"].cached_tokens == 403


async def test_concurrency_is_bounded_per_model(fake_server, settings_for, tmp_path) -> None:
    server = fake_server(latency=0.15)
    client = client_from(settings_for(server, model_concurrency=3), usage_path=tmp_path / "usage.jsonl")

    await asyncio.gather(*(client.complete(USER, model="openai/fake", instance=f"i{n}", stage="s") for n in range(12)))
    assert server.max_in_flight == 3

    server.max_in_flight = 0
    await asyncio.gather(*(client.complete(USER, model=f"openai/m{n % 2}", instance="i", stage="s") for n in range(12)))
    assert server.max_in_flight == 6
    assert len(server.calls) == 24


def test_semaphores_do_not_leak_across_event_loops(fake_server, settings_for, tmp_path) -> None:
    server = fake_server(latency=0.05)
    client = client_from(settings_for(server, model_concurrency=1), usage_path=tmp_path / "usage.jsonl")

    async def burst() -> list[str]:
        calls = (client.complete(USER, model="openai/fake", instance="i", stage="s") for _ in range(3))
        return await asyncio.gather(*calls)

    assert asyncio.run(burst()) == asyncio.run(burst())
    assert server.max_in_flight == 1
    assert len(server.calls) == 6


async def test_rate_limits_and_server_errors_are_retried(fake_server, settings_for, tmp_path) -> None:
    server = fake_server(fault_rate=1 / 3, faults=("429", "500", "503"), seed=3)
    usage = tmp_path / "usage.jsonl"
    client = client_from(settings_for(server, max_retries=12), usage_path=usage)

    answers = await asyncio.gather(
        *(
            client.complete([{"role": "user", "content": f"task {n}"}], model="openai/fake", instance="i", stage="s")
            for n in range(30)
        )
    )

    assert answers == [f"echo: task {n}" for n in range(30)]
    got = records(usage)
    assert len(got) == 30 and all(r.ok for r in got)
    assert server.faulted > 0
    assert sum(r.attempts for r in got) == server.requests == 30 + server.faulted
    assert max(r.attempts for r in got) > 1


async def test_garbage_responses_are_retried(fake_server, settings_for, tmp_path) -> None:
    server = fake_server(fault_rate=0.5, faults=("garbage", "empty"), seed=1)
    usage = tmp_path / "usage.jsonl"
    client = client_from(settings_for(server, max_retries=12), usage_path=usage)

    for n in range(10):
        text = await client.complete(
            [{"role": "user", "content": str(n)}], model="openai/fake", instance="i", stage="s"
        )
        assert text == f"echo: {n}"

    assert server.faulted > 0
    assert sum(r.attempts for r in records(usage)) == server.requests == 10 + server.faulted


async def test_timeouts_are_retried_then_fail(fake_server, settings_for, tmp_path) -> None:
    server = fake_server(fault_rate=1.0, faults=("timeout",), timeout_delay=5)
    usage = tmp_path / "usage.jsonl"
    client = client_from(settings_for(server, max_retries=1, request_timeout=0.3), usage_path=usage)

    with pytest.raises(ModelCallError, match=r"(?i)timeout|timed out"):
        await client.complete(USER, model="openai/fake", instance="i", stage="s")

    assert server.requests == 2
    [record] = records(usage)
    assert not record.ok and record.attempts == 2 and record.latency_s >= 0.6


async def test_auth_error_is_not_retried(fake_server, settings_for, tmp_path) -> None:
    server = fake_server(fault_rate=1.0, faults=("401",))
    usage = tmp_path / "usage.jsonl"
    client = client_from(settings_for(server, max_retries=5), usage_path=usage)

    with pytest.raises(ModelCallError, match="Authentication"):
        await client.complete(USER, model="openai/fake", instance="i", stage="s")

    assert server.requests == 1
    [record] = records(usage)
    assert (record.ok, record.attempts) == (False, 1)
    assert client.stage_totals("i")["s"].errors == 1


async def test_a_refused_request_is_not_retried_and_not_an_outage(fake_server, settings_for, tmp_path) -> None:
    server = fake_server(fault_rate=1.0, faults=("400",))
    client = client_from(settings_for(server, max_retries=5, breaker_failures=2), usage_path=tmp_path / "usage.jsonl")
    for _ in range(3):
        with pytest.raises(RequestRefused, match="refused the request") as refused:
            await client.complete(USER, model="openai/fake", instance="i", stage="s")
        assert not isinstance(refused.value, RunStopped)
    assert server.requests == 3, "not retried, and the breaker does not open on refusals"
    assert [r.ok for r in records(tmp_path / "usage.jsonl")] == [False, False, False]


async def test_a_prompt_over_the_window_is_refused_as_such(fake_server, settings_for, tmp_path) -> None:
    server = fake_server(context_window=100)
    client = client_from(settings_for(server, max_retries=5), usage_path=tmp_path / "usage.jsonl")
    assert await client.complete(USER, model="openai/fake", instance="i", stage="s")
    with pytest.raises(RequestRefused, match=r"(?i)context"):
        await client.complete([{"role": "user", "content": "y" * 1000}], model="openai/fake", instance="i", stage="s")
    assert server.requests == 2


async def test_exhausted_retries_raise_and_leave_a_failed_record(fake_server, settings_for, tmp_path) -> None:
    server = fake_server(fault_rate=1.0, faults=("500",))
    usage = tmp_path / "usage.jsonl"
    client = client_from(settings_for(server, max_retries=2), usage_path=usage)

    with pytest.raises(ModelCallError, match="3 attempt"):
        await client.complete(USER, model="openai/fake", instance="i", stage="editing")

    assert server.requests == 3
    [record] = records(usage)
    assert (record.ok, record.attempts, record.stage) == (False, 3, "editing")
    assert "injected 500" in record.error
    assert record.prompt_tokens == 0 and record.cost_usd == 0


async def test_a_raising_responder_is_a_server_error(fake_server, settings_for, tmp_path) -> None:
    def broken(messages: list[dict], model: str) -> str:
        raise RuntimeError("no scripted answer")

    server = fake_server(broken)
    client = client_from(settings_for(server, max_retries=1), usage_path=tmp_path / "usage.jsonl")
    with pytest.raises(ModelCallError, match="no scripted answer"):
        await client.complete(USER, model="openai/fake", instance="i", stage="s")
    assert server.requests == 2


async def test_config_prices_set_the_cost(fake_server, settings_for, tmp_path) -> None:
    server = fake_server(lambda messages, model: "x" * 400)
    usage = tmp_path / "usage.jsonl"
    client = client_from(settings_for(server, prices={"openai/fake": (3.0, 15.0)}), usage_path=usage)

    await client.complete([{"role": "user", "content": "y" * 4000}], model="openai/fake", instance="i", stage="s")

    [record] = records(usage)
    assert (record.prompt_tokens, record.completion_tokens) == (1000, 100)
    assert record.cost_usd == pytest.approx((1000 * 3.0 + 100 * 15.0) / 1e6)
    assert client.spent("i") == client.spent() == pytest.approx(record.cost_usd)


async def test_known_models_are_priced_from_the_bundled_map(fake_server, settings_for, tmp_path) -> None:
    import litellm

    server = fake_server(lambda messages, model: "x" * 400)
    usage = tmp_path / "usage.jsonl"
    client = client_from(settings_for(server), usage_path=usage)

    await client.complete([{"role": "user", "content": "y" * 4000}], model="openai/gpt-4o", instance="i", stage="s")

    price = litellm.model_cost["gpt-4o"]
    [record] = records(usage)
    expected = 1000 * price["input_cost_per_token"] + 100 * price["output_cost_per_token"]
    assert record.cost_usd == pytest.approx(expected) and record.cost_usd > 0


async def test_instance_budget_stops_calls_before_they_are_made(fake_server, settings_for, tmp_path) -> None:
    server = fake_server()
    usage = tmp_path / "usage.jsonl"
    settings = settings_for(server, prices={"openai/fake": (1e6, 1e6)}, budget_usd=10.0)
    client = client_from(settings, usage_path=usage)

    await client.complete([{"role": "user", "content": "x" * 40}], model="openai/fake", instance="a", stage="s")
    assert client.spent("a") >= 10
    with pytest.raises(BudgetExceeded, match="instance a"):
        await client.complete(USER, model="openai/fake", instance="a", stage="s")
    assert server.requests == 1

    await client.complete(USER, model="openai/fake", instance="b", stage="s")
    assert server.requests == 2

    resumed = client_from(settings, usage_path=usage)
    assert resumed.spent("a") == pytest.approx(client.spent("a"))
    assert resumed.spent() == pytest.approx(client.spent())
    with pytest.raises(BudgetExceeded):
        await resumed.complete(USER, model="openai/fake", instance="a", stage="s")
    assert server.requests == 2
    assert len(records(usage)) == 2


async def test_run_budget_stops_every_instance(fake_server, settings_for, tmp_path) -> None:
    server = fake_server()
    usage = tmp_path / "usage.jsonl"
    settings = settings_for(server, prices={"openai/fake": (1e6, 1e6)}, run_budget_usd=35.0)
    client = client_from(settings, usage_path=usage)

    await client.complete([{"role": "user", "content": "x" * 40}], model="openai/fake", instance="a", stage="s")
    await client.complete([{"role": "user", "content": "x" * 40}], model="openai/fake", instance="b", stage="s")
    assert client.spent() >= 35
    with pytest.raises(BudgetExceeded, match=r"run budget: .* spent or in flight"):
        await client.complete(USER, model="openai/fake", instance="c", stage="s")
    assert server.requests == 2

    resumed = client_from(settings, usage_path=usage)
    with pytest.raises(BudgetExceeded):
        await resumed.complete(USER, model="openai/fake", instance="d", stage="s")
    assert server.requests == 2


async def test_budget_sees_spend_appended_by_another_client(fake_server, settings_for, tmp_path) -> None:
    server = fake_server()
    usage = tmp_path / "usage.jsonl"
    settings = settings_for(server, prices={"openai/fake": (1e6, 1e6)}, run_budget_usd=10.0)
    first, second = client_from(settings, usage_path=usage), client_from(settings, usage_path=usage)

    await first.complete([{"role": "user", "content": "x" * 40}], model="openai/fake", instance="a", stage="s")
    with pytest.raises(BudgetExceeded):
        await second.complete(USER, model="openai/fake", instance="b", stage="s")
    assert server.requests == 1


async def test_budget_is_checked_before_each_retry(fake_server, settings_for, tmp_path) -> None:
    server = fake_server(fault_rate=1.0, faults=("500",))
    usage = tmp_path / "usage.jsonl"
    settings = settings_for(server, prices={"openai/fake": (1e6, 1e6)}, run_budget_usd=10.0, max_retries=5)
    other = fake_server()
    spender = client_from(settings_for(other, prices={"openai/fake": (1e6, 1e6)}), usage_path=usage)
    client = client_from(settings, usage_path=usage)

    async def spend_meanwhile() -> None:
        while server.requests == 0:
            await asyncio.sleep(0.001)
        await spender.complete([{"role": "user", "content": "x" * 40}], model="openai/fake", instance="a", stage="s")

    settings.models.retry_base_delay = 0.3
    with pytest.raises(BudgetExceeded):
        await asyncio.gather(client.complete(USER, model="openai/fake", instance="b", stage="s"), spend_meanwhile())
    assert server.requests == 1
    failed = [r for r in records(usage) if not r.ok]
    assert [(r.instance, r.attempts) for r in failed] == [("b", 1)]


async def test_bound_model_replays_recorded_answers_after_restart(fake_server, settings_for, tmp_path) -> None:
    answers = iter(["first", "second", "third"])
    server = fake_server(lambda messages, model: next(answers))
    usage, record = tmp_path / "usage.jsonl", tmp_path / "inst" / "testing" / "0.calls.json"
    settings = settings_for(server)

    bound = client_from(settings, usage_path=usage).bind(
        model="openai/fake", instance="i", stage="testing", record=record
    )
    assert bound.model == "openai/fake"
    assert [await bound.ask(USER), await bound.ask(USER)] == ["first", "second"]
    assert server.requests == 2

    restarted = client_from(settings, usage_path=usage).bind(
        model="openai/fake", instance="i", stage="testing", record=record
    )
    assert [await restarted.ask(USER), await restarted.ask(USER)] == ["first", "second"]
    assert server.requests == 2
    assert await restarted.ask(USER) == "third"
    assert server.requests == 3
    assert Transcript.read(record).responses == ["first", "second", "third"]
    assert len(records(usage)) == 3


async def test_bound_model_without_record_always_calls(fake_server, settings_for, tmp_path) -> None:
    server = fake_server()
    bound = client_from(settings_for(server)).bind(model="openai/fake", instance="i", stage="s", cache_prefix=1)
    assert await bound.ask(USER) == await bound.ask(USER) == "echo: fix the bug please"
    assert server.requests == 2


def test_cache_prefix_marks_anthropic_messages() -> None:
    messages = [
        {"role": "system", "content": "you fix bugs"},
        {"role": "user", "content": "the whole codebase"},
        {"role": "user", "content": "this turn"},
    ]
    original = json.loads(json.dumps(messages))

    marked = mark_cache_prefix(messages, "anthropic/claude-sonnet-4-5", 2)

    assert marked[0]["content"] == [{"type": "text", "text": "you fix bugs"}]
    assert marked[1]["content"] == [
        {"type": "text", "text": "the whole codebase", "cache_control": {"type": "ephemeral"}}
    ]
    assert marked[2] == {"role": "user", "content": "this turn"}
    assert messages == original
    for model in ("claude-3-5-sonnet-20241022", "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0"):
        assert "cache_control" in mark_cache_prefix(messages, model, 1)[0]["content"][-1]


def test_cache_prefix_leaves_other_providers_plain() -> None:
    messages = [{"role": "system", "content": "you fix bugs"}, {"role": "user", "content": "go"}]
    for model in ("openai/gpt-4o", "gpt-4o", "openai/fake", "gemini/gemini-2.5-pro", "hosted_vllm/qwen"):
        assert mark_cache_prefix(messages, model, 2) == messages
    assert mark_cache_prefix(messages, "anthropic/claude-sonnet-4-5", 0) == messages
    assert mark_cache_prefix(messages, "anthropic/claude-sonnet-4-5", 9)[1]["content"][-1]["cache_control"]


async def test_no_api_key_reaches_records_or_errors(fake_server, settings_for, tmp_path, monkeypatch) -> None:
    secret = "sk-secret-xyz"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    usage = tmp_path / "usage.jsonl"
    good, bad = fake_server(), fake_server(fault_rate=1.0, faults=("401",))

    await client_from(settings_for(good), usage_path=usage).complete(USER, model="openai/fake", instance="i", stage="s")
    with pytest.raises(ModelCallError) as caught:
        await client_from(settings_for(bad), usage_path=usage).complete(
            USER, model="openai/fake", instance="i", stage="s"
        )

    assert good.api_keys == bad.api_keys == {secret}
    assert secret not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    text = usage.read_text()
    assert len(records(usage)) == 2
    assert "Incorrect API key provided: ***" in text
    assert secret not in text


async def test_without_openai_key_a_placeholder_is_sent(fake_server, settings_for, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = fake_server()
    await client_from(settings_for(server)).complete(USER, model="openai/fake", instance="i", stage="s")
    [key] = server.api_keys
    assert key


def test_check_provider_key(monkeypatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert check_provider_key("anthropic/claude-sonnet-4-5", None) == (
        "no API key for anthropic/claude-sonnet-4-5: set ANTHROPIC_API_KEY"
    )
    assert check_provider_key("anthropic/claude-sonnet-4-5", "http://127.0.0.1:1/v1") is None
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    assert check_provider_key("anthropic/claude-sonnet-4-5", None) is None


def test_importing_the_client_does_not_import_litellm() -> None:
    code = "import sys, codemonkeys.llm; print('litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


async def test_concurrent_calls_reserve_their_input_cost(fake_server, settings_for) -> None:
    """Ten workers start at once against a budget that fits three calls: the reservations stop the rest."""
    server = fake_server(latency=0.2)
    settings = settings_for(server, prices={"openai/fake": (1e6, 0.0)}, budget_usd=31.0)
    client = client_from(settings)
    message = [{"role": "user", "content": "x" * 40}]
    outcomes = await asyncio.gather(
        *(client.complete(message, model="openai/fake", instance="a", stage="s") for _ in range(10)),
        return_exceptions=True,
    )
    assert sum(isinstance(o, BudgetExceeded) for o in outcomes) == 7
    assert server.requests == 3
    assert client.spent("a") <= 31.0


async def test_models_without_a_price_are_named(fake_server, settings_for) -> None:
    server = fake_server()
    settings = settings_for(server, prices={"openai/priced": (1.0, 1.0)})
    client = client_from(settings)
    for model in ("openai/priced", "openai/free"):
        await client.complete(USER, model=model, instance="a", stage="s")
    assert client.unpriced_models() == ["openai/free"]


async def test_a_provider_that_keeps_failing_is_not_called_again(fake_server, settings_for) -> None:
    """After `breaker_failures` failed calls in a row, the rest fail at once instead of waiting out retries."""
    server = fake_server(fault_rate=1.0, faults=("503",))
    settings = settings_for(server, max_retries=1, breaker_failures=3)
    client = client_from(settings)
    for _ in range(3):
        with pytest.raises(ModelCallError, match="failed after 2 attempt"):
            await client.complete(USER, model="openai/fake", instance="a", stage="s")
    assert server.requests == 6
    outcomes = await asyncio.gather(
        *(client.complete(USER, model="openai/fake", instance="a", stage="s") for _ in range(10)),
        return_exceptions=True,
    )
    assert all("is not answering: 3 calls in a row failed" in str(o) for o in outcomes)
    assert server.requests == 6, "no request once the breaker is open"
    other = fake_server()
    healthy = client_from(settings_for(other, breaker_failures=3))
    assert await healthy.complete(USER, model="openai/fake", instance="a", stage="s")


async def test_a_success_resets_the_failure_count(fake_server, settings_for) -> None:
    calls = iter(range(100))

    def every_other_fails(messages: list[dict], model: str) -> str:
        if next(calls) % 2 == 0:
            raise RuntimeError("flaky")
        return "ok"

    server = fake_server(every_other_fails)
    client = client_from(settings_for(server, max_retries=0, breaker_failures=2))
    outcomes = []
    for _ in range(10):
        try:
            outcomes.append(await client.complete(USER, model="openai/fake", instance="a", stage="s"))
        except ModelCallError:
            outcomes.append(None)
    assert outcomes == [None, "ok"] * 5
    assert server.requests == 10


async def test_retry_after_from_the_provider_is_respected(fake_server, settings_for) -> None:
    server = fake_server(fault_rate=1.0, faults=("429",), retry_after=0.4)
    client = client_from(settings_for(server, max_retries=2, retry_base_delay=0.01))
    await client_from(settings_for(fake_server())).complete(USER, model="openai/fake", instance="w", stage="s")
    started = time.monotonic()
    with pytest.raises(ModelCallError):
        await client.complete(USER, model="openai/fake", instance="a", stage="s")
    assert server.requests == 3
    assert 0.8 <= time.monotonic() - started < 3, "two waits of the 0.4 s the provider asked for"


async def test_calls_name_their_stage_in_a_header(fake_server, settings_for) -> None:
    server = fake_server()
    client = client_from(settings_for(server))
    for stage in ("context.relevance", "testing", "editing"):
        await client.complete(USER, model="openai/fake", instance="i", stage=stage)
    assert [c.stage for c in server.calls] == ["context.relevance", "testing", "editing"]
    assert STAGE_HEADER == "X-CodeMonkeys-Stage"


async def test_stopping_errors_carry_the_stage_they_stopped(fake_server, settings_for) -> None:
    failing = fake_server(fault_rate=1.0, faults=("500",))
    client = client_from(settings_for(failing, max_retries=0, breaker_failures=1))
    with pytest.raises(ModelCallError) as failed:
        await client.complete(USER, model="openai/fake", instance="a", stage="editing")
    assert isinstance(failed.value, RunStopped) and failed.value.stage == "editing"
    with pytest.raises(ModelCallError, match="is not answering") as broken:
        await client.complete(USER, model="openai/fake", instance="a", stage="selection")
    assert broken.value.stage == "selection"

    server = fake_server()
    broke = client_from(settings_for(server, prices={"openai/fake": (1e6, 1e6)}, budget_usd=1.0))
    with pytest.raises(BudgetExceeded) as spent:
        await broke.complete(
            [{"role": "user", "content": "x" * 40}], model="openai/fake", instance="a", stage="testing"
        )
    assert isinstance(spent.value, RunStopped) and spent.value.stage == "testing"
    assert server.requests == 0


async def test_a_torn_last_transcript_line_is_asked_again(fake_server, settings_for, tmp_path) -> None:
    """A kill while an answer was being appended loses that answer only: it is asked for again, in its place."""
    answers = iter(["first", "second", "again"])
    server = fake_server(lambda messages, model: next(answers))
    record = tmp_path / "editing" / "0.calls.json"
    client = client_from(settings_for(server))
    bound = client.bind(model="openai/fake", instance="i", stage="editing", record=record)
    assert [await bound.ask(USER), await bound.ask(USER)] == ["first", "second"]
    record.write_bytes(record.read_bytes()[:-5])

    resumed = client.bind(model="openai/fake", instance="i", stage="editing", record=record)
    assert [await resumed.ask(USER), await resumed.ask(USER)] == ["first", "again"]
    assert server.requests == 3
    assert Transcript.read(record).responses == ["first", "again"]
    restarted = client.bind(model="openai/fake", instance="i", stage="editing", record=record)
    assert [await restarted.ask(USER), await restarted.ask(USER)] == ["first", "again"]
    assert server.requests == 3


async def test_a_transcript_written_whole_is_replayed_and_continued(fake_server, settings_for, tmp_path) -> None:
    server = fake_server(lambda messages, model: "third")
    record = tmp_path / "0.calls.json"
    record.write_text(Transcript(responses=["first", "second"]).model_dump_json(indent=1))
    bound = client_from(settings_for(server)).bind(model="openai/fake", instance="i", stage="s", record=record)
    assert [await bound.ask(USER) for _ in range(3)] == ["first", "second", "third"]
    assert server.requests == 1
    assert Transcript.read(record).responses == ["first", "second", "third"]


async def test_an_unreachable_server_is_retried_then_fails(fake_server, settings_for) -> None:
    server = fake_server()
    server.stop()
    client = client_from(settings_for(server, max_retries=2))
    started = time.monotonic()
    with pytest.raises(ModelCallError, match=r"failed after 3 attempt.*(?i:connect)"):
        await client.complete(USER, model="openai/fake", instance="i", stage="s")
    assert time.monotonic() - started < 5


async def test_cached_tokens_are_priced_as_cache_reads(fake_server, settings_for, tmp_path) -> None:
    """A priced model's cached prompt tokens cost litellm's cache-read price, on either path."""
    import litellm

    server = fake_server(lambda messages, model: "x" * 400)
    usage = tmp_path / "usage.jsonl"
    client = client_from(settings_for(server), usage_path=usage)
    prefix = [{"role": "system", "content": "y" * 4000}, {"role": "user", "content": "go"}]
    for _ in range(2):
        await client.complete(prefix, model="openai/gpt-4o", instance="i", stage="s")

    price = litellm.model_cost["gpt-4o"]
    first, second = records(usage)
    assert (second.prompt_tokens, second.cached_tokens, second.completion_tokens) == (1001, 1000, 100)
    expected = 1 * price["input_cost_per_token"] + 1000 * price["cache_read_input_token_cost"]
    assert second.cost_usd == pytest.approx(expected + 100 * price["output_cost_per_token"])
    assert second.cost_usd < first.cost_usd


def test_the_lean_path_needs_no_litellm(fake_server) -> None:
    """A priced call to an OpenAI-compatible server never imports litellm (seconds of start-up, ms a call)."""
    server = fake_server()
    code = f"""
import asyncio, sys
from codemonkeys.config import Settings, nest
from codemonkeys.llm import ModelClient
settings = Settings.model_validate(nest({{"api_base": "{server.url}", "prices": {{"openai/m": [1.0, 2.0]}}}}, "t"))
client = ModelClient(settings.models, settings.budget)
print(asyncio.run(client.complete([{{"role": "user", "content": "hi"}}], model="openai/m", instance="i", stage="s")))
print("litellm" in sys.modules, client.spent() > 0)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split("\n")[:2] == ["echo: hi", "False True"]
    assert "Unclosed" not in out.stderr, "the loop's connection pool is closed with the loop"


def test_which_models_take_the_lean_path() -> None:
    from codemonkeys.openai_compat import serves

    base = "http://127.0.0.1:8000/v1"
    assert serves("openai/qwen", base) and serves("hosted_vllm/qwen", base)
    assert not serves("openai/qwen", None)
    assert not serves("anthropic/claude-sonnet-4-5", base) and not serves("gpt-4o", base)
