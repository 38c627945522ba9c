"""`codemonkeys swebench run` and `eval` as a user runs them: real subprocesses, real git repositories in a
`--repos` directory, a real virtualenv built from the spec with packages from the index, real HTTP to the
scripted fake model, and the official log parser and grading rules."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.oracle import oracle
from tests.fake_model_server import FakeModelServer
from tests.swebench.shaped import make_benchmark, write_predictions

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "codemonkeys", "swebench"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One environment cache for the module: the (repo, version) virtualenv is built once and shared."""
    return tmp_path_factory.mktemp("env-cache")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEMONKEYS_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=_env(), timeout=timeout)


def common(repos: Path, specs: Path, env_cache: Path) -> list[str]:
    return ["--env", "local", "--repos", str(repos), "--specs", str(specs), "--set", f"swebench.env_cache={env_cache}"]


def solve_args(
    dataset: Path, repos: Path, specs: Path, env_cache: Path, server: FakeModelServer, run_dir: Path
) -> list[str]:
    return [
        "run",
        "--dataset",
        str(dataset),
        *common(repos, specs, env_cache),
        "--api-base",
        server.url,
        "--model",
        "openai/right",
        "--model",
        "openai/wrong",
        "--samples",
        "2",
        "--iterations",
        "4",
        "--rankings",
        "1",
        "--test-timeout",
        "60",
        "--run-dir",
        str(run_dir),
    ]


def test_eval_grades_gold_empty_and_broken_patches_like_the_official_harness(tmp_path: Path, env_cache: Path) -> None:
    ids = ["acme__calc-1", "acme__calc-2", "acme__calc-3", "acme__calc-4"]
    repos, dataset, specs, patches = make_benchmark(tmp_path, ids)
    predictions = write_predictions(
        tmp_path / "preds.jsonl",
        {ids[0]: patches["gold"], ids[1]: "", ids[2]: patches["breaks_mean"], ids[3]: patches["unrelated"]},
    )
    run_dir = tmp_path / "eval"
    args = ["eval", "--dataset", str(dataset), "--predictions", str(predictions), "--run-dir", str(run_dir)]
    proc = cli(*args, *common(repos, specs, env_cache))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((run_dir / f"codemonkeys.{run_dir.name}.json").read_text())
    assert report["resolved_ids"] == [ids[0]]
    assert report["empty_patch_ids"] == [ids[1]]
    assert sorted(report["unresolved_ids"]) == [ids[2], ids[3]]
    assert report["error_ids"] == []
    assert "resolved 1/" in proc.stdout
    per_instance = json.loads((run_dir / "logs" / ids[2] / "report.json").read_text())[ids[2]]
    assert per_instance["tests_status"]["FAIL_TO_PASS"]["success"] == ["tests/test_stats.py::test_median_even"]
    assert per_instance["tests_status"]["PASS_TO_PASS"]["failure"] == ["tests/test_stats.py::test_mean"]
    gold_log = (run_dir / "logs" / ids[0] / "prediction.log").read_text()
    assert "PASSED tests/test_stats.py::test_median_even" in gold_log
    again = cli(*args, *common(repos, specs, env_cache))
    assert again.returncode == 0, again.stderr
    verdicts = (run_dir / "verdicts.jsonl").read_text().splitlines()
    assert len(verdicts) == 4, "a rerun evaluates nothing twice"


def test_run_then_eval_with_the_scripted_model(tmp_path: Path, env_cache: Path) -> None:
    ids = ["acme__calc-10", "acme__calc-11", "acme__calc-12"]
    repos, dataset, specs, _ = make_benchmark(tmp_path, ids)
    run_dir = tmp_path / "run"
    with FakeModelServer(oracle) as server:
        proc = cli(*solve_args(dataset, repos, specs, env_cache, server, run_dir), "--workers", "3")
    assert proc.returncode == 0, proc.stderr
    assert "3 finished, 0 failed" in proc.stderr
    predictions = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert sorted(p["instance_id"] for p in predictions) == ids
    assert all("mid - 1" in p["model_patch"] for p in predictions)
    environment = json.loads((run_dir / ids[0] / "environment.json").read_text())
    assert environment["kind"] == "local" and environment["smoke"]["ok"]
    eval_dir = tmp_path / "eval"
    graded = cli(
        "eval",
        "--dataset",
        str(dataset),
        "--predictions",
        str(run_dir / "predictions.jsonl"),
        "--candidates",
        str(run_dir),
        *common(repos, specs, env_cache),
        "--run-dir",
        str(eval_dir),
    )
    assert graded.returncode == 0, graded.stderr
    report = json.loads((eval_dir / f"codemonkeys.{eval_dir.name}.json").read_text())
    assert sorted(report["resolved_ids"]) == ids
    verdicts = [json.loads(line) for line in (eval_dir / "verdicts.jsonl").read_text().splitlines()]
    by_candidate = {(v["instance_id"], v["candidate"]): v["resolved"] for v in verdicts}
    for iid in ids:
        assert sorted(name for i, name in by_candidate if i == iid) == ["", "candidate-0", "candidate-1"]
        assert sorted(by_candidate[(iid, c)] for c in ("candidate-0", "candidate-1")) == [False, True]
    assert json.loads((eval_dir / "coverage.json").read_text()) == dict.fromkeys(ids, True)


