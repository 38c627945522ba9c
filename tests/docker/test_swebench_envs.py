"""Docker SWE-bench environments for real: an env image built from the offline base image with pip from the
package index (through this machine's proxy), its manifest label, one build per (repo, version), sandboxes of
it running the spec's install per commit, and an official instance image used as it is when present.

Env images are tagged by a digest of their spec, so a later session reuses the one an earlier session built.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import docker
import pytest

from codemonkeys.config import Settings
from codemonkeys.problem import Problem
from codemonkeys.sandbox import images
from codemonkeys.sandbox.docker import DockerProvider
from codemonkeys.sandbox.factory import make_provider
from codemonkeys.swebench import envs_docker
from codemonkeys.swebench.envs import EnvBuildError, ensure_environment, sandbox_settings
from codemonkeys.swebench.models import EnvManifest, EnvSpec
from tests.docker.conftest import make_repo
from tests.swebench.test_envs_local import SETUP_PY, TEST_WIDGET, WIDGET, git, instance

pytestmark = [pytest.mark.docker, pytest.mark.slow]

TEMPLATE = "codemonkeys-test/sweb.eval.{instance}:latest"
SPEC = EnvSpec(
    repo="acme/widget",
    version="1.0",
    python="3.9",
    pre_install=["echo root-step > /etc/codemonkeys-pre-install", "echo tree-step > marker.txt"],
    pip_packages=["iniconfig==2.0.0", "pytest==8.3.3"],
    install="python -m pip install -e .",
    test_cmd="pytest -rA",
    log_parser="parse_log_pytest",
)
SCRIPT = """\
import os
import sys
from importlib.metadata import version

import iniconfig
import widget

