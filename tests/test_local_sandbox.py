"""The local back end against real git repositories and real subprocesses."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from codemonkeys.config import SandboxSettings
from codemonkeys.sandbox import ExecResult, PatchError, SandboxError
from codemonkeys.sandbox.base import Outcome, SandboxSpec
from codemonkeys.sandbox.local import LocalProvider, LocalSandbox, is_secret, network_isolation_mode, resolve_python

BUGGY = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
TEST_SCRIPT = """\
import sys
from calc import add
if add(2, 3) == 5:
    print("fixed")
    sys.exit(0)
print("still broken:", add(2, 3))
sys.exit(2)
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "t@example.com")
    git(path, "config", "user.name", "t")
    (path / "calc.py").write_text(BUGGY)
    (path / "README.md").write_text("hello\n")
    (path / "old.txt").write_text("to be deleted\n")
    (path / ".gitignore").write_text("*.log\nbuild/\n")
    (path / "pkg").mkdir()
    (path / "pkg" / "data.bin").write_bytes(bytes(range(256)))
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


def spec_for(repo: Path, **kw: Any) -> SandboxSpec:
    """A spec at the repo's HEAD; `kw` are sandbox settings (`output_limit=1000`, `sandbox_network=True`)."""
    commit = git(repo, "rev-parse", "HEAD").strip()
    return SandboxSpec(repo_path=str(repo), commit=commit, settings=SandboxSettings(**kw))


@pytest.fixture
async def provider(repo: Path) -> AsyncIterator[LocalProvider]:
    prov = LocalProvider(spec_for(repo))
    yield prov
    await prov.aclose()


def worktrees(repo: Path) -> list[str]:
    return [
        line.split(" ", 1)[1]
        for line in git(repo, "worktree", "list", "--porcelain").splitlines()
        if line.startswith("worktree ")
    ]


