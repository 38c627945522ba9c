"""Model client benchmark: N simultaneous calls against the fake server at a fixed latency.

Each call's overhead is its wall time over the server's nominal latency, so what the client stack costs (and
the queueing its CPU causes when calls arrive together) shows directly. Side by side in one run: raw aiohttp and
raw httpx clients (the floor), litellm, and our `ModelClient` (retries, budget, usage records included). Each
client runs in a process of its own, as it would in use: litellm leaves garbage and deferred tasks behind its
calls, and in a shared process they ran during, and were charged to, the next client's burst (it doubled the
CPU measured for ours). The fake server has a process of its own too. Clients take turns burst by burst, so a
change in the machine's load hits them alike, and their order rotates each round, so none always follows
the same one.

    python scripts/bench/client.py [--sizes 1,10,40,160] [--rounds 8] [--latency 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from codemonkeys.config import Settings, nest  # noqa: E402
from codemonkeys.llm import ModelClient, litellm_module  # noqa: E402
from tests.fake_model_server import FakeModelServer  # noqa: E402

MODEL = "openai/bench"
# About the size of a relevance prompt: shared instructions and issue, then one file.
SYSTEM = "You judge whether a file is relevant to an issue.\n" + "issue text line\n" * 250
FILE = "def function(x):\n    return x + 1\n" * 120
AUTH = {"Authorization": "Bearer sk-x"}
Call = Callable[[int], Awaitable[str]]
Close = Callable[[], Awaitable[None]]
SETTLE = 0.5


def messages(n: int) -> list[dict]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"<file n={n}>\n{FILE}</file>"}]


def serve(latency: float) -> None:
    with FakeModelServer(lambda messages, model: "<relevant>no</relevant>", latency=latency) as server:
        print(server.url, flush=True)
        sys.stdin.read()


@contextmanager
def model_server(latency: float) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--latency", str(latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def body(n: int) -> dict:
    return {"model": "bench", "messages": messages(n), "temperature": 0.0, "max_tokens": 1024}


def raw_aiohttp(url: str, run_dir: Path) -> tuple[Call, Close]:
    """What any client must pay at least: one shared connection pool, JSON out and in."""
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def call(n: int) -> str:
        async with session.post(f"{url}/chat/completions", json=body(n), headers=AUTH) as response:
            response.raise_for_status()
            return (await response.json())["choices"][0]["message"]["content"]

    return call, session.close


def raw_httpx(url: str, run_dir: Path) -> tuple[Call, Close]:
    """The same with httpx, which the OpenAI SDK uses: its pool's CPU grows with the connections open."""
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=None, max_keepalive_connections=None), timeout=60)

    async def call(n: int) -> str:
        response = await http.post(f"{url}/chat/completions", json=body(n), headers=AUTH)
        response.raise_for_status()
        return response.json()["choices"][0]["message"]["content"]

    return call, http.aclose


async def nothing() -> None:
    pass


def litellm_client(url: str, run_dir: Path) -> tuple[Call, Close]:
    litellm = litellm_module()

    async def call(n: int) -> str:
        response = await litellm.acompletion(
            model=MODEL, messages=messages(n), api_base=url, api_key="sk-x", timeout=60, num_retries=0
        )
        return response.choices[0].message.content

    return call, nothing


def our_client(url: str, run_dir: Path) -> tuple[Call, Close]:
    values = {"models": [MODEL], "api_base": url, "model_concurrency": 1000, "run_dir": run_dir}
    settings = Settings.model_validate(nest(values, "bench"))
    client = ModelClient(settings.models, settings.budget, usage_path=run_dir / "usage.jsonl")

    async def call(n: int) -> str:
        return await client.complete(messages(n), model=MODEL, instance=f"i{n % 7}", stage="relevance")

    return call, nothing  # its pool is closed with the event loop


CLIENTS: dict[str, Callable[[str, Path], tuple[Call, Close]]] = {
    "raw aiohttp": raw_aiohttp,
    "raw httpx": raw_httpx,
    "litellm": litellm_client,
    "ours": our_client,
}


