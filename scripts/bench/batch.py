"""Batch benchmark: SWE-bench-shaped instances of the toy repo through `run_batch` (`--env local`), the scripted
model behind a fake server with fixed latency, with the local executor at several `--workers` and on a local
Ray cluster.

Prints a table, one row per configuration: instances, wall seconds, instances per minute, speed-up over
workers=1 and the scaling ratio (speed-up ÷ workers; target ≥ 0.8 until the model concurrency limit), the
peak of model calls in flight at the server (the limit, `models.model_concurrency`, is per model and process),
solved instances, CPU seconds per instance of this process tree, and the time the local sandbox's
per-repository git lock was held and waited for. Ray runs twice on one cluster: "cold" (its worker
processes start and import inside the timed batch) and "warm" (they are already up); the cluster's own
start-up is printed apart. Then the environment cache: seconds from the start of an instance's preparation
to the end of its first test run, cold (the (repo, version) environment is built) and warm (a second
instance of the same (repo, version)), and warm ÷ cold (target ≤ 0.1).

Every configuration is measured, none extrapolated, each in a fresh run directory; one environment cache,
built by the cold measurement, serves every batch. workers=1 takes `--serial-instances` (default 10) so the
whole run stays within a few minutes on two cores; the others take `--instances` (default 40).

    python scripts/bench/batch.py [--instances 40] [--serial-instances 10] [--workers 1,4,16] [--latency 0.2]
                                  [--samples 2] [--iterations 2] [--concurrency 32] [--no-ray]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from codemonkeys.config import Settings, nest  # noqa: E402
from codemonkeys.jsonfiles import read_jsonl  # noqa: E402
from codemonkeys.sandbox import local as local_sandbox  # noqa: E402
from codemonkeys.sandbox.factory import make_provider  # noqa: E402
from codemonkeys.swebench.batch import run_batch  # noqa: E402
from codemonkeys.swebench.dataset import load_instances  # noqa: E402
from codemonkeys.swebench.models import SWEInstance  # noqa: E402
from codemonkeys.swebench.prepare import prepare  # noqa: E402
from tests.e2e.oracle import oracle  # noqa: E402
from tests.e2e.toy_repo import RIGHT_TEST  # noqa: E402
from tests.fake_model_server import FakeModelServer  # noqa: E402
from tests.swebench.shaped import make_benchmark  # noqa: E402

MODEL = "openai/bench"


def serve(latency: float) -> None:
    """The fake model in a process of its own, so its threads do not compete with the orchestrator's for the GIL.
    Reads commands on stdin: `stats` prints the counters as JSON, `reset` zeroes them."""
    with FakeModelServer(oracle, latency=latency) as server:
        print(server.url, flush=True)
        for line in sys.stdin:
            if line.strip() == "reset":
                with server._lock:
                    server.requests = server.max_in_flight = 0
                    server.calls.clear()
            stats = {"requests": server.requests, "max_in_flight": server.max_in_flight}
            print(json.dumps(stats), flush=True)


class ModelServer:
    def __init__(self, latency: float) -> None:
        argv = [sys.executable, __file__, "--serve", "--latency", str(latency)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@contextlib.contextmanager
def model_server(latency: float) -> Iterator[ModelServer]:
    server = ModelServer(latency)
    try:
        yield server
    finally:
        server.close()


@dataclass
class Bench:
    instances: list[SWEInstance]
    repos: Path
    specs: Path
    env_cache: Path
    url: str
    args: argparse.Namespace

    def settings(self, run_dir: Path, workers: int = 1, executor: str = "local") -> Settings:
        flat = {
            "models": [MODEL],
            "api_base": self.url,
            "samples": self.args.samples,
            "iterations": self.args.iterations,
            "selection_iterations": self.args.iterations,
            "rankings": 1,
            "model_concurrency": self.args.concurrency,
            "test_timeout": 60,
            "run_dir": run_dir,
            "swebench.env": "local",
            "swebench.env_cache": self.env_cache,
            "swebench.repos_dir": self.repos,
            "swebench.specs_file": self.specs,
            "swebench.workers": workers,
            "swebench.executor": executor,
        }
        return Settings.model_validate(nest(flat, "bench"))


async def first_test(bench: Bench, instance: SWEInstance, run_dir: Path) -> float:
    """Seconds from the start of the instance's preparation to the end of its first test run: the environment
    (built or found in the cache), the sandbox (worktree and setup) and the reproduction script the testing
    stage runs first."""
    settings = bench.settings(run_dir)
    started = time.perf_counter()
    prepared = await prepare(instance, settings)
    provider = await make_provider(prepared.settings.sandbox, prepared.problem(), f"bench-{instance.instance_id}")
    try:
        box = await provider.open("first")
        try:
            result = await box.run_script(RIGHT_TEST, 60)
        finally:
            await box.close()
    finally:
        await provider.aclose()
    seconds = time.perf_counter() - started
    # The toy repo's bug is there: the reproduction script exits 2 (the test ran and saw the bug).
    if result.exit_code != 2 or "median([1, 2, 3, 4]) = 3" not in result.output:
        raise SystemExit(f"the first test did not run as expected ({result.exit_code}): {result.output}")
    return seconds


def tree_cpu_seconds() -> float:
    """CPU seconds of this process and its descendants (the model server, test runs, git, the Ray cluster and
    its workers): each live process's own and its reaped children's time, from /proc; nan where there is none.
    The machine is shared, so the machine-wide figure would count other people's work."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    seconds: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        seconds[pid] = sum(int(f) for f in fields[11:15]) / ticks
    if not seconds:
        return float("nan")
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0.0, [os.getpid()]
    while todo:
        pid = todo.pop()
        total += seconds.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total


