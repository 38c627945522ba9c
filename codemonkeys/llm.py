"""One model client over litellm (DESIGN.md, "Model calls").

Every call goes through `ModelClient.complete`: a per-model concurrency limit, retries with backoff on
transient failures, provider prompt-cache markers, one usage record per call in `usage.jsonl` (failed
calls too) and a budget checked before every attempt. Calls to an OpenAI-compatible `api_base` take the lean
path of `openai_compat` (a fraction of litellm's CPU per call); every other provider goes through litellm,
which is imported on first use only: it takes seconds to import and the CLI's `--help` should not pay that.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import os
import random
import sys
import time
import weakref
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from codemonkeys import openai_compat
from codemonkeys.config import BudgetSettings, ModelSettings
from codemonkeys.jsonfiles import JsonlAppender, append_jsonl, atomic_write_text
from codemonkeys.openai_compat import Completion, GarbageResponse

if TYPE_CHECKING:
    from codemonkeys.window import Window

Message = dict[str, Any]
Messages = list[Message]
STAGE_HEADER = "X-CodeMonkeys-Stage"

_PLACEHOLDER_KEY = "sk-no-key"
_MAX_DELAY = 60.0
_RETRY_STATUS = {408, 409, 425, 429}
_REFUSED_STATUS = {400, 413, 422}
_CACHE_MARKER_PROVIDERS = {"bedrock", "vertex_ai", "vertex_ai_beta", "openrouter"}


class Spend(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0


class CallRecord(Spend):
    """One line of usage.jsonl. `error` is a short, scrubbed text: never a key."""

    ts: float = Field(default_factory=time.time)
    instance: str
    stage: str
    model: str
    latency_s: float = 0.0
    attempts: int = 0
    ok: bool = True
    error: str | None = None


class StageTotals(Spend):
    calls: int = 0
    errors: int = 0

    def add(self, record: CallRecord) -> None:
        self.calls += 1
        self.prompt_tokens += record.prompt_tokens
        self.completion_tokens += record.completion_tokens
        self.cached_tokens += record.cached_tokens
        self.cost_usd += record.cost_usd
        self.errors += not record.ok


class ChatModel(Protocol):
    """What a conversation needs of a model: `BoundModel` in a run, a scripted stand-in in unit tests.
    `window` is what its prompts must fit (None: no limit known)."""

    window: Window | None

    async def ask(self, messages: Messages) -> str: ...


class RunStopped(Exception):
    """The run stops early (DESIGN.md, "Stop rule"): the stage it interrupts is left unsaved and the same
    command resumes it. `stage` is the stage whose work was stopped."""

    def __init__(self, message: str, stage: str | None = None) -> None:
        super().__init__(message)
        self.stage = stage


class BudgetExceeded(RunStopped):
    """The problem's or the run's budget is spent; raised before a call is made. Messages about the run's
    budget start with RUN_BUDGET, so a batch knows to start no more problems."""


RUN_BUDGET = "run budget: "


class ModelCallError(RunStopped):
    """Retries exhausted, or an error retrying cannot fix (bad key, prompt too long)."""


class RequestRefused(Exception):
    """The provider refused this request for what it is (context window exceeded, invalid request): not an
    outage, so the run goes on; the conversation that sent it ends with the work it has and says why."""


@functools.cache
def litellm_module() -> ModuleType:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    # Its import leaves ~300k objects that live as long as the process; a full collection that scans them
    # holds the event loop for 100-200 ms. Frozen, collections skip them.
    gc.freeze()
    litellm.suppress_debug_info = True
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return litellm


def _loaded_litellm() -> ModuleType | None:
    """litellm if a call already imported it: errors of the lean path are told apart without importing it."""
    return litellm_module() if "litellm" in sys.modules else None


class Price(BaseModel):
    """USD per token."""

    input: float
    output: float
    cache_read: float

    def of(self, answer: Completion) -> float:
        fresh = max(0, answer.prompt_tokens - answer.cached_tokens)
        return fresh * self.input + answer.cached_tokens * self.cache_read + answer.completion_tokens * self.output


def _uses_cache_markers(model: str) -> bool:
    """Anthropic-style providers cache only what is marked; OpenAI and most others cache prefixes by themselves."""
    provider, _, name = model.partition("/")
    if not name:
        return provider.startswith("claude")
    return provider == "anthropic" or (provider in _CACHE_MARKER_PROVIDERS and "claude" in name.lower())


def mark_cache_prefix(messages: Messages, model: str, cache_prefix: int) -> Messages:
    """Marks the end of the first `cache_prefix` messages as a cache breakpoint, for providers that need it."""
    out = [dict(message) for message in messages]
    n = min(cache_prefix, len(out))
    if n <= 0 or not _uses_cache_markers(model):
        return out
    for i, message in enumerate(out[:n]):
        content = message["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else [dict(b) for b in content]
        if i == n - 1 and blocks:
            blocks[-1]["cache_control"] = {"type": "ephemeral"}
        message["content"] = blocks
    return out


def missing_key(models: ModelSettings) -> str | None:
    """The first model of a run (its trajectories' and its relevance model) whose provider key is missing."""
    for name in sorted({*models.names, models.relevance}):
        problem = check_provider_key(name, models.api_base)
        if problem:
            return problem
    return None


def check_provider_key(model: str, api_base: str | None) -> str | None:
    """One clear line when the provider's key is missing, so a run fails at start rather than at its first call."""
    if api_base:
        return None
    env = litellm_module().validate_environment(model)
    missing = env.get("missing_keys") or []
    if env.get("keys_in_environment") or not missing:
        return None
    return f"no API key for {model}: set {', '.join(missing)}"


def scrub(text: str, *extra: str | None) -> str:
    """`text` without the value of any credential in the environment (…KEY, …TOKEN, …SECRET, …PASSWORD) or in
    `extra`: for every text that leaves the process (errors, logs, comments)."""
    names = ("KEY", "TOKEN", "SECRET", "PASSWORD")
    values = {v for k, v in os.environ.items() if any(n in k.upper() for n in names) and len(v) >= 8}
    values |= {v for v in extra if v and v != _PLACEHOLDER_KEY and len(v) >= 4}
    for secret in sorted(values, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _describe(exc: BaseException, api_key: str | None, limit: int = 300) -> str:
    text = str(exc) if type(exc).__name__ in str(exc) else f"{type(exc).__name__}: {exc}"
    text = " ".join(scrub(text, api_key).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, GarbageResponse | TimeoutError | ConnectionError):
        return True
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status in _RETRY_STATUS or status >= 500
    litellm = _loaded_litellm()
    return litellm is not None and isinstance(exc, litellm.APIConnectionError | litellm.Timeout)


def _refused(exc: Exception) -> bool:
    """A 4xx about the request itself; auth, permission and unknown-model errors are the setup's fault and
    stop the run instead (fixed, a rerun resumes)."""
    litellm = _loaded_litellm()
    if isinstance(exc, openai_compat.ContextWindowExceeded) or (
        litellm is not None and isinstance(exc, litellm.ContextWindowExceededError)
    ):
        return True
    return getattr(exc, "status_code", None) in _REFUSED_STATUS


def _retry_after(exc: Exception) -> float:
    """Seconds the provider asked us to wait (a Retry-After header in seconds), capped like the backoff.
    The lean path keeps the headers in `headers`, litellm in `litellm_response_headers`; `response` is its
    own stand-in."""
    value = None
    for headers in (
        getattr(exc, "headers", None),
        getattr(exc, "litellm_response_headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
    ):
        if headers and headers.get("retry-after") is not None:
            value = headers.get("retry-after")
            break
    try:
        return min(float(value), _MAX_DELAY) if value is not None else 0.0
    except (TypeError, ValueError):
        return 0.0


def _litellm_completion(response: Any) -> Completion:
    choices = getattr(response, "choices", None)
    if not choices:
        raise GarbageResponse("response has no choices")
    text = getattr(getattr(choices[0], "message", None), "content", None)
    if not isinstance(text, str):
        raise GarbageResponse("response has no text content")
    usage = getattr(response, "usage", None)
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) or getattr(usage, "cache_read_input_tokens", None) or 0
    return Completion(
        text=text,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cached_tokens=int(cached),
    )


def content_text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(block.get("text", "")) for block in content if isinstance(block, dict))
    return str(content or "")


class ModelClient:
    """Shared by every stage of a run. Spend is read back from usage.jsonl, so a resumed run, and other
    processes appending to the same file, count against the budgets too."""

    def __init__(self, models: ModelSettings, budget: BudgetSettings, usage_path: Path | None = None) -> None:
        self.settings = models
        self.budget = budget
        self.usage_path = usage_path
        self._usage = JsonlAppender(usage_path) if usage_path is not None else None
        self._totals: dict[tuple[str, str], StageTotals] = {}
        self._reserved: dict[str, float] = {}
        self._model_cost: dict[str, float] = {}
        self._prices: dict[str, Price | None] = {}
        self._failures: dict[str, tuple[int, str]] = {}
        self._offset = 0
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]] = (
            weakref.WeakKeyDictionary()
        )
        self._refresh()

    def bind(
        self, *, model: str, instance: str, stage: str, record: Path | None = None, cache_prefix: int = 0
    ) -> BoundModel:
        bound = BoundModel(self, model=model, instance=instance, stage=stage, record=record, cache_prefix=cache_prefix)
        bound.window = self.window(model)
        return bound

    def window(self, model: str) -> Window:
        from codemonkeys.window import Window  # the window module counts tokens with this module's litellm

        return Window.of(model, self.settings)

    def spent(self, instance: str | None = None) -> float:
        self._refresh()
        return sum(t.cost_usd for (inst, _), t in self._totals.items() if instance is None or inst == instance)

    def stage_totals(self, instance: str | None = None) -> dict[str, StageTotals]:
        self._refresh()
        out: dict[str, StageTotals] = {}
        for (inst, stage), totals in self._totals.items():
            if instance is None or inst == instance:
                merged = out.setdefault(stage, StageTotals())
                for field in StageTotals.model_fields:
                    setattr(merged, field, getattr(merged, field) + getattr(totals, field))
        return out

    async def complete(
        self, messages: Messages, *, model: str, instance: str, stage: str, cache_prefix: int = 0
    ) -> str:
        request = self._request(model, mark_cache_prefix(messages, model, cache_prefix), stage)
        lean = self.settings.lean_client and openai_compat.serves(model, self.settings.api_base)
        started = time.monotonic()
        attempts = 0
        estimate = self._input_cost(model, request["messages"])
        while True:
            try:
                async with self._semaphore(model):
                    self._check_breaker(model)
                    self._check_budget(instance, estimate)
                    attempts += 1
                    self._reserved[instance] = self._reserved.get(instance, 0.0) + estimate
                    try:
                        if lean:
                            response = None
                            answer = await self._lean_call(request, stage)
                        else:
                            response = await litellm_module().acompletion(**request)
                    finally:
                        self._reserved[instance] -= estimate
                if response is not None:
                    answer = _litellm_completion(response)
            except RunStopped as exc:
                exc.stage = stage
                if attempts and isinstance(exc, BudgetExceeded):
                    self._write(instance, stage, model, started, attempts, error=_describe(exc, None))
                raise
            except Exception as exc:
                if _retryable(exc) and attempts <= self.settings.max_retries:
                    await asyncio.sleep(max(self._backoff(attempts), _retry_after(exc)))
                    continue
                error = _describe(exc, request.get("api_key"))
                self._write(instance, stage, model, started, attempts, error=error)
                if _refused(exc):
                    raise RequestRefused(f"{model} refused the request: {error}") from None
                self._failures[model] = (self._failures.get(model, (0, ""))[0] + 1, error)
                raise ModelCallError(f"{model} failed after {attempts} attempt(s): {error}", stage) from None
            self._failures.pop(model, None)
            self._write(
                instance,
                stage,
                model,
                started,
                attempts,
                prompt_tokens=answer.prompt_tokens,
                completion_tokens=answer.completion_tokens,
                cached_tokens=answer.cached_tokens,
                cost_usd=self._cost(model, answer, response),
            )
            return answer.text

    async def _lean_call(self, request: dict[str, Any], stage: str) -> Completion:
        body = {k: request[k] for k in ("model", "messages", "temperature", "max_tokens")}
        return await openai_compat.chat(
            request["api_base"],
            body,
            api_key=request["api_key"],
            headers={STAGE_HEADER: stage},
            timeout=request["timeout"],
        )

    def _request(self, model: str, messages: Messages, stage: str) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_output_tokens,
            "timeout": self.settings.request_timeout,
            "num_retries": 0,
            "drop_params": True,
        }
        if self.settings.api_base:
            request["api_base"] = self.settings.api_base
            request["api_key"] = os.environ.get("OPENAI_API_KEY") or _PLACEHOLDER_KEY
            # Lets a self-hosted server's logs (and the tests' fake) tell the stages apart.
            request["extra_headers"] = {STAGE_HEADER: stage}
        return request

    def _semaphore(self, model: str) -> asyncio.Semaphore:
        """One per model and event loop: an asyncio semaphore is bound to the loop it first waits on."""
        per_loop = self._semaphores.setdefault(asyncio.get_running_loop(), {})
        if model not in per_loop:
            per_loop[model] = asyncio.Semaphore(self.settings.model_concurrency)
        return per_loop[model]

    def _backoff(self, attempt: int) -> float:
        delay = min(_MAX_DELAY, self.settings.retry_base_delay * 2 ** (attempt - 1))
        return delay * random.uniform(0.5, 1.5)

    def _check_breaker(self, model: str) -> None:
        """A provider that failed this many calls in a row is down or refusing us: waiting out every other
        call's retries would take hours on a large repo, so the rest fail at once and a rerun resumes."""
        failures, error = self._failures.get(model, (0, ""))
        if failures >= self.settings.breaker_failures:
            raise ModelCallError(f"{model} is not answering: {failures} calls in a row failed (last: {error})")

    def _check_budget(self, instance: str, estimate: float) -> None:
        """Counts the input cost of calls still in flight too, so concurrent workers cannot all start the
        call that overruns the budget; only output tokens can still overshoot it."""
        limit = self.budget.budget_usd
        if limit is not None:
            committed = self.spent(instance) + self._reserved.get(instance, 0.0)
            if committed + estimate > limit:
                raise BudgetExceeded(
                    f"instance {instance}: ${committed:.4f} spent or in flight, the next call needs about "
                    f"${estimate:.4f} of its ${limit:.4f} budget"
                )
        limit = self.budget.run_budget_usd
        if limit is not None:
            committed = self.spent() + sum(self._reserved.values())
            if committed + estimate > limit:
                raise BudgetExceeded(
                    f"{RUN_BUDGET}${committed:.4f} spent or in flight, the next call needs about ${estimate:.4f} "
                    f"of its ${limit:.4f} budget"
                )

    def _price(self, model: str) -> Price | None:
        """The configured price, else litellm's, looked up once per model (None: unpriced, so free): litellm
        raises for an unknown model, and raising on every call cost more than the call itself."""
        if model not in self._prices:
            configured = self.settings.prices.get(model)
            if configured is not None:
                per_token = (configured[0] / 1_000_000, configured[1] / 1_000_000)
                self._prices[model] = Price(input=per_token[0], output=per_token[1], cache_read=per_token[0])
            else:
                self._prices[model] = _litellm_price(model)
        return self._prices[model]

    def _input_cost(self, model: str, messages: Messages) -> float:
        """The call's input cost, estimated at four characters a token before any tokenizer runs."""
        price = self._price(model)
        if price is None:
            return 0.0
        return sum(len(content_text(m.get("content"))) for m in messages) // 4 * price.input

    def _cost(self, model: str, answer: Completion, response: Any) -> float:
        """From the cached price; a litellm response of a model litellm prices is costed by litellm, which knows
        each provider's cache-write and long-context prices."""
        price = self._price(model)
        if price is None:
            return 0.0
        if response is not None and model not in self.settings.prices:
            try:
                return float(litellm_module().completion_cost(completion_response=response, model=model) or 0.0)
            except Exception:
                pass
        return price.of(answer)

    def _write(self, instance: str, stage: str, model: str, started: float, attempts: int, **fields: Any) -> None:
        record = CallRecord(
            instance=instance,
            stage=stage,
            model=model,
            latency_s=round(time.monotonic() - started, 3),
            attempts=attempts,
            ok="error" not in fields,
            **fields,
        )
        if self._usage is None:
            self._count(record)
            return
        # Counted when the totals are next read (every reader refreshes first), with any other writer's records.
        self._usage.append(record.model_dump())

    def _count(self, record: CallRecord) -> None:
        self._totals.setdefault((record.instance, record.stage), StageTotals()).add(record)
        if record.ok:
            self._model_cost[record.model] = self._model_cost.get(record.model, 0.0) + record.cost_usd

    def unpriced_models(self) -> list[str]:
        """Models that answered but cost nothing: no price is known for them, so their USD figures are 0."""
        self._refresh()
        return sorted(m for m, cost in self._model_cost.items() if cost == 0.0)

    def _refresh(self) -> None:
        """Counts the complete lines appended to usage.jsonl since the last look, by any writer."""
        if self.usage_path is None:
            return
        try:
            with self.usage_path.open("rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n") + 1
        for line in chunk[:end].splitlines():
            try:
                self._count(CallRecord.model_validate_json(line))
            except ValidationError:
                continue
        self._offset += end