async def burst(call: Call, size: int, latency: float) -> tuple[list[float], float]:
    """Overheads (ms) of `size` calls started together, and CPU ms of this process per call. The CPU window
    runs on for SETTLE seconds after the last answer, so work a client defers (litellm's logging and cost tasks)
    is charged to it."""

    async def timed(n: int) -> float:
        started = time.perf_counter()
        await call(n)
        return (time.perf_counter() - started - latency) * 1000

    cpu = time.process_time()
    overheads = await asyncio.gather(*(timed(n) for n in range(size)))
    await asyncio.sleep(SETTLE)
    return list(overheads), (time.process_time() - cpu) * 1000 / size


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


async def work(name: str, url: str, latency: float) -> None:
    """One client's process: a burst for every size read from stdin, its figures as a JSON line on stdout."""
    with tempfile.TemporaryDirectory() as tmp:
        call, close = CLIENTS[name](url, Path(tmp))
        await call(0)  # imports, connection set-up and first-call caches are not what we measure
        print("ready", flush=True)
        while line := await asyncio.to_thread(sys.stdin.readline):
            overheads, cpu = await burst(call, int(line), latency)
            print(json.dumps({"overheads": overheads, "cpu": cpu}), flush=True)
        await close()


class Worker:
    def __init__(self, name: str, url: str, latency: float) -> None:
        argv = [sys.executable, __file__, "--worker", name, "--url", url, "--latency", str(latency)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"the {name} client did not start")

    def burst(self, size: int) -> tuple[list[float], float]:
        self.proc.stdin.write(f"{size}\n")
        self.proc.stdin.flush()
        got = json.loads(self.proc.stdout.readline())
        return got["overheads"], got["cpu"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,10,40,160")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.latency)
        return
    if args.worker:
        asyncio.run(work(args.worker, args.url, args.latency))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    with model_server(args.latency) as url:
        workers = {name: Worker(name, url, args.latency) for name in CLIENTS}
        print(f"model latency {args.latency * 1000:.0f} ms, {args.rounds} rounds per size; overhead = wall - latency")
        print(f"{'in flight':>9}  {'client':<12}{'median ms':>10}{'p90 ms':>9}{'CPU ms/call':>13}")
        results: dict[tuple[int, str], tuple[float, float, float]] = {}
        for size in sizes:
            overheads: dict[str, list[float]] = {name: [] for name in workers}
            cpus: dict[str, list[float]] = {name: [] for name in workers}
            names = list(workers)
            for round_ in range(args.rounds):
                turn = round_ % len(names)
                for name in names[turn:] + names[:turn]:
                    got, cpu = workers[name].burst(size)
                    overheads[name] += got
                    cpus[name].append(cpu)
            for name in workers:
                row = (statistics.median(overheads[name]), p90(overheads[name]), statistics.median(cpus[name]))
                results[(size, name)] = row
                print(f"{size:>9}  {name:<12}{row[0]:>10.1f}{row[1]:>9.1f}{row[2]:>13.2f}", flush=True)
        for worker in workers.values():
            worker.close()
    largest = max(sizes)
    ours, raw = results[(largest, "ours")], results[(largest, "raw aiohttp")]
    print(f"at {largest} in flight: ours {ours[0]:.1f} ms vs raw {raw[0]:.1f} ms median overhead")
    ceilings = {name: 1000 / results[(largest, name)][2] for name in ("ours", "litellm")}
    print("CPU-bound ceiling of one process: " + ", ".join(f"{n} ~{c:.0f} calls/s" for n, c in ceilings.items()))
    figures = {
        f"overhead_ms_{largest}": round(ours[0], 1),
        f"raw_overhead_ms_{largest}": round(raw[0], 1),
        f"raw_httpx_overhead_ms_{largest}": round(results[(largest, "raw httpx")][0], 1),
        f"litellm_overhead_ms_{largest}": round(results[(largest, "litellm")][0], 1),
        "cpu_ms_per_call": round(ours[2], 2),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
