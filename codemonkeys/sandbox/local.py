"""The `local` back end: one git worktree per sandbox, commands as subprocesses in their own process group.

Not a security boundary against hostile code: it keeps runs apart from each other and from the user's
checkout, keeps secrets out of their environment and (where the kernel allows) cuts their network.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from codemonkeys.sandbox.base import (
    ExecResult,
    PatchError,
    Sandbox,
    SandboxError,
    SandboxProvider,
    SandboxSpec,
)
from codemonkeys.sandbox.runner import DIFF_ARGS, Capture

log = logging.getLogger(__name__)

_SECRET_PARTS = ("API_KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "PRIVATE_KEY")
_SECRET_PREFIXES = (
    "AWS_",
    "AZURE_",
    "GOOGLE_",
    "GCP_",
    "VERTEX",
    "OPENAI_",
    "ANTHROPIC_",
    "GEMINI_",
    "MISTRAL_",
    "COHERE_",
    "GROQ_",
    "TOGETHER",
    "DEEPSEEK_",
    "OPENROUTER_",
    "XAI_",
    "FIREWORKS_",
    "HF_",
    "HUGGING",
    "LITELLM_",
    "CODEMONKEYS_",
)
_SECRET_NAMES = frozenset({"SSH_AUTH_SOCK", "GITHUB_TOKEN", "GH_TOKEN", "NETRC"})
# Variables that would point git inside the sandbox at another repository.
_GIT_LOCATION = frozenset(
    {"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR", "GIT_NAMESPACE"}
)

# Put in the sandbox's user site-packages, which only an interpreter running outside any venv reads (a venv turns
# the user site off). A symlink to the venv's python (tox-current-env makes `.tox/<env>/bin/python` one) starts
# the base interpreter outside the venv, as Python looks for pyvenv.cfg beside the path it was started by, not
# beside the file it resolves to; this makes such an interpreter the venv's again. Python 3.6 syntax.
VENV_HOOK_MODULE = "codemonkeys_venv_hook"
_VENV_HOOK = """\
# codemonkeys: {venv} for its own interpreter started by another path (a symlink to its bin/python)
import os
import sys


def _activate(venv):
    real = os.path.realpath
    if real(sys.prefix) == real(venv) or real(sys.executable) != real(os.path.join(venv, "bin", "python")):
        return
    import site

    base = set(real(p) for p in site.getsitepackages([sys.base_prefix, sys.base_exec_prefix]))
    sys.path[:] = [p for p in sys.path if real(p) not in base]
    sys.prefix = sys.exec_prefix = venv
    for path in site.getsitepackages([venv]):
        if os.path.isdir(path):
            site.addsitedir(path)


_activate({venv!r})
"""

_WORKTREE_PREFIX = "codemonkeys-wt-"
_OWNER_FILE = "owner.pid"
_GRACE = 0.5  # seconds to drain output after the process group is gone
_GIT_FLAGS = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")


def is_secret(name: str) -> bool:
    """Errs on the side of dropping: a test script never needs a credential."""
    upper = name.upper()
    return (
        upper in _SECRET_NAMES
        or upper.endswith("_KEY")
        or any(part in upper for part in _SECRET_PARTS)
        or upper.startswith(_SECRET_PREFIXES)
    )


def safe_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment minus secrets and minus git variables that would redirect git."""
    return {k: v for k, v in environ.items() if not is_secret(k) and k not in _GIT_LOCATION}


def _git_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION}
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["LC_ALL"] = "C"
    return env


@functools.cache
def network_isolation_mode() -> str:
    """Probed once per process: the first of `unshare -n`, `unshare -rn`, `bwrap` that works here, else "none"."""
    candidates = {
        "unshare -n": ["unshare", "-n", "true"],
        "unshare -rn": ["unshare", "-rn", "true"],
        "bwrap": ["bwrap", "--dev-bind", "/", "/", "--unshare-net", "true"],
    }
    for mode, argv in candidates.items():
        if shutil.which(argv[0]) is None:
            continue
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            if subprocess.run(argv, capture_output=True, timeout=10).returncode == 0:
                return mode
    log.warning("no network namespace available (unshare, bwrap): local sandboxes run WITH network access")
    return "none"


