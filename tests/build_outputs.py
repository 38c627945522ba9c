"""Real repositories whose build writes files into the tree, for the "setup survives every reset" tests.

Two source distributions from the package index, downloaded once per test session (never committed here):

- pluggy 1.5.0 uses setuptools_scm, which writes `src/pluggy/_version.py` from the git metadata. The file is
  deleted from the sdist and git-ignored, as upstream does, so the fresh repo looks like a checkout.
- MarkupSafe 2.1.5 has a C extension, `src/markupsafe/_speedups.c`; `setup.py build_ext --inplace` compiles
  it with the system compiler next to the sources. Its setup.py falls back to pure Python when the build
  fails, so only the test script shows whether the `.so` is there.

Each repo gets one commit with fixed dates and identity, so the same sdist gives the same commit every
session and a docker repo image built for it is reused. The test scripts follow the test-script contract:
exit 0 when the package imports from the tree (the cwd) with its generated file, exit 2 otherwise.

Local sandbox: the setup runs on the host with the interpreter of a build venv made once per session
(`python -m venv` + pinned setuptools, setuptools_scm and wheel from the package index); scripts run with the
same interpreter (SandboxSettings.python). Docker sandbox: the setup runs in the repo image build with the
base image's /opt/venv python and needs no network: its gcc and Python headers build the extension, and
setuptools_scm comes from pinned wheels committed in the pluggy repo (`WHEELHOUSE`), because the image build
cannot install from the index here (see `docker_setup`).
"""

from __future__ import annotations

import difflib
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from codemonkeys.sandbox.base import Outcome, Sandbox
from tests.docker.conftest import GIT_ENV

SCM_SDIST = ("pluggy", "1.5.0")
EXT_SDIST = ("markupsafe", "2.1.5")
BUILD_TOOLS = ("setuptools==75.8.2", "setuptools_scm==8.1.0", "wheel==0.45.1")
# setuptools_scm and its one dependency the base image's venv lacks (its setuptools 66 is recent enough).
WHEELS = ("setuptools_scm==8.1.0", "packaging==24.2")
WHEELHOUSE = ".test-wheelhouse"
PATCH_LINE = "# patched by the build-outputs test"


def tree_import_script(package: str, generated: str, check: str, shown: str) -> str:
    """Exit 0 only when `package` and its generated module import from the tree (the working directory) and
    `check` holds; exit 2 otherwise: the test-script contract."""
    return f"""\
import os
import sys

here = os.path.realpath(os.getcwd())
try:
    import {package}
    from {package} import {generated}
except ImportError as exc:
    print("{package}.{generated} cannot be imported:", exc)
    sys.exit(2)
for module in ({package}, {generated}):
    where = os.path.realpath(module.__file__)
    if not where.startswith(here + os.sep):
        print(module.__name__, "comes from", where, "not from the tree", here)
        sys.exit(2)
if not ({check}):
    print("the check failed:", {check!r})
    sys.exit(2)
print({shown})
sys.exit(0)
"""


SCM_SCRIPT = tree_import_script(
    "pluggy", "_version", 'pluggy.__version__ not in ("", "unknown")', '"pluggy", pluggy.__version__'
)
EXT_SCRIPT = tree_import_script(
    "markupsafe",
    "_speedups",
    'markupsafe.escape is _speedups.escape and markupsafe.escape("<b>") == "&lt;b&gt;"',
    '"markupsafe with", _speedups.__file__',
)

# MarkupSafe's own .gitignore of the 2.1 series, in short: what a build leaves in the tree is ignored.
EXT_GITIGNORE = """\
.idea/
.vscode/
__pycache__/
*.pyc
*.egg-info/
*.so
.pytest_cache/
.tox/
.coverage
.coverage.*
htmlcov/
dist/
build/
docs/_build/
"""


