"""DockerSandbox against real containers of the offline base image and a tiny real git repo."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from codemonkeys.sandbox.base import PatchError, SandboxError
from tests.docker.conftest import CALC, labelled

pytestmark = pytest.mark.docker

FIX = "def add(a, b):\n    return a + b\n"
FORK_LOOP = """
import os, sys, time
for n in range(200):
    try:
        pid = os.fork()
    except OSError as exc:
        print(n, exc)
        sys.exit(3)
    if pid == 0:
        time.sleep(30)
        os._exit(0)
print(n, "forks and no limit")
"""
CHECK = "import sys\nfrom calc import add\nsys.exit(0 if add(2, 3) == 5 else 2)\n"


async def test_run_reports_exit_code_merged_output_and_time(make_provider) -> None:
    async with await make_provider().open("run") as sandbox:
        result = await sandbox.run("echo out; echo err >&2; exit 3", timeout=10)
        assert result.exit_code == 3
        assert result.output == "out\nerr\n"
        assert not result.timed_out
        assert 0 < result.seconds < 5
        assert (await sandbox.run("pwd; python -c 'import sys; print(sys.version_info[:2])'", 10)).output == (
            "/repo\n(3, 11)\n"
        )
        killed = await sandbox.run("kill -9 $$", 10)
        assert killed.exit_code == 137


async def test_run_script_runs_outside_the_tree_and_truncates_in_the_middle(make_provider) -> None:
    async with await make_provider(output_limit=300).open("script") as sandbox:
        result = await sandbox.run_script(CHECK, timeout=10)
        assert result.exit_code == 2
        assert await sandbox.diff() == ""
        long = await sandbox.run_script("print('A' * 5000 + 'B' * 5000)", timeout=10)
        assert len(long.output) <= 300
        assert long.output.startswith("AAAA") and long.output.rstrip().endswith("BBBB")
        assert "characters cut" in long.output


async def test_timeout_kills_the_command_inside_and_the_container_stays_usable(make_provider) -> None:
    async with await make_provider().open("timeout") as sandbox:
        started = time.monotonic()
        result = await sandbox.run("sleep 77 & echo started; sleep 78", timeout=1)
        assert result.timed_out and result.exit_code == 124
        assert "started" in result.output
        assert time.monotonic() - started < 5
        processes = await sandbox.run("ps -eo args", timeout=10)
        assert "sleep 77" not in processes.output and "sleep 78" not in processes.output
        assert (await sandbox.run("echo alive", timeout=10)).output == "alive\n"


async def test_reset_ends_processes_that_escaped_the_command_group(make_provider) -> None:
    async with await make_provider().open("daemon") as sandbox:
        started = await sandbox.run("setsid sleep 301 >/dev/null 2>&1 </dev/null & sleep 0.5; echo started", timeout=10)
        assert started.output == "started\n"
        assert "sleep 301" in (await sandbox.run("ps -eo args", timeout=10)).output
        await sandbox.reset()
        assert "sleep 301" not in (await sandbox.run("ps -eo args", timeout=10)).output
        assert (await sandbox.run("echo alive", timeout=10)).output == "alive\n"


async def test_reset_restores_the_pristine_tree_but_keeps_build_artefacts(make_provider) -> None:
    async with await make_provider().open("reset") as sandbox:
        await sandbox.write_file("calc.py", FIX)
        await sandbox.write_file("pkg/new_module.py", "x = 1\n")
        made = await sandbox.run(
            "echo log > run.log && mkdir -p build/extra && echo x > build/extra/o.txt && echo y > build/new.txt"
            " && env -u PYTHONDONTWRITEBYTECODE python -c 'import calc' && ls __pycache__",
            timeout=20,
        )
        assert made.exit_code == 0 and "calc" in made.output
        assert "pkg/new_module.py" in await sandbox.diff()

        await sandbox.reset()  # its speed is measured by scripts/bench/sandbox.py

        assert await sandbox.read_file("calc.py") == CALC
        for gone in ("pkg/new_module.py", "run.log", "build/extra/o.txt", "build/new.txt"):
            assert await sandbox.read_file(gone) is None, gone
        listing = await sandbox.run("ls -a; ls -a build", timeout=10)
        assert "pkg" not in listing.output and "__pycache__" not in listing.output and "extra" not in listing.output
        # What the image's setup left is not the run's doing: kept, and not part of the diff.
        assert await sandbox.read_file("build/lib.txt") == "artefact\n"
        assert await sandbox.read_file("generated.txt") == "generated\n"
        assert await sandbox.diff() == ""


async def test_reset_undoes_git_operations_of_a_run(make_provider) -> None:
    async with await make_provider().open("git-ops") as sandbox:
        pristine = (await sandbox.run("git rev-parse HEAD", timeout=10)).output
        for ops in (
            "git commit -q --allow-empty -m moved",  # HEAD moves, nothing else changes
            "git mv README.md README2.md && git commit -q -m renamed && echo z > calc.py && git add calc.py",
            "git rm -q --cached calc.py && git checkout -q -b other",
        ):
            assert (await sandbox.run(ops, timeout=10)).exit_code == 0, ops
            await sandbox.reset()
            assert (await sandbox.run("git rev-parse HEAD", timeout=10)).output == pristine
            assert await sandbox.read_file("README.md") == "tiny\n"
            assert await sandbox.read_file("README2.md") is None
            assert await sandbox.read_file("calc.py") == CALC
            assert await sandbox.diff() == ""
            assert (await sandbox.run("git status --porcelain", timeout=10)).output == ""


async def test_diff_apply_patch_and_run_on_behave_like_the_local_sandbox(make_provider) -> None:
    async with await make_provider().open("patch") as sandbox:
        await sandbox.write_file("calc.py", FIX)
        await sandbox.write_file("docs/notes.md", "new\n")
        patch = await sandbox.diff()
        assert "+    return a + b" in patch and "b/docs/notes.md" in patch and "generated.txt" not in patch
        await sandbox.reset()
        await sandbox.apply_patch(patch)
        assert await sandbox.diff() == patch

        await sandbox.write_file("junk.txt", "left over\n")
        assert (await sandbox.run_on(patch, CHECK, timeout=20)).exit_code == 0
        assert await sandbox.diff() == patch  # reset (junk gone), then the patch
        assert (await sandbox.run_on("", CHECK, timeout=20)).exit_code == 2
        broken = patch.replace("return a - b", "return a * b")
        with pytest.raises(PatchError):
            await sandbox.apply_patch(broken)
        refused = await sandbox.run_on(broken, CHECK, timeout=20)
        assert refused.exit_code == -1 and refused.output.startswith("the candidate patch does not apply")
        with pytest.raises(ValueError):
            await sandbox.write_file("../escape.txt", "x")
        with pytest.raises(ValueError):
            await sandbox.read_file("/etc/passwd")


@pytest.fixture
def tcp_server() -> Iterator[int]:
    """A TCP server on all host interfaces (so the docker bridge gateway reaches it too)."""
    server = socket.create_server(("0.0.0.0", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.sendall(b"hello\n")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def connect_script(host: str, port: int) -> str:
    return (
        "import socket, sys\n"
        "try:\n"
        f"    s = socket.create_connection(({host!r}, {port}), timeout=3)\n"
        "    print('connected', s.recv(10))\n"
        "    sys.exit(0)\n"
        "except OSError as exc:\n"
        "    print('refused', exc)\n"
        "    sys.exit(2)\n"
    )


async def test_network_is_off_unless_the_spec_turns_it_on(make_provider, tcp_server: int) -> None:
    # With the network on, a script reaches the host through the bridge gateway: the offline check can fail.
    async with await make_provider(sandbox_network=True).open("online") as sandbox:
        route = await sandbox.run("ip -4 route show default", timeout=10)
        gateway = route.output.split()[2]
        result = await sandbox.run_script(connect_script(gateway, tcp_server), timeout=20)
        assert result.exit_code == 0, result.output
        assert "hello" in result.output
    async with await make_provider().open("offline") as sandbox:
        for host in ("127.0.0.1", gateway):
            result = await sandbox.run_script(connect_script(host, tcp_server), timeout=20)
            assert result.exit_code == 2, (host, result.output)
        interfaces = await sandbox.run("ip -o link", timeout=10)
        assert "eth0" not in interfaces.output and "lo" in interfaces.output


async def test_limits_are_applied_and_the_pids_limit_holds(make_provider, docker_client) -> None:
    provider = make_provider(docker_cpus=1.5, docker_memory="256m", docker_pids=64)
    async with await provider.open("limits") as sandbox:
        host = docker_client.api.inspect_container(sandbox.container_id)["HostConfig"]
        assert host["NanoCpus"] == 1_500_000_000
        assert host["Memory"] == 256 * 1024 * 1024
        assert host["PidsLimit"] == 64
        assert host["NetworkMode"] == "none"
        bomb = await sandbox.run_script(FORK_LOOP, timeout=30)
        assert bomb.exit_code == 3, bomb.output
        assert 10 < int(bomb.output.split()[0]) < 64
        assert (await sandbox.run("echo still here", timeout=10)).output == "still here\n"
        memory = await sandbox.run_script("x = b'x' * (512 * 1024 * 1024)\nprint('allocated')", timeout=30)
        assert memory.exit_code != 0 and "allocated" not in memory.output


async def test_commands_run_as_the_non_root_user_without_secrets(make_provider, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-leak")
    async with await make_provider().open("user") as sandbox:
        result = await sandbox.run("id -u; id -un; env; touch /etc/x", timeout=10)
        assert result.output.splitlines()[:2] == ["1000", "cm"]
        assert "Permission denied" in result.output
        assert "sk-must-not-leak" not in result.output and "OPENAI_API_KEY" not in result.output


async def test_a_container_killed_from_outside_ends_the_sandbox_with_sandbox_error(
    make_provider, docker_client, run_label: str
) -> None:
    provider = make_provider()
    sandbox = await provider.open("victim")
    docker_client.api.kill(sandbox.container_id)
    with pytest.raises(SandboxError):
        for _ in range(50):  # the socket's end may arrive a moment after the kill
            await sandbox.run("true", timeout=5)
            await asyncio.sleep(0.1)
    with pytest.raises(SandboxError):
        await sandbox.reset()
    other = await provider.open("survivor")
    assert (await other.run("echo ok", timeout=10)).output == "ok\n"
    await provider.aclose()
    assert labelled(docker_client, run_label) == []


async def test_aclose_removes_every_container_of_the_provider(make_provider, docker_client, run_label: str) -> None:
    provider = make_provider()
    sandboxes = [await provider.open(f"s{i}") for i in range(3)]
    assert len(labelled(docker_client, run_label)) == 3
    await sandboxes[0].close()
    assert len(labelled(docker_client, run_label)) == 2
    await provider.aclose()
    assert labelled(docker_client, run_label) == []
    for _ in range(50):  # reader threads end with their sockets
        if not any(t.name in {"runner-s0", "runner-s1", "runner-s2"} for t in threading.enumerate()):
            break
        await asyncio.sleep(0.05)
    assert not any(t.name in {"runner-s0", "runner-s1", "runner-s2"} for t in threading.enumerate())


async def test_max_containers_caps_open_sandboxes(make_provider, docker_client, run_label: str) -> None:
    provider = make_provider(max_containers=2)
    first = await provider.open("a")
    await provider.open("b")
    third = asyncio.ensure_future(provider.open("c"))
    await asyncio.sleep(1.5)
    assert not third.done()
    assert len(labelled(docker_client, run_label)) == 2
    await first.close()
    sandbox = await asyncio.wait_for(third, 30)
    assert (await sandbox.run("echo c", timeout=10)).output == "c\n"
    assert len(labelled(docker_client, run_label)) == 2


async def test_parallel_sandboxes_are_isolated(make_provider) -> None:
    provider = make_provider()
    sandboxes = await asyncio.gather(*(provider.open(f"p{i}") for i in range(3)))
    await asyncio.gather(*(s.write_file("calc.py", f"# {i}\n") for i, s in enumerate(sandboxes)))
    texts = await asyncio.gather(*(s.read_file("calc.py") for s in sandboxes))
    assert texts == ["# 0\n", "# 1\n", "# 2\n"]
    await provider.aclose()


async def test_unknown_image_without_a_registry_is_a_clear_error(make_provider) -> None:
    provider = make_provider(image="codemonkeys-test/not-there:1", workdir="/testbed")
    with pytest.raises(SandboxError, match="could not be pulled"):
        await provider.open("x")