@functools.cache
def _ip_command() -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which("ip", path=path)


@functools.cache
def _nice_command() -> str | None:
    return shutil.which("nice", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin", "/bin"]))


def _command_argv(cmd: str, mode: str) -> list[str]:
    """bash -c cmd, inside a fresh network namespace with loopback up when `mode` says so, at a lower CPU
    priority than the orchestrator: on a machine saturated by test runs, model answers are still read and
    the next requests sent at once, and every trajectory waits less."""
    nice = _nice_command()
    shell = [*([nice, "-n", "10"] if nice else []), "bash", "-c", cmd]
    if mode == "bwrap":  # bwrap brings loopback up itself
        return ["bwrap", "--dev-bind", "/", "/", "--unshare-net", "--die-with-parent", *shell]
    if mode in ("unshare -n", "unshare -rn"):
        ip = _ip_command()
        inner = shell
        if ip is not None:
            inner = ["sh", "-c", f'{shlex.quote(ip)} link set lo up 2>/dev/null; exec "$@"', "sh", *shell]
        return [*mode.split(), "--", *inner]
    return shell


async def _drain(reader: asyncio.StreamReader, out: Capture) -> None:
    while chunk := await reader.read(1 << 16):
        out.add(chunk)


async def resolve_python(env: Mapping[str, str], cwd: Path) -> str:
    """`python` from PATH, or this interpreter when there is none. A pyenv shim (a bash script that costs
    ~100 ms a run, more than most test scripts) is resolved once to the interpreter it would pick here."""
    found = shutil.which("python", path=env["PATH"])
    if found is None:
        return shlex.quote(sys.executable)
    root = Path(found).parent.parent
    pyenv = root / "libexec" / "pyenv"
    if Path(found).parent.name != "shims" or not pyenv.is_file():
        return "python"
    proc = await asyncio.create_subprocess_exec(
        str(pyenv),
        "which",
        "python",
        cwd=cwd,
        env={**env, "PYENV_ROOT": str(root)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    out, _ = await proc.communicate()
    resolved = out.decode(errors="replace").strip()
    return shlex.quote(resolved) if proc.returncode == 0 and os.path.isfile(resolved) else "python"


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


# fork+exec holds its caller until the child has exec'd: 5-10 ms on a busy machine, during which an event loop
# would serve no other trajectory. Spawns happen on these threads instead, and git commands run to their end
# on threads of their own, so a burst of checkouts never delays a test run's start.
_SPAWNER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sandbox-spawn")
_GIT_RUNNER = ThreadPoolExecutor(max_workers=16, thread_name_prefix="sandbox-git")


def _popen(argv: list[str], cwd: str, env: Mapping[str, str], output_fd: int) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=output_fd,
            stderr=output_fd,
            start_new_session=True,
        )
    finally:
        os.close(output_fd)


def _abandon(spawned: asyncio.Future[subprocess.Popen[bytes]]) -> None:
    """A spawn whose caller was cancelled meanwhile: the child is killed and reaped, never left running."""
    if not spawned.cancelled() and spawned.exception() is None:
        proc = spawned.result()
        _kill_group(proc.pid)
        asyncio.get_running_loop().run_in_executor(_SPAWNER, proc.wait)


async def _spawn(argv: list[str], *, cwd: str, env: Mapping[str, str], output_fd: int) -> subprocess.Popen[bytes]:
    """Starts argv in a session of its own, stdout and stderr to `output_fd` (closed here), from a spawner thread."""
    spawned = asyncio.get_running_loop().run_in_executor(_SPAWNER, _popen, argv, cwd, env, output_fd)
    try:
        return await asyncio.shield(spawned)
    except asyncio.CancelledError:
        spawned.add_done_callback(_abandon)
        raise


async def _exit_code(proc: subprocess.Popen[bytes]) -> int:
    """Waits for the child's exit through a pidfd the loop watches: no thread or SIGCHLD watcher per child."""
    loop = asyncio.get_running_loop()
    exited = loop.create_future()
    fd = os.pidfd_open(proc.pid)
    loop.add_reader(fd, lambda: exited.done() or exited.set_result(None))
    try:
        await exited
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    return proc.wait()


async def _exec(argv: list[str], *, cwd: str, env: Mapping[str, str], timeout: float | None, limit: int) -> ExecResult:
    """Runs argv in its own session; on timeout, and after it exits, its whole process group is killed.

    Output goes through a pipe we own rather than asyncio's, so waiting for the exit never waits for a
    grandchild that escaped the group and still holds the pipe open.
    """
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    start = time.monotonic()
    try:
        proc = await _spawn(argv, cwd=cwd, env=env, output_fd=write_fd)
    except BaseException:
        os.close(read_fd)
        raise
    reader = asyncio.StreamReader(loop=loop)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop), os.fdopen(read_fd, "rb", buffering=0)
    )
    out = Capture(limit)
    draining = asyncio.ensure_future(_drain(reader, out))
    timed_out = False
    try:
        try:
            code = await asyncio.wait_for(_exit_code(proc), timeout)
        except TimeoutError:
            timed_out = True
            _kill_group(proc.pid)
            await _exit_code(proc)
            code = 124
        _kill_group(proc.pid)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(draining), _GRACE)
    finally:
        if proc.returncode is None:  # cancelled while it ran: killed, and reaped off the loop
            _kill_group(proc.pid)
            loop.run_in_executor(_SPAWNER, proc.wait)
        draining.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await draining
        transport.close()
    if code < 0:
        code = 128 - code
    return ExecResult(
        exit_code=code, output=out.text(), timed_out=timed_out, seconds=round(time.monotonic() - start, 3)
    )