@dataclass(frozen=True)
class BuildRepo:
    """A git repo of a real sdist, and how to build it and check the build from a test script."""

    name: str
    path: Path
    commit: str
    script: str
    generated: str  # shell glob of the file the setup writes into the tree
    source: str  # a tracked source file, for patches and edits
    patch: str  # adds PATCH_LINE on top of `source`, against the commit
    local_command: str  # the setup with "{python}" for the interpreter
    docker_setup: str  # the setup inside the repo image build (no network needed)

    def local_setup(self, python: str) -> str:
        return self.local_command.format(python=shlex.quote(python))


def cache_dir(factory: pytest.TempPathFactory) -> Path:
    """One directory per test session (downloads, the build venv, the repos)."""
    path = factory.getbasetemp() / "build-outputs"
    path.mkdir(exist_ok=True)
    return path


def _run(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def build_venv(cache: Path) -> Path:
    """The interpreter of a venv with the build tools (pinned, from the package index), made once."""
    venv = cache / "venv"
    python = venv / "bin" / "python"
    ready = venv / "ready"
    if not ready.exists():
        shutil.rmtree(venv, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(venv)])
        _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *BUILD_TOOLS])
        ready.touch()
    return python


def download_sdist(cache: Path, name: str, version: str) -> Path:
    """`pip download` of the source distribution only, once per session."""
    target = cache / "sdists" / f"{name}-{version}"
    found = sorted(target.glob("*.tar.gz")) if target.is_dir() else []
    if not found:
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        argv = ["-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps", "--no-binary", ":all:"]
        _run([str(build_venv(cache)), *argv, f"{name}=={version}", "-d", str(target)])
        found = sorted(target.glob("*.tar.gz"))
    if len(found) != 1:
        raise RuntimeError(f"expected one sdist of {name} {version} in {target}, found {found}")
    return found[0]


def download_wheels(cache: Path) -> list[Path]:
    target = cache / "wheels"
    if not target.is_dir():
        partial = cache / "wheels.partial"
        shutil.rmtree(partial, ignore_errors=True)
        argv = ["-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps", "--only-binary", ":all:"]
        _run([str(build_venv(cache)), *argv, *WHEELS, "-d", str(partial)])
        partial.rename(target)
    return sorted(target.glob("*.whl"))


def unpack_sdist(sdist: Path, dest: Path) -> Path:
    """The sdist's single top directory as `dest`, without what only an sdist has (PKG-INFO, egg-info)."""
    scratch = dest.with_name(dest.name + ".unpack")
    shutil.rmtree(scratch, ignore_errors=True)
    with tarfile.open(sdist) as tar:
        tar.extractall(scratch, filter="data")
    (top,) = scratch.iterdir()
    top.rename(dest)
    scratch.rmdir()
    (dest / "PKG-INFO").unlink(missing_ok=True)
    for info in dest.rglob("*.egg-info"):
        shutil.rmtree(info)
    return dest


def _commit(path: Path) -> str:
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "import the sdist"]):
        _run(["git", "-c", "commit.gpgsign=false", *args], cwd=path, env=env)
    return _run(["git", "rev-parse", "HEAD"], cwd=path).strip()


def _patch(path: Path, source: str) -> str:
    """A unified diff (git's a/ b/ prefixes) that adds PATCH_LINE as the first line of `source`."""
    old = (path / source).read_text().splitlines(keepends=True)
    new = [PATCH_LINE + "\n", *old]
    body = difflib.unified_diff(old, new, fromfile=f"a/{source}", tofile=f"b/{source}", n=3)
    return f"diff --git a/{source} b/{source}\n" + "".join(body)


