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
from codemonkeys.sandbox.base import Outcome, Sandbox, SandboxSpec
from codemonkeys.sandbox.local import LocalProvider
from tests.build_outputs import BUILDERS, PATCH_LINE, BuildRepo, build_venv, cache_dir

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


async def generated_present(sandbox: Sandbox, repo: BuildRepo) -> bool:
    return (await sandbox.run(f"ls {repo.generated}", 30)).exit_code == 0


async def test_setup_outputs_survive_every_reset(build_repo: BuildRepo, venv_python: str, tmp_path: Path) -> None:
    repo = build_repo
    runs = tmp_path / "setup-runs"
    setup = f"echo ran >> {shlex.quote(str(runs))} && {repo.local_setup(venv_python)}"
    original = (repo.path / repo.source).read_text()
    provider = provider_for(repo, venv_python, setup)
    try:
        for name in ("first", "second"):
            async with await provider.open(name) as sandbox:
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