async def _git(*args: str, cwd: str | Path, check: bool = True) -> str:
    """A git command, run to its end on a thread (its fork would hold the loop)."""
    argv = ["git", *_GIT_FLAGS, *args]
    proc = await asyncio.get_running_loop().run_in_executor(
        _GIT_RUNNER,
        functools.partial(
            subprocess.run, argv, cwd=str(cwd), env=_git_environment(), stdin=subprocess.DEVNULL, capture_output=True
        ),
    )
    if check and proc.returncode != 0:
        message = (proc.stderr or proc.stdout).decode(errors="replace").strip()
        raise SandboxError(f"git {args[0]} failed ({proc.returncode}): {message}")
    return proc.stdout.decode(errors="replace")


_PATCH_FAILED = "CODEMONKEYS-PATCH-FAILED:"
_RESET_FAILED = "CODEMONKEYS-RESET-FAILED:"
_REPO_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = weakref.WeakKeyDictionary()
_LOCK_ERRORS = ("index.lock", "already locked", "could not lock", "unable to create", "file exists")


def _repo_lock(repo: str) -> asyncio.Lock:
    """One lock per repository per event loop: git worktree add/remove rewrite shared files in .git."""
    locks = _REPO_LOCKS.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(repo, asyncio.Lock())


def _lock_file(repo: str) -> Path:
    git_dir = Path(repo, ".git")
    if git_dir.is_dir():
        return git_dir / "codemonkeys-worktrees.lock"
    return Path(tempfile.gettempdir()) / f"codemonkeys-worktrees-{hashlib.sha1(repo.encode()).hexdigest()[:16]}.lock"