class RepoLockMeter:
    """Seconds spent waiting for and holding the local sandbox's per-repository lock (git worktree add, remove
    and prune on the shared repository are serialised by it), in this process: the same lock, timed."""

    def __init__(self) -> None:
        self.wait = self.held = 0.0
        self._real = local_sandbox._repo_lock
        local_sandbox._repo_lock = self._timed

    def reset(self) -> None:
        self.wait = self.held = 0.0

    def _timed(self, repo: str) -> contextlib.AbstractAsyncContextManager[None]:
        lock = self._real(repo)

        @contextlib.asynccontextmanager
        async def timed() -> AsyncIterator[None]:
            asked = time.perf_counter()
            async with lock:
                got = time.perf_counter()
                self.wait += got - asked
                try:
                    yield
                finally:
                    self.held += time.perf_counter() - got

        return timed()


@dataclass
class Row:
    name: str
    workers: int
    instances: int
    wall: float
    peak_in_flight: int
    calls: int
    solved: int
    cpu: float
    lock_wait: float
    lock_held: float
    statuses: dict[str, int]
    lost: int

    @property
    def per_minute(self) -> float:
        return self.instances / self.wall * 60


async def throughput(
    bench: Bench,
    server: ModelServer,
    meter: RepoLockMeter,
    tmp: Path,
    name: str,
    workers: int,
    executor: str,
    count: int,
) -> Row:
    run_dir = tmp / "runs" / name
    settings = bench.settings(run_dir, workers, executor)
    instances = bench.instances[:count]
    server.ask("reset")
    meter.reset()
    quiet = io.StringIO()
    busy, started = tree_cpu_seconds(), time.perf_counter()
    with contextlib.redirect_stderr(quiet):
        summary = await run_batch(instances, settings)
    wall, cpu = time.perf_counter() - started, tree_cpu_seconds() - busy
    stats = server.ask("stats")
    if summary.done != count:
        raise SystemExit(f"{name}: {summary}\n{quiet.getvalue()[-3000:]}")
    predictions = read_jsonl(run_dir / "predictions.jsonl")
    solved = sum("mid - 1" in p["model_patch"] for p in predictions)
    # A trajectory that crashed (its sandbox did not open, say) leaves no editing record; the instance may still
    # be patched by the other one, so count them.
    lost = sum(
        not (run_dir / i.instance_id / "editing" / f"{k}.json").exists()
        for i in instances
        for k in range(bench.args.samples)
    )
    statuses = Counter(json.loads((run_dir / i.instance_id / "result.json").read_text())["status"] for i in instances)
    return Row(
        name,
        workers,
        count,
        wall,
        stats["max_in_flight"],
        stats["requests"],
        solved,
        cpu,
        meter.wait,
        meter.held,
        dict(statuses),
        lost,
    )


