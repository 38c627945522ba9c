"""The in-container half of the docker sandbox: one long-lived process that serves JSON-line requests.

It runs as the container's main process, reading requests from its stdin and answering on its stdout
(both attached to the host over one docker socket), so a warm container pays no docker round trip per
command. Stdlib only, and kept compatible with older Python 3 (SWE-bench images run Python 3.7+ as
`python3`): it is copied into images this package did not build. When its stdin closes (the host process
went away, however it died) it exits, and with it the container.

Requests: {"id", "op", ...}; answers: {"id", "ok": true, "result": {...}} or {"id", "ok": false, "error",
"kind"}. Ops: init, run, run_script, run_on, write_file, read_file, apply_patch, diff, reset, ping.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

TIMEOUT_EXIT_CODE = 124
GRACE_AFTER_EXIT = 0.2  # seconds of output still read from background children once the command has exited
MARKER = "\n\n... [{} characters cut] ...\n\n"
# The staged tree against the pristine commit as a patch `git apply` takes back, whatever the user's git config.
DIFF_ARGS = (
    "diff",
    "--cached",
    "--binary",
    "--no-color",
    "--no-ext-diff",
    "--no-renames",
    "--src-prefix=a/",
    "--dst-prefix=b/",
)


class RequestError(Exception):
    """An error the host maps to its own exception type through `kind`."""

    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind


class Capture:
    """Merged output with bounded memory: the head and the tail are kept, the middle only counted."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.cap = max(limit, 1) * 4  # bytes: a UTF-8 character takes at most four
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def add(self, data: bytes) -> None:
        room = self.cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        self.tail += data
        excess = len(self.tail) - self.cap
        if excess > 0:
            del self.tail[:excess]
            self.dropped += excess

    def text(self) -> str:
        """Same result as truncate_middle on the whole output (the cut count is approximate only when the
        output exceeded the memory bound)."""
        if not self.dropped:
            return truncate_middle(bytes(self.head + self.tail).decode("utf-8", "replace"), self.limit)
        head = bytes(self.head).decode("utf-8", "replace")
        tail = bytes(self.tail).decode("utf-8", "replace")
        total = len(head) + self.dropped + len(tail)
        keep = max(self.limit - len(MARKER.format(total)), 0)
        first = keep // 2
        last = keep - first
        return head[:first] + MARKER.format(total - keep) + (tail[-last:] if last else "")


def truncate_middle(text: str, limit: int) -> str:
    """Keeps the head and tail, where tracebacks and summaries live, and says how much was cut. Defined here,
    in the stdlib-only runner that is copied into containers, and re-exported by codemonkeys.sandbox.base."""
    if len(text) <= limit:
        return text
    keep = max(limit - len(MARKER.format(len(text))), 0)
    head = keep // 2
    tail = keep - head
    return text[:head] + MARKER.format(len(text) - keep) + (text[-tail:] if tail else "")


def exclude_pattern(path: str) -> str:
    """A .git/info/exclude line matching exactly this path."""
    escaped = "".join("\\" + c if c in "*?[]\\!# " else c for c in path)
    return "/" + escaped