async def _git_locked(repo: str, *args: str) -> str:
    """A git command that rewrites the shared repository's worktree list: serialized within this event loop and,
    through a file lock, across processes (batch workers, Ray tasks), whose `worktree add` and `remove` would
    otherwise race on the same .git/worktrees entries. Retried when git's own lock is held."""
    async with _repo_lock(repo):
        fd = os.open(_lock_file(repo), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            for attempt in range(20):
                try:
                    return await _git(*args, cwd=repo)
                except SandboxError as exc:
                    if attempt == 19 or not any(s in str(exc).lower() for s in _LOCK_ERRORS):
                        raise
                await asyncio.sleep(0.05 * (attempt + 1))
        finally:
            os.close(fd)
    raise AssertionError("unreachable")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prune_stale_worktrees(repo: str) -> None:
    """Removes worktrees a killed run left behind: ours (by name) whose owning process is gone. Under the
    worktree lock: a prune while another process is between creating a worktree's entry and locking it would
    delete the entry under it. Never waits for the lock (it runs on the event loop, where a holder in this
    process could not finish): when worktrees are being added or removed right now, the next provider prunes."""
    fd = os.open(_lock_file(repo), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        _prune_stale_worktrees(repo)
    finally:
        os.close(fd)


def _prune_stale_worktrees(repo: str) -> None:
    env = _git_environment()
    listing = subprocess.run(
        ["git", *_GIT_FLAGS, "worktree", "list", "--porcelain"], cwd=repo, env=env, capture_output=True, text=True
    )
    for line in listing.stdout.splitlines():
        if not line.startswith("worktree "):
            continue
        tree = Path(line.removeprefix("worktree "))
        home = tree.parent
        if not home.name.startswith(_WORKTREE_PREFIX):
            continue
        try:
            owner = int((home / _OWNER_FILE).read_text())
        except (OSError, ValueError):
            owner = None
        if owner is not None and _pid_alive(owner):
            continue
        subprocess.run(
            ["git", *_GIT_FLAGS, "worktree", "remove", "--force", str(tree)], cwd=repo, env=env, capture_output=True
        )
        shutil.rmtree(home, ignore_errors=True)
    subprocess.run(["git", *_GIT_FLAGS, "worktree", "prune"], cwd=repo, env=env, capture_output=True)


def venv_python_version(venv: Path) -> str | None:
    """ "3.9" for a venv of Python 3.9, from its pyvenv.cfg or its lib/ directory; None when neither says."""
    try:
        for line in (venv / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version", "version_info"):
                parts = value.strip().split(".")
                if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
                    return f"{parts[0]}.{parts[1]}"
    except OSError:
        pass
    found = sorted((venv / "lib").glob("python3.*/site-packages"))
    return found[0].parent.name.removeprefix("python") if found else None


def venv_hook_files(venv: str) -> dict[str, str]:
    """File name → text of the `.pth` hook that makes the venv's base interpreter, started by another path than
    the venv's (a symlink to its python), the venv's; for a site-packages directory only that interpreter reads."""
    return {
        f"{VENV_HOOK_MODULE}.py": _VENV_HOOK.format(venv=venv),
        f"{VENV_HOOK_MODULE}.pth": f"import {VENV_HOOK_MODULE}\n",
    }


def install_venv_hook(venv: Path, home: Path) -> None:
    """The venv hook in the user site-packages under `home`: only the venv's base interpreter reads it there,
    and only when started outside the venv (a venv turns the user site off)."""
    version = venv_python_version(venv)
    if version is None:
        return
    site = home / ".local" / "lib" / f"python{version}" / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    for name, text in venv_hook_files(str(venv)).items():
        (site / name).write_text(text, encoding="utf-8")


class LocalSandbox(Sandbox):
    """A detached git worktree of the problem's repo plus a scratch dir (HOME, TMPDIR, scripts) beside it."""

    def __init__(
        self,
        spec: SandboxSpec,
        name: str,
        commit: str,
        isolation: str,
        on_close: Callable[[LocalSandbox], None] | None = None,
    ) -> None:
        self.spec = spec
        self.name = name
        self.commit = commit
        self.network_isolation = isolation
        self.output_limit = spec.settings.output_limit
        self.repo = str(Path(spec.repo_path).resolve())
        self.home = Path(tempfile.mkdtemp(prefix=_WORKTREE_PREFIX))
        (self.home / _OWNER_FILE).write_text(str(os.getpid()))
        self.tree = self.home / self.home.name
        self.scratch = self.home / "scratch"
        self._closed = False
        self._env: dict[str, str] = {}
        self._python = spec.settings.python
        self._on_close = on_close

    @classmethod
    async def create(
        cls,
        spec: SandboxSpec,
        name: str,
        commit: str,
        isolation: str,
        on_close: Callable[[LocalSandbox], None] | None = None,
    ) -> LocalSandbox:
        """`isolation` is a mode from `network_isolation_mode()`, or "host" for a sandbox with network."""
        sandbox = cls(spec, name, commit, isolation, on_close)
        try:
            await sandbox._start()
        except BaseException:
            await sandbox.close()
            raise
        return sandbox

    async def _start(self) -> None:
        # Only the entry in .git/worktrees is made under the lock; its files are checked out outside it, so
        # sandboxes opened together wait for each other's bookkeeping, not for each other's checkouts.
        await _git_locked(
            self.repo, "worktree", "add", "--detach", "--force", "--no-checkout", str(self.tree), self.commit
        )
        await _git("reset", "-q", "--hard", cwd=self.tree)
        for sub in ("home", "tmp", "scripts", "patches"):
            (self.scratch / sub).mkdir(parents=True, exist_ok=True)
        env = safe_environment(os.environ)
        env.update(HOME=str(self.scratch / "home"), TMPDIR=str(self.scratch / "tmp"))
        env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
        env.setdefault("PATH", os.defpath)
        # Imports from the repo root must find this worktree, not an editable install of the user's checkout.
        roots = [str(self.tree)] + ([str(self.tree / "src")] if (self.tree / "src").is_dir() else [])
        env["PYTHONPATH"] = os.pathsep.join(roots + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        venv = self.spec.settings.venv
        if venv:
            # The environment's venv, as `activate` would set it up: its bin/ first, its python for scripts.
            env["PATH"] = os.pathsep.join([str(Path(venv) / "bin"), env["PATH"]])
            env["VIRTUAL_ENV"] = str(venv)
            env.pop("PYTHONHOME", None)
            env.pop("PYTHONUSERBASE", None)  # the user site is HOME's, where the hook is, as tox (keeping HOME) sees it
            install_venv_hook(Path(venv), self.scratch / "home")
        self._env = env
        if self._python == "python" and venv:
            self._python = shlex.quote(str(Path(venv) / "bin" / "python"))
        elif self._python == "python":
            self._python = await resolve_python(env, self.tree)

    def _live(self) -> None:
        if self._closed:
            raise SandboxError(f"sandbox {self.name} is closed")
        if not self.tree.is_dir():
            raise SandboxError(f"sandbox {self.name}: worktree {self.tree} vanished")

    def _path(self, path: str) -> Path:
        if not path or os.path.isabs(path):
            raise ValueError(f"path must be relative to the repository root: {path!r}")
        root = self.tree.resolve()
        target = (root / path).resolve()
        if not target.is_relative_to(root) or target == root:
            raise ValueError(f"path escapes the repository: {path!r}")
        return target

    async def run(self, cmd: str, timeout: float) -> ExecResult:
        self._live()
        try:
            return await _exec(
                _command_argv(cmd, self.network_isolation),
                cwd=str(self.tree),
                env=self._env,
                timeout=timeout,
                limit=self.output_limit,
            )
        except OSError as exc:
            raise SandboxError(f"sandbox {self.name}: cannot start a command: {exc}") from exc

    async def write_file(self, path: str, content: str) -> None:
        self._live()
        target = self._path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")

    async def read_file(self, path: str) -> str | None:
        self._live()
        target = self._path(path)
        if not target.is_file():
            return None
        return target.read_bytes().decode(errors="replace")

    async def apply_patch(self, diff: str) -> None:
        self._live()
        patch = self.scratch / "patches" / f"{uuid.uuid4().hex}.diff"
        patch.write_bytes(diff.encode("utf-8", errors="surrogateescape"))
        try:
            await _git("apply", "--whitespace=nowarn", str(patch), cwd=self.tree)
        except SandboxError as exc:
            raise PatchError(str(exc).split(": ", 1)[-1]) from None
        finally:
            patch.unlink(missing_ok=True)

    async def diff(self) -> str:
        """Staged only for the moment of diffing, so new files show up; the index is left as it was."""
        self._live()
        await _git("add", "-A", cwd=self.tree)
        try:
            return await _git(*DIFF_ARGS, self.commit, cwd=self.tree)
        finally:
            await _git("reset", "-q", cwd=self.tree)

    def _reset_commands(self) -> list[list[str]]:
        """Back to the pristine commit even if a command moved HEAD; untracked and ignored files go too."""
        return [
            ["checkout", "-q", "--force", "--detach", self.commit],
            ["reset", "-q", "--hard", self.commit],
            ["clean", "-ffdxq"],
        ]

    async def reset(self) -> None:
        self._live()
        for args in self._reset_commands():
            await _git(*args, cwd=self.tree)

    async def run_on(self, patch: str, script: str, timeout: float) -> ExecResult:
        """reset + apply + run in ONE process: voting and editing call this thousands of times, and each
        spawn from the event loop costs the orchestrator more than the git work itself."""
        self._live()
        token = uuid.uuid4().hex[:12]
        script_path = self.scratch / "scripts" / f"test_{token}.py"
        script_path.write_text(script, encoding="utf-8")
        patch_path = self.scratch / "patches" / f"{token}.diff"
        git = shlex.join(["git", *_GIT_FLAGS])
        steps = [f"{git} {shlex.join(args)}" for args in self._reset_commands()]
        if patch.strip():
            patch_path.write_bytes(patch.encode("utf-8", errors="surrogateescape"))
            err = shlex.quote(str(patch_path) + ".err")
            steps.append(
                f"{{ {git} apply --whitespace=nowarn {shlex.quote(str(patch_path))} 2>{err} || "
                f"{{ printf %s {_PATCH_FAILED}; cat {err}; exit 125; }}; }}"
            )
        reset = " && ".join(steps[:3])
        command = f"{{ {reset}; }} || {{ printf %s {_RESET_FAILED}; exit 125; }}\n"
        command += "".join(f"{step}\n" for step in steps[3:])
        command += f"exec {self._python} {shlex.quote(str(script_path))}"
        try:
            result = await self.run(command, timeout)
        finally:
            script_path.unlink(missing_ok=True)
            patch_path.unlink(missing_ok=True)
            Path(str(patch_path) + ".err").unlink(missing_ok=True)
        if _RESET_FAILED in result.output and result.exit_code == 125:
            raise SandboxError(f"sandbox {self.name}: reset failed: {result.output}")
        if result.output.startswith(_PATCH_FAILED):
            message = result.output[len(_PATCH_FAILED) :].strip()
            return ExecResult.patch_failed(message)
        return result

    async def run_script(self, script: str, timeout: float) -> ExecResult:
        self._live()
        path = self.scratch / "scripts" / f"test_{uuid.uuid4().hex[:12]}.py"
        path.write_text(script, encoding="utf-8")
        try:
            return await self.run(f"{self._python} {shlex.quote(str(path))}", timeout)
        finally:
            path.unlink(missing_ok=True)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._on_close is not None:
            self._on_close(self)
        removed = False
        try:
            if self.tree.exists():
                await _git_locked(self.repo, "worktree", "remove", "--force", str(self.tree))
                removed = True
        except SandboxError as exc:
            log.warning("could not remove worktree %s: %s", self.tree, exc)
        finally:
            await asyncio.get_running_loop().run_in_executor(
                _GIT_RUNNER, functools.partial(shutil.rmtree, self.home, ignore_errors=True)
            )
            if not removed:
                # `worktree remove` drops its own entry; only a tree that vanished or would not go leaves one.
                with contextlib.suppress(SandboxError):
                    await _git_locked(self.repo, "worktree", "prune")


class LocalProvider(SandboxProvider):
    """Opens worktree sandboxes of one repository at one commit."""

    def __init__(self, spec: SandboxSpec) -> None:
        self.spec = spec
        self.repo = str(Path(spec.repo_path).resolve())
        if not Path(self.repo, ".git").exists():
            raise SandboxError(f"not a git checkout: {self.repo}")
        venv = spec.settings.venv
        if venv and not Path(venv, "bin", "python").exists():
            raise SandboxError(f"sandbox.venv {venv} is not a virtualenv (no bin/python)")
        prune_stale_worktrees(self.repo)
        self.network_isolation = "host" if spec.settings.sandbox_network else network_isolation_mode()
        label = "NOT isolated" if self.network_isolation == "none" else self.network_isolation
        after = ", reset to the tree after --setup" if spec.settings.setup else ""
        within = f", venv {venv}" if venv else ""
        self.description = f"local (git worktree, network: {label}{within}{after})"
        self._commit: str | None = None
        self._resolving = asyncio.Lock()
        self._set_up_tree: LocalSandbox | None = None
        self._open: set[LocalSandbox] = set()

    async def _resolve(self) -> str:
        """The commit every sandbox checks out and resets to: the problem's, or with `setup` a snapshot of the
        tree after setup, made once per provider."""
        async with self._resolving:
            if self._commit is None:
                try:
                    out = await _git("rev-parse", "--verify", f"{self.spec.commit}^{{commit}}", cwd=self.repo)
                except SandboxError as exc:
                    raise SandboxError(f"commit {self.spec.commit!r} not found in {self.repo}: {exc}") from None
                commit = out.strip()
                if self.spec.settings.setup:
                    commit = await self._set_up(commit)
                self._commit = commit
        return self._commit

    async def prepare(self) -> str:
        return await self._resolve()

    async def _set_up(self, commit: str) -> str:
        """Runs `setup` (network on, secrets stripped) in a worktree of its own and commits everything it left
        in the tree, ignored files included (generated version files, extensions built in place): resets then
        restore what setup built and undo only what a test script or an edit changed. The worktree stays
        until `aclose`, so the snapshot commit stays reachable."""
        settings = self.spec.settings
        tree = self._set_up_tree = await LocalSandbox.create(self.spec, "setup", commit, "host")
        log.info("local sandbox: running the setup command once: %s", settings.setup)
        run = await tree.run(settings.setup or "", settings.setup_timeout)
        if run.exit_code != 0 or run.timed_out:
            how = f"timed out after {settings.setup_timeout:g} s" if run.timed_out else f"exit code {run.exit_code}"
            raise SandboxError(f"the setup command failed ({how}): {run.output.strip()}")
        await _git("add", "-A", "--force", cwd=tree.tree)
        identity = ("-c", "user.name=codemonkeys", "-c", "user.email=codemonkeys@localhost")
        message = f"codemonkeys: {commit} after setup"
        await _git(*identity, "commit", "-q", "--no-verify", "--allow-empty", "-m", message, cwd=tree.tree)
        return (await _git("rev-parse", "HEAD", cwd=tree.tree)).strip()

    async def open(self, name: str) -> LocalSandbox:
        sandbox = await LocalSandbox.create(
            self.spec, name, await self._resolve(), self.network_isolation, self._open.discard
        )
        self._open.add(sandbox)
        return sandbox

    async def aclose(self) -> None:
        for sandbox in list(self._open):
            await sandbox.close()
        if self._set_up_tree is not None:
            await self._set_up_tree.close()
