"""Images built once and reused (in and across processes), ready images (SWE-bench style), and cleanup:
after aclose, Ctrl-C, SIGKILL + `sandbox prune`, no container of ours is left."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import docker
import pytest

from codemonkeys.config import SandboxSettings
from codemonkeys.sandbox import engine, images
from codemonkeys.sandbox.base import SandboxError, SandboxSpec
from codemonkeys.sandbox.docker import DockerProvider
from tests.docker.conftest import SETUP, labelled

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]


def python_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


async def test_repo_image_is_built_once_and_reused(docker_client, base_image, tiny_repo, run_label: str) -> None:
    repo, sha = tiny_repo
    setup = f"date +%s%N > .stamp && echo {uuid.uuid4().hex}"  # a new setup: a new image
    spec = SandboxSpec(repo_path=str(repo), commit=sha, run_label=run_label, settings=SandboxSettings(setup=setup))
    lines: list[list[str]] = [[], []]
    first = DockerProvider(spec, client=docker_client, progress=lines[0].append)
    second = DockerProvider(spec, client=docker_client, progress=lines[1].append)
    try:
        image = await first.prepare()
        assert any(line.startswith("building") for line in lines[0])
        assert await second.prepare() == image
        assert lines[1] == []
        assert first.description == f"docker (image {image}, network off)"
        stamps = []
        for provider in (first, second):
            async with await provider.open("stamp") as sandbox:
                stamps.append(await sandbox.read_file(".stamp"))
        assert stamps[0] and stamps[0] == stamps[1]
        # Another process (a later run) finds it too.
        probe = subprocess.run(
            [sys.executable, "-c", REUSE_PROBE, str(repo), sha, setup, base_image],
            env=python_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert probe.returncode == 0, probe.stderr
        assert probe.stdout.strip() == f"{image} built=False"
    finally:
        await first.aclose()
        await second.aclose()
        docker_client.images.remove(image, force=True)


REUSE_PROBE = """
import sys
from pathlib import Path
from codemonkeys.sandbox import engine, images
repo, sha, setup, base = sys.argv[1:]
lines = []
tag = images.build_repo_image(engine.connect(), Path(repo), sha, setup=setup, base=base, progress=lines.append)
print(tag, "built=" + str(any(l.startswith("building") for l in lines)))
"""


def test_concurrent_builds_in_two_processes_build_once(docker_client, base_image, tiny_repo) -> None:
    repo, sha = tiny_repo
    setup = f"sleep 1 && echo {uuid.uuid4().hex}"
    argv = [sys.executable, "-c", REUSE_PROBE, str(repo), sha, setup, base_image]
    procs = [subprocess.Popen(argv, env=python_env(), stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [proc.communicate(timeout=180)[0].split() for proc in procs]
    try:
        assert [proc.returncode for proc in procs] == [0, 0]
        assert outputs[0][0] == outputs[1][0]
        assert sorted(out[1] for out in outputs) == ["built=False", "built=True"]
    finally:
        docker_client.images.remove(outputs[0][0], force=True)


@pytest.fixture(scope="module")
def ready_image(docker_client: docker.DockerClient, base_image: str, tiny_repo) -> Iterator[str]:
    """Like a SWE-bench instance image: runs as root, the repo already at /testbed, an environment to activate."""
    repo, _ = tiny_repo
    tag = f"codemonkeys-test/ready:{uuid.uuid4().hex[:8]}"
    container = docker_client.containers.create(base_image, ["sleep", "300"], user="root")
    try:
        container.start()
        tar = io.BytesIO()
        with tarfile.open(fileobj=tar, mode="w") as archive:
            archive.add(repo, arcname="testbed")
            script = b"export CM_ENV=testbed\nexport PATH=/opt/tools:$PATH\n"
            info = tarfile.TarInfo("opt/activate.sh")
            info.size = len(script)
            archive.addfile(info, io.BytesIO(script))
            tool = b"#!/bin/sh\necho hello from tools\n"
            info = tarfile.TarInfo("opt/tools/hello")
            info.size, info.mode = len(tool), 0o755
            archive.addfile(info, io.BytesIO(tool))
        container.put_archive("/", tar.getvalue())
        container.commit(
            tag.split(":")[0],
            tag.split(":")[1],
            conf={"User": "root", "Labels": {engine.LABEL: "1", engine.KIND_LABEL: "test"}},
        )
    finally:
        container.remove(force=True)
    yield tag
    docker_client.images.remove(tag, force=True)


async def test_ready_image_with_workdir_and_command_prefix(make_provider, ready_image: str) -> None:
    provider = make_provider(
        image=ready_image, workdir="/testbed", command_prefix="source /opt/activate.sh &&", setup=None
    )
    assert await provider.prepare() == ready_image
    async with await provider.open("ready") as sandbox:
        result = await sandbox.run("echo $CM_ENV; pwd; hello; id -u", timeout=10)
        assert result.output == "testbed\n/testbed\nhello from tools\n0\n"
        await sandbox.write_file("calc.py", "changed\n")
        assert "+changed" in await sandbox.diff()
        await sandbox.reset()
        assert await sandbox.diff() == ""


async def test_ready_image_with_setup_gets_a_derived_image(make_provider, ready_image: str, docker_client) -> None:
    provider = make_provider(
        image=ready_image,
        workdir="/testbed",
        setup="hello > /testbed/setup.txt",  # `hello` is on PATH only behind the command prefix
        command_prefix=". /opt/activate.sh;",
    )
    image = await provider.prepare()
    try:
        assert image.startswith("codemonkeys/setup-")
        async with await provider.open("derived") as sandbox:
            assert await sandbox.read_file("setup.txt") == "hello from tools\n"
            assert (await sandbox.run("hello", timeout=10)).output == "hello from tools\n"
            assert await sandbox.diff() == ""
    finally:
        await provider.aclose()
        docker_client.images.remove(image, force=True)


async def test_a_failing_command_prefix_is_a_sandbox_error(make_provider, ready_image: str) -> None:
    provider = make_provider(
        image=ready_image, workdir="/testbed", command_prefix="source /nope/activate &&", setup=None
    )
    with pytest.raises(SandboxError, match="command prefix failed"):
        await provider.open("broken")
    assert provider.open_count == 0


ORPHAN_SCRIPT = """
import asyncio, sys
from codemonkeys.config import SandboxSettings
from codemonkeys.sandbox.base import SandboxSpec
from codemonkeys.sandbox.docker import DockerProvider
repo, sha, setup, label = sys.argv[1:]

