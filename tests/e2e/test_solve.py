"""`codemonkeys solve` as a user runs it: a real subprocess, a real git repo, real HTTP to the fake model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.oracle import oracle
from tests.e2e.toy_repo import ISSUE, hidden_tests_pass, make_toy_repo
from tests.fake_model_server import FakeModelServer

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "codemonkeys"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEMONKEYS_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def solve_args(repo: Path, tmp: Path, server: FakeModelServer, *extra: str) -> list[str]:
    issue = tmp / "issue.md"
    issue.write_text(ISSUE)
    return [
        *CLI,
        "solve",
        "--repo",
        str(repo),
        "--issue",
        str(issue),
        "--api-base",
        server.url,
        "--sandbox",
        "local",
        "--iterations",
        "4",
        "--rankings",
        "2",
        "--test-timeout",
        "30",
        "--out",
        str(tmp / "fix.patch"),
        *extra,
    ]


def run(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=300, **kw)  # type: ignore[call-overload]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_toy_repo(tmp_path)


def test_full_solve_makes_the_repos_tests_pass(repo: Path, tmp_path: Path) -> None:
    models = ["--model", "openai/right", "--model", "openai/right", "--model", "openai/wrong"]
    with FakeModelServer(oracle) as server:
        args = solve_args(
            repo, tmp_path, server, *models, "--samples", "3", "--top-k", "2", "--run-dir", str(tmp_path / "run")
        )
        proc = run(args)
    assert proc.returncode == 0, proc.stderr
    patch = (tmp_path / "fix.patch").read_text()
    graded = hidden_tests_pass(repo, patch, tmp_path, sys.executable)
    assert graded.returncode == 0, graded.stdout
    assert "3 passed" in graded.stdout
    result = json.loads(
        (
            tmp_path
            / "run"
            / next(p.name for p in (tmp_path / "run").iterdir() if p.is_dir() and not p.name.startswith("_"))
            / "result.json"
        ).read_text()
    )
    assert result["status"] == "patched" and result["candidates"] == 2
    assert sorted(result["votes"].values()) == [1, 2]
    assert {"relevance", "ranking", "testing", "editing", "selection"} <= set(result["usage"])
    assert server.calls[-1].stage == "selection"
    assert "patch chosen" in proc.stderr and "model usage" in proc.stderr
    assert result["unpriced_models"] == ["openai/right", "openai/wrong"]
    report = next((tmp_path / "run").glob("*/report.html")).read_text()
    assert "patched" in report and "median() is wrong" in report
    assert "mid - 1" in report and 'id="vote-matrix"' in report
    assert report.count("<details><summary>trajectory ") == 3
    assert "no price is known for openai/right, openai/wrong" in " ".join(proc.stderr.split())
    assert "set them under [prices] in the --config file" in " ".join(proc.stderr.split())
    usage = [json.loads(line) for line in (tmp_path / "run" / "usage.jsonl").read_text().splitlines()]
    assert len(usage) == len(server.calls)
    prediction = json.loads((tmp_path / "run" / "predictions.jsonl").read_text())
    assert prediction["model_patch"] == patch


def test_voting_picks_the_right_fix_without_selection(repo: Path, tmp_path: Path) -> None:
    with FakeModelServer(oracle) as server:
        args = solve_args(
            repo,
            tmp_path,
            server,
            "--model",
            "openai/right",
            "--model",
            "openai/wrong",
            "--samples",
            "3",
            "--top-k",
            "1",
        )
        proc = run(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "mid - 1" in (tmp_path / "fix.patch").read_text()
    assert "selection" not in {c.stage for c in server.calls}
    assert any(p.is_dir() for p in (tmp_path / "runs").iterdir()), "default run dir is runs/<instance-id>"


def test_malformed_answers_are_asked_again(repo: Path, tmp_path: Path) -> None:
    """The first answer of every conversation is garbage; format fixes and retries still reach the fix."""
    seen: set[str] = set()

    def sloppy(messages: list[dict], model: str) -> str:
        key = json.dumps(messages[:2])
        if key not in seen:
            seen.add(key)
            return "Let me think about this... I am not sure what format you want."
        return oracle(messages, model)

    with FakeModelServer(sloppy) as server:
        proc = run(
            solve_args(
                repo, tmp_path, server, "--model", "openai/right", "--samples", "2", "--run-dir", str(tmp_path / "r")
            )
        )
    assert proc.returncode == 0, proc.stderr
    assert hidden_tests_pass(repo, (tmp_path / "fix.patch").read_text(), tmp_path, sys.executable).returncode == 0


def test_flaky_provider_with_429_and_500_a_third_of_the_time(repo: Path, tmp_path: Path) -> None:
    with FakeModelServer(oracle, fault_rate=0.33, faults=("429", "500"), seed=7) as server:
        args = solve_args(
            repo, tmp_path, server, "--model", "openai/right", "--samples", "2", "--run-dir", str(tmp_path / "r")
        )
        env_args = [*args]
        proc = subprocess.run(
            env_args,
            capture_output=True,
            text=True,
            env={**_env(), "CODEMONKEYS_RETRY_BASE_DELAY": "0.05"},
            timeout=300,
        )
    assert proc.returncode == 0, proc.stderr
    assert server.faulted > 0
    usage = [json.loads(line) for line in (tmp_path / "r" / "usage.jsonl").read_text().splitlines()]
    assert sum(u["attempts"] for u in usage) == server.requests
    assert any(u["attempts"] > 1 for u in usage)


def test_killed_run_resumes_without_repeating_finished_calls(repo: Path, tmp_path: Path) -> None:
    common = ["--model", "openai/right", "--model", "openai/wrong", "--samples", "4", "--top-k", "2"]
    with FakeModelServer(oracle, latency=0.05) as reference:
        assert run(solve_args(repo, tmp_path, reference, *common, "--run-dir", str(tmp_path / "ref"))).returncode == 0
    full = len(reference.calls)

    with FakeModelServer(oracle, latency=0.05) as server:
        args = solve_args(repo, tmp_path, server, *common, "--run-dir", str(tmp_path / "run"))
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
        deadline = time.monotonic() + 120
        while len(server.calls) < full // 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        first = server.requests
        assert 0 < first < full, "the kill must land mid-way"
        completed = len((tmp_path / "run" / "usage.jsonl").read_text().splitlines())
        resumed = run(args)
        second = server.requests - first
    assert resumed.returncode == 0, resumed.stderr
    assert "mid - 1" in (tmp_path / "fix.patch").read_text()
    # Every call the killed run completed is replayed, not asked again: the resumed run asks only for the rest
    # (one more at most: a call killed between its usage record and its transcript record).
    assert completed > 0
    assert second <= full - completed + 1


def test_budget_exhaustion_stops_cleanly_and_resumes(repo: Path, tmp_path: Path) -> None:
    config = tmp_path / "cm.toml"
    config.write_text('[prices]\n"openai/right" = [100.0, 100.0]\n')
    with FakeModelServer(oracle) as server:
        args = solve_args(
            repo, tmp_path, server, "--model", "openai/right", "--samples", "2", "--run-dir", str(tmp_path / "r")
        )
        proc = run([*args, "--config", str(config), "--budget", "0.5"])
        spent_calls = server.requests
        assert proc.returncode == 1, proc.stderr
        assert "budget" in proc.stderr
        usage = [json.loads(line) for line in (tmp_path / "r" / "usage.jsonl").read_text().splitlines()]
        assert usage, "some calls fit in the budget"
        # In-flight input costs are reserved before each call: only output tokens may overshoot.
        assert sum(u["cost_usd"] for u in usage) < 0.5 * 1.1
        proc = run([*args, "--config", str(config), "--budget", "1000"])
    assert proc.returncode == 0, proc.stderr
    assert server.requests > spent_calls


def _cli(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return run([*CLI, *args], **kw)


def test_bad_input_gets_one_clear_line_and_exit_2(repo: Path, tmp_path: Path) -> None:
    issue = tmp_path / "issue.md"
    issue.write_text(ISSUE)
    empty = tmp_path / "empty.md"
    empty.write_text("  \n")
    cases = {
        "repository not found": ["--repo", str(tmp_path / "nope"), "--issue", str(issue)],
        "not a git repository": ["--repo", str(tmp_path), "--issue", str(issue)],
        "commit not found": ["--repo", str(repo), "--commit", "deadbeef", "--issue", str(issue)],
        "issue text is empty": ["--repo", str(repo), "--issue", str(empty)],
        "issue file not found": ["--repo", str(repo), "--issue", str(tmp_path / "missing.md")],
        "invalid setting generation.samples": ["--repo", str(repo), "--issue", str(issue), "--samples", "0"],
        "invalid setting sandbox.docker_pids": ["--repo", str(repo), "--issue", str(issue), "--set", "docker_pids=1"],
        "unknown settings group 'sandbx'": ["--repo", str(repo), "--issue", str(issue), "--set", "sandbx.kind=local"],
    }
    for expected, args in cases.items():
        proc = _cli("solve", *args, "--api-base", "http://127.0.0.1:9/v1", cwd=tmp_path)
        assert proc.returncode == 2, (expected, proc.stderr)
        assert expected in proc.stderr, (expected, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").glob("*/result.json"))


def test_missing_provider_key_is_reported_before_any_work(repo: Path, tmp_path: Path) -> None:
    issue = tmp_path / "issue.md"
    issue.write_text(ISSUE)
    env = {k: v for k, v in _env().items() if "ANTHROPIC" not in k}
    proc = subprocess.run(
        [*CLI, "solve", "--repo", str(repo), "--issue", str(issue), "--model", "anthropic/claude-sonnet-4-5"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "ANTHROPIC_API_KEY" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_issue_from_stdin(repo: Path, tmp_path: Path) -> None:
    with FakeModelServer(oracle) as server:
        args = solve_args(
            repo, tmp_path, server, "--model", "openai/right", "--samples", "1", "--run-dir", str(tmp_path / "r")
        )
        args[args.index("--issue") + 1] = "-"
        proc = run(args, input=ISSUE)
    assert proc.returncode == 0, proc.stderr


def test_help_answers_without_importing_litellm() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from codemonkeys.cli import app; print('litellm' in sys.modules)"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert proc.stdout.strip() == "False", proc.stderr
    helped = _cli("solve", "--help")
    assert helped.returncode == 0
    for flag in ("--repo", "--issue", "--samples", "--budget", "--sandbox", "--run-dir"):
        assert flag in helped.stdout


def test_provider_outage_loses_nothing_and_a_rerun_finishes(repo: Path, tmp_path: Path) -> None:
    env = {**_env(), "CODEMONKEYS_MAX_RETRIES": "1", "CODEMONKEYS_RETRY_BASE_DELAY": "0.01"}
    common = ["--model", "openai/right", "--samples", "2", "--run-dir", str(tmp_path / "r")]
    with FakeModelServer(oracle, fault_rate=1.0, faults=("503",)) as down:
        proc = subprocess.run(
            solve_args(repo, tmp_path, down, *common), capture_output=True, text=True, env=env, timeout=300
        )
    assert proc.returncode == 1
    assert "the relevance stage stopped: the model provider failed" in " ".join(proc.stderr.split())
    assert "rerun the same command to resume it" in " ".join(proc.stderr.split())
    result = json.loads(next((tmp_path / "r").glob("*/result.json")).read_text())
    assert result["status"] == "model_error" and "could not be judged" in result["error"]
    assert result["stopped_stage"] == "relevance"
    assert not list((tmp_path / "r").glob("*/context/ranking.json"))

    with FakeModelServer(oracle) as up:
        proc = subprocess.run(
            solve_args(repo, tmp_path, up, *common), capture_output=True, text=True, env=env, timeout=300
        )
    assert proc.returncode == 0, proc.stderr
    assert "mid - 1" in (tmp_path / "fix.patch").read_text()