def start_ray(workers: int) -> float:
    """A local cluster of `workers` CPUs, started before the timed batch (run_ray then finds it initialised);
    its start-up seconds are reported on their own."""
    import ray

    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    started = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    return time.perf_counter() - started


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("codemonkeys").setLevel(logging.WARNING)
    workers_list = [int(w) for w in args.workers.split(",")]
    count = max(args.instances, 2)
    meter = RepoLockMeter()
    with tempfile.TemporaryDirectory(prefix="codemonkeys-bench-") as name, model_server(args.latency) as server:
        tmp = Path(name)
        ids = [f"acme__calc-{n}" for n in range(1, count + 1)]
        repos, dataset, specs, _ = make_benchmark(tmp / "bench", ids)
        bench = Bench(load_instances(str(dataset)), repos, specs, tmp / "env-cache", server.url, args)

        # The environment cache, cold then warm; the warm cache then serves every throughput run.
        cold = await first_test(bench, bench.instances[0], tmp / "runs" / "cold")
        warm = await first_test(bench, bench.instances[1], tmp / "runs" / "warm")

        # One untimed instance first: imports, litellm's first call and the HTTP pool are not the batch's cost.
        await throughput(bench, server, meter, tmp, "warm-up", 1, "local", 1)
        rows: list[Row] = []

        def measured(row: Row) -> None:
            rows.append(row)
            print(f"  measured {row.name}: {row.instances} instances in {row.wall:.1f} s", file=sys.stderr, flush=True)

        for workers in workers_list:
            n = min(args.serial_instances, count) if workers == 1 else count
            measured(await throughput(bench, server, meter, tmp, f"local-{workers}", workers, "local", n))
        ray_start = None
        if not args.no_ray:
            ray_workers = max(workers_list)
            ray_start = start_ray(ray_workers)
            try:
                # A fresh cluster's worker processes start and import in the first batch; the second batch on
                # the same cluster (a new run directory) finds them running.
                for phase in ("cold", "warm"):
                    name = f"ray-{ray_workers} {phase}"
                    measured(await throughput(bench, server, meter, tmp, name, ray_workers, "ray", count))
            finally:
                import ray

                ray.shutdown()

    cores = os.cpu_count() or 1
    print(
        f"instances: toy repo (SWE-bench-shaped, one (repo, version)), samples {args.samples}, iterations "
        f"{args.iterations}, rankings 1; fake model latency {args.latency * 1000:.0f} ms; {cores} cores"
    )
    print(f"load average (1, 5, 15 min) at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(
        f"model concurrency limit (models.model_concurrency): {args.concurrency} calls in flight per model per process"
    )
    base = next((r for r in rows if r.name == "local-1"), None)
    header = f"{'configuration':<15}{'instances':>9}{'wall s':>8}{'inst/min':>9}{'speed-up':>9}{'scaling':>8}"
    header += f"{'peak calls':>11}{'calls':>6}{'solved':>7}{'lost traj':>10}{'CPU s/inst':>11}{'CPU busy':>9}{'lock held':>10}{'lock wait':>10}"
    print(header)
    for r in rows:
        speed = r.per_minute / base.per_minute if base else float("nan")
        lock = (
            f"{r.lock_held / r.instances:>10.2f}{r.lock_wait / r.instances:>10.2f}"
            if r.name.startswith("local")
            else f"{'-':>10}{'-':>10}"
        )
        print(
            f"{r.name:<15}{r.instances:>9}{r.wall:>8.1f}{r.per_minute:>9.1f}{speed:>9.2f}{speed / r.workers:>8.2f}"
            f"{r.peak_in_flight:>11}{r.calls:>6}{r.solved:>7}{r.lost:>10}{r.cpu / r.instances:>11.2f}"
            f"{r.cpu / (r.wall * cores):>9.0%}{lock}"
        )
    print("scaling: speed-up over local-1 ÷ workers (target >= 0.8 until the model concurrency limit)")
    if base is not None:
        print(
            f"peak calls: most calls the fake server had in flight; one instance alone reaches {base.peak_in_flight}, "
            f"so {args.concurrency // max(base.peak_in_flight, 1)}+ local workers can meet the limit"
        )
    print(
        "solved: predictions holding the toy repo's fix; calls: model requests the server answered; lost traj: "
        "trajectories that crashed and left no record (the error is in the log of the process that ran them)"
    )
    print(
        "CPU s/inst: CPU seconds per instance of this process and its descendants (model server, test runs, git, "
        "Ray); CPU busy: that CPU ÷ (wall × cores). The machine may be shared: see the load average"
    )
    print(
        "lock held / wait: seconds per instance the per-repository git lock of the local sandbox was held / waited "
        "for (worktree add, remove, prune); held time is serial, so it bounds a repository at 60 ÷ held inst/min"
    )
    for r in rows:
        if r.statuses.get("patched", 0) != r.instances:
            print(f"{r.name}: instance statuses {r.statuses}")
    if ray_start is not None:
        print(f"ray: local cluster start-up {ray_start:.1f} s, in no row's wall time")
    print(f"environment cache, preparation start → first test run: cold {cold:.2f} s, warm {warm:.2f} s")
    print(f"warm ÷ cold: {warm / cold:.3f} (target <= 0.1)")
    figures = {r.name: round(r.per_minute, 1) for r in rows}
    print(json.dumps({"per_minute": figures, "env_ratio": round(warm / cold, 4)}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=40, help="instances per configuration (workers > 1, ray)")
    parser.add_argument("--serial-instances", type=int, default=10, help="instances of the workers=1 run")
    parser.add_argument("--workers", default="1,4,16", help="comma-separated worker counts of the local executor")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the fake model takes per call")
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32, help="models.model_concurrency")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray configuration")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.latency)
    else:
        asyncio.run(main(args))