def alive(pid: int) -> bool:
    """A zombie counts as gone: it runs nothing, it only waits for a reaper.

    A process that exits between opening and reading its stat file raises ProcessLookupError.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


async def test_exit_codes_output_and_cwd(provider: LocalProvider) -> None:
    async with await provider.open("a") as sb:
        res = await sb.run("echo out; echo err >&2; exit 3", timeout=10)
        assert res.exit_code == 3
        assert "out" in res.output and "err" in res.output
        assert not res.timed_out
        assert res.seconds > 0
        assert (await sb.run("true", timeout=10)).exit_code == 0
        res = await sb.run("pwd; cat calc.py", timeout=10)
        assert res.output.splitlines()[0] == str(sb.tree)
        assert "return a - b" in res.output
        assert (await sb.run("kill -9 $$", timeout=10)).exit_code == 137


async def test_timeout_kills_the_whole_process_group(provider: LocalProvider) -> None:
    async with await provider.open("t") as sb:
        start = time.monotonic()
        res = await sb.run("sleep 100 & echo child=$!; sleep 100", timeout=1)
        elapsed = time.monotonic() - start
    assert res.timed_out and res.exit_code == 124
    assert res.outcome == Outcome.TIMED_OUT
    assert elapsed < 2.0
    assert 1.0 <= res.seconds < 2.0
    pid = int(re.search(r"child=(\d+)", res.output).group(1))
    assert wait_gone(pid), f"backgrounded sleep {pid} survived the timeout"


async def test_leftover_background_children_are_killed_after_a_normal_exit(provider: LocalProvider) -> None:
    async with await provider.open("bg") as sb:
        res = await sb.run("sleep 100 >/dev/null 2>&1 & echo child=$!", timeout=10)
    assert res.exit_code == 0 and res.seconds < 2
    assert wait_gone(int(re.search(r"child=(\d+)", res.output).group(1)))


def zombie_children() -> list[int]:
    """Children of this process that exited and were never reaped."""
    pids = []
    for children in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        try:
            pids += [int(p) for p in children.read_text().split()]
        except OSError:
            continue
    return [pid for pid in pids if Path(f"/proc/{pid}/stat").exists() and not alive(pid)]


async def test_a_cancelled_run_is_killed_and_reaped(provider: LocalProvider) -> None:
    async with await provider.open("cancel") as sb:
        run = asyncio.ensure_future(sb.run("echo $$ > shell.pid; exec sleep 100", timeout=60))
        pid_file = sb.tree / "shell.pid"
        while not pid_file.exists() or not pid_file.read_text().strip():
            await asyncio.sleep(0.01)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        assert wait_gone(int(pid_file.read_text()))
        deadline = time.monotonic() + 3
        while zombie_children() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert zombie_children() == []
        assert (await sb.run("echo still usable", timeout=10)).output.strip() == "still usable"


ESCAPE = """setsid bash -c 'echo child=$$; touch "$TMPDIR/up"; exec sleep 100' &
until [ -e "$TMPDIR/up" ]; do sleep 0.01; done; rm "$TMPDIR/up"
"""


async def test_escaped_grandchild_holding_the_pipe_does_not_hang(provider: LocalProvider) -> None:
    async with await provider.open("esc") as sb:
        start = time.monotonic()
        done = await sb.run(ESCAPE + "echo done", timeout=10)
        quick = time.monotonic() - start
        timed = await sb.run(ESCAPE + "sleep 100", timeout=1)
        slow = time.monotonic() - start - quick
    pids = [int(re.search(r"child=(\d+)", r.output).group(1)) for r in (done, timed)]
    escaped = [alive(pid) for pid in pids]
    for pid in pids:
        os.kill(pid, 9)
    assert escaped == [True, True], "the grandchild must have left the group for this test to mean anything"
    assert done.exit_code == 0 and "done" in done.output and quick < 2
    assert timed.timed_out and slow < 3


async def test_huge_output_is_cut_in_the_middle(repo: Path) -> None:
    prov = LocalProvider(spec_for(repo, output_limit=1000))
    try:
        sb = await prov.open("big")
        res = await sb.run("echo START; head -c 3000000 /dev/zero | tr '\\0' x; echo; echo END", timeout=30)
    finally:
        await prov.aclose()
    assert res.exit_code == 0
    assert len(res.output) <= 1000
    assert res.output.startswith("START\nxxx")
    assert res.output.endswith("xxx\nEND\n")
    assert "characters cut" in res.output


async def test_reset_removes_modified_untracked_and_ignored_files(provider: LocalProvider) -> None:
    async with await provider.open("r") as sb:
        await sb.write_file("calc.py", FIXED)
        await sb.write_file("new/untracked.py", "x = 1\n")
        await sb.run("echo log > run.log; mkdir -p build && echo o > build/out; rm README.md; git add calc.py", 10)
        await sb.reset()
        assert await sb.read_file("calc.py") == BUGGY
        assert await sb.read_file("README.md") == "hello\n"
        for gone in ("new/untracked.py", "run.log", "build/out"):
            assert await sb.read_file(gone) is None
        assert (await sb.run("git status --porcelain --ignored", 10)).output == ""
        assert await sb.diff() == ""


async def test_diff_includes_new_files_and_round_trips(provider: LocalProvider) -> None:
    async with await provider.open("src") as src, await provider.open("dst") as dst:
        await src.write_file("calc.py", FIXED)
        await src.write_file("lib/new_mod.py", "VALUE = 42\n")
        await src.run("printf 'a\\000b\\377' > blob.bin; rm old.txt; printf '\\001\\002' >> pkg/data.bin", 10)
        await src.run_script("print('scripts stay out of the tree')", 10)
        patch = await src.diff()
        assert "b/lib/new_mod.py" in patch and "new file mode" in patch
        assert "deleted file mode" in patch and "GIT binary patch" in patch
        assert "scripts stay out" not in patch
        status = (await src.run("git status --porcelain", 10)).output
        assert "?? lib/" in status, "diff() must leave the index as it was"

        await dst.apply_patch(patch)
        assert await dst.read_file("calc.py") == FIXED
        assert await dst.read_file("lib/new_mod.py") == "VALUE = 42\n"
        assert await dst.read_file("old.txt") is None
        assert (dst.tree / "blob.bin").read_bytes() == b"a\0b\xff"
        assert (dst.tree / "pkg/data.bin").read_bytes() == bytes(range(256)) + b"\1\2"
        assert await dst.diff() == patch


async def test_bad_patch_raises_patch_error_with_gits_message(provider: LocalProvider) -> None:
    bad = "--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def sub(a, b):\n-    return 0\n+    return 1\n"
    async with await provider.open("p") as sb:
        with pytest.raises(PatchError, match=r"calc\.py"):
            await sb.apply_patch(bad)
        with pytest.raises(PatchError, match="No valid patches"):
            await sb.apply_patch("this is not a diff\n")
        assert await sb.read_file("calc.py") == BUGGY


async def test_run_on_original_versus_patched_code(provider: LocalProvider) -> None:
    async with await provider.open("fix") as sb:
        await sb.write_file("calc.py", FIXED)
        fix = await sb.diff()
        original = await sb.run_on("", TEST_SCRIPT, 20)
        patched = await sb.run_on(fix, TEST_SCRIPT, 20)
        broken = await sb.run_on("--- a/nope.py\n+++ b/nope.py\n@@ -1 +1 @@\n-a\n+b\n", TEST_SCRIPT, 20)
    assert original.exit_code == 2, original.output
    assert original.outcome == Outcome.NOT_FIXED
    assert "still broken: -1" in original.output
    assert patched.exit_code == 0, patched.output
    assert patched.outcome == Outcome.FIXED
    assert broken.exit_code == -1 and "does not apply" in broken.output
    assert broken.outcome == Outcome.PATCH_FAILED


async def test_imports_resolve_to_the_worktree_not_the_users_checkout(provider: LocalProvider, repo: Path) -> None:
    async with await provider.open("imp") as sb:
        res = await sb.run_script("import calc; print(calc.__file__)", 10)
    assert res.output.strip() == str(sb.tree / "calc.py")


async def test_secrets_never_reach_the_sandbox(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "MY_API_KEY": "sk-1",
        "GITHUB_TOKEN": "ghp-2",
        "OPENAI_API_KEY": "sk-3",
        "AWS_ACCESS_KEY_ID": "AKIA4",
        "DB_PASSWORD": "pw5",
        "GOOGLE_APPLICATION_CREDENTIALS": "/x6",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MY_SETTING", "visible")
    prov = LocalProvider(spec_for(repo))
    try:
        sb = await prov.open("env")
        res = await sb.run_script("import json, os; print(json.dumps(dict(os.environ)))", 10)
        shell = await sb.run("env", 10)
        path = await sb.run("printenv PATH", 10)
    finally:
        await prov.aclose()
    env = json.loads(res.output)
    assert not set(secrets) & set(env)
    for value in secrets.values():
        assert value not in res.output and value not in shell.output
    assert env["MY_SETTING"] == "visible"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HOME"].startswith(str(sb.scratch))
    assert path.output.strip() == os.environ["PATH"]
    assert not is_secret("PATH") and not is_secret("GIT_AUTHOR_NAME") and is_secret("anthropic_api_key")


class Listener:
    """A TCP server on the host's loopback that answers every connection with b"hi"."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.sendall(b"hi")
            conn.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.sock.close()