def _litellm_price(model: str) -> Price | None:
    try:
        info = litellm_module().get_model_info(model)
    except Exception:
        return None
    input_price = float(info.get("input_cost_per_token") or 0.0)
    output_price = float(info.get("output_cost_per_token") or 0.0)
    if not input_price and not output_price:
        return None
    cache_read = info.get("cache_read_input_token_cost")
    return Price(input=input_price, output=output_price, cache_read=input_price if cache_read is None else cache_read)


class Transcript(BaseModel):
    """The model answers of one conversation, in order: replayed positionally on resume.

    On disk one JSON line per answer, appended as each call finishes (`{"response": text}`); a line torn by a
    kill is skipped, and the call it belonged to is made again in its place. A transcript written whole by an
    earlier version (one JSON object) is still read."""

    model_config = ConfigDict(extra="forbid")

    responses: list[str] = []

    @classmethod
    def read(cls, path: Path) -> Transcript:
        return cls.load(path)[0]

    @classmethod
    def load(cls, path: Path) -> tuple[Transcript, bool]:
        """The transcript, and whether it was written whole."""
        if not path.exists():
            return cls(), False
        data = path.read_bytes()
        try:
            return cls.model_validate_json(data), True
        except ValueError:
            pass
        responses = []
        for line in data.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("response"), str):
                responses.append(record["response"])
        return cls(responses=responses), False