class Runner:
    def __init__(self) -> None:
        self.workdir = os.getcwd()
        self.env = dict(os.environ)
        self.limit = 20000
        self.python = "python"
        self.shell = "/bin/sh"
        self.head = ""
        self.git_dir = ""
        self.baseline_files: set[str] = set()
        self.baseline_dirs: set[str] = set()
        self.own_container = False

    # -- setup ---------------------------------------------------------------------------------------

    def op_init(
        self,
        workdir: str,
        output_limit: int,
        python: str,
        command_prefix: str | None = None,
        own_container: bool = False,
    ) -> dict:
        """Sets the environment up once (a conda or venv activation) and records the pristine state.

        `own_container`: the host says this runner is alone in its container, so reset may kill strays.
        """
        self.own_container = own_container and (os.getpid() == 1 or os.getppid() == 1)
        self.workdir = workdir
        self.limit = output_limit
        self.python = python
        self.shell = shutil.which("bash") or "/bin/sh"
        if command_prefix and command_prefix.strip():
            self.env = self.activated_env(command_prefix.strip())
        self.env.pop("PWD", None)
        self.env.pop("OLDPWD", None)
        if not os.path.isdir(workdir):
            raise RequestError("working directory not found in the container: " + workdir)
        # Test scripts live outside the tree: imports from the repo root must still work (as in the local back end).
        roots = [workdir] + ([os.path.join(workdir, "src")] if os.path.isdir(os.path.join(workdir, "src")) else [])
        if self.env.get("PYTHONPATH"):
            roots.append(self.env["PYTHONPATH"])
        self.env["PYTHONPATH"] = os.pathsep.join(roots)
        self.head = self.git("rev-parse", "--verify", "HEAD^{commit}").strip()
        self.git_dir = os.path.join(workdir, self.git("rev-parse", "--git-dir").strip())
        self.baseline_files = set(self.untracked(ignored_too=True))
        self.exclude_untracked()
        self.baseline_dirs = set(self.directories())
        return {
            "uid": os.getuid(),
            "head": self.head,
            "baseline_untracked": len(self.baseline_files),
            "python": sys.version.split()[0],
        }

    def activated_env(self, prefix: str) -> dict:
        glue = " " if prefix.endswith("&&") or prefix.endswith(";") else " && "
        proc = subprocess.run(
            [self.shell, "-c", prefix + glue + "env -0"],
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
        )
        if proc.returncode != 0:
            message = proc.stderr.decode("utf-8", "replace").strip()
            raise RequestError(f"the command prefix failed (exit {proc.returncode}): {message}")
        env = {}
        for item in proc.stdout.decode("utf-8", "replace").split("\0"):
            name, sep, value = item.partition("=")
            if sep and name not in ("_", "SHLVL"):
                env[name] = value
        return env

    def exclude_untracked(self) -> None:
        """Untracked files present at start (build artefacts) must not show up in diff()."""
        paths = self.untracked(ignored_too=False)
        if not paths:
            return
        info = os.path.join(self.git_dir, "info")
        os.makedirs(info, exist_ok=True)
        with open(os.path.join(info, "exclude"), "a", encoding="utf-8") as handle:
            handle.write("\n# present when the sandbox started\n")
            handle.writelines(exclude_pattern(p) + "\n" for p in paths)

    # -- helpers -------------------------------------------------------------------------------------

    def git(self, *args: str, stdin: bytes | None = None, env: dict | None = None) -> str:
        # Never the runner's own stdin: that is the host's request channel.
        source = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
        proc = subprocess.run(
            ["git", "-c", "core.quotepath=off", "-c", "core.hooksPath=/dev/null", *args],
            cwd=self.workdir,
            env=env or self.env,
            capture_output=True,
            **source,
        )
        if proc.returncode != 0:
            message = proc.stderr.decode("utf-8", "replace").strip() or f"exit {proc.returncode}"
            raise RequestError(f"git {args[0]}: {message}")
        return proc.stdout.decode("utf-8", "replace")

    def untracked(self, ignored_too: bool) -> list:
        args = ["ls-files", "--others", "-z"] + ([] if ignored_too else ["--exclude-standard"])
        return [p for p in self.git(*args).split("\0") if p]

    def kill_strays(self) -> None:
        """Processes that escaped a command's group (daemons, setsid) must not outlive the run: the container
        is this sandbox's alone, so everything but the init process and this runner goes."""
        if not self.own_container:
            return
        keep = {1, os.getpid()}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in keep:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(entry), signal.SIGKILL)

    def status(self) -> tuple:
        """(HEAD moved or tracked files changed, untracked and ignored paths) from porcelain v2."""
        out = self.git("status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all", "--ignored")
        moved = False
        extra = []
        records = iter(out.split("\0"))
        for record in records:
            if record.startswith("# branch.oid "):
                moved = moved or record.split()[2] != self.head
            elif record[:1] in ("?", "!"):
                extra.append(record[2:])
            elif record[:1] in ("1", "2", "u"):
                moved = True
                if record[:1] == "2":  # a rename or copy: the original path follows
                    next(records, None)
        return moved, extra

    def directories(self) -> list:
        found = []
        for root, dirs, _files in os.walk(self.workdir):
            if root == self.workdir and ".git" in dirs:
                dirs.remove(".git")
            found.append(os.path.relpath(root, self.workdir))
        return found

    def path(self, relative: str) -> str:
        """Paths stay inside the tree, as in the local back end."""
        root = os.path.realpath(self.workdir)
        target = os.path.realpath(os.path.join(root, relative))
        if not relative or os.path.isabs(relative) or not target.startswith(root + os.sep):
            raise RequestError(f"path must be relative and inside the repository: {relative!r}", kind="value")
        return target

    def execute(self, cmd: str, timeout: float, env: dict | None = None) -> dict:
        """Runs `cmd` in its own process group; the whole group is killed when it returns or times out."""
        run_env = dict(self.env)
        run_env.update(env or {})
        start = time.monotonic()
        proc = subprocess.Popen(
            [self.shell, "-c", cmd],
            cwd=self.workdir,
            env=run_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        capture = Capture(self.limit)
        fd = proc.stdout.fileno()
        deadline = start + timeout
        exited_at = None
        timed_out = False
        while True:
            now = time.monotonic()
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            end = deadline if exited_at is None else min(deadline, exited_at + GRACE_AFTER_EXIT)
            if now >= end:
                timed_out = exited_at is None
                break
            ready, _, _ = select.select([fd], [], [], min(end - now, 0.1))
            if ready:
                data = os.read(fd, 65536)
                if not data:
                    break
                capture.add(data)
        if not timed_out and exited_at is None:
            # Output closed: the command is exiting. Killing the group before it has would turn exit 0 into 137.
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                timed_out = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stdout.close()
        code = proc.wait()
        if code < 0:  # killed by a signal: the shell's convention, as the local back end reports it
            code = 128 - code
        if timed_out:
            code = TIMEOUT_EXIT_CODE
        output = capture.text()
        if timed_out:
            output = truncate_middle(output + f"\n[timed out after {timeout:g} seconds]", self.limit)
        return {
            "exit_code": code,
            "output": output,
            "timed_out": timed_out,
            "seconds": round(time.monotonic() - start, 4),
        }

    # -- ops -----------------------------------------------------------------------------------------

    def op_ping(self) -> dict:
        return {}

    def op_run(self, cmd: str, timeout: float, env: dict | None = None) -> dict:
        return self.execute(cmd, timeout, env)

    def op_run_script(self, script: str, timeout: float) -> dict:
        handle, script_path = tempfile.mkstemp(prefix="codemonkeys-script-", suffix=".py")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(script.encode("utf-8"))
            return self.execute(self.python + " " + shlex.quote(script_path), timeout)
        finally:
            os.unlink(script_path)

    def op_run_on(self, patch: str, script: str, timeout: float) -> dict:
        """Reset, apply, run: the hot path of editing turns and voting, in one request."""
        self.op_reset()
        if patch.strip():
            self.op_apply_patch(patch)
        return self.op_run_script(script, timeout)

    def op_write_file(self, path: str, content: str) -> dict:
        target = self.path(path)
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        with open(target, "wb") as out:
            out.write(content.encode("utf-8"))
        return {}

    def op_read_file(self, path: str) -> dict:
        target = self.path(path)
        if not os.path.isfile(target):
            return {"content": None}
        with open(target, "rb") as handle:
            return {"content": handle.read().decode("utf-8", "replace")}

    def op_apply_patch(self, diff: str) -> dict:
        if not diff.endswith("\n"):
            diff += "\n"
        try:
            self.git("apply", "--whitespace=nowarn", "-", stdin=diff.encode("utf-8"))
        except RequestError as exc:
            raise RequestError(str(exc), kind="patch") from None
        return {}

    def op_diff(self) -> dict:
        """Diffs through a scratch index, so the tree's own index is never touched."""
        handle, index = tempfile.mkstemp(prefix="codemonkeys-index-")
        os.close(handle)
        try:
            source = os.path.join(self.git_dir, "index")
            if os.path.exists(source):
                shutil.copyfile(source, index)
            else:
                os.unlink(index)
            env = dict(self.env)
            env["GIT_INDEX_FILE"] = index
            self.git("add", "-A", env=env)
            text = self.git(*DIFF_ARGS, self.head, env=env)
        finally:
            if os.path.exists(index):
                os.unlink(index)
        return {"diff": text}

    def op_reset(self) -> dict:
        """Pristine tree: tracked files restored, files created since start removed (artefacts kept).

        One `git status` says whether HEAD moved or tracked files changed; only then is a `git reset --hard`
        (and a fresh listing) needed. The common case after a test run is that single process.
        """
        self.kill_strays()
        moved, extra = self.status()
        if moved:
            self.git("reset", "--hard", "-q", self.head)
            extra = self.untracked(ignored_too=True)
        removed = 0
        parents = set()
        for rel in extra:
            if rel in self.baseline_files:
                continue
            target = os.path.join(self.workdir, rel.rstrip("/"))
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target, ignore_errors=True)
            else:
                try:
                    os.unlink(target)
                except FileNotFoundError:
                    continue
            removed += 1
            parents.add(os.path.dirname(rel.rstrip("/")))
        for rel in sorted(parents, key=len, reverse=True):
            while rel and rel not in self.baseline_dirs:
                try:
                    os.rmdir(os.path.join(self.workdir, rel))
                except OSError:
                    break
                rel = os.path.dirname(rel)
        return {"removed": removed}


def reply(message: dict) -> None:
    sys.stdout.buffer.write(json.dumps(message).encode("utf-8") + b"\n")
    sys.stdout.buffer.flush()


def serve() -> None:
    runner = Runner()
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        request_id = None
        try:
            request = json.loads(line.decode("utf-8"))
            request_id = request.pop("id")
            handler = getattr(runner, "op_" + request.pop("op"))
            reply({"id": request_id, "ok": True, "result": handler(**request)})
        except RequestError as exc:
            reply({"id": request_id, "ok": False, "error": str(exc), "kind": exc.kind})
        except Exception as exc:
            reply({"id": request_id, "ok": False, "error": f"{type(exc).__name__}: {exc}", "kind": "error"})


if __name__ == "__main__":
    serve()
