"""The base image's route (registry image or debootstrap), its messages, its labels and installing debootstrap:
everything that needs no docker engine."""

from __future__ import annotations

import stat
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docker.errors
import pytest
from typer.testing import CliRunner

from codemonkeys.cli_sandbox import sandbox_app
from codemonkeys.sandbox import images

LINUX_ROOT = {"platform": "linux", "debootstrap_present": True, "root": True, "apt_get_present": True}


def plan(requested: images.Requested = "auto", **given: Any) -> images.BasePlan:
    inputs = {"image_present": False, "registry_answers": False, **LINUX_ROOT, **given}
    return images.plan_base_build(requested, **inputs)


@pytest.mark.parametrize(
    ("requested", "given", "route", "install"),
    [
        ("auto", {"image_present": True}, "registry", False),
        ("auto", {"registry_answers": True}, "registry", False),
        ("auto", {"image_present": True, "platform": "darwin", "root": False}, "registry", False),
        ("auto", {"registry_answers": True, "platform": "win32"}, "registry", False),
        ("auto", {}, "debootstrap", False),
        ("auto", {"debootstrap_present": False}, "debootstrap", True),
        ("registry", {"image_present": True, "debootstrap_present": False}, "registry", False),
        ("debootstrap", {"image_present": True}, "debootstrap", False),
        ("debootstrap", {"registry_answers": True, "debootstrap_present": False}, "debootstrap", True),
    ],
)
def test_the_route_follows_the_image_the_registry_and_the_host(
    requested: images.Requested, given: dict[str, Any], route: str, install: bool
) -> None:
    chosen = plan(requested, **given)
    assert (chosen.route, chosen.install_debootstrap) == (route, install)
    assert chosen.why


def test_without_the_image_or_a_registry_macos_is_told_to_let_docker_desktop_reach_docker_hub() -> None:
    for requested in ("auto", "registry", "debootstrap"):
        with pytest.raises(images.ImageError) as err:
            plan(requested, platform="darwin", debootstrap_present=False, root=False, apt_get_present=False)
        message = str(err.value)
        assert "debootstrap cannot run here (macOS)" in message
        assert "let Docker Desktop reach Docker Hub so the python:3.11-slim route works" in message


def test_registry_route_forced_on_linux_without_the_image_says_how_to_get_it_or_go_offline() -> None:
    with pytest.raises(images.ImageError) as err:
        plan("registry", from_image="mirror.example/python:3.11-slim")
    message = str(err.value)
    assert "`docker pull mirror.example/python:3.11-slim`" in message
    assert "--from debootstrap" in message and "macOS" not in message


def test_debootstrap_missing_and_not_root_gives_the_exact_commands() -> None:
    with pytest.raises(images.ImageError) as err:
        plan(debootstrap_present=False, root=False)
    message = str(err.value)
    assert message.startswith("python:3.11-slim is not present and no registry answers, so ")
    assert message.endswith(
        "needs root: run `sudo apt-get install debootstrap`, then run `sudo codemonkeys sandbox build --from debootstrap`"
    )


def test_debootstrap_present_but_not_root_asks_for_root_only() -> None:
    with pytest.raises(images.ImageError) as err:
        plan("debootstrap", root=False)
    assert str(err.value) == (
        "the base image is built offline with debootstrap, which needs root: "
        "run `sudo codemonkeys sandbox build --from debootstrap`"
    )


def test_debootstrap_missing_without_apt_get_names_no_apt_command() -> None:
    with pytest.raises(images.ImageError, match="apt-get is not here") as err:
        plan(debootstrap_present=False, apt_get_present=False)
    assert "sudo apt-get" not in str(err.value)
    with pytest.raises(images.ImageError, match="needs root: install debootstrap, then run `sudo codemonkeys"):
        plan(debootstrap_present=False, apt_get_present=False, root=False)


class FakeImages:
    def __init__(self, labels: dict[str, dict[str, str]]) -> None:
        self.labels = labels

    def get(self, name: str) -> SimpleNamespace:
        if name not in self.labels:
            raise docker.errors.ImageNotFound(name)
        return SimpleNamespace(labels=self.labels[name])


def fake_client(labels: dict[str, dict[str, str]], pull: Any = None) -> Any:
    return SimpleNamespace(images=FakeImages(labels), api=SimpleNamespace(pull=pull))


def test_the_recipe_label_is_checked_against_the_route_that_built_the_image() -> None:
    deboot, registry = images.base_recipe("debootstrap"), images.base_recipe("registry")
    assert deboot != registry and images.base_recipe() == deboot
    client = fake_client(
        {
            "old-style": {images.RECIPE_LABEL: deboot},  # from before the registry route: no route label
            "deboot": {images.RECIPE_LABEL: deboot, images.ROUTE_LABEL: "debootstrap"},
            "registry": {images.RECIPE_LABEL: registry, images.ROUTE_LABEL: "registry"},
            "mixed-up": {images.RECIPE_LABEL: deboot, images.ROUTE_LABEL: "registry"},
            "unknown": {images.RECIPE_LABEL: deboot, images.ROUTE_LABEL: "floppy"},
        }
    )
    current = {name: images.base_is_current(client, name) for name in client.images.labels}
    assert current == {"old-style": True, "deboot": True, "registry": True, "mixed-up": False, "unknown": False}
    assert not images.base_is_current(client, "absent")
    assert images.base_route(client, "old-style") == "debootstrap"
    assert images.base_route(client, "registry") == "registry"
    assert images.base_route(client, "absent") is None


