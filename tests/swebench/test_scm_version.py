"""The version setuptools_scm computes in a clone with its tags, given to a docker env image's setup: the docker
sandbox copies the tree into a fresh repository without history, where setuptools_scm says 0.1.dev1 (pytest's
own `minversion = 2.0` in tox.ini then refused to run pytest-dev/pytest's tests)."""

from __future__ import annotations

from pathlib import Path

from codemonkeys.config import SandboxSettings
from codemonkeys.swebench.envs import sandbox_settings
from codemonkeys.swebench.envs_build import scm_version_env
from codemonkeys.swebench.envs_docker import ENV_PREFIX
from codemonkeys.swebench.models import EnvManifest, EnvSpec, SWEInstance
from tests.swebench.test_specs import commit_files, git

SCM_SETUP = 'from setuptools import setup\n\nsetup(name="widget", use_scm_version={"write_to": "widget/_v.py"})\n'


def test_the_version_is_the_tag_or_the_next_dev_version_with_the_node(tmp_path: Path) -> None:
    repo = tmp_path / "widget"
    tagged = commit_files(repo, {"setup.py": SCM_SETUP})
    git(repo, "tag", "5.2.4")
    assert scm_version_env("acme/widget", repo, tagged) == "SETUPTOOLS_SCM_PRETEND_VERSION_FOR_WIDGET=5.2.4"
    later = commit_files(repo, {"widget/__init__.py": ""})
    node = git(repo, "describe", "--tags", "--long", later).rsplit("-g", 1)[1]
    assert (
        scm_version_env("acme/widget", repo, later) == f"SETUPTOOLS_SCM_PRETEND_VERSION_FOR_WIDGET=5.2.5.dev1+g{node}"
    )
    # xarray's tags: a v prefix and a zero-padded month, normalized as setuptools_scm does.
    git(repo, "tag", "v2022.06.0", later)
    third = commit_files(repo, {"widget/__init__.py": "x = 1\n"})
    node = git(repo, "describe", "--tags", "--long", third).rsplit("-g", 1)[1]
    assert scm_version_env("pydata/my-lib", repo, third) == (
        f"SETUPTOOLS_SCM_PRETEND_VERSION_FOR_MY_LIB=2022.6.1.dev1+g{node}"
    )


def test_no_version_without_setuptools_scm_or_a_tag(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    commit = commit_files(plain, {"setup.py": 'from setuptools import setup\n\nsetup(name="plain", version="1.0")\n'})
    git(plain, "tag", "1.0")
    assert scm_version_env("acme/plain", plain, commit) is None
    untagged = tmp_path / "untagged"
    assert (
        scm_version_env("acme/widget", untagged, commit_files(untagged, {"pyproject.toml": "[tool.setuptools_scm]\n"}))
        is None
    )


def test_a_docker_env_setup_exports_the_version_of_the_instance_commit(tmp_path: Path) -> None:
    repo = tmp_path / "widget"
    commit = commit_files(repo, {"setup.py": SCM_SETUP})
    git(repo, "tag", "1.0")
    spec = EnvSpec(
        repo="acme/widget",
        version="1.0",
        python="3.11",
        install="python -m pip install -e .",
        test_cmd="pytest -rA",
        log_parser="parse_log_pytest",
    )
    manifest = EnvManifest(
        key=spec.key,
        kind="docker",
        spec=spec,
        location="codemonkeys/env-x:1",
        python_wanted="3.11",
        python_used="3.11.2",
    )
    instance = SWEInstance(
        instance_id="acme__widget-1", repo="acme/widget", base_commit=commit, version="1.0", problem_statement="x"
    )
    sandbox = sandbox_settings(manifest, SandboxSettings(kind="docker"), instance, repo)
    assert sandbox.command_prefix == ENV_PREFIX
    assert sandbox.setup == "export SETUPTOOLS_SCM_PRETEND_VERSION_FOR_WIDGET=1.0 && python -m pip install -e ."
    assert sandbox_settings(manifest, SandboxSettings(kind="docker")).setup == "python -m pip install -e ."
