"""The docker sandbox keeps what `setup` built in the tree across every reset (real sdists: tests/build_outputs.py).

The repo image holds the setup's outputs (the setuptools_scm version file, the C extension built in place by
the base image's compiler); the runner keeps every file present when the container started, removes what
runs add and undoes their edits, and leaves the build outputs out of `diff()`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import docker
import pytest

from codemonkeys.config import SandboxSettings
from codemonkeys.sandbox import images
from codemonkeys.sandbox.base import Outcome, Sandbox, SandboxSpec
from codemonkeys.sandbox.docker import DockerProvider
from tests.build_outputs import BUILDERS, PATCH_LINE, BuildRepo, cache_dir
from tests.docker.conftest import labelled

pytestmark = [pytest.mark.docker, pytest.mark.slow]

RESETS = 3
SCRIPT_TIMEOUT = 60.0


@pytest.fixture(scope="session")
def build_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cache_dir(tmp_path_factory)


@pytest.fixture(scope="session", params=sorted(BUILDERS))
def build_repo(request: pytest.FixtureRequest, build_cache: Path) -> BuildRepo:
    return BUILDERS[request.param](build_cache)


@pytest.fixture
async def make_provider(
    docker_client: docker.DockerClient, base_image: str, build_repo: BuildRepo, run_label: str
) -> AsyncIterator[Callable[..., DockerProvider]]:
    """`make_provider(setup)`: a provider on the build repo (its repo image is built once per setup)."""
    providers: list[DockerProvider] = []

    def make(setup: str | None) -> DockerProvider:
        settings = SandboxSettings(setup=setup, max_containers=2, test_timeout=SCRIPT_TIMEOUT)
        spec = SandboxSpec(
            repo_path=str(build_repo.path), commit=build_repo.commit, run_label=run_label, settings=settings
        )
        provider = DockerProvider(spec, client=docker_client, base_image=base_image)
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        await provider.aclose()
    assert labelled(docker_client, run_label) == []


async def generated_present(sandbox: Sandbox, repo: BuildRepo) -> bool:
    return (await sandbox.run(f"ls {repo.generated}", 30)).exit_code == 0


def test_the_base_image_is_built_from_the_current_recipe(docker_client: docker.DockerClient, base_image: str) -> None:
    """An image from an older make-rootfs.sh (no compiler) is rebuilt, not used: its label is the recipe's hash."""
    assert images.base_is_current(docker_client, base_image)
    labels = docker_client.images.get(base_image).labels
    assert labels[images.RECIPE_LABEL] == images.base_recipe()


async def test_setup_outputs_survive_every_reset(make_provider, build_repo: BuildRepo) -> None:
    repo = build_repo
    original = (repo.path / repo.source).read_text()
    provider = make_provider(repo.docker_setup)
    for name in ("first", "second"):
        async with await provider.open(name) as sandbox:
            where = await sandbox.run("command -v python", 30)
            assert where.output.strip() == "/opt/venv/bin/python"
            first = await sandbox.run_on("", repo.script, SCRIPT_TIMEOUT)
            assert first.exit_code == 0, first.output
            assert first.outcome is Outcome.FIXED
            assert await generated_present(sandbox, repo)
            assert await sandbox.diff() == ""
            for attempt in range(RESETS):
                dirty = await sandbox.run(
                    f"echo stray > stray-{attempt}.txt && mkdir -p junk/deep && echo x > junk/deep/file"
                    f" && echo 'raise SystemExit(3)' >> {repo.source}",
                    30,
                )
                assert dirty.exit_code == 0, dirty.output
                assert "stray" in await sandbox.diff()
                result = await sandbox.run_on("", repo.script, SCRIPT_TIMEOUT)
                assert result.exit_code == 0, result.output
                assert await sandbox.read_file(f"stray-{attempt}.txt") is None
                assert await sandbox.read_file("junk/deep/file") is None
                assert (await sandbox.run("test -e junk", 30)).exit_code != 0
                assert await sandbox.read_file(repo.source) == original
                assert await generated_present(sandbox, repo)
                assert await sandbox.diff() == ""


async def test_patches_against_the_original_commit_apply_and_diff_shows_only_them(
    make_provider, build_repo: BuildRepo
) -> None:
    repo = build_repo
    async with await make_provider(repo.docker_setup).open("patch") as sandbox:
        patched = await sandbox.run_on(repo.patch, repo.script, SCRIPT_TIMEOUT)
        assert patched.outcome is Outcome.FIXED, patched.output
        assert (await sandbox.read_file(repo.source) or "").startswith(PATCH_LINE + "\n")
        assert await generated_present(sandbox, repo)
        await sandbox.reset()
        assert await sandbox.diff() == ""
        await sandbox.apply_patch(repo.patch)
        diff = await sandbox.diff()
        assert f"+{PATCH_LINE}" in diff
        files = [line for line in diff.splitlines() if line.startswith("diff --git ")]
        assert files == [f"diff --git a/{repo.source} b/{repo.source}"], diff
        again = await sandbox.run_on(repo.patch, repo.script, SCRIPT_TIMEOUT)
        assert again.exit_code == 0, again.output
        assert await sandbox.diff() == diff
        clean = await sandbox.run_on("", repo.script, SCRIPT_TIMEOUT)
        assert clean.exit_code == 0, clean.output
        assert await sandbox.diff() == ""


async def test_a_reset_restores_a_deleted_build_output(make_provider, build_repo: BuildRepo) -> None:
    repo = build_repo
    async with await make_provider(repo.docker_setup).open("delete") as sandbox:
        gone = await sandbox.run(f"rm -f {repo.generated} && ! ls {repo.generated}", 30)
        assert gone.exit_code == 0, gone.output
        result = await sandbox.run_on("", repo.script, SCRIPT_TIMEOUT)
        assert result.exit_code == 0, result.output


async def test_without_setup_the_script_fails(make_provider, build_repo: BuildRepo) -> None:
    async with await make_provider(None).open("bare") as sandbox:
        for _ in range(2):
            result = await sandbox.run_on("", build_repo.script, SCRIPT_TIMEOUT)
            assert result.exit_code == 2, result.output
            assert result.outcome is Outcome.NOT_FIXED
            assert not await generated_present(sandbox, build_repo)