async def main():
    settings = SandboxSettings(setup=setup)
    provider = DockerProvider(SandboxSpec(repo_path=repo, commit=sha, run_label=label, settings=settings))
    for i in range(2):
        await provider.open(f"orphan-{i}")
    print("ready", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def start_owner(tiny_repo, run_label: str) -> subprocess.Popen:
    repo, sha = tiny_repo
    proc = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_SCRIPT, str(repo), sha, SETUP, run_label],
        env=python_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def wait_until_gone(client: docker.DockerClient, run_label: str, seconds: float) -> list:
    deadline = time.monotonic() + seconds
    while labelled(client, run_label) and time.monotonic() < deadline:
        time.sleep(0.2)
    return labelled(client, run_label)


def test_ctrl_c_leaves_no_container(docker_client, base_image, tiny_repo, run_label: str) -> None:
    proc = start_owner(tiny_repo, run_label)
    assert len(labelled(docker_client, run_label)) == 2
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert labelled(docker_client, run_label) == []


def test_sigkill_then_prune_leaves_no_container(docker_client, base_image, tiny_repo, run_label: str) -> None:
    proc = start_owner(tiny_repo, run_label)
    assert len(labelled(docker_client, run_label)) == 2
    proc.kill()
    proc.wait(timeout=60)
    prune = subprocess.run(
        [sys.executable, "-m", "codemonkeys", "sandbox", "prune"],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert prune.returncode == 0, prune.stderr
    # Containers also end themselves when their owner dies (stdin closes); prune covers what remains.
    assert wait_until_gone(docker_client, run_label, 15) == []


DEAD_OWNER = """
import json
from codemonkeys.sandbox import engine
print(json.dumps(engine.owner_labels("{label}", "sandbox")))
"""


def sleeper(client: docker.DockerClient, image: str, labels: dict[str, str]) -> str:
    """A labelled container that does NOT end itself: only prune can remove it."""
    container = client.containers.run(image, ["sleep", "300"], detach=True, labels=labels, network_mode="none")
    return container.id


def test_prune_removes_containers_of_dead_owners_and_keeps_live_ones(docker_client, base_image, run_label: str) -> None:
    from typer.testing import CliRunner

    from codemonkeys.cli_sandbox import sandbox_app

    dead = subprocess.run(
        [sys.executable, "-c", DEAD_OWNER.format(label=run_label)],
        env=python_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = sleeper(docker_client, base_image, json.loads(dead.stdout))
    live = sleeper(docker_client, base_image, engine.owner_labels(run_label, "sandbox"))
    try:
        doctor = CliRunner().invoke(sandbox_app, ["doctor"])
        assert doctor.exit_code == 0, doctor.output
        assert "owner gone" in doctor.output and "owner running" in doctor.output

        # Scoped to this test's run: other runs on this engine (a parallel test session) stay untouched.
        result = CliRunner().invoke(sandbox_app, ["prune", "--run", run_label])
        assert result.exit_code == 0, result.output
        remaining = {c.id for c in labelled(docker_client, run_label)}
        assert remaining == {live}
        assert f"removed container {docker_client.containers.get(live).name}" not in result.output

        result = CliRunner().invoke(sandbox_app, ["prune", "--all", "--run", run_label])
        assert result.exit_code == 0, result.output
        assert labelled(docker_client, run_label) == []
    finally:
        for container_id in (orphan, live):
            engine.remove_container(docker_client, container_id)


def test_cli_build_doctor_and_usage_errors(docker_client, base_image, tiny_repo) -> None:
    from typer.testing import CliRunner

    from codemonkeys.cli_sandbox import sandbox_app

    runner = CliRunner()
    result = runner.invoke(sandbox_app, ["build"])
    assert result.exit_code == 0 and "exists" in result.output
    repo, sha = tiny_repo
    result = runner.invoke(sandbox_app, ["build", "--repo", str(repo), "--setup", SETUP])
    assert result.exit_code == 0, result.output
    tag = images.repo_image_tag(docker_client, repo, sha, SETUP, base_image)
    assert tag in result.output and images.image_exists(docker_client, tag)

    assert runner.invoke(sandbox_app, ["build", "--setup", "x"]).exit_code == 2
    assert runner.invoke(sandbox_app, ["build", "--repo", str(repo), "--commit", "nope"]).exit_code == 2
    failed = runner.invoke(sandbox_app, ["build", "--repo", str(repo), "--setup", "echo broken; exit 7"])
    assert failed.exit_code == 1
    assert "exit 7" in failed.output and "broken" in failed.output

    doctor = runner.invoke(sandbox_app, ["doctor"])
    assert doctor.exit_code == 0
    assert f"base image {images.BASE_IMAGE}: present" in doctor.output
    assert tag in doctor.output


def test_cli_without_an_engine_fails_with_one_clear_line(tmp_path: Path) -> None:
    env = {**python_env(), "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    for command in (["doctor"], ["prune"], ["build"]):
        proc = subprocess.run(
            [sys.executable, "-m", "codemonkeys", "sandbox", *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.startswith("error: no docker engine answers")
        assert len(proc.stderr.strip().splitlines()) == 1


def test_image_recipe_reads_the_mirror_from_apt_sources(tmp_path: Path) -> None:
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list.d" / "debian.sources").write_text(
        textwrap.dedent("""\
            Types: deb
            URIs: http://mirror.example/debian-security
            Suites: bookworm-security
            Components: main

            Types: deb
            # a comment
            URIs: http://mirror.example/debian
            Suites: bookworm bookworm-updates
            Components: main
            """)
    )
    assert images.apt_mirror(etc) == "http://mirror.example/debian"
    (etc / "sources.list.d" / "debian.sources").unlink()
    (etc / "sources.list").write_text(
        "# deb http://old/ x main\ndeb [arch=amd64] http://classic.example/debian bookworm main\n"
    )
    assert images.apt_mirror(etc) == "http://classic.example/debian"
    (etc / "sources.list").write_text("")
    with pytest.raises(images.ImageError, match="no Debian mirror"):
        images.apt_mirror(etc)


# What every base image must do, whichever route made it: the contents contract of sandboxes/README.md.
SMOKE = r"""set -e
python -c 'import sys; assert sys.version_info >= (3, 11), sys.version'
test "$(command -v python)" = /opt/venv/bin/python && test "$(id -u)" = 1000 && test "$(pwd)" = /repo
git --version >/dev/null && git init -q /tmp/g && echo git ok
cd /tmp && python -m venv v && v/bin/pip --version >/dev/null && echo venv ok
printf '%s\n' '#include <Python.h>' \
    'static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "m", NULL, -1, NULL};' \
    'PyMODINIT_FUNC PyInit_m(void) { return PyModule_Create(&def); }' > m.c
include=$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
suffix=$(python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
gcc -shared -fPIC -I"$include" m.c -o "m$suffix" && python -c 'import m; print("extension ok")'
"""


@pytest.fixture(scope="module")
def registry_base(docker_client: docker.DockerClient, base_image: str) -> Iterator[SimpleNamespace]:
    """The registry route built for real, by `sandbox build` with the default --from auto: no registry answers
    here, so our base image (it has Python 3.11) stands in for python:3.11-slim as a local image."""
    from typer.testing import CliRunner

    from codemonkeys.cli_sandbox import sandbox_app

    suffix = uuid.uuid4().hex[:8]
    stand_in = f"codemonkeys-test/python:3.11-slim-{suffix}"
    tag = f"codemonkeys-test/base:registry-{suffix}"
    docker_client.images.get(base_image).tag(stand_in)
    try:
        result = CliRunner().invoke(sandbox_app, ["build", "--name", tag], env={images.BASE_FROM_ENV: stand_in})
        yield SimpleNamespace(tag=tag, stand_in=stand_in, result=result)
    finally:
        if images.image_exists(docker_client, tag):
            docker_client.images.remove(tag, force=True)
        docker_client.images.remove(stand_in)  # only the tag: the image is our base image


@pytest.mark.slow
def test_the_registry_route_builds_when_the_image_is_present(docker_client, registry_base) -> None:
    from typer.testing import CliRunner

    from codemonkeys.cli_sandbox import sandbox_app

    result = registry_base.result
    assert result.exit_code == 0, result.output
    assert f"route: registry ({registry_base.stand_in} is present)" in result.output
    assert f"built {registry_base.tag} (registry)" in result.output
    built = docker_client.images.get(registry_base.tag)
    labels = built.labels
    assert labels[images.ROUTE_LABEL] == "registry" and labels[images.SOURCE_LABEL] == registry_base.stand_in
    assert labels[images.RECIPE_LABEL] == images.base_recipe("registry")
    assert images.base_is_current(docker_client, registry_base.tag)
    base = docker_client.images.get(images.BASE_IMAGE)
    for key in ("Env", "WorkingDir", "User", "Cmd"):
        assert built.attrs["Config"][key] == base.attrs["Config"][key], key

    again = CliRunner().invoke(sandbox_app, ["build", "--name", registry_base.tag, "--from", "registry"])
    assert again.exit_code == 0 and "exists, built by registry from the current recipe" in again.output


@pytest.mark.slow
@pytest.mark.parametrize("route", ["debootstrap", "registry"])
def test_both_routes_pass_the_same_smoke_check(docker_client, base_image, request, route: str) -> None:
    image = base_image if route == "debootstrap" else request.getfixturevalue("registry_base").tag
    assert images.base_route(docker_client, image) == route
    output = docker_client.containers.run(image, ["sh", "-c", SMOKE], remove=True, network_mode="none")
    assert output.decode().split() == ["git", "ok", "venv", "ok", "extension", "ok"]


@pytest.mark.slow
async def test_the_docker_sandbox_runs_scripts_on_the_registry_built_base(
    docker_client, registry_base, tiny_repo, run_label: str
) -> None:
    repo, sha = tiny_repo
    spec = SandboxSpec(repo_path=str(repo), commit=sha, run_label=run_label, settings=SandboxSettings(setup=SETUP))
    provider = DockerProvider(spec, client=docker_client, base_image=registry_base.tag)
    image = await provider.prepare()
    try:
        async with await provider.open("registry") as sandbox:
            await sandbox.write_file("check.py", "from calc import add\nprint(add(5, 3), open('generated.txt').read())")
            result = await sandbox.run("python check.py && git status --short", timeout=30)
            assert result.exit_code == 0, result.output
            assert result.output == "2 generated\n\n?? check.py\n"
    finally:
        await provider.aclose()
        docker_client.images.remove(image, force=True)
    assert labelled(docker_client, run_label) == []


def test_a_failed_registry_build_leaves_no_container_and_no_image(docker_client: docker.DockerClient) -> None:
    """A FROM image without a shell: the build fails at its first RUN, after a step that made an image."""
    suffix = uuid.uuid4().hex[:8]
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        info = tarfile.TarInfo("etc/hostname")
        info.size = 6
        archive.addfile(info, io.BytesIO(b"empty\n"))
    empty = f"codemonkeys-test/empty:{suffix}"
    docker_client.api.import_image_from_data(tar.getvalue(), repository="codemonkeys-test/empty", tag=suffix)
    empty_id = docker_client.images.get(empty).id
    broken = f"codemonkeys-test/base:broken-{suffix}"
    lines: list[str] = []
    try:
        with pytest.raises(images.ImageError, match=f"building {broken} from {empty} failed"):
            images.build_base_image(docker_client, broken, route="registry", from_image=empty, progress=lines.append)
        assert lines[0] == f"route: registry ({empty} is present)"
        assert docker_client.containers.list(all=True, filters={"ancestor": empty_id}) == []
        assert [i for i in docker_client.images.list(all=True) if i.attrs.get("Parent") == empty_id] == []
        assert not images.image_exists(docker_client, broken)
    finally:
        docker_client.images.remove(empty_id, force=True)
