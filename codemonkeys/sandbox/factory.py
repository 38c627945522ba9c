"""Chooses the sandbox back end for a problem from the settings (`sandbox`: auto, local or docker)."""

from __future__ import annotations

import asyncio
import logging

from codemonkeys.config import SandboxSettings
from codemonkeys.problem import Problem
from codemonkeys.sandbox import engine, images
from codemonkeys.sandbox.base import SandboxError, SandboxProvider, SandboxSpec

log = logging.getLogger(__name__)

PING_TIMEOUT = 2.0  # seconds: `auto` must not stall a run on an engine that does not answer


def docker_available(timeout: float = PING_TIMEOUT) -> bool:
    """Whether a docker engine answers a ping within `timeout` seconds."""
    return engine.engine_answers(timeout)


def _docker_image_ready(settings: SandboxSettings) -> tuple[bool, str]:
    """`auto` picks docker only when the image is already here: building or pulling is an explicit choice."""
    if not docker_available():
        return False, "no docker engine answers"
    wanted = settings.image or images.BASE_IMAGE
    try:
        client = engine.connect(timeout=10)
        present = images.image_exists(client, wanted)
        client.close()
    except engine.EngineError as exc:
        return False, str(exc)
    if not present:
        hint = " (build it: codemonkeys sandbox build)" if wanted == images.BASE_IMAGE else ""
        return False, f"image {wanted} is not present{hint}"
    return True, f"a docker engine answers and image {wanted} exists"


async def make_provider(settings: SandboxSettings, problem: Problem, run_label: str) -> SandboxProvider:
    """The provider for one problem, prepared (image built, setup run); it fails clearly when no engine answers,
    the image cannot be made or the setup command fails."""
    spec = SandboxSpec(repo_path=problem.repo_path, commit=problem.commit, run_label=run_label, settings=settings)
    kind = settings.kind
    if kind == "auto":
        ready, why = await asyncio.to_thread(_docker_image_ready, settings)
        kind = "docker" if ready else "local"
        log.info("sandbox auto → %s: %s", kind, why)
    if kind == "local":
        from codemonkeys.sandbox.local import LocalProvider

        provider: SandboxProvider = LocalProvider(spec)
    elif not await asyncio.to_thread(docker_available):
        raise SandboxError(
            "--sandbox docker: no docker engine answers; start one (as root: scripts/ci/start-dockerd.sh) "
            "or use --sandbox local"
        )
    else:
        from codemonkeys.sandbox.docker import DockerProvider

        provider = DockerProvider(spec)
    try:
        await provider.prepare()
    except BaseException:
        await provider.aclose()
        raise
    return provider