CONNECT = """\
import socket, sys
try:
    with socket.create_connection(("127.0.0.1", {port}), timeout=3) as s:
        print("got", s.recv(2))
except OSError as exc:
    print("refused", exc)
    sys.exit(3)
"""

OWN_SERVER = """\
import socket
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
c = socket.create_connection(srv.getsockname(), timeout=3)
conn, _ = srv.accept(); conn.sendall(b"ok"); print(c.recv(2).decode())
"""


def working_modes() -> list[str]:
    probes = {
        "unshare -n": ["unshare", "-n", "true"],
        "unshare -rn": ["unshare", "-rn", "true"],
        "bwrap": ["bwrap", "--dev-bind", "/", "/", "--unshare-net", "true"],
    }
    ok = []
    for mode, argv in probes.items():
        try:
            if subprocess.run(argv, capture_output=True).returncode == 0:
                ok.append(mode)
        except OSError:
            pass
    return ok


async def test_network_off_by_default(provider: LocalProvider, listener: Listener) -> None:
    mode = network_isolation_mode()
    if mode == "none":
        assert "NOT isolated" in provider.description
        pytest.skip("no network namespace on this machine")
    assert provider.network_isolation == mode and mode in provider.description
    async with await provider.open("net") as sb:
        res = await sb.run_script(CONNECT.format(port=listener.port), 10)
    assert res.exit_code == 3, res.output


