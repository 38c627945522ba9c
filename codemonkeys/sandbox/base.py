"""The one interface every sandbox back end keeps (DESIGN.md, "Sandbox")."""

from __future__ import annotations

from abc import ABC, abstractmethod
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from codemonkeys.config import SandboxSettings
from codemonkeys.sandbox.runner import truncate_middle

__all__ = [
    "ExecResult",
    "Outcome",
    "PatchError",
    "Sandbox",
    "SandboxError",
    "SandboxProvider",
    "SandboxSpec",
    "truncate_middle",
]

PATCH_FAILED_CODE = -1


class Outcome(StrEnum):
    """The test-script contract (DESIGN.md): what a run says about the issue. Only FIXED is a vote."""

    FIXED = "fixed"
    NOT_FIXED = "not fixed"
    SCRIPT_ERROR = "script error"
    TIMED_OUT = "timed out"
    PATCH_FAILED = "patch does not apply"


class ExecResult(BaseModel):
    exit_code: int
    output: str
    timed_out: bool = False
    seconds: float = 0.0

    @classmethod
    def patch_failed(cls, why: str) -> ExecResult:
        """The one way a run that could not start because its patch does not apply is written."""
        return cls(exit_code=PATCH_FAILED_CODE, output=f"the candidate patch does not apply: {why}")

    @property
    def outcome(self) -> Outcome:
        if self.timed_out:
            return Outcome.TIMED_OUT
        if self.exit_code == PATCH_FAILED_CODE:
            return Outcome.PATCH_FAILED
        if self.exit_code == 0:
            return Outcome.FIXED
        if self.exit_code == 2:
            return Outcome.NOT_FIXED
        return Outcome.SCRIPT_ERROR


class PatchError(Exception):
    """A diff that does not apply to the pristine tree."""


class SandboxError(Exception):
    """The sandbox itself failed (container died, worktree vanished): the trajectory using it ends."""


class Sandbox(ABC):
    """A checkout of the problem's repository at its commit, where commands run isolated.

    Paths are relative to the repository root; commands run with the repository root as cwd.
    """

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
                return ExecResult.patch_failed(str(exc))
        return await self.run_script(script, timeout)

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class SandboxSpec(BaseModel):
    """What a back end needs to build sandboxes for one problem: where the code is, and the sandbox settings."""

    model_config = ConfigDict(extra="forbid")

    repo_path: str
    commit: str
    run_label: str = "default"
    settings: SandboxSettings = SandboxSettings()


class SandboxProvider(ABC):
    """Opens sandboxes for one problem; owns whatever they share (a repo image, a concurrency cap)."""

    description: str = ""
    capacity: int | None = None  # sandboxes open at once before `open` waits for one to close (None: no cap)

    async def prepare(self) -> object:
        """Makes once what every sandbox starts from (an image, the tree after setup); raises SandboxError."""
        return None

    @abstractmethod
    async def open(self, name: str) -> Sandbox: ...

    @abstractmethod
    async def aclose(self) -> None:
        """Releases what the provider holds; every sandbox it opened must already be closed."""
