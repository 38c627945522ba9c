"""`codemonkeys solve --sandbox docker` end to end: a real subprocess, the toy repo, the scripted model over HTTP,
every test script run in warm containers; afterwards no container of the run is left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codemonkeys.sandbox import engine
from tests.docker.conftest import labelled
from tests.e2e.oracle import oracle
from tests.e2e.toy_repo import ISSUE, hidden_tests_pass, make_toy_repo
from tests.fake_model_server import FakeModelServer

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_solve_with_docker_sandboxes(docker_client, base_image, tmp_path: Path) -> None:
    repo = make_toy_repo(tmp_path)
    issue = tmp_path / "issue.md"
    issue.write_text(ISSUE)
    run_dir = tmp_path / "docker-run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEMONKEYS_")}
    env |= {"PYTHONPATH": str(ROOT), "CODEMONKEYS_MAX_CONTAINERS": "3"}
    with FakeModelServer(oracle) as server:
        args = [sys.executable, "-m", "codemonkeys", "solve", "--repo", str(repo), "--issue", str(issue)]
        args += ["--api-base", server.url, "--model", "openai/right", "--model", "openai/wrong"]
        args += ["--sandbox", "docker", "--samples", "3", "--iterations", "4", "--rankings", "1"]
        args += ["--test-timeout", "30", "--run-dir", str(run_dir), "--out", str(tmp_path / "fix.patch")]
        proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    graded = hidden_tests_pass(repo, (tmp_path / "fix.patch").read_text(), tmp_path, sys.executable)
    assert graded.returncode == 0, graded.stdout
    result_path = next(run_dir.glob("*/result.json"))
    result = json.loads(result_path.read_text())
    assert result["sandbox"].startswith("docker (image codemonkeys/repo-calc-repo:")
    assert result["sandbox"].endswith("network off)")
    assert labelled(docker_client, run_dir.name) == []
    image = result["sandbox"].split("image ", 1)[1].split(",", 1)[0]
    assert docker_client.images.get(image).labels[engine.KIND_LABEL] == "repo"
    docker_client.images.remove(image, force=True)
