"""The docker engine as this package uses it: connecting, labels that mark our containers, orphan cleanup.

Every container we create carries `codemonkeys=1` plus the owner's pid, process start time and host, so
`sandbox prune` (and the next start) can tell containers of a dead process from those of a live run.
Containers also end themselves when their owner dies (their main process exits on stdin EOF); the labels
cover what that cannot (an engine restart, a stopped container).
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

log = logging.getLogger(__name__)

LABEL = "codemonkeys"
PID_LABEL = "codemonkeys.pid"
START_LABEL = "codemonkeys.pidstart"
HOST_LABEL = "codemonkeys.host"
RUN_LABEL = "codemonkeys.run"
KIND_LABEL = "codemonkeys.kind"


class EngineError(RuntimeError):
    """No docker engine answers (or it refused a request): the message says what to do."""


def connect(timeout: float = 600.0) -> docker.DockerClient:
    """A client for the engine DOCKER_HOST (or the default socket) names; raises EngineError if none answers."""
    try:
        client = docker.from_env(timeout=timeout, max_pool_size=64)
        client.ping()
    except docker.errors.DockerException as exc:
        raise EngineError(
            f"no docker engine answers ({exc}); start one (as root: scripts/ci/start-dockerd.sh) or use --sandbox local"
        ) from None
    return client


def engine_answers(timeout: float = 2.0) -> bool:
    """A fast yes/no for choosing a back end: a ping with a short timeout."""
    try:
        client = docker.from_env(timeout=timeout)
    except docker.errors.DockerException:
        return False
    try:
        return bool(client.ping())
    except docker.errors.DockerException:
        return False
    finally:
        client.close()


def _process_start(pid: int) -> str:
    """The kernel's start time of `pid` (clock ticks since boot): tells a live owner from a reused pid."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def owner_labels(run_label: str, kind: str) -> dict[str, str]:
    pid = os.getpid()
    return {
        LABEL: "1",
        RUN_LABEL: run_label,
        KIND_LABEL: kind,
        PID_LABEL: str(pid),
        START_LABEL: _process_start(pid),
        HOST_LABEL: socket.gethostname(),
    }


def owner_alive(labels: dict[str, str]) -> bool | None:
    """True/False for containers owned by a process of this host; None when that cannot be known here."""
    if labels.get(HOST_LABEL) != socket.gethostname() or not labels.get(PID_LABEL, "").isdigit():
        return None
    pid = int(labels[PID_LABEL])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started = labels.get(START_LABEL, "")
    return not started or started == _process_start(pid)


def our_containers(client: docker.DockerClient, run_label: str | None = None) -> list[Container]:
    labels = [f"{LABEL}=1"] + ([f"{RUN_LABEL}={run_label}"] if run_label else [])
    return client.containers.list(all=True, filters={"label": labels})


def remove_container(client: docker.DockerClient, container_id: str, wait: float = 10.0) -> bool:
    """Force-removes a container and returns once it is gone; False if it was gone (or going) already."""
    try:
        client.api.remove_container(container_id, force=True)
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as exc:
        if exc.status_code != 409:
            raise
        # Removal already in progress (auto-remove after the runner exited): wait for it to finish.
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                client.api.inspect_container(container_id)
            except docker.errors.NotFound:
                break
            time.sleep(0.05)
        return False
    return True


def prune_containers(
    client: docker.DockerClient, include_live: bool = False, run_label: str | None = None
) -> list[Container]:
    """Removes our containers left behind: stopped ones and those whose owner process is dead."""
    removed = []
    for container in our_containers(client, run_label):
        running = container.status in ("running", "paused", "restarting", "created")
        if running and not include_live and owner_alive(container.labels) is not False:
            continue
        remove_container(client, container.id)
        removed.append(container)
    return removed


class _Registry:
    """Containers this process has open, removed at interpreter exit (Ctrl-C, an uncaught exception)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: set[str] = set()
        self._client: docker.DockerClient | None = None
        self._swept = False
        atexit.register(self.cleanup)

    def add(self, client: docker.DockerClient, container_id: str) -> None:
        with self._lock:
            self._client = client
            self._ids.add(container_id)

    def discard(self, container_id: str) -> None:
        with self._lock:
            self._ids.discard(container_id)

    def sweep_once(self, client: docker.DockerClient) -> None:
        """The first provider of a process clears orphans that earlier, killed processes left behind."""
        with self._lock:
            if self._swept:
                return
            self._swept = True
        for container in prune_containers(client):
            log.info("removed container %s left behind by process %s", container.name, container.labels.get(PID_LABEL))

    def cleanup(self) -> None:
        with self._lock:
            ids, self._ids = self._ids, set()
            client = self._client
        for container_id in ids:
            try:
                remove_container(client, container_id)  # type: ignore[arg-type]
            except Exception as exc:  # at exit, keep removing the others
                log.warning("could not remove container %s: %s", container_id[:12], exc)


registry = _Registry()


def describe_exc(exc: Any) -> str:
    """Docker API errors carry the useful part in `explanation`."""
    return str(getattr(exc, "explanation", None) or exc)
