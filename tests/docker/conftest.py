"""Real docker: an engine, the offline base image (built once, then reused across sessions), tiny git repos.

Without an engine these tests skip, except in CI (CI=true), where they fail: there they must run.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import docker
import pytest

from codemonkeys.config import SandboxSettings
from codemonkeys.sandbox import engine, images
from codemonkeys.sandbox.base import SandboxSpec
from codemonkeys.sandbox.docker import DockerProvider
from tests.conftest import docker_engine_or_skip

# Fixed dates and identity: the same tiny repo has the same commit every session, so its image is reused.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00+00:00",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00+00:00",
}
CALC = "def add(a, b):\n    return a - b\n"
# Build artefacts the setup leaves in the image: an ignored one and an untracked, not ignored one.
SETUP = "mkdir -p build && echo artefact > build/lib.txt && echo generated > generated.txt"


def make_repo(path: Path, files: dict[str, str]) -> tuple[Path, str]:
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
        subprocess.run(["git", *args], cwd=path, env=env, check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=True)
    return path, sha.stdout.strip()


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker_engine_or_skip()
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_image(docker_client: docker.DockerClient) -> str:
    images.ensure_image(docker_client, images.BASE_IMAGE)
    return images.BASE_IMAGE


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    files = {
        "calc.py": CALC,
        "README.md": "tiny\n",
        ".gitignore": "build/\n*.log\n__pycache__/\n",
    }
    return make_repo(tmp_path_factory.mktemp("tiny") / "tiny", files)


@pytest.fixture
def run_label() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


def labelled(client: docker.DockerClient, run_label: str) -> list:
    return client.containers.list(all=True, filters={"label": f"{engine.RUN_LABEL}={run_label}"})


@pytest.fixture
async def make_provider(
    docker_client: docker.DockerClient, base_image: str, tiny_repo: tuple[Path, str], run_label: str
) -> AsyncIterator[Callable[..., DockerProvider]]:
    """`make_provider(**sandbox_settings)`: providers on the tiny repo (SandboxSettings fields override the setup
    and a cap of 4 containers), closed and checked at teardown."""
    providers: list[DockerProvider] = []

    def make(**fields: object) -> DockerProvider:
        repo, sha = tiny_repo
        settings = SandboxSettings.model_validate({"setup": SETUP, "max_containers": 4} | fields)
        spec = SandboxSpec(repo_path=str(repo), commit=sha, run_label=run_label, settings=settings)
        provider = DockerProvider(spec, client=docker_client)
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        await provider.aclose()
    assert labelled(docker_client, run_label) == []
