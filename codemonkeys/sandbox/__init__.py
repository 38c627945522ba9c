"""Sandboxes where model-written code runs: `local` (git worktree + subprocess) and `docker`."""

from codemonkeys.sandbox.base import ExecResult, PatchError, Sandbox, SandboxError, truncate_middle

__all__ = ["ExecResult", "PatchError", "Sandbox", "SandboxError", "truncate_middle"]
