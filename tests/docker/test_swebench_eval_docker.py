"""`codemonkeys swebench envs | eval --env docker` as a user runs them, on the toy SWE-bench-shaped benchmark
(tests/swebench/shaped.py): an env image built from the offline base image with the spec's pinned packages
(pip from the package index), the official grading of each prediction in a container of it, and nothing of
ours left running afterwards.

The spec is made this module's own (an eval command exporting a session id; env images are tagged by a digest
of their spec), so its env image is really built here rather than found from an earlier session, and it is
removed at the end with the repo images built on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from codemonkeys.sandbox import engine, images
from codemonkeys.swebench import envs_docker
from codemonkeys.swebench.models import EnvManifest
from tests.e2e.toy_repo import OWN_TESTS
from tests.swebench.shaped import REPO, VERSION, _diff, make_benchmark, write_predictions

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "codemonkeys", "swebench"]
pytestmark = [pytest.mark.docker, pytest.mark.slow]

IDS = ["acme__calc-70", "acme__calc-71", "acme__calc-72"]


@pytest.fixture(scope="module")
def env_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One environment cache for the module: the env image's manifest and build logs."""
    return tmp_path_factory.mktemp("docker-env-cache")


@pytest.fixture(scope="module")
def bench(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient, env_cache: Path
) -> Iterator[tuple[Path, Path, Path, dict[str, str]]]:
    repos, dataset, specs, patches = make_benchmark(tmp_path_factory.mktemp("docker-eval"), IDS)
    recipes = json.loads(specs.read_text())
    recipes[REPO][VERSION]["eval_commands"] = [f"export CODEMONKEYS_TEST_SESSION={uuid.uuid4().hex[:12]}"]
    specs.write_text(json.dumps(recipes))
    yield repos, dataset, specs, patches
    for manifest in (env_cache / "docker").glob("acme__calc-0.1-*/manifest.json"):
        remove_with_children(docker_client, EnvManifest.model_validate_json(manifest.read_text()).location)


def remove_with_children(client: docker.DockerClient, tag: str) -> None:
    """The image `tag` and every image of ours built on it (repo images of the sandboxes)."""
    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        return
    ours = client.images.list(filters={"label": f"{engine.LABEL}=1"})
    children = [i for i in ours if i.id != image.id and any(h.get("Id") == image.id for h in i.history())]
    for child in children:
        client.images.remove(child.id, force=True)
    client.images.remove(image.id, force=True)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEMONKEYS_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def cli(*args: str, timeout: float = 900) -> tuple[subprocess.CompletedProcess[str], int]:
    """The finished command and the pid it ran as (our containers carry it as a label)."""
    with subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"timed out after {timeout}s:\n{err[-4000:]}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), proc.pid


def common(repos: Path, specs: Path, env_cache: Path) -> list[str]:
    return ["--env", "docker", "--repos", str(repos), "--specs", str(specs), "--set", f"swebench.env_cache={env_cache}"]


def left_behind(client: docker.DockerClient, pid: int, run_labels: list[str]) -> list[str]:
    """Our containers (engine labels) still there from the process `pid` or under any of `run_labels`."""
    mine = [c for c in engine.our_containers(client) if c.labels.get(engine.PID_LABEL) == str(pid)]
    for label in run_labels:
        mine += engine.our_containers(client, label)
    return sorted({f"{c.name} {c.labels.get(engine.RUN_LABEL)} {c.status}" for c in mine})


def build_logs(env_cache: Path) -> list[Path]:
    return sorted((env_cache / "docker").glob("acme__calc-0.1-*/build-*.log"))


