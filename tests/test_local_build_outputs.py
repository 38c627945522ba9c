"""The local sandbox keeps what `setup` built in the tree across every reset (real sdists: tests/build_outputs.py).

A reset goes back to the state after setup, not to the pristine commit: the setuptools_scm version file and
the in-place C extension stay, while whatever a run adds, edits or deletes is undone, and `diff()` shows only
the changes made since (never the build outputs).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from codemonkeys.config import SandboxSettings
from codemonkeys.sandbox.base import Outcome, SandboxSpec
from codemonkeys.sandbox.local import LocalProvider
from tests.build_outputs import (
    BUILDERS,
    BuildRepo,
    build_venv,
    cache_dir,
    check_outputs_survive_resets,
    check_patch_against_the_original,
    generated_present,
)

pytestmark = pytest.mark.slow

RESETS = 3
SCRIPT_TIMEOUT = 60.0


@pytest.fixture(scope="session")
def build_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cache_dir(tmp_path_factory)


@pytest.fixture(scope="session")
def venv_python(build_cache: Path) -> str:
    return str(build_venv(build_cache))


@pytest.fixture(scope="session", params=sorted(BUILDERS))
def build_repo(request: pytest.FixtureRequest, build_cache: Path) -> BuildRepo:
    return BUILDERS[request.param](build_cache)


def provider_for(repo: BuildRepo, python: str, setup: str | None) -> LocalProvider:
    settings = SandboxSettings(setup=setup, python=python, test_timeout=SCRIPT_TIMEOUT, setup_timeout=300)
    return LocalProvider(SandboxSpec(repo_path=str(repo.path), commit=repo.commit, settings=settings))


async def test_setup_outputs_survive_every_reset(build_repo: BuildRepo, venv_python: str, tmp_path: Path) -> None:
    repo = build_repo
    runs = tmp_path / "setup-runs"
    setup = f"echo ran >> {shlex.quote(str(runs))} && {repo.local_setup(venv_python)}"
    provider = provider_for(repo, venv_python, setup)
    try:
        for name in ("first", "second"):
            async with await provider.open(name) as sandbox:
                await check_outputs_survive_resets(sandbox, repo, RESETS, SCRIPT_TIMEOUT)
        assert runs.read_text() == "ran\n", "setup must run once per provider"
    finally:
        await provider.aclose()


async def test_a_reset_restores_a_deleted_build_output(build_repo: BuildRepo, venv_python: str) -> None:
    repo = build_repo
    provider = provider_for(repo, venv_python, repo.local_setup(venv_python))
    try:
        async with await provider.open("delete") as sandbox:
            for _ in range(2):
                gone = await sandbox.run(f"rm -f {repo.generated} && ! ls {repo.generated}", 30)
                assert gone.exit_code == 0, gone.output
                result = await sandbox.run_on("", repo.script, SCRIPT_TIMEOUT)
                assert result.exit_code == 0, result.output
                assert await generated_present(sandbox, repo)
    finally:
        await provider.aclose()


async def test_patches_against_the_original_commit_apply_and_diff_shows_only_them(
    build_repo: BuildRepo, venv_python: str
) -> None:
    repo = build_repo
    provider = provider_for(repo, venv_python, repo.local_setup(venv_python))
    try:
        async with await provider.open("patch") as sandbox:
            await check_patch_against_the_original(sandbox, repo, SCRIPT_TIMEOUT)
    finally:
        await provider.aclose()


async def test_without_setup_the_script_fails(build_repo: BuildRepo, venv_python: str) -> None:
    provider = provider_for(build_repo, venv_python, None)
    try:
        async with await provider.open("bare") as sandbox:
            for _ in range(2):
                result = await sandbox.run_on("", build_repo.script, SCRIPT_TIMEOUT)
                assert result.exit_code == 2, result.output
                assert result.outcome is Outcome.NOT_FIXED
                assert not await generated_present(sandbox, build_repo)
    finally:
        await provider.aclose()
