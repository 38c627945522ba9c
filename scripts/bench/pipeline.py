"""Pipeline benchmark: a fake model with fixed latency, N trajectories of K turns each, on a small real repo.

Prints parallel efficiency (the critical path's model latency and test time ÷ wall time), orchestration
overhead per model call on the critical path, and peak memory.

    python scripts/bench/pipeline.py [--samples 10] [--iterations 8] [--latency 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from codemonkeys.config import Settings, nest  # noqa: E402
from codemonkeys.jsonfiles import read_jsonl  # noqa: E402
from codemonkeys.llm import ModelClient  # noqa: E402
from codemonkeys.pipeline import solve  # noqa: E402
from codemonkeys.problem import make_problem  # noqa: E402
from codemonkeys.stages import Stage  # noqa: E402
from codemonkeys.store import InstanceStore, RunStore  # noqa: E402
from tests.e2e.oracle import oracle  # noqa: E402
from tests.e2e.toy_repo import ISSUE, RIGHT_FIX, RIGHT_TEST, make_toy_repo  # noqa: E402
from tests.fake_model_server import FakeModelServer, current_stage  # noqa: E402

WARM_UP = "warm"  # the stage name of the one call made before the run, which the oracle does not know


def busy_model(iterations: int):
    """Uses every turn: the testing and editing trajectories revise until their last turn, then finish."""

    def respond(messages: list[dict], model: str) -> str:
        stage = current_stage()
        if stage == WARM_UP:
            return "ready"
        turn = sum(1 for m in messages if m["role"] == "assistant") + 1
        if stage == Stage.TESTING:
            return "<done>" if turn == iterations else f"Revising.\n<test>\n{RIGHT_TEST}</test>"
        if stage == Stage.EDITING:
            return "<done>" if turn == iterations else f"Revising.\n<edit>\n{RIGHT_FIX}</edit>"
        return oracle(messages, model)

    return respond


def critical_path(inst: InstanceStore, latency: float, samples: int) -> tuple[float, int]:
    """Seconds and model calls of the longest chain: relevance → ranking → slowest testing+editing pair.

    Model time is the server's nominal latency, so the client stack's own cost counts as overhead. A test
    run's seconds include the tree reset and patch application done in the same process."""
    slowest, slowest_calls = 0.0, 0
    for i in range(samples):
        testing, editing = inst.testing(i).load(), inst.editing(i).load()
        assert testing is not None and editing is not None, f"trajectory {i} left no record"
        # Editing runs each distinct script on the original code once (the bench uses one script).
        runs = [t.original for t in testing.turns] + [editing.original] + [t.edited for t in editing.turns]
        calls = testing.calls + editing.calls
        chain = calls * latency + sum(r.seconds for r in runs if r is not None)
        if chain > slowest:
            slowest, slowest_calls = chain, calls
    return 2 * latency + slowest, 2 + slowest_calls


def serve(iterations: int, latency: float) -> None:
    """The fake model in a process of its own, so its threads do not compete with the orchestrator's."""
    with FakeModelServer(busy_model(iterations), latency=latency) as server:
        print(server.url, flush=True)
        sys.stdin.read()


@contextmanager
def model_server(iterations: int, latency: float) -> Iterator[str]:
    argv = [sys.executable, __file__, "--serve", "--iterations", str(iterations), "--latency", str(latency)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.iterations, args.latency)
        return
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp, model_server(args.iterations, args.latency) as url:
        repo = make_toy_repo(Path(tmp))
        problem = make_problem(str(repo), None, ISSUE, Path(tmp) / "clones", instance_id="bench")
        flat = {
            "models": ["openai/bench"],
            "api_base": url,
            "samples": args.samples,
            "iterations": args.iterations,
            "rankings": 1,
            "sandbox": "local",
            "model_concurrency": 64,
            "python": sys.executable,
            "test_timeout": 30,
            "run_dir": Path(tmp) / "run",
        }
        settings = Settings.model_validate(nest(flat, "bench"))
        store = RunStore(settings.run_dir)
        client = ModelClient(settings.models, settings.budget, usage_path=store.usage_path)
        await client.complete(
            [{"role": "user", "content": "warm up"}], model="openai/bench", instance="warm", stage=WARM_UP
        )
        usage_start = len(read_jsonl(store.usage_path))
        started = time.perf_counter()
        result = await solve(problem, settings, client, store)
        wall = time.perf_counter() - started
        usage = read_jsonl(store.usage_path)[usage_start:]
        path_seconds, path_calls = critical_path(store.instance("bench"), args.latency, args.samples)
        # Voting is nothing but test runs (one script on one candidate and on the empty patch, in parallel).
        path_seconds += result.stage_seconds.get(Stage.VOTING, 0.0)
    assert result.patch and re.search("mid - 1", result.patch), "the benchmark run must solve the toy issue"
    overhead_ms = max(0.0, wall - path_seconds) / path_calls * 1000
    client_ms = (statistics.median(u["latency_s"] for u in usage) - args.latency) * 1000
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"trajectories: {args.samples} x {args.iterations} turns, model latency {args.latency * 1000:.0f} ms")
    print(f"model calls: {len(usage)} total, {path_calls} on the critical path")
    print(f"wall time: {wall:.2f} s; critical path (model latency + test time): {path_seconds:.2f} s")
    print(f"parallel efficiency: {path_seconds / wall:.3f} (target >= 0.95)")
    print(f"orchestration overhead per critical-path model call: {overhead_ms:.2f} ms (target <= 5 ms)")
    print(f"model client stack per call (client + HTTP, median latency over nominal): {client_ms:.2f} ms")
    print("stage wall times: " + ", ".join(f"{k} {v:.2f} s" for k, v in result.stage_seconds.items()))
    print(f"peak memory: {peak_self:.0f} MiB (orchestrator), {peak_children:.0f} MiB (largest child process)")
    figures = {"efficiency": round(path_seconds / wall, 3), "overhead_ms": round(overhead_ms, 2)}
    print(json.dumps({**figures, "client_ms": round(client_ms, 2)}))


if __name__ == "__main__":
    asyncio.run(main())
