"""The docker back end: one warm container per sandbox, driven by a long-lived runner inside it.

A container's main process is `runner.py` (copied in before start), attached to the host through one
socket: requests go down its stdin as JSON lines, answers come back on its stdout. After the start, no
command pays a docker round trip. Network off, CPU/memory/pids limits, labels that let `sandbox prune`
find leftovers; the container ends itself when this process dies (its stdin closes).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import io
import json
import logging
import re
import secrets
import socket
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors

from codemonkeys.sandbox import engine, images
from codemonkeys.sandbox.base import ExecResult, PatchError, Sandbox, SandboxError, SandboxProvider, SandboxSpec

log = logging.getLogger(__name__)

RUNNER_SOURCE = Path(__file__).with_name("runner.py")
RUNNER_DIR = "/tmp"
RUNNER_NAME = "codemonkeys-runner.py"
# The runner needs a Python 3.7+ interpreter; SWE-bench images have `python3`, minimal ones may only have `python`.
RUNNER_COMMAND = (
    f"if command -v python3 >/dev/null; then exec python3 -u {RUNNER_DIR}/{RUNNER_NAME}; "
    f"else exec python -u {RUNNER_DIR}/{RUNNER_NAME}; fi"
)
# As in the local back end: unbuffered output keeps stdout and stderr in order; no bytecode churn in the tree.
SANDBOX_ENV = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
START_TIMEOUT = 120.0  # seconds for the runner's init: a conda activation and a scan of a large tree
REQUEST_TIMEOUT = 300.0  # seconds for file, diff and reset requests
ANSWER_GRACE = 30.0  # seconds past a command's own timeout before the runner counts as hung


class _Channel:
    """JSON lines to and from the runner over the attached socket (docker's 8-byte frame headers on output).

    A reader thread resolves one future per request id, so any event loop can await answers; when the
    socket ends (the container died) every pending and later request fails with SandboxError.
    """

    def __init__(self, sock: Any, name: str) -> None:
        self._holder = sock
        self._sock: socket.socket = getattr(sock, "_sock", sock)
        self._sock.settimeout(None)  # a sandbox may sit idle for as long as a model takes to answer
        self._name = name
        self._lock = threading.Lock()
        self._pending: dict[int, concurrent.futures.Future[dict]] = {}
        self._next_id = 0
        self._dead: str | None = None
        self.stderr: collections.deque[str] = collections.deque(maxlen=20)
        self._thread = threading.Thread(target=self._read, name=f"runner-{name}", daemon=True)
        self._thread.start()

    def _recv_exact(self, size: int) -> bytes | None:
        chunks = bytearray()
        while len(chunks) < size:
            data = self._sock.recv(size - len(chunks))
            if not data:
                return None
            chunks += data
        return bytes(chunks)

    def _read(self) -> None:
        out = b""
        err = b""
        try:
            while True:
                header = self._recv_exact(8)
                if header is None:
                    break
                payload = self._recv_exact(int.from_bytes(header[4:8], "big")) or b""
                if header[0] == 2:
                    err += payload
                    *lines, err = err.split(b"\n")
                    self.stderr.extend(line.decode("utf-8", "replace") for line in lines)
                    continue
                out += payload
                *lines, out = out.split(b"\n")
                for line in lines:
                    self._dispatch(line)
        except OSError as exc:
            self._fail(f"the connection to the container broke: {exc}")
            return
        self._fail("the container's runner stopped")

    def _dispatch(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            self.stderr.append(line.decode("utf-8", "replace"))
            return
        with self._lock:
            future = self._pending.pop(message.get("id"), None)
        if future is not None:
            future.set_result(message)

    def _fail(self, reason: str) -> None:
        detail = " | ".join(line for line in self.stderr if line.strip())[-2000:]
        with self._lock:
            if self._dead is None:
                self._dead = f"sandbox {self._name}: {reason}" + (f" ({detail})" if detail else "")
            pending, self._pending = self._pending, {}
        for future in pending.values():
            future.set_exception(SandboxError(self._dead))

    @property
    def dead(self) -> str | None:
        return self._dead

    async def request(self, op: str, wait: float, **args: Any) -> dict:
        """Sends one request and waits for its answer; the caller serialises requests (one in flight)."""
        future: concurrent.futures.Future[dict] = concurrent.futures.Future()
        with self._lock:
            if self._dead is not None:
                raise SandboxError(self._dead)
            self._next_id += 1
            request_id = self._next_id
            self._pending[request_id] = future
        data = json.dumps({"id": request_id, "op": op, **args}).encode() + b"\n"
        try:
            # The runner is idle and reading whenever a request is sent, so this does not block for long.
            self._sock.sendall(data)
        except OSError as exc:
            self._fail(f"the connection to the container broke: {exc}")
        try:
            message = await asyncio.wait_for(asyncio.wrap_future(future), wait)
        except TimeoutError:
            with self._lock:
                self._pending.pop(request_id, None)
            raise SandboxError(f"sandbox {self._name}: no answer to {op} within {wait:g} s") from None
        if message.get("ok"):
            return message["result"]
        if message.get("kind") == "patch":
            raise PatchError(message["error"])
        if message.get("kind") == "value":
            raise ValueError(message["error"])
        raise SandboxError(f"sandbox {self._name}: {op} failed: {message['error']}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the reader thread's recv
        for target in (self._sock, self._holder):
            with contextlib.suppress(OSError):
                target.close()


class DockerSandbox(Sandbox):
    """One warm container; every method is one request to its runner."""

    def __init__(self, provider: DockerProvider, name: str, container_id: str, channel: _Channel) -> None:
        self.name = name
        self.container_id = container_id
        self._provider = provider
        self._channel = channel
        self._lock = asyncio.Lock()
        self._closed = False
        self.info: dict[str, Any] = {}

    async def _call(self, op: str, wait: float = REQUEST_TIMEOUT, **args: Any) -> dict:
        if self._closed:
            raise SandboxError(f"sandbox {self.name} is closed")
        async with self._lock:
            return await self._channel.request(op, wait, **args)

    async def start(self, spec: SandboxSpec, workdir: str) -> None:
        self.info = await self._call(
            "init",
            START_TIMEOUT,
            workdir=workdir,
            output_limit=spec.settings.output_limit,
            python=spec.settings.python,
            command_prefix=spec.settings.command_prefix,
            own_container=True,
        )

    async def run(self, cmd: str, timeout: float) -> ExecResult:
        return ExecResult(**await self._call("run", timeout + ANSWER_GRACE, cmd=cmd, timeout=timeout))

    async def run_script(self, script: str, timeout: float) -> ExecResult:
        return ExecResult(**await self._call("run_script", timeout + ANSWER_GRACE, script=script, timeout=timeout))

    async def run_on(self, patch: str, script: str, timeout: float) -> ExecResult:
        """Same result as Sandbox.run_on, in one request to the runner instead of three."""
        try:
            answer = await self._call("run_on", timeout + ANSWER_GRACE, patch=patch, script=script, timeout=timeout)
        except PatchError as exc:
            return ExecResult.patch_failed(str(exc))
        return ExecResult(**answer)

    async def write_file(self, path: str, content: str) -> None:
        await self._call("write_file", path=path, content=content)

    async def read_file(self, path: str) -> str | None:
        return (await self._call("read_file", path=path))["content"]

    async def apply_patch(self, diff: str) -> None:
        await self._call("apply_patch", diff=diff)

    async def diff(self) -> str:
        return (await self._call("diff"))["diff"]

    async def reset(self) -> None:
        await self._call("reset")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._provider.release(self)

    def close_channel(self) -> None:
        self._channel.close()


def _runner_tar() -> bytes:
    buffer = io.BytesIO()
    source = RUNNER_SOURCE.read_bytes()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(RUNNER_NAME)
        info.size = len(source)
        info.mode = 0o644
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(source))
    return buffer.getvalue()


def with_prefix(prefix: str | None, cmd: str) -> str:
    """The setup command runs in the same environment as every later command: behind the command prefix."""
    if not prefix or not prefix.strip():
        return cmd
    prefix = prefix.strip()
    glue = " " if prefix.endswith(("&&", ";")) else " && "
    return prefix + glue + cmd


def _container_name(run_label: str, name: str) -> str:
    slug = re.sub(r"[^a-zA-Z0-9_.-]+", "-", f"{run_label}-{name}").strip("-.")[:80]
    return f"codemonkeys-{slug}-{secrets.token_hex(3)}"


class DockerProvider(SandboxProvider):
    """Sandboxes for one problem from one image (built or found once), at most `max_containers` open."""

    def __init__(
        self,
        spec: SandboxSpec,
        *,
        client: docker.DockerClient | None = None,
        base_image: str = images.BASE_IMAGE,
        progress: images.Progress | None = None,
    ) -> None:
        self.spec = spec
        self.base_image = base_image
        self.image: str | None = None
        self.workdir: str | None = None
        self._client = client
        self._progress = progress or (lambda line: log.debug("%s", line))
        self._prepare_lock = asyncio.Lock()
        self.capacity = spec.settings.max_containers
        self._slots = asyncio.Semaphore(self.capacity)
        self._open: dict[str, DockerSandbox] = {}
        self.description = "docker (image not prepared yet)"

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = engine.connect()
        return self._client

    def _resolve_image(self) -> tuple[str, str]:
        """(image, workdir): a ready image used in place (spec.image with spec.workdir: the repo is already
        inside, e.g. SWE-bench's /testbed) or a repo image built on spec.image or the base image."""
        spec = self.spec.settings
        client = self.client
        engine.registry.sweep_once(client)
        setup = with_prefix(spec.command_prefix, spec.setup) if spec.setup else None
        if spec.image and spec.workdir:
            if setup:
                return images.build_setup_image(client, spec.image, setup, spec.workdir, self._progress), spec.workdir
            images.ensure_image(client, spec.image, self._progress)
            return spec.image, spec.workdir
        tag = images.build_repo_image(
            client,
            Path(self.spec.repo_path),
            self.spec.commit,
            setup=setup,
            base=spec.image or self.base_image,
            progress=self._progress,
        )
        return tag, images.REPO_WORKDIR

    async def prepare(self) -> str:
        """Finds or builds the image once (the first open() does it otherwise); returns its name."""
        async with self._prepare_lock:
            if self.image is None:
                try:
                    self.image, self.workdir = await asyncio.to_thread(self._resolve_image)
                except (images.ImageError, docker.errors.DockerException) as exc:
                    raise SandboxError(f"docker image for {self.spec.repo_path}: {engine.describe_exc(exc)}") from exc
                network = "network on" if self.spec.settings.sandbox_network else "network off"
                self.description = f"docker (image {self.image}, {network})"
        return self.image

    def _create(self, name: str) -> tuple[str, _Channel]:
        """Create, copy the runner in, attach, start: the only docker round trips a sandbox pays."""
        client = self.client
        limits = self.spec.settings
        container = client.containers.create(
            self.image,
            entrypoint=["/bin/sh", "-c", RUNNER_COMMAND],  # whatever the image's entrypoint, the runner starts
            command=[],
            name=_container_name(self.spec.run_label, name),
            working_dir=self.workdir,
            stdin_open=True,  # not detached: docker sets StdinOnce, so stdin closes when we disconnect
            tty=False,
            init=True,
            auto_remove=True,
            network_mode=None if limits.sandbox_network else "none",
            nano_cpus=int(limits.docker_cpus * 1e9),
            mem_limit=limits.docker_memory,
            memswap_limit=limits.docker_memory,
            pids_limit=limits.docker_pids,
            labels=engine.owner_labels(self.spec.run_label, "sandbox"),
            environment=SANDBOX_ENV,
        )
        engine.registry.add(client, container.id)
        try:
            container.put_archive(RUNNER_DIR, _runner_tar())
            sock = client.api.attach_socket(container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            container.start()
        except BaseException:
            engine.remove_container(client, container.id)
            engine.registry.discard(container.id)
            raise
        return container.id, _Channel(sock, name)

    async def open(self, name: str) -> DockerSandbox:
        await self.prepare()
        await self._slots.acquire()
        try:
            container_id, channel = await asyncio.to_thread(self._create, name)
        except (docker.errors.DockerException, OSError) as exc:
            self._slots.release()
            raise SandboxError(f"could not start a container of {self.image}: {engine.describe_exc(exc)}") from exc
        except BaseException:
            self._slots.release()
            raise
        sandbox = DockerSandbox(self, name, container_id, channel)
        self._open[container_id] = sandbox
        try:
            await sandbox.start(self.spec, self.workdir or images.REPO_WORKDIR)
        except BaseException:
            await sandbox.close()
            raise
        return sandbox

    def _remove(self, container_id: str) -> None:
        try:
            engine.remove_container(self.client, container_id)
        except docker.errors.DockerException as exc:
            log.warning("could not remove container %s: %s", container_id[:12], engine.describe_exc(exc))
        engine.registry.discard(container_id)

    async def release(self, sandbox: DockerSandbox) -> None:
        """Removes the sandbox's container and frees its slot (DockerSandbox.close calls this)."""
        if self._open.pop(sandbox.container_id, None) is None:
            return
        try:
            await asyncio.to_thread(self._remove, sandbox.container_id)
        finally:
            sandbox.close_channel()
            self._slots.release()

    @property
    def open_count(self) -> int:
        return len(self._open)

    async def aclose(self) -> None:
        """Removes every container still open (a trajectory that crashed without closing its sandbox)."""
        for sandbox in list(self._open.values()):
            await sandbox.close()