@pytest.mark.parametrize("mode", ["unshare -n", "unshare -rn", "bwrap"])
async def test_each_isolation_mode_cuts_the_host_but_keeps_loopback(repo: Path, listener: Listener, mode: str) -> None:
    if mode not in working_modes():
        pytest.skip(f"{mode} does not work on this machine")
    spec = spec_for(repo)
    sb = await LocalSandbox.create(spec, "m", spec.commit, mode)
    try:
        host = await sb.run_script(CONNECT.format(port=listener.port), 10)
        own = await sb.run_script(OWN_SERVER, 10)
        cwd = await sb.run("pwd; exit 7", 10)
    finally:
        await sb.close()
    assert host.exit_code == 3, host.output
    assert own.exit_code == 0 and own.output.strip() == "ok", own.output
    assert cwd.exit_code == 7 and cwd.output.strip() == str(sb.tree)


async def test_network_on_reaches_the_host(repo: Path, listener: Listener) -> None:
    prov = LocalProvider(spec_for(repo, sandbox_network=True))
    try:
        assert prov.network_isolation == "host" and "network: host" in prov.description
        sb = await prov.open("net-on")
        res = await sb.run_script(CONNECT.format(port=listener.port), 10)
    finally:
        await prov.aclose()
    assert res.exit_code == 0 and "got b'hi'" in res.output, res.output


