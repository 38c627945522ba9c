"""Shared fixtures: fake model servers over real HTTP, and Settings pointing at them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from codemonkeys.config import Settings, nest
from codemonkeys.sandbox import engine
from tests.fake_model_server import FakeModelServer, Responder


def echo(messages: list[dict], model: str) -> str:
    """Default responder: repeats the last message, so every answer is traceable to its prompt."""
    content = messages[-1]["content"] if messages else ""
    return f"echo: {content}"


@pytest.fixture
def fake_server() -> Iterator[Callable[..., FakeModelServer]]:
    """`fake_server(responder=echo, **kw)` starts a FakeModelServer that is stopped at teardown."""
    servers: list[FakeModelServer] = []

    def make(responder: Responder = echo, **kw: Any) -> FakeModelServer:
        server = FakeModelServer(responder, **kw)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def settings_for(tmp_path: Path) -> Callable[..., Settings]:
    """`settings_for(server, tmp=None, **overrides)`: Settings for `openai/fake` served by `server`, fast retries."""

    def build(server: FakeModelServer, tmp: Path | None = None, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "models": ["openai/fake"],
            "api_base": server.url,
            "retry_base_delay": 0.01,
            "request_timeout": 10.0,
            "run_dir": (tmp or tmp_path) / "run",
        }
        return Settings.model_validate(nest(values | overrides, "test"))

    return build


def docker_engine_or_skip() -> docker.DockerClient:
    """Docker tests skip on a machine without an engine, but under CI=true they must run: there they fail."""
    try:
        return engine.connect()
    except engine.EngineError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the docker tests: {exc}")
        pytest.skip(str(exc))
