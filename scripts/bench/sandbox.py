"""Sandbox latency: a trivial test script in (a) a warm container with reset, (b) a fresh container per run,
(c) the local sandbox; the ratio b/a (target ≥ 10×), reset latency, and throughput of 8 warm containers.

usage: python scripts/bench/sandbox.py [--runs 30] [--fresh-runs 15] [--parallel 8] [--seconds 10]
Needs a docker engine and the base image (codemonkeys sandbox build). Prints plain lines.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from codemonkeys.config import SandboxSettings
from codemonkeys.sandbox import engine, images
from codemonkeys.sandbox.base import Sandbox, SandboxSpec
from codemonkeys.sandbox.docker import DockerProvider
from codemonkeys.sandbox.local import LocalProvider

SCRIPT = "import sys\nfrom calc import add\nsys.exit(0 if add(2, 3) == 5 else 2)\n"
TIMEOUT = 60.0


def make_repo(root: Path) -> tuple[str, str]:
    repo = root / "benchrepo"
    repo.mkdir()
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b"}
    env |= {"GIT_COMMITTER_EMAIL": "b@b", "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z"}
    env["GIT_COMMITTER_DATE"] = env["GIT_AUTHOR_DATE"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
    return str(repo), sha.stdout.strip()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


async def reset_and_run(sandbox: Sandbox) -> float:
    started = time.perf_counter()
    await sandbox.reset()
    result = await sandbox.run_script(SCRIPT, TIMEOUT)
    if result.exit_code != 0:
        raise SystemExit(f"the benchmark script failed: {result.output}")
    return time.perf_counter() - started


async def run_on(sandbox: Sandbox) -> float:
    started = time.perf_counter()
    result = await sandbox.run_on("", SCRIPT, TIMEOUT)
    if result.exit_code != 0:
        raise SystemExit(f"the benchmark script failed: {result.output}")
    return time.perf_counter() - started


async def warm(provider: DockerProvider | LocalProvider, runs: int) -> tuple[list[float], list[float], list[float]]:
    """(reset + run latencies, reset-alone latencies, run_on latencies) in one sandbox."""
    sandbox = await provider.open("bench")
    try:
        await reset_and_run(sandbox)  # first run warms caches
        totals = [await reset_and_run(sandbox) for _ in range(runs)]
        resets = []
        for _ in range(runs):
            started = time.perf_counter()
            await sandbox.reset()
            resets.append(time.perf_counter() - started)
        combined = [await run_on(sandbox) for _ in range(runs)]
        return totals, resets, combined
    finally:
        await sandbox.close()


def fresh_container_run(provider: DockerProvider) -> float:
    """The naive way: create, copy the script in, start, wait, remove — per run."""
    client = provider.client
    limits = provider.spec.settings
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("bench_script.py")
        info.size = len(SCRIPT)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(SCRIPT.encode()))
    started = time.perf_counter()
    container = client.containers.create(
        provider.image,
        command=["python", "/tmp/bench_script.py"],
        working_dir=provider.workdir,
        environment={"PYTHONPATH": provider.workdir},
        network_mode="none",
        nano_cpus=int(limits.docker_cpus * 1e9),
        mem_limit=limits.docker_memory,
        pids_limit=limits.docker_pids,
        labels=engine.owner_labels("bench-fresh", "sandbox"),
    )
    try:
        container.put_archive("/tmp", buffer.getvalue())
        container.start()
        code = container.wait(timeout=TIMEOUT)["StatusCode"]
        container.logs()
    finally:
        container.remove(force=True)
    if code != 0:
        raise SystemExit(f"the benchmark script failed in a fresh container (exit {code})")
    return time.perf_counter() - started


async def throughput(provider: DockerProvider, parallel: int, seconds: float) -> tuple[int, float]:
    sandboxes = await asyncio.gather(*(provider.open(f"par-{i}") for i in range(parallel)))
    done = 0
    deadline = time.perf_counter() + seconds

    async def loop(sandbox: Sandbox) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await reset_and_run(sandbox)
            done += 1

    started = time.perf_counter()
    try:
        await asyncio.gather(*(loop(s) for s in sandboxes))
    finally:
        await asyncio.gather(*(s.close() for s in sandboxes))
    return done, time.perf_counter() - started


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="codemonkeys-bench-") as tmp:
        repo, sha = make_repo(Path(tmp))
        settings = SandboxSettings(max_containers=max(args.parallel, 2))
        spec = SandboxSpec(repo_path=repo, commit=sha, run_label="bench", settings=settings)
        provider = DockerProvider(spec)
        try:
            await provider.prepare()
            limits = settings.model_dump(include={"docker_cpus", "docker_memory", "docker_pids"})
            print(f"docker: {provider.description}, limits {limits}")
            print(f"machine: {os.cpu_count()} cores")

            totals, resets, combined = await warm(provider, args.runs)
            warm_median = statistics.median(totals)
            print(f"(a) warm container, reset + run: median {ms(warm_median)} over {args.runs} runs")
            print(f"    reset alone: median {ms(statistics.median(resets))}")
            print(f"    run_on (reset + patch + run in one request): median {ms(statistics.median(combined))}")

            fresh = [await asyncio.to_thread(fresh_container_run, provider) for _ in range(args.fresh_runs)]
            fresh_median = statistics.median(fresh)
            print(f"(b) fresh container per run: median {ms(fresh_median)} over {args.fresh_runs} runs")

            local = LocalProvider(spec)
            local_totals, local_resets, local_combined = await warm(local, args.runs)
            await local.aclose()
            print(f"(c) local sandbox, reset + run: median {ms(statistics.median(local_totals))} over {args.runs} runs")
            print(f"    local reset alone: median {ms(statistics.median(local_resets))}")
            print(f"    local run_on: median {ms(statistics.median(local_combined))}")

            print(f"ratio fresh/warm (b/a): {fresh_median / warm_median:.1f}x")

            done, elapsed = await throughput(provider, args.parallel, args.seconds)
            print(
                f"throughput, {args.parallel} warm containers in parallel: {done / elapsed:.1f} runs/s "
                f"({done} runs in {elapsed:.1f} s)"
            )
        finally:
            await provider.aclose()
            if provider.image:
                provider.client.images.remove(provider.image, force=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--fresh-runs", type=int, default=15)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    if not images.image_exists(engine.connect(), images.BASE_IMAGE):
        raise SystemExit(f"{images.BASE_IMAGE} is missing: build it with `codemonkeys sandbox build`")
    asyncio.run(main(parser.parse_args()))