print("python", sys.version.split()[0], sys.prefix)
print("iniconfig", version("iniconfig"), iniconfig.__file__)
print("widget", widget.VERSION, version("widget"), widget.__file__)
print(open("marker.txt").read().strip(), open("/etc/codemonkeys-pre-install").read().strip())
ok = (
    sys.prefix == "/opt/env"
    and iniconfig.__file__.startswith("/opt/env/")
    and os.path.realpath(widget.__file__).startswith(os.path.realpath(os.getcwd()) + os.sep)
)
sys.exit(0 if ok else 2)
"""


@pytest.fixture(scope="session")
def widget(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    files = {
        "setup.py": SETUP_PY,
        "widget/__init__.py": WIDGET.format(version="1"),
        "tests/test_widget.py": TEST_WIDGET,
    }
    repo, first = make_repo(tmp_path_factory.mktemp("docker-envs") / "acme+widget", files)
    (repo / "widget" / "__init__.py").write_text(WIDGET.format(version="2"))
    git(repo, "commit", "-q", "-am", "version 2")
    return repo, [first, git(repo, "rev-parse", "HEAD")]


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    cache = tmp_path_factory.mktemp("docker-env-cache")
    return Settings.model_validate(
        {
            "swebench": {"env": "docker", "env_cache": str(cache), "image_template": TEMPLATE},
            "sandbox": {"kind": "docker", "max_containers": 4},
        }
    )


@pytest.fixture(scope="session")
def env(base_image: str, widget: tuple[Path, list[str]], settings: Settings) -> EnvManifest:
    repo, commits = widget
    return asyncio.run(ensure_environment(SPEC, instance(commits[0], 1), repo, settings))


def test_an_env_image_is_built_with_its_manifest_as_a_label(
    env: EnvManifest, docker_client: docker.DockerClient, settings: Settings
) -> None:
    assert env.kind == "docker" and not env.official_image
    assert env.location.startswith("codemonkeys/env-acme__widget-1.0:")
    assert env.python_wanted == "3.9" and env.python_used.startswith("3.11.")
    assert (
        f"Python {env.python_used} instead of 3.9: the nearest in {images.BASE_IMAGE} ({env.python_used})"
        in env.deviations
    )
    assert any("no official instance image" in d for d in env.deviations)
    assert {(c.requested, c.installed) for c in env.packages} >= {
        ("iniconfig==2.0.0", "iniconfig==2.0.0"),
        ("pytest==8.3.3", "pytest==8.3.3"),
    }
    # The label is written at the build; an image an earlier session built is reused with a log of this one.
    label = EnvManifest.model_validate_json(docker_client.images.get(env.location).labels[envs_docker.MANIFEST_LABEL])
    assert label == env.model_copy(update={"smoke": None, "build_log": label.build_log})
    assert env.smoke is not None and env.smoke.ok, env.smoke
    assert "tests/test_widget.py::test_main" in env.smoke.output
    cache = Path(settings.swebench.env_cache or "")
    assert Path(env.build_log).is_file() and Path(env.build_log).is_relative_to(cache)
    assert EnvManifest.model_validate_json((Path(env.build_log).parent / "manifest.json").read_text()) == env


async def test_a_second_instance_of_the_version_is_a_cache_hit(
    env: EnvManifest, widget: tuple[Path, list[str]], settings: Settings
) -> None:
    repo, commits = widget
    logs = sorted(Path(env.build_log).parent.glob("build-*.log"))
    start = time.monotonic()
    again = await ensure_environment(SPEC, instance(commits[1], 2), repo, settings)
    assert again == env
    assert time.monotonic() - start < 5
    assert sorted(Path(env.build_log).parent.glob("build-*.log")) == logs


async def test_a_sandbox_of_the_env_image_has_the_package_and_the_install(
    env: EnvManifest, widget: tuple[Path, list[str]], settings: Settings
) -> None:
    repo, commits = widget
    sandbox = sandbox_settings(env, settings.sandbox)
    assert sandbox.image == env.location and sandbox.command_prefix == envs_docker.ENV_PREFIX
    assert sandbox.setup == "echo tree-step > marker.txt && python -m pip install -e ."
    problem = Problem(instance_id="acme__widget-2", repo_path=str(repo), commit=commits[1], issue="x")
    provider = await make_provider(sandbox, problem, "test-swebench-envs")
    try:
        assert isinstance(provider, DockerProvider)
        box = await provider.open("one")
        try:
            run = await box.run_script(SCRIPT, 60)
            assert run.exit_code == 0, run.output
            assert "iniconfig 2.0.0 /opt/env/" in run.output
            assert "widget 2 0.1 /repo/widget/__init__.py" in run.output  # this commit's tree, installed by setup
            assert "tree-step root-step" in run.output
        finally:
            await box.close()
    finally:
        await provider.aclose()


async def test_a_symlink_to_the_env_python_runs_in_the_env(
    env: EnvManifest, widget: tuple[Path, list[str]], settings: Settings
) -> None:
    """tox --current-env runs `.tox/<env>/bin/python`, a symlink to /opt/env/bin/python, which starts the base
    interpreter outside the venv: the hook in the base interpreter's site-packages gives it the venv (sphinx's
    official test command found no pytest without it)."""
    repo, commits = widget
    problem = Problem(instance_id="acme__widget-1", repo_path=str(repo), commit=commits[0], issue="x")
    provider = await make_provider(sandbox_settings(env, settings.sandbox), problem, "test-swebench-envs")
    try:
        box = await provider.open("symlink")
        try:
            probe = "import sys, iniconfig; print(sys.prefix, iniconfig.__file__)"
            command = (
                "mkdir -p .tox/py/bin && ln -s /opt/env/bin/python .tox/py/bin/python && "
                f'env -i PATH="$PWD/.tox/py/bin:/usr/bin:/bin" python -c "{probe}"'
            )
            run = await box.run(command, 60)
            assert run.exit_code == 0, run.output
            prefix, module = run.output.split()
            assert prefix == "/opt/env" and module.startswith("/opt/env/lib/"), run.output
        finally:
            await box.close()
    finally:
        await provider.aclose()


async def test_an_official_image_is_used_as_it_is_when_present(
    env: EnvManifest, docker_client: docker.DockerClient, widget: tuple[Path, list[str]], settings: Settings
) -> None:
    """A stand-in for an official instance image: the repo at /testbed, its environment behind the conda
    activation the official images have."""
    repo, commits = widget
    official = envs_docker.official_image_name("acme__widget-3", TEMPLATE)
    assert official == "codemonkeys-test/sweb.eval.acme_1776_widget-3:latest"
    repo_image = images.build_repo_image(docker_client, repo, commits[0], setup=None, base=env.location)
    steps = [
        ("cp -a /repo /testbed && mkdir -p /opt/miniconda3/bin", "root"),
        ("echo '. /opt/env/bin/activate' > /opt/miniconda3/bin/activate", "root"),
        (". /opt/env/bin/activate && cd /testbed && python -m pip install -q -e .", "root"),
    ]
    images._commit_image(docker_client, repo_image, official, "/", steps, {}, None, lambda _: None)
    try:
        manifest = await ensure_environment(SPEC, instance(commits[0], 3), repo, settings)
        assert manifest.official_image and manifest.location == official
        assert manifest.smoke is not None and manifest.smoke.ok, manifest.smoke
        sandbox = sandbox_settings(manifest, settings.sandbox)
        assert (sandbox.image, sandbox.workdir, sandbox.setup) == (official, "/testbed", None)
        assert sandbox.command_prefix == "source /opt/miniconda3/bin/activate testbed &&"
    finally:
        docker_client.images.remove(official, force=True)


async def test_a_failing_install_in_the_image_raises_with_the_log(
    base_image: str, widget: tuple[Path, list[str]], settings: Settings
) -> None:
    repo, commits = widget
    broken = SPEC.model_copy(update={"version": "broken", "pip_packages": ["codemonkeys-no-such-package-7f3a==1.0"]})
    with pytest.raises(EnvBuildError) as caught:
        await ensure_environment(broken, instance(commits[0], 4), repo, settings)
    assert "codemonkeys-no-such-package-7f3a==1.0" in str(caught.value)
    assert "codemonkeys-no-such-package-7f3a" in Path(caught.value.log_path).read_text()
