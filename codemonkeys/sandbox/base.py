"""The one interface every sandbox back end keeps (DESIGN.md, "Sandbox")."""

from __future__ import annotations

from abc import ABC, abstractmethod

from pydantic import BaseModel

from codemonkeys.sandbox.runner import truncate_middle

__all__ = ["ExecResult", "PatchError", "Sandbox", "SandboxError", "SandboxProvider", "SandboxSpec", "truncate_middle"]


class ExecResult(BaseModel):
    exit_code: int
    output: str
    timed_out: bool = False
    seconds: float = 0.0


class PatchError(Exception):
    """A diff that does not apply to the pristine tree."""


class SandboxError(Exception):
    """The sandbox itself failed (container died, worktree vanished): the trajectory using it ends."""


class Sandbox(ABC):
    """A checkout of the problem's repository at its commit, where commands run isolated.

    Paths are relative to the repository root; commands run with the repository root as cwd.
    """

    output_limit: int = 20_000

    @abstractmethod
    async def run(self, cmd: str, timeout: float) -> ExecResult:
        """Runs a shell command; on timeout the whole process tree is killed and timed_out is set."""

    @abstractmethod
    async def write_file(self, path: str, content: str) -> None: ...

    @abstractmethod
    async def read_file(self, path: str) -> str | None:
        """The file's current text, or None when it does not exist."""

    @abstractmethod
    async def apply_patch(self, diff: str) -> None:
        """Applies a unified diff (git format) to the current tree; raises PatchError."""

    @abstractmethod
    async def diff(self) -> str:
        """The tree's changes against the pristine commit, new files included, as a git diff."""

    @abstractmethod
    async def reset(self) -> None:
        """Back to the pristine commit: tracked changes undone, files the runs created removed."""

    @abstractmethod
    async def run_script(self, script: str, timeout: float) -> ExecResult:
        """Runs a Python test script from the repository root without adding it to the tree."""

    @abstractmethod
    async def close(self) -> None: ...

    async def run_on(self, patch: str, script: str, timeout: float) -> ExecResult:
        """Runs a test script on the pristine tree with `patch` applied (empty patch: the original code)."""
        await self.reset()
        if patch.strip():
            try:
                await self.apply_patch(patch)
            except PatchError as exc:
                return ExecResult(exit_code=-1, output=f"the candidate patch does not apply: {exc}")
        return await self.run_script(script, timeout)

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class SandboxSpec(BaseModel):
    """What a back end needs to build sandboxes for one problem."""

    repo_path: str
    commit: str
    network: bool = False
    output_limit: int = 20_000
    python: str = "python"
    image: str | None = None
    setup: str | None = None
    workdir: str | None = None
    command_prefix: str | None = None
    run_label: str = "default"
    max_containers: int = 4


class SandboxProvider(ABC):
    """Opens sandboxes for one problem; owns whatever they share (a repo image, a concurrency cap)."""

    description: str = ""

    @abstractmethod
    async def open(self, name: str) -> Sandbox: ...

    @abstractmethod
    async def aclose(self) -> None:
        """Releases what the provider holds; every sandbox it opened must already be closed."""
