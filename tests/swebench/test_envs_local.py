"""Local SWE-bench environments for real: virtualenvs made with this machine's interpreters, packages from the
package index with real pip, smoke checks and test runs in real local sandboxes.

One tiny repository `acme/widget` (two commits) plays the benchmark repository: a setuptools project whose
package imports a pinned dependency, with a console script and a test file. Environments are cached per test
session, so each spec is built once however many tests use it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from codemonkeys.config import SandboxSettings, Settings
from codemonkeys.problem import Problem
from codemonkeys.sandbox.base import SandboxSpec
from codemonkeys.sandbox.factory import make_provider
from codemonkeys.sandbox.local import LocalProvider
from codemonkeys.swebench.envs import EnvBuildError, ensure_environment, sandbox_settings
from codemonkeys.swebench.models import EnvManifest, EnvSpec, SWEInstance
from tests.docker.conftest import GIT_ENV

SETUP_PY = """\
from setuptools import setup

setup(
    name="widget",
    version="0.1",
    packages=["widget"],
    install_requires=["six"],
    entry_points={"console_scripts": ["widget-hello=widget:main"]},
)
"""
WIDGET = """\
import iniconfig

VERSION = {version!r}


def main():
    print("widget", VERSION, "from", __file__)
    return 0
"""
TEST_WIDGET = "import widget\n\n\ndef test_main():\n    assert widget.main() == 0\n"
TEST_PATCH = """\
diff --git a/tests/test_widget.py b/tests/test_widget.py
--- a/tests/test_widget.py
+++ b/tests/test_widget.py
@@ -3,2 +3,6 @@ import widget
 def test_main():
     assert widget.main() == 0
+
+
+def test_version():
+    assert widget.VERSION
"""
# A file the script of each test writes to say where things were imported from.
WHERE = """\
import os
import sys
from importlib.metadata import version

import iniconfig
import six
import widget

