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
from codemonkeys.sandbox.base import Outcome, SandboxSpec
from codemonkeys.sandbox.docker import DockerProvider
from tests.build_outputs import (
    BUILDERS,
    BuildRepo,
    cache_dir,
    check_outputs_survive_resets,
    check_patch_against_the_original,
    generated_present,
)
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


def test_the_base_image_is_built_from_the_current_recipe(docker_client: docker.DockerClient, base_image: str) -> None:
    """An image from an older make-rootfs.sh (no compiler) is rebuilt, not used: its label is the recipe's hash."""
    assert images.base_is_current(docker_client, base_image)
    labels = docker_client.images.get(base_image).labels
    assert labels[images.RECIPE_LABEL] == images.base_recipe(
        images.base_route(docker_client, base_image) or "debootstrap"
    )


async def test_setup_outputs_survive_every_reset(make_provider, build_repo: BuildRepo) -> None:
    repo = build_repo
    provider = make_provider(repo.docker_setup)
    for name in ("first", "second"):
        async with await provider.open(name) as sandbox:
            where = await sandbox.run("command -v python", 30)
            assert where.output.strip() == "/opt/venv/bin/python"
            await check_outputs_survive_resets(sandbox, repo, RESETS, SCRIPT_TIMEOUT)


async def test_patches_against_the_original_commit_apply_and_diff_shows_only_them(
    make_provider, build_repo: BuildRepo
) -> None:
    repo = build_repo
    async with await make_provider(repo.docker_setup).open("patch") as sandbox:
        await check_patch_against_the_original(sandbox, repo, SCRIPT_TIMEOUT)


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
