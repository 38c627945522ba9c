"""The factory picks the back end from the settings: auto → docker only when an engine answers and the image
exists; local otherwise; docker asked for without an engine → a clear error."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from codemonkeys.config import SandboxSettings
from codemonkeys.problem import Problem
from codemonkeys.sandbox import engine, factory, images
from codemonkeys.sandbox.base import SandboxError
from codemonkeys.sandbox.local import LocalProvider
from tests.conftest import docker_engine_or_skip


@pytest.fixture
def problem(tmp_path: Path) -> Problem:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@e"
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
    return Problem(instance_id="calc-1", repo_path=str(repo), commit=sha.stdout.strip(), issue="add subtracts\n")


@pytest.fixture
def no_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Points the docker SDK at a socket nobody listens on: a machine without docker."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")


@pytest.fixture
def engine_with_base_image() -> None:
    client = docker_engine_or_skip()
    images.ensure_image(client, images.BASE_IMAGE)
    client.close()


async def test_spec_carries_the_sandbox_settings(problem: Problem) -> None:
    settings = SandboxSettings(
        kind="local",
        sandbox_network=True,
        output_limit=1234,
        python="python3",
        image="img:1",
        setup="echo built > made.txt",
        workdir="/testbed",
        command_prefix="source x &&",
        max_containers=3,
    )
    provider = await factory.make_provider(settings, problem, "run-7")
    assert isinstance(provider, LocalProvider)
    spec = provider.spec
    assert (spec.repo_path, spec.commit, spec.run_label) == (problem.repo_path, problem.commit, "run-7")
    box = spec.settings
    assert box.sandbox_network and box.output_limit == 1234 and box.python == "python3"
    assert (box.image, box.setup, box.workdir, box.command_prefix) == (
        "img:1",
        "echo built > made.txt",
        "/testbed",
        "source x &&",
    )
    assert box.max_containers == 3
    sandbox = await provider.open("t")
    assert (await sandbox.run("cat made.txt", 10)).output.strip() == "built", "setup ran before the first sandbox"
    await sandbox.close()
    await provider.aclose()


async def test_a_failing_setup_is_a_clear_error_and_leaves_no_worktree(problem: Problem) -> None:
    settings = SandboxSettings(kind="local", setup="echo compiling; echo 'no compiler' >&2; exit 3")
    with pytest.raises(SandboxError, match=r"the setup command failed \(exit code 3\): compiling\s+no compiler"):
        await factory.make_provider(settings, problem, "run-8")
    listing = subprocess.run(
        ["git", "worktree", "list"], cwd=problem.repo_path, capture_output=True, text=True, check=True
    ).stdout
    assert len(listing.strip().splitlines()) == 1, listing


async def test_local_when_asked(problem: Problem) -> None:
    provider = await factory.make_provider(SandboxSettings(kind="local"), problem, "r")
    assert isinstance(provider, LocalProvider)
    await provider.aclose()


async def test_auto_without_an_engine_is_local_and_says_why(
    problem: Problem, no_engine: None, caplog: pytest.LogCaptureFixture
) -> None:
    assert factory.docker_available() is False
    with caplog.at_level("INFO", logger="codemonkeys.sandbox.factory"):
        provider = await factory.make_provider(SandboxSettings(kind="auto"), problem, "r")
    assert isinstance(provider, LocalProvider)
    assert "no docker engine answers" in caplog.text
    await provider.aclose()


async def test_docker_without_an_engine_is_a_clear_error(problem: Problem, no_engine: None) -> None:
    with pytest.raises(SandboxError, match="no docker engine answers"):
        await factory.make_provider(SandboxSettings(kind="docker"), problem, "r")


@pytest.mark.docker
async def test_auto_picks_docker_when_the_image_exists(problem: Problem, engine_with_base_image: None) -> None:
    from codemonkeys.sandbox.docker import DockerProvider

    assert factory.docker_available() is True
    settings = SandboxSettings(kind="auto", docker_cpus=1.0, docker_memory="512m", docker_pids=100)
    provider = await factory.make_provider(settings, problem, "factory-test")
    try:
        assert isinstance(provider, DockerProvider)
        assert provider.description.startswith("docker (image codemonkeys/repo-repo:")
        limits = provider.spec.settings
        assert limits.docker_cpus == 1.0 and limits.docker_memory == "512m" and limits.docker_pids == 100
        async with await provider.open("f") as sandbox:
            assert (await sandbox.run("cat calc.py", timeout=10)).output.endswith("return a - b\n")
    finally:
        await provider.aclose()
        client = engine.connect()
        client.images.remove(provider.image, force=True)


@pytest.mark.docker
async def test_auto_is_local_when_the_image_is_missing(
    problem: Problem, engine_with_base_image: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="codemonkeys.sandbox.factory"):
        provider = await factory.make_provider(SandboxSettings(image="codemonkeys-test/absent:1"), problem, "r")
    assert isinstance(provider, LocalProvider)
    assert "codemonkeys-test/absent:1 is not present" in caplog.text
    await provider.aclose()


@pytest.mark.docker
async def test_docker_with_an_image_that_cannot_be_had_is_a_clear_error(
    problem: Problem, engine_with_base_image: None
) -> None:
    settings = SandboxSettings(kind="docker", image="codemonkeys-test/absent:1", workdir="/testbed")
    with pytest.raises(SandboxError, match="could not be pulled"):
        await factory.make_provider(settings, problem, "r")