def _usage_per_instance(run_dir: Path) -> Counter[str]:
    path = run_dir / "usage.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return Counter(json.loads(line)["instance"] for line in lines if line.strip())


def _stopped(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    """The stderr of a process told to stop; one that hangs fails with every thread's stack (SIGUSR1)."""
    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(2)
        proc.kill()
        pytest.fail(f"no exit {timeout:.0f} s after SIGINT; its stderr and stacks:\n{proc.communicate()[1][-20000:]}")


def test_a_killed_batch_resumes_without_redoing_an_instance(tmp_path: Path, env_cache: Path) -> None:
    ids = [f"acme__calc-{n}" for n in range(20, 26)]
    repos, dataset, specs, _ = make_benchmark(tmp_path, ids)
    run_dir = tmp_path / "run"
    with FakeModelServer(oracle, latency=0.05) as server:
        args = [*CLI, *solve_args(dataset, repos, specs, env_cache, server, run_dir), "--workers", "2"]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
        deadline = time.monotonic() + 300
        while (
            time.monotonic() < deadline
            and len(
                (run_dir / "predictions.jsonl").read_text().splitlines()
                if (run_dir / "predictions.jsonl").exists()
                else []
            )
            < 2
        ):
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        err = _stopped(proc)
        assert proc.returncode == 130, err
        assert "rerun the same command to resume" in err
        finished = {
            json.loads(line)["instance_id"] for line in (run_dir / "predictions.jsonl").read_text().splitlines()
        }
        assert 2 <= len(finished) < len(ids)
        before = _usage_per_instance(run_dir)
        resumed = cli(*solve_args(dataset, repos, specs, env_cache, server, run_dir), "--workers", "2")
    assert resumed.returncode == 0, resumed.stderr
    after = _usage_per_instance(run_dir)
    for iid in finished:
        assert after[iid] == before[iid], f"{iid} was finished before the kill but made model calls again"
    assert f"already done {len(finished)}" in resumed.stderr
    predictions = {json.loads(line)["instance_id"] for line in (run_dir / "predictions.jsonl").read_text().splitlines()}
    assert predictions == set(ids)
    leftovers = list(Path("/tmp").glob("codemonkeys-wt-*/owner.pid"))
    assert not [p for p in leftovers if p.read_text().strip() == str(proc.pid)], "the interrupted run left worktrees"


def test_a_local_ray_cluster_gives_the_same_predictions(tmp_path: Path, env_cache: Path) -> None:
    ids = ["acme__calc-30", "acme__calc-31", "acme__calc-32"]
    repos, dataset, specs, _ = make_benchmark(tmp_path, ids)
    with FakeModelServer(oracle) as server:
        local = cli(*solve_args(dataset, repos, specs, env_cache, server, tmp_path / "local"), "--workers", "3")
        ray = cli(
            *solve_args(dataset, repos, specs, env_cache, server, tmp_path / "ray"),
            "--workers",
            "3",
            "--executor",
            "ray",
        )
    assert local.returncode == 0, local.stderr
    assert ray.returncode == 0, ray.stderr

    def patches(run_dir: Path) -> dict[str, str]:
        lines = (run_dir / "predictions.jsonl").read_text().splitlines()
        return {json.loads(line)["instance_id"]: json.loads(line)["model_patch"] for line in lines}

    assert patches(tmp_path / "ray") == patches(tmp_path / "local")
    assert len(patches(tmp_path / "ray")) == 3
    usage = _usage_per_instance(tmp_path / "ray")
    assert set(usage) == set(ids), "every Ray task's calls land in the shared usage.jsonl"


def test_the_run_budget_holds_across_ray_workers(tmp_path: Path, env_cache: Path) -> None:
    """Three worker processes share one budget: each reads every worker's spend from usage.jsonl before a
    call, so together they stop near the budget, not at three times it."""
    ids = [f"acme__calc-{n}" for n in range(40, 46)]
    repos, dataset, specs, _ = make_benchmark(tmp_path, ids)
    config = tmp_path / "prices.toml"
    config.write_text("[models.prices]\n'openai/right' = [20.0, 20.0]\n'openai/wrong' = [20.0, 20.0]\n")
    run_dir = tmp_path / "run"
    budget = 0.5
    with FakeModelServer(oracle, latency=0.05) as server:
        args = solve_args(dataset, repos, specs, env_cache, server, run_dir)
        proc = cli(*args, "--workers", "3", "--executor", "ray", "--budget", str(budget), "--config", str(config))
    assert proc.returncode == 1, proc.stderr
    assert "the run's budget is spent" in proc.stderr
    costs = [json.loads(line)["cost_usd"] for line in (run_dir / "usage.jsonl").read_text().splitlines()]
    assert len({json.loads(line)["instance"] for line in (run_dir / "usage.jsonl").read_text().splitlines()}) > 1
    assert sum(costs) <= budget + 6 * max(costs), f"spent {sum(costs):.3f} of {budget}"
    assert sum(costs) >= budget * 0.5
