"""Finding and cloning benchmark repositories, with real git: clones, bare mirrors, local `file://` remotes."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from codemonkeys.config import SandboxSettings
from codemonkeys.sandbox.base import SandboxSpec
from codemonkeys.sandbox.local import LocalProvider
from codemonkeys.swebench.repos import RepoError, repo_checkout
from tests.docker.conftest import GIT_ENV

MISSING = "0123456789abcdef0123456789abcdef01234567"


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def make_upstream(path: Path) -> tuple[Path, str]:
    """A repository with two commits; returns it and its first commit."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "one")
    first = git(path, "rev-parse", "HEAD")
    (path / "README.md").write_text("two\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "two")
    return path, first


async def sandbox_reads(repo: Path, commit: str) -> str:
    """What a local sandbox on `repo` at `commit` sees: the proof a path is usable by the pipeline."""
    spec = SandboxSpec(repo_path=str(repo), commit=commit, settings=SandboxSettings(kind="local"))
    provider = LocalProvider(spec)
    try:
        sandbox = await provider.open("probe")
        try:
            return await sandbox.read_file("calc.py") or ""
        finally:
            await sandbox.close()
    finally:
        await provider.aclose()


@pytest.mark.parametrize("layout", ["owner/name", "owner+name"])
def test_a_clone_is_found_under_either_name(tmp_path: Path, layout: str) -> None:
    repos = tmp_path / "repos"
    repo, first = make_upstream(repos / layout)
    found = repo_checkout("owner/name", first, repos, tmp_path / "clones")
    assert found == repo
    assert not (tmp_path / "clones" / "owner+name").exists()
    assert "a - b" in asyncio.run(sandbox_reads(found, first))


def test_a_bare_mirror_is_used_through_a_shared_work_tree(tmp_path: Path) -> None:
    upstream, first = make_upstream(tmp_path / "upstream")
    repos = tmp_path / "repos"
    git(tmp_path, "clone", "-q", "--mirror", str(upstream), str(repos / "owner+name.git"))
    found = repo_checkout("owner/name", first, repos, tmp_path / "clones")
    assert found == tmp_path / "clones" / "shared" / "owner+name"
    assert (found / ".git").is_dir() and not (found / "calc.py").exists()
    alternates = (found / ".git" / "objects" / "info" / "alternates").read_text()
    assert str((repos / "owner+name.git").resolve()) in alternates
    assert "a - b" in asyncio.run(sandbox_reads(found, first))
    # The docker back end exports trees with read-tree/checkout-index into a directory of its own.
    assert git(found, "show", f"{first}:calc.py").startswith("def add")
    assert repo_checkout("owner/name", first, repos, tmp_path / "clones") == found

    # A commit that reaches upstream later is fetched into the mirror, and the shared clone sees it.
    (upstream / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    git(upstream, "commit", "-q", "-am", "fix")
    fixed = git(upstream, "rev-parse", "HEAD")
    assert repo_checkout("owner/name", fixed, repos, tmp_path / "clones") == found
    assert "a + b" in asyncio.run(sandbox_reads(found, fixed))


def test_a_missing_commit_is_fetched_once_then_named(tmp_path: Path) -> None:
    upstream, _ = make_upstream(tmp_path / "upstream")
    repos = tmp_path / "repos"
    git(tmp_path, "clone", "-q", str(upstream), str(repos / "owner" / "name"))
    (upstream / "new.py").write_text("x = 1\n")
    git(upstream, "add", "-A")
    git(upstream, "commit", "-q", "-m", "later")
    later = git(upstream, "rev-parse", "HEAD")

    assert repo_checkout("owner/name", later, repos, tmp_path / "clones") == repos / "owner" / "name"
    with pytest.raises(RepoError) as caught:
        repo_checkout("owner/name", MISSING, repos, tmp_path / "clones")
    assert "owner/name" in str(caught.value) and MISSING in str(caught.value)


def test_a_repo_without_a_remote_gives_a_named_error(tmp_path: Path) -> None:
    make_upstream(tmp_path / "repos" / "owner+name")
    with pytest.raises(RepoError, match=rf"{MISSING} of owner/name"):
        repo_checkout("owner/name", MISSING, tmp_path / "repos", tmp_path / "clones")
    with pytest.raises(RepoError, match="owner/name"):
        repo_checkout("not-a-repo-name", MISSING, tmp_path / "repos", tmp_path / "clones")


def test_a_missing_repo_is_cloned_once_by_concurrent_threads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _, first = make_upstream(tmp_path / "mirror" / "owner" / "name")
    repos = tmp_path / "repos"
    url_base = (tmp_path / "mirror").as_uri()
    caplog.set_level(logging.INFO, logger="codemonkeys.swebench.repos")
    with ThreadPoolExecutor(8) as pool:
        paths = set(
            pool.map(lambda _: repo_checkout("owner/name", first, repos, tmp_path / "c", url_base=url_base), range(8))
        )
    assert paths == {repos / "owner+name"}
    assert sum("cloning" in r.getMessage() for r in caplog.records) == 1
    assert git(repos / "owner+name", "rev-parse", f"{first}^{{commit}}") == first
    assert sorted(p.name for p in repos.iterdir()) == ["owner+name"]


def test_a_missing_repo_is_cloned_once_by_concurrent_processes(tmp_path: Path) -> None:
    _, first = make_upstream(tmp_path / "mirror" / "owner" / "name")
    code = textwrap.dedent(
        f"""
        import logging, sys
        from pathlib import Path
        from codemonkeys.swebench.repos import repo_checkout
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        print(repo_checkout("owner/name", {first!r}, None, Path({str(tmp_path / "clones")!r}),
                            url_base={(tmp_path / "mirror").as_uri()!r}))
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    assert {out.strip() for out, _ in outputs} == {str(tmp_path / "clones" / "owner+name")}
    assert sum(err.count("cloning") for _, err in outputs) == 1