async def test_paths_that_escape_the_tree_are_rejected(provider: LocalProvider, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    async with await provider.open("paths") as sb:
        (sb.tree / "link").symlink_to(outside)
        for bad in ("../x", "/etc/passwd", "a/../../x", "link/x", ""):
            with pytest.raises(ValueError):
                await sb.write_file(bad, "x")
            with pytest.raises(ValueError):
                await sb.read_file(bad)
        await sb.write_file("deep/er/f.txt", "ok")
        assert await sb.read_file("deep/./er/../er/f.txt") == "ok"
        assert await sb.read_file("missing.txt") is None
    assert list(outside.iterdir()) == []


def snapshot(repo: Path) -> tuple[str, ...]:
    files = sorted(p for p in repo.rglob("*") if p.is_file() and ".git" not in p.relative_to(repo).parts)
    digest = hashlib.sha256()
    for p in files:
        digest.update(str(p).encode() + p.read_bytes())
    return (
        digest.hexdigest(),
        hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest(),
        (repo / ".git" / "HEAD").read_text(),
        git(repo, "rev-parse", "HEAD"),
        git(repo, "status", "--porcelain", "--ignored"),
        git(repo, "branch", "--list"),
    )


async def test_the_users_checkout_is_never_touched(repo: Path) -> None:
    (repo / "README.md").write_text("uncommitted user edit\n")
    (repo / "scratch.log").write_text("ignored user file\n")
    before = snapshot(repo)
    prov = LocalProvider(spec_for(repo))
    try:
        async with await prov.open("u") as sb:
            assert await sb.read_file("README.md") == "hello\n"
            await sb.write_file("calc.py", FIXED)
            await sb.run("echo x > new.txt; echo y > other.log; git add new.txt; git stash list", 10)
            patch = await sb.diff()
            await sb.reset()
            await sb.apply_patch(patch)
            await sb.run_on(patch, TEST_SCRIPT, 10)
    finally:
        await prov.aclose()
    assert snapshot(repo) == before


async def test_eight_sandboxes_in_parallel(provider: LocalProvider, repo: Path) -> None:
    sandboxes = await asyncio.gather(*(provider.open(f"p{i}") for i in range(8)))
    assert len({sb.tree for sb in sandboxes}) == 8

    async def work(i: int, sb: LocalSandbox) -> tuple[str, ExecResult]:
        await sb.write_file(f"only_{i}.txt", f"{i}\n")
        res = await sb.run_on("", TEST_SCRIPT, 20)
        await sb.write_file(f"only_{i}.txt", f"{i}\n")
        return await sb.diff(), res

    results = await asyncio.gather(*(work(i, sb) for i, sb in enumerate(sandboxes)))
    for i, (patch, res) in enumerate(results):
        assert res.exit_code == 2
        assert set(re.findall(r"only_\d+", patch)) == {f"only_{i}"}
    assert len(worktrees(repo)) == 9
    await asyncio.gather(*(sb.close() for sb in sandboxes))
    assert worktrees(repo) == [str(repo.resolve())]


async def test_close_removes_the_worktree(provider: LocalProvider, repo: Path) -> None:
    sb = await provider.open("c")
    assert str(sb.tree) in worktrees(repo)
    await sb.close()
    assert str(sb.tree) not in worktrees(repo)
    assert not sb.home.exists()
    await sb.close()
    with pytest.raises(SandboxError):
        await sb.run("true", 10)


async def test_provider_aclose_closes_what_is_still_open(repo: Path) -> None:
    prov = LocalProvider(spec_for(repo))
    a, b = await prov.open("a"), await prov.open("b")
    await a.close()
    await prov.aclose()
    assert not b.home.exists()
    assert worktrees(repo) == [str(repo.resolve())]


def test_stale_worktrees_of_a_killed_run_are_pruned(repo: Path, tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / "codemonkeys-wt-stale"
    stale.mkdir()
    (stale / "owner.pid").write_text(str(dead.pid))
    git(repo, "worktree", "add", "--detach", str(stale / "tree"), "HEAD")
    live = tmp_path / "codemonkeys-wt-live"
    live.mkdir()
    (live / "owner.pid").write_text(str(os.getpid()))
    git(repo, "worktree", "add", "--detach", str(live / "tree"), "HEAD")
    vanished = tmp_path / "vanished"
    git(repo, "worktree", "add", "--detach", str(vanished), "HEAD")
    subprocess.run(["rm", "-rf", str(vanished)], check=True)

    LocalProvider(spec_for(repo))

    assert worktrees(repo) == [str(repo.resolve()), str(live / "tree")]
    assert not stale.exists()


async def test_run_script_falls_back_to_this_python(
    repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("bash", "sh", "git", "unshare", "bwrap", "ip", "setsid"):
        found = subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        if found:
            (bare / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bare))
    prov = LocalProvider(spec_for(repo))
    try:
        sb = await prov.open("py")
        res = await sb.run_script("import sys; print(sys.executable)", 10)
    finally:
        await prov.aclose()
    assert res.exit_code == 0, res.output
    assert res.output.strip() == sys.executable


async def test_unknown_commit_is_a_sandbox_error(repo: Path) -> None:
    prov = LocalProvider(SandboxSpec(repo_path=str(repo), commit="deadbeef" * 5))
    with pytest.raises(SandboxError, match="not found"):
        await prov.open("x")
    await prov.aclose()


async def test_a_pyenv_shim_is_resolved_once_to_the_real_interpreter(tmp_path: Path) -> None:
    """The shim is a bash script costing ~100 ms a run; the sandbox asks pyenv once which python it means."""
    root = tmp_path / "pyenv"
    (root / "shims").mkdir(parents=True)
    (root / "libexec").mkdir()
    shim = root / "shims" / "python"
    shim.write_text("#!/bin/sh\nexit 99\n")
    shim.chmod(0o755)
    pyenv = root / "libexec" / "pyenv"
    pyenv.write_text(f'#!/bin/sh\n[ "$1 $2" = "which python" ] && echo {sys.executable}\n')
    pyenv.chmod(0o755)
    assert await resolve_python({"PATH": str(root / "shims")}, tmp_path) == sys.executable
    plain = tmp_path / "bin"
    plain.mkdir()
    (plain / "python").symlink_to(sys.executable)
    assert await resolve_python({"PATH": str(plain)}, tmp_path) == "python"
    assert await resolve_python({"PATH": str(tmp_path / "empty")}, tmp_path) == sys.executable


async def test_commands_run_at_a_lower_cpu_priority_than_the_orchestrator(provider: LocalProvider) -> None:
    sandbox = await provider.open("nice")
    result = await sandbox.run_script("import os\nprint(os.nice(0))\n", 30)
    assert result.exit_code == 0, result.output
    assert int(result.output.strip()) == os.nice(0) + 10


def test_outcomes_follow_the_test_script_contract() -> None:
    assert ExecResult(exit_code=0, output="").outcome == Outcome.FIXED
    assert ExecResult(exit_code=2, output="").outcome == Outcome.NOT_FIXED
    assert ExecResult(exit_code=1, output="").outcome == Outcome.SCRIPT_ERROR
    assert ExecResult(exit_code=137, output="").outcome == Outcome.SCRIPT_ERROR
    assert ExecResult(exit_code=0, output="", timed_out=True).outcome == Outcome.TIMED_OUT
    failed = ExecResult.patch_failed("hunk 1 FAILED")
    assert failed.exit_code == -1 and failed.outcome == Outcome.PATCH_FAILED
    assert "does not apply" in failed.output and "hunk 1 FAILED" in failed.output