def scm_repo(cache: Path) -> BuildRepo:
    """pluggy at its sdist with `src/pluggy/_version.py` removed (its .gitignore already ignores it)."""
    path = cache / "repos" / "pluggy"
    if not (path / ".git").is_dir():
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        unpack_sdist(download_sdist(cache, *SCM_SDIST), path)
        (path / "src" / "pluggy" / "_version.py").unlink()
        if "src/pluggy/_version.py" not in (path / ".gitignore").read_text().splitlines():
            raise RuntimeError("pluggy's .gitignore no longer ignores its version file")
        (path / WHEELHOUSE).mkdir()
        for wheel in download_wheels(cache):
            shutil.copy(wheel, path / WHEELHOUSE / wheel.name)
        _commit(path)
    source = "src/pluggy/_result.py"
    write = "-m setuptools_scm --force-write-version-files"
    pins = " ".join(WHEELS)
    return BuildRepo(
        name="pluggy",
        path=path,
        commit=_run(["git", "rev-parse", "HEAD"], cwd=path).strip(),
        script=SCM_SCRIPT,
        generated="src/pluggy/_version.py",
        source=source,
        patch=_patch(path, source),
        local_command="{python} " + write,
        docker_setup=(
            f"python -m pip install -q --disable-pip-version-check --no-index --find-links {WHEELHOUSE} {pins}"
            f" && python {write}"
        ),
    )


def ext_repo(cache: Path) -> BuildRepo:
    """MarkupSafe at its sdist with upstream's ignores: the in-place `.so` is an ignored build output."""
    path = cache / "repos" / "markupsafe"
    if not (path / ".git").is_dir():
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        unpack_sdist(download_sdist(cache, *EXT_SDIST), path)
        if not (path / "src" / "markupsafe" / "_speedups.c").is_file() or list(path.rglob("*.so")):
            raise RuntimeError("the MarkupSafe sdist no longer has just the C source of its extension")
        (path / ".gitignore").write_text(EXT_GITIGNORE)
        _commit(path)
    source = "src/markupsafe/_native.py"
    build = "setup.py build_ext --inplace"
    return BuildRepo(
        name="markupsafe",
        path=path,
        commit=_run(["git", "rev-parse", "HEAD"], cwd=path).strip(),
        script=EXT_SCRIPT,
        generated="src/markupsafe/_speedups.*.so",
        source=source,
        patch=_patch(path, source),
        local_command="{python} " + build,
        docker_setup=f"python {build}",
    )


BUILDERS = {"pluggy": scm_repo, "markupsafe": ext_repo}


async def generated_present(sandbox: Sandbox, repo: BuildRepo) -> bool:
    return (await sandbox.run(f"ls {repo.generated}", 30)).exit_code == 0


async def check_outputs_survive_resets(sandbox: Sandbox, repo: BuildRepo, resets: int, timeout: float) -> None:
    """The script passes from the start; after each round of stray files, a nested directory and a broken
    tracked file, a reset leaves only what setup built, the script passes again and the diff is empty."""
    original = (repo.path / repo.source).read_text()
    first = await sandbox.run_on("", repo.script, timeout)
    assert first.exit_code == 0, first.output
    assert first.outcome is Outcome.FIXED
    assert await generated_present(sandbox, repo)
    assert await sandbox.diff() == ""
    for attempt in range(resets):
        dirty = await sandbox.run(
            f"echo stray > stray-{attempt}.txt && mkdir -p junk/deep && echo x > junk/deep/file"
            f" && echo 'raise SystemExit(3)' >> {repo.source}",
            30,
        )
        assert dirty.exit_code == 0, dirty.output
        assert "stray" in await sandbox.diff()
        result = await sandbox.run_on("", repo.script, timeout)
        assert result.exit_code == 0, result.output
        assert await sandbox.read_file(f"stray-{attempt}.txt") is None
        assert await sandbox.read_file("junk/deep/file") is None
        assert (await sandbox.run("test -e junk", 30)).exit_code != 0
        assert await sandbox.read_file(repo.source) == original
        assert await generated_present(sandbox, repo)
        assert await sandbox.diff() == ""


async def check_patch_against_the_original(sandbox: Sandbox, repo: BuildRepo, timeout: float) -> None:
    """A patch made against the original commit applies on the tree after setup, and the diff shows it alone."""
    patched = await sandbox.run_on(repo.patch, repo.script, timeout)
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
    again = await sandbox.run_on(repo.patch, repo.script, timeout)
    assert again.exit_code == 0, again.output
    assert await sandbox.diff() == diff
    clean = await sandbox.run_on("", repo.script, timeout)
    assert clean.exit_code == 0, clean.output
    assert await sandbox.diff() == ""