venv = os.environ["VIRTUAL_ENV"]
here = os.path.realpath(os.getcwd())
print("prefix", sys.prefix, "venv", venv)
print("iniconfig", version("iniconfig"), iniconfig.__file__)
print("six", six.__file__)
print("widget", widget.VERSION, widget.__file__)
ok = (
    os.path.realpath(sys.prefix) == os.path.realpath(venv)
    and os.path.realpath(iniconfig.__file__).startswith(os.path.realpath(venv) + os.sep)
    and os.path.realpath(six.__file__).startswith(os.path.realpath(venv) + os.sep)
    and os.path.realpath(widget.__file__).startswith(here + os.sep)
    and os.path.isfile("marker.txt")
)
sys.exit(0 if ok else 2)
"""


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="session")
def widget_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """acme/widget with two commits (VERSION 1 and 2); returns the repo and its commits, oldest first."""
    repo = tmp_path_factory.mktemp("repos") / "acme+widget"
    (repo / "widget").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "setup.py").write_text(SETUP_PY)
    (repo / "tests" / "test_widget.py").write_text(TEST_WIDGET)
    (repo / ".gitignore").write_text("*.egg-info/\nbuild/\n")
    git(repo, "init", "-q", "-b", "main")
    commits = []
    for version in ("1", "2"):
        (repo / "widget" / "__init__.py").write_text(WIDGET.format(version=version))
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"version {version}")
        commits.append(git(repo, "rev-parse", "HEAD"))
    return repo, commits


@pytest.fixture(scope="session")
def env_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("envs")


def settings_for(cache: Path) -> Settings:
    return Settings.model_validate(
        {"swebench": {"env": "local", "env_cache": str(cache)}, "sandbox": {"kind": "local"}}
    )


def instance(commit: str, number: int = 1) -> SWEInstance:
    return SWEInstance(
        instance_id=f"acme__widget-{number}",
        repo="acme/widget",
        base_commit=commit,
        problem_statement="widget is broken",
        version="1.0",
        test_patch=TEST_PATCH,
        FAIL_TO_PASS=["tests/test_widget.py::test_version"],
        PASS_TO_PASS=["tests/test_widget.py::test_main"],
    )


def spec(python: str, version: str = "1.0", **fields: object) -> EnvSpec:
    values: dict[str, object] = {
        "repo": "acme/widget",
        "version": version,
        "python": python,
        "install": "python -m pip install -e .",
        "test_cmd": "pytest -rA",
        "log_parser": "parse_log_pytest",
    }
    return EnvSpec.model_validate(values | fields)


PINNED = spec(
    "3.10",
    pre_install=["apt-get update && apt-get install -y locales", "echo made-by-pre-install > marker.txt"],
    pip_packages=["iniconfig==2.0.0", "pytest==8.3.3"],
)


@pytest.fixture(scope="session")
def pinned_env(widget_repo: tuple[Path, list[str]], env_cache: Path) -> tuple[EnvManifest, float]:
    """The PINNED environment, built once per session; with the seconds the build took."""
    repo, commits = widget_repo
    start = time.monotonic()
    manifest = asyncio.run(ensure_environment(PINNED, instance(commits[0]), repo, settings_for(env_cache)))
    return manifest, time.monotonic() - start


def choice(manifest: EnvManifest, requested: str) -> tuple[str, str]:
    found = [(c.installed, c.note) for c in manifest.packages if c.requested == requested]
    assert found, f"{requested} not in {manifest.packages}"
    return found[0]


def test_a_pinned_environment_is_built_with_what_it_asked_for(pinned_env: tuple[EnvManifest, float]) -> None:
    manifest, _ = pinned_env
    assert manifest.kind == "local" and manifest.key == "acme__widget-1.0"
    assert manifest.python_wanted == "3.10" and manifest.python_used.startswith("3.10.")
    assert Path(manifest.location, "bin", "python").exists()
    assert choice(manifest, "iniconfig==2.0.0") == ("iniconfig==2.0.0", "")
    assert choice(manifest, "pytest==8.3.3") == ("pytest==8.3.3", "")
    installed, note = choice(manifest, "six")
    assert installed.startswith("six==") and "brought in by the repository's install" in note  # install_requires
    assert any("pre_install skipped" in d and "apt-get" in d for d in manifest.deviations)
    assert not any(d.startswith("Python ") for d in manifest.deviations)
    assert any("not installed in the venv" in d and "widget==0.1" in d for d in manifest.deviations)
    assert manifest.smoke is not None and manifest.smoke.ok, manifest.smoke
    assert "import widget" in manifest.smoke.command
    assert "--collect-only -q tests/test_widget.py" in manifest.smoke.command
    assert "test_main" in manifest.smoke.output
    assert Path(manifest.build_log).is_file()


async def test_a_second_call_reuses_the_environment_without_building(
    pinned_env: tuple[EnvManifest, float], widget_repo: tuple[Path, list[str]], env_cache: Path
) -> None:
    manifest, build_seconds = pinned_env
    repo, commits = widget_repo
    env_dir = Path(manifest.location).parent
    logs = sorted(env_dir.glob("build-*.log"))
    stamp = (env_dir / "manifest.json").stat().st_mtime_ns
    start = time.monotonic()
    again = await ensure_environment(PINNED, instance(commits[0]), repo, settings_for(env_cache))
    other = await ensure_environment(PINNED, instance(commits[1], 2), repo, settings_for(env_cache))
    seconds = time.monotonic() - start
    assert again == manifest and other == manifest  # one venv for every commit of the version
    assert sorted(env_dir.glob("build-*.log")) == logs
    assert (env_dir / "manifest.json").stat().st_mtime_ns == stamp
    assert seconds < min(2.0, build_seconds / 3), (seconds, build_seconds)


async def test_concurrent_callers_wait_for_one_build(widget_repo: tuple[Path, list[str]], env_cache: Path) -> None:
    """Coroutines of one loop and threads running loops of their own: one build, the same manifest for all."""
    repo, commits = widget_repo
    bare = spec("3.11", version="concurrent", install="", pip_packages=["iniconfig==2.0.0"], test_cmd="python -V")
    settings = settings_for(env_cache)

    def in_a_thread() -> EnvManifest:
        return asyncio.run(ensure_environment(bare, instance(commits[0]), repo, settings))

    with ThreadPoolExecutor(2) as pool:
        threads = [pool.submit(in_a_thread) for _ in range(2)]
        calls = (ensure_environment(bare, instance(commits[0]), repo, settings) for _ in range(3))
        manifests = [*await asyncio.gather(*calls), *(thread.result() for thread in threads)]
    assert len(manifests) == 5 and len({m.model_dump_json() for m in manifests}) == 1
    assert len(list(Path(manifests[0].location).parent.glob("build-*.log"))) == 1


async def test_a_sandbox_of_the_environment_imports_from_the_venv_and_the_tree(
    pinned_env: tuple[EnvManifest, float], widget_repo: tuple[Path, list[str]], env_cache: Path
) -> None:
    manifest, _ = pinned_env
    repo, commits = widget_repo
    sandbox = sandbox_settings(manifest, settings_for(env_cache).sandbox)
    assert sandbox.kind == "local" and sandbox.venv == manifest.location and sandbox.setup
    assert "inplace" in sandbox.setup and "marker.txt" in sandbox.setup and "apt-get" not in sandbox.setup
    problem = Problem(instance_id="acme__widget-2", repo_path=str(repo), commit=commits[1], issue="x")
    provider = await make_provider(sandbox, problem, "test-envs-local")
    try:
        assert isinstance(provider, LocalProvider)
        box = await provider.open("one")
        try:
            run = await box.run_script(WHERE, 60)
            assert run.exit_code == 0, run.output
            assert "iniconfig 2.0.0" in run.output and "widget 2 /" in run.output
            assert "/work/main/.venv" not in run.output
            # The console script of the repository, removed from the venv, runs the tree's code.
            hello = await box.run("widget-hello", 60)
            assert hello.exit_code == 0 and "widget 2 from" in hello.output
            assert os.path.realpath(hello.output.split(" from ")[1].strip()).startswith(os.path.realpath(box.tree))
            # What the setup built (egg-info metadata) survives a reset and stays out of the diff.
            await box.reset()
            meta = await box.run("python -c 'import importlib.metadata as m; print(m.version(\"widget\"))'", 60)
            assert meta.output.strip() == "0.1", meta.output
            assert await box.diff() == ""
        finally:
            await box.close()
    finally:
        await provider.aclose()


async def test_a_pin_without_a_build_for_the_python_falls_back_to_the_nearest(
    widget_repo: tuple[Path, list[str]], env_cache: Path
) -> None:
    """Python 3.5 is not here: 3.6 is the nearest. iniconfig 2.0.0 needs Python 3.7: 1.1.1 is the nearest."""
    repo, commits = widget_repo
    old = spec("3.5", version="old", pip_packages=["pytest==7.0.1", "iniconfig==2.0.0"])
    manifest = await ensure_environment(old, instance(commits[0]), repo, settings_for(env_cache))
    assert manifest.python_wanted == "3.5" and manifest.python_used.startswith("3.6.")
    assert any(d.startswith(f"Python {manifest.python_used} instead of 3.5") for d in manifest.deviations)
    installed, note = choice(manifest, "iniconfig==2.0.0")
    assert installed == "iniconfig==1.1.1"
    assert "iniconfig 2.0.0" in note and "Python 3.6" in note and "nearest" in note
    assert choice(manifest, "pytest==7.0.1") == ("pytest==7.0.1", "")
    assert manifest.smoke is not None and manifest.smoke.ok, manifest.smoke


async def test_a_failing_install_raises_with_the_log_kept(widget_repo: tuple[Path, list[str]], env_cache: Path) -> None:
    repo, commits = widget_repo
    broken = spec("3.11", version="broken", install="", pip_packages=["codemonkeys-no-such-package-7f3a==1.0"])
    with pytest.raises(EnvBuildError) as caught:
        await ensure_environment(broken, instance(commits[0]), repo, settings_for(env_cache))
    assert "codemonkeys-no-such-package-7f3a==1.0" in str(caught.value)
    log = Path(caught.value.log_path)
    assert log.is_file() and "codemonkeys-no-such-package-7f3a" in log.read_text()
    assert not (log.parent / "manifest.json").exists()


async def test_a_conda_package_not_on_the_index_is_left_out_with_a_deviation(
    widget_repo: tuple[Path, list[str]], env_cache: Path
) -> None:
    """environment.yml dependencies are conda packages: one PyPI has no version of (xarray's cdms2) is left out
    and said so, as conda would have installed it; the build goes on. A requirements.txt's is still an error."""
    repo, commits = widget_repo
    missing = "codemonkeys-no-such-package-7f3a"
    conda = spec(
        "3.11",
        version="conda",
        install="",
        packages="environment.yml",
        requirements=["iniconfig==2.0.0", "pytest==8.3.3", missing],
    )
    manifest = await ensure_environment(conda, instance(commits[0]), repo, settings_for(env_cache))
    assert choice(manifest, "iniconfig==2.0.0")[0] == "iniconfig==2.0.0"
    installed, note = choice(manifest, missing)
    assert installed == "" and "no version of for Python 3.11" in note
    assert [d for d in manifest.deviations if d.startswith(missing)] == [
        f"{missing}: {note} (conda would have installed it)"
    ]
    pip = spec("3.11", version="pip", install="", packages="requirements.txt", requirements=[missing])
    with pytest.raises(EnvBuildError, match=missing):
        await ensure_environment(pip, instance(commits[0]), repo, settings_for(env_cache))


async def test_a_failing_smoke_check_raises_and_is_not_reused(
    widget_repo: tuple[Path, list[str]], env_cache: Path
) -> None:
    """Without iniconfig the package does not import: the environment is recorded as failed and rebuilt."""
    repo, commits = widget_repo
    lacking = spec("3.11", version="lacking", install="", test_cmd="python -m unittest")
    for attempt in (1, 2):
        with pytest.raises(EnvBuildError, match="smoke check failed") as caught:
            await ensure_environment(lacking, instance(commits[0]), repo, settings_for(env_cache))
        assert "iniconfig" in Path(caught.value.log_path).read_text()
        manifest = EnvManifest.model_validate_json((Path(caught.value.log_path).parent / "manifest.json").read_text())
        assert manifest.smoke is not None and not manifest.smoke.ok and "No module named" in manifest.smoke.output
        assert len(list(Path(caught.value.log_path).parent.glob("build-*.log"))) == attempt


async def test_the_local_sandbox_runs_in_a_venv(tmp_path: Path, widget_repo: tuple[Path, list[str]]) -> None:
    """SandboxSettings.venv: its bin/ leads PATH, VIRTUAL_ENV is set, its python runs scripts and the setup."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    repo, commits = widget_repo
    setup = 'python -c \'import sys; open("setup-prefix.txt", "w").write(sys.prefix)\''
    settings = SandboxSettings(kind="local", venv=str(venv), setup=setup)
    provider = LocalProvider(SandboxSpec(repo_path=str(repo), commit=commits[0], settings=settings))
    try:
        box = await provider.open("venv")
        try:
            script = "import os, sys\nprint(sys.prefix)\nprint(os.environ['VIRTUAL_ENV'])\nprint(open('setup-prefix.txt').read())"
            run = await box.run_script(script, 30)
            assert run.exit_code == 0, run.output
            assert run.output.split() == [str(venv)] * 3
            which = await box.run("command -v python", 30)
            assert which.output.strip() == str(venv / "bin" / "python")
        finally:
            await box.close()
    finally:
        await provider.aclose()
    with pytest.raises(Exception, match="not a virtualenv"):
        LocalProvider(SandboxSpec(repo_path=str(repo), commit=commits[0], settings=SandboxSettings(venv=str(tmp_path))))


async def test_a_symlink_to_the_venv_python_runs_in_the_venv(
    tmp_path: Path, widget_repo: tuple[Path, list[str]]
) -> None:
    """tox --current-env runs `.tox/<env>/bin/python`, a symlink to the venv's python, with only HOME and PATH of
    the sandbox's environment: Python looks for pyvenv.cfg beside the symlink, so without the sandbox's hook the
    base interpreter starts without the venv's packages (sphinx's official test command failed so)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3.*/site-packages"))
    (site / "only_in_the_venv.py").write_text("WHERE = 'venv'\n")
    repo, commits = widget_repo
    provider = LocalProvider(
        SandboxSpec(repo_path=str(repo), commit=commits[0], settings=SandboxSettings(kind="local", venv=str(venv)))
    )
    try:
        box = await provider.open("symlink")
        try:
            probe = "import sys, only_in_the_venv; print(sys.prefix, only_in_the_venv.WHERE)"
            command = (
                'mkdir -p .tox/py/bin && ln -s "$VIRTUAL_ENV/bin/python" .tox/py/bin/python && '
                f'env -i HOME="$HOME" PATH="$PWD/.tox/py/bin:/usr/bin:/bin" python -c "{probe}"'
            )
            run = await box.run(command, 60)
            assert run.exit_code == 0, run.output
            assert run.output.split() == [str(venv), "venv"]
            direct = await box.run(f'python -c "{probe}"', 60)
            assert direct.exit_code == 0 and direct.output.split() == [str(venv), "venv"], direct.output
        finally:
            await box.close()
    finally:
        await provider.aclose()