class RecordedCalls:
    """Wraps one conversation's model calls so a resumed run replays finished calls instead of repeating them.

    Replay is by position: the k-th call of a resumed conversation gets the k-th recorded answer, even if
    the prompt differs slightly (test output with timings), because a finished call is never paid twice.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.transcript, whole = Transcript.load(path)
        self.position = 0
        if whole:  # rewritten once as lines, so that answers can be appended
            atomic_write_text(path, "".join(json.dumps({"response": t}) + "\n" for t in self.transcript.responses))

    def replay(self) -> str | None:
        if self.position < len(self.transcript.responses):
            self.position += 1
            return self.transcript.responses[self.position - 1]
        return None

    def record(self, text: str) -> None:
        """One appended line, not a rewrite with fsync: the event loop is not held for the whole transcript."""
        self.transcript.responses.append(text)
        self.position += 1
        append_jsonl(self.path, {"response": text})


class BoundModel:
    """A model bound to one conversation: on resume the k-th `ask` returns the k-th recorded answer."""

    def __init__(
        self, client: ModelClient, *, model: str, instance: str, stage: str, record: Path | None, cache_prefix: int
    ) -> None:
        self.model = model
        self.client = client
        self.instance = instance
        self.stage = stage
        self.cache_prefix = cache_prefix
        self.calls = RecordedCalls(record) if record is not None else None
        self.window: Window | None = None

    async def ask(self, messages: Messages) -> str:
        if self.calls is not None and (replayed := self.calls.replay()) is not None:
            return replayed
        text = await self.client.complete(
            messages, model=self.model, instance=self.instance, stage=self.stage, cache_prefix=self.cache_prefix
        )
        if self.calls is not None:
            self.calls.record(text)
        return text