def test_a_registry_that_does_not_answer_costs_the_short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "REGISTRY_TIMEOUT", 0.3)

    def hang(*args: Any, **kwargs: Any) -> Any:
        time.sleep(5)
        return iter([])

    lines: list[str] = []
    started = time.monotonic()
    assert not images.pull_registry_image(fake_client({}, hang), "python:3.11-slim", lines.append)
    assert time.monotonic() - started < 2
    assert lines[-1] == "no registry answers for python:3.11-slim: no answer within 0.3 s"


def test_a_pull_error_means_no_registry_and_auto_goes_offline_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise docker.errors.APIError("500", explanation="lookup registry-1.docker.io: no such host")

    monkeypatch.delenv(images.BASE_FROM_ENV, raising=False)
    monkeypatch.setattr(images, "_is_root", lambda: False)
    monkeypatch.setattr(images, "debootstrap_path", lambda: None)
    monkeypatch.setattr(images.sys, "platform", "linux")
    monkeypatch.setattr(images.shutil, "which", lambda name, path=None: "/usr/bin/apt-get")
    lines: list[str] = []
    with pytest.raises(images.ImageError, match="sudo apt-get install debootstrap"):
        images.build_base_image(fake_client({}, refuse), "cm-test/base:x", progress=lines.append)
    assert lines == [
        "pulling python:3.11-slim",
        "no registry answers for python:3.11-slim: lookup registry-1.docker.io: no such host",
    ]


def test_from_image_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(images.BASE_FROM_ENV, raising=False)
    assert images.base_from_image() == "python:3.11-slim"
    monkeypatch.setenv(images.BASE_FROM_ENV, "mirror.example/library/python:3.11-slim")
    assert images.base_from_image() == "mirror.example/library/python:3.11-slim"


def fake_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, stale_lists: bool) -> Path:
    """An apt-get on PATH whose install fails until an update ran (stale lists) and then 'installs' debootstrap."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = f"""#!/bin/sh
echo "apt-get $*"
case "$1" in
update) touch {tmp_path}/updated ;;
install)
    if {"[ ! -e " + str(tmp_path / "updated") + " ]" if stale_lists else "false"}; then
        echo "E: Unable to locate package debootstrap"; exit 100
    fi
    printf '#!/bin/sh\\n' > {bin_dir}/debootstrap; chmod +x {bin_dir}/debootstrap
    echo "Setting up debootstrap" ;;
esac
"""
    apt = bin_dir / "apt-get"
    apt.write_text(script)
    apt.chmod(apt.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setattr(images, "debootstrap_path", lambda: images.shutil.which("debootstrap", path=str(bin_dir)))
    return bin_dir


def test_installing_debootstrap_streams_apt_and_updates_stale_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = fake_apt(tmp_path, monkeypatch, stale_lists=True)
    lines: list[str] = []
    assert images.install_debootstrap(lines.append) == str(bin_dir / "debootstrap")
    assert lines == [
        "debootstrap is missing: apt-get install -y -q debootstrap",
        "apt-get install -y -q debootstrap",
        "E: Unable to locate package debootstrap",
        "apt-get update -q, then again",
        "apt-get update -q",
        "apt-get install -y -q debootstrap",
        "Setting up debootstrap",
    ]


def test_a_failed_install_says_what_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_apt(tmp_path, monkeypatch, stale_lists=True)
    (tmp_path / "updated").mkdir()
    (tmp_path / "bin" / "apt-get").write_text("#!/bin/sh\necho 'E: Could not get lock'\nexit 100\n")
    with pytest.raises(images.ImageError) as err:
        images.install_debootstrap()
    assert str(err.value).startswith("installing debootstrap failed (exit 100); run `apt-get install -y debootstrap`")
    assert err.value.args[0].endswith("E: Could not get lock")


def test_an_interrupted_step_ends_its_whole_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    script = f"sh -c 'echo $$ > {marker}; sleep 60' & while [ ! -s {marker} ]; do sleep 0.05; done; echo started; wait"

    def interrupt(line: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        images._run_streaming(["sh", "-c", script], interrupt)
    pid = int(marker.read_text())
    deadline = time.monotonic() + 5
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(pid)


def running(pid: int) -> bool:
    """Neither gone nor a zombie nobody reaped yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_the_cli_route_flag_is_for_the_base_image_only(tmp_path: Path) -> None:
    result = CliRunner().invoke(sandbox_app, ["build", "--repo", str(tmp_path), "--from", "registry"])
    assert result.exit_code == 2 and "--from" in result.output
    result = CliRunner().invoke(sandbox_app, ["build", "--from", "floppy"])
    assert result.exit_code == 2
    assert "--from" in CliRunner().invoke(sandbox_app, ["build", "--help"]).output
