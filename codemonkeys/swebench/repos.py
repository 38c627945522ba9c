"""Benchmark repositories: found among the user's clones or mirrors, else cloned once, shared by every worker.

A directory of repositories may name them `owner/name` or `owner+name` and hold clones or bare mirrors.
Sandboxes need a repository with a work tree (the local one adds worktrees to it, the docker one checks
files out of it), so a bare mirror is used through a `--shared` clone of it: no objects copied, made once.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

GITHUB = "https://github.com"
_REPO = re.compile(r"^[\w.-]+/[\w.-]+$")
# Variables that would point git at another repository than the one it runs in.
_GIT_LOCATION = frozenset(
    {"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR", "GIT_NAMESPACE"}
)


class RepoError(ValueError):
    """A repository or commit that cannot be had: the message names both."""


_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


@contextlib.contextmanager
def path_lock(path: Path) -> Iterator[None]:
    """Held by one thread of one process at a time: threads wait on a lock, processes on `flock` of `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _thread_locks_guard:
        lock = _thread_locks.setdefault(str(path.resolve()), threading.Lock())
    with lock, open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION}
    env["GIT_TERMINAL_PROMPT"] = "0"
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, errors="replace", stdin=subprocess.DEVNULL
    )


def _is_checkout(path: Path) -> bool:
    return (path / ".git").exists()


def _is_bare(path: Path) -> bool:
    """Checked on the directory itself, so a plain folder inside some other repository is not taken for one."""
    if not ((path / "HEAD").is_file() and (path / "objects").is_dir()):
        return False
    out = _git("rev-parse", "--is-bare-repository", cwd=path)
    return out.returncode == 0 and out.stdout.strip() == "true"


def _find(repos_dir: Path, owner: str, name: str) -> Path | None:
    for candidate in (
        repos_dir / owner / name,
        repos_dir / f"{owner}+{name}",
        repos_dir / owner / f"{name}.git",
        repos_dir / f"{owner}+{name}.git",
    ):
        if _is_checkout(candidate) or _is_bare(candidate):
            return candidate
    return None


def _has_commit(path: Path, commit: str) -> bool:
    return _git("cat-file", "-e", f"{commit}^{{commit}}", cwd=path).returncode == 0


def _clone(url: str, target: Path, *extra: str) -> None:
    """Into a temporary directory beside `target`, then renamed: a killed clone never leaves a half repository,
    and a process that lost a race to another host's clone uses theirs."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        out = _git("clone", "--quiet", "--no-checkout", *extra, url, str(tmp))
        if out.returncode != 0:
            raise RepoError(f"could not clone {url}: {out.stderr.strip()}")
        try:
            tmp.rename(target)
        except OSError:
            if not _is_checkout(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fetch(path: Path, commit: str) -> str:
    """Every branch and tag of origin, then the commit by name (hosts such as GitHub serve unadvertised ones)."""
    errors = []
    for args in (["fetch", "--quiet", "--tags", "origin"], ["fetch", "--quiet", "origin", commit]):
        out = _git(*args, cwd=path)
        if out.returncode != 0:
            errors.append(out.stderr.strip())
        if _has_commit(path, commit):
            break
    return "; ".join(e for e in errors if e)


def repo_checkout(repo: str, commit: str, repos_dir: Path | None, clones_dir: Path, *, url_base: str = GITHUB) -> Path:
    """A repository with a work tree that holds `commit`: `repos_dir/owner/name` or `repos_dir/owner+name`
    (a clone or a bare mirror), else a clone of `url_base/owner/name` made once into `repos_dir` (or
    `clones_dir` without one). A missing commit is fetched once; raises RepoError when it still is missing."""
    if not _REPO.match(repo):
        raise RepoError(f"a repository is named owner/name, not {repo!r}")
    owner, name = repo.split("/")
    flat = f"{owner}+{name}"
    home = repos_dir if repos_dir is not None else clones_dir
    with path_lock(clones_dir / ".locks" / f"{flat}.lock"):
        found = _find(repos_dir, owner, name) if repos_dir is not None else None
        if found is None:
            found = home / flat
            if not _is_checkout(found):
                url = f"{url_base.rstrip('/')}/{repo}"
                log.info("cloning %s into %s", url, found)
                _clone(url, found)
        if not _has_commit(found, commit):
            log.info("%s: commit %s not present, fetching", repo, commit)
            why = _fetch(found, commit)
            if not _has_commit(found, commit):
                detail = f" ({why})" if why else ""
                raise RepoError(f"commit {commit} of {repo} is not in {found}, not even after a fetch{detail}")
        if _is_bare(found):
            return _shared_checkout(found, clones_dir / "shared" / flat)
        return found


def _shared_checkout(mirror: Path, target: Path) -> Path:
    """A clone borrowing the mirror's objects (`--shared`): commits fetched into the mirror later are seen too."""
    if not _is_checkout(target):
        log.info("making %s, a work-tree clone of the bare mirror %s", target, mirror)
        _clone(str(mirror.resolve()), target, "--shared")
    return target