def test_envs_builds_the_env_image_once_then_finds_it_ready(
    base_image: str,
    docker_client: docker.DockerClient,
    bench: tuple[Path, Path, Path, dict[str, str]],
    env_cache: Path,
    tmp_path: Path,
) -> None:
    repos, dataset, specs, _ = bench
    args = ["envs", "--dataset", str(dataset), *common(repos, specs, env_cache), "--run-dir", str(tmp_path / "envs")]
    first, pid = cli(*args)
    assert first.returncode == 0, first.stderr
    assert "1 of 1 environments ready" in first.stdout
    assert "acme__calc-0.1: ready at codemonkeys/env-" in first.stderr
    logs = build_logs(env_cache)
    assert len(logs) == 1, "one build for the three instances of one version"
    built = logs[0].read_text()
    assert "exists: reusing it" not in built
    assert "Successfully installed" in built and "pytest-8.3.3" in built, built[-3000:]
    manifest = EnvManifest.model_validate_json((logs[0].parent / "manifest.json").read_text())
    assert manifest.kind == "docker" and not manifest.official_image
    assert manifest.location.startswith("codemonkeys/env-acme__calc-0.1:")
    assert manifest.spec.source == "file" and manifest.python_wanted == "3.11"
    assert any(d.startswith("no official instance image") and base_image in d for d in manifest.deviations)
    assert {(c.requested, c.installed) for c in manifest.packages} >= {
        ("pytest==8.3.3", "pytest==8.3.3"),
        ("iniconfig==2.0.0", "iniconfig==2.0.0"),
    }
    assert manifest.smoke is not None and manifest.smoke.ok, manifest.smoke
    assert "tests/test_stats.py" in manifest.smoke.command
    assert images.image_exists(docker_client, manifest.location)
    label = docker_client.images.get(manifest.location).labels[envs_docker.MANIFEST_LABEL]
    assert EnvManifest.model_validate_json(label).spec == manifest.spec
    assert left_behind(docker_client, pid, [f"envsmoke-{manifest.key}"]) == []

    start = time.monotonic()
    again, pid = cli(*args)
    seconds = time.monotonic() - start
    assert again.returncode == 0, again.stderr
    assert "1 of 1 environments ready" in again.stdout
    assert "acme__calc-0.1: ready at codemonkeys/env-" in again.stderr
    assert "building environment" not in again.stderr
    assert build_logs(env_cache) == logs, "a cache hit builds nothing"
    assert EnvManifest.model_validate_json((logs[0].parent / "manifest.json").read_text()) == manifest
    assert seconds < 30, f"a cache hit took {seconds:.0f}s"
    assert left_behind(docker_client, pid, []) == []


def test_eval_in_docker_grades_gold_empty_and_a_broken_patch(
    base_image: str,
    docker_client: docker.DockerClient,
    bench: tuple[Path, Path, Path, dict[str, str]],
    env_cache: Path,
    tmp_path: Path,
) -> None:
    repos, dataset, specs, patches = bench
    gold, empty, broken = IDS
    predictions = write_predictions(
        tmp_path / "preds.jsonl", {gold: patches["gold"], empty: "", broken: patches["breaks_mean"]}
    )
    run_dir = tmp_path / "eval"
    args = ["eval", "--dataset", str(dataset), "--predictions", str(predictions), *common(repos, specs, env_cache)]
    proc, pid = cli(*args, "--run-dir", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    assert "resolved 1/3" in proc.stdout
    report = json.loads((run_dir / f"codemonkeys.{run_dir.name}.json").read_text())
    assert report["resolved_ids"] == [gold], proc.stderr
    assert report["empty_patch_ids"] == [empty]
    assert report["unresolved_ids"] == [broken]
    assert report["error_ids"] == []
    verdict = json.loads((run_dir / "logs" / broken / "report.json").read_text())[broken]
    assert verdict["tests_status"]["FAIL_TO_PASS"]["success"] == ["tests/test_stats.py::test_median_even"]
    assert verdict["tests_status"]["PASS_TO_PASS"]["failure"] == ["tests/test_stats.py::test_mean"]
    gold_log = (run_dir / "logs" / gold / "prediction.log").read_text()
    assert "PASSED tests/test_stats.py::test_median_even" in gold_log
    assert "rootdir: /repo" in gold_log and "Python 3.11" in gold_log, "the tests ran in a container"
    assert not (run_dir / "logs" / empty / "prediction.log").exists(), "an empty patch is never run"
    labels = [f"eval-{iid}" for iid in IDS] + ["envsmoke-acme__calc-0.1"]
    assert left_behind(docker_client, pid, labels) == []


def test_a_prediction_that_edits_the_test_file_is_graded_as_locally(
    base_image: str, bench: tuple[Path, Path, Path, dict[str, str]], env_cache: Path, tmp_path: Path
) -> None:
    """The official harness resets the test patch's files to the base commit before applying it, so what a
    prediction did to them does not count."""
    repos, dataset, specs, patches = bench
    extra = "\n\ndef test_median_single():\n    assert median([5]) == 5\n"
    patch = patches["gold"] + _diff(repos / "acme+calc", "tests/test_stats.py", OWN_TESTS, OWN_TESTS + extra)
    predictions = write_predictions(tmp_path / "preds.jsonl", {IDS[0]: patch})
    args = ["eval", "--dataset", str(dataset), "--predictions", str(predictions), "--instances", IDS[0]]
    proc, _ = cli(*args, *common(repos, specs, env_cache), "--run-dir", str(tmp_path / "eval"))
    assert proc.returncode == 0, proc.stderr
    log = (tmp_path / "eval" / "logs" / IDS[0] / "prediction.log").read_text()
    assert "reference is not a tree" not in log, log
    assert "resolved 1/1" in proc.stdout, log
