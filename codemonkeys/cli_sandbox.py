"""`codemonkeys sandbox …`: build the docker images, check the engine, remove what runs left behind."""

from __future__ import annotations

import subprocess
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import docker.errors
import typer

from codemonkeys.cli_options import FAILED, fail
from codemonkeys.sandbox import engine, images

sandbox_app = typer.Typer(
    help="Docker sandbox: build the base image or a repo image, check the engine, prune leftovers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_NOISY = (
    *("I: Retrieving", "I: Validating", "I: Unpacking", "I: Configuring", "I: Extracting"),  # debootstrap
    *("Get:", "Selecting previously", "Preparing to unpack", "Unpacking ", "Setting up ", "(Reading database"),  # apt
    *(" ---> ", "Removing intermediate container"),  # docker build
)


class BaseRoute(StrEnum):
    auto = "auto"
    registry = "registry"
    debootstrap = "debootstrap"


def _progress(line: str) -> None:
    if line.strip() and not line.startswith(_NOISY):
        typer.echo(f"  {line}")


def _connect() -> docker.DockerClient:
    try:
        return engine.connect()
    except engine.EngineError as exc:
        raise fail(str(exc), FAILED) from None


def _resolve_commit(repo: Path, commit: str | None) -> str:
    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{commit or 'HEAD'}^{{commit}}"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise typer.BadParameter(f"{commit or 'HEAD'} not found in {repo}", param_hint="--commit")
    return proc.stdout.strip()


@sandbox_app.command()
def build(
    name: Annotated[str, typer.Option(help="Tag of the base image.")] = images.BASE_IMAGE,
    repo: Annotated[
        Path | None,
        typer.Option(help="Build the image of this git repository instead: base image + repo at --commit + --setup."),
    ] = None,
    commit: Annotated[str | None, typer.Option(help="Commit of --repo. [default: HEAD]")] = None,
    setup: Annotated[
        str | None,
        typer.Option(help="Command run once in the repo image, e.g. 'pip install -e .' (network on while it runs)."),
    ] = None,
    base: Annotated[str | None, typer.Option(help="Base image of the repo image. [default: --name]")] = None,
    route: Annotated[
        BaseRoute,
        typer.Option(
            "--from",
            help="How to make the base image: registry (python:3.11-slim + git, gcc; needs that image or a registry), "
            "debootstrap (offline, Linux, root), or auto (registry when the image is present or a pull works).",
        ),
    ] = BaseRoute.auto,
    from_image: Annotated[
        str | None,
        typer.Option(
            help=f"Registry image of --from registry. [default: ${images.BASE_FROM_ENV} or {images.BASE_FROM}]"
        ),
    ] = None,
    mirror: Annotated[
        str | None, typer.Option(help="Debian mirror. [default: the first one in this machine's apt sources]")
    ] = None,
    suite: Annotated[str, typer.Option(help="Debian release of the base image (--from debootstrap).")] = "bookworm",
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if the image exists.")] = False,
) -> None:
    """Build the base image, or with --repo the image of one repository.

    The base image is python:3.11-slim + git and a C compiler where that image is present or a registry answers
    (the only way on macOS and Windows), else built offline: debootstrap from this machine's apt mirror, then
    docker import (about a minute, as root; debootstrap is installed first when missing). A repo image is the
    base image + the repository at --commit as a fresh git repo + --setup, built once and reused by every
    trajectory and every later run.
    """
    if repo is None and (commit or setup or base):
        raise typer.BadParameter("--commit, --setup and --base need --repo", param_hint="--repo")
    if repo is not None and (route is not BaseRoute.auto or from_image):
        raise typer.BadParameter("--from and --from-image build the base image: leave out --repo", param_hint="--from")
    if repo is not None and not (repo / ".git").exists():
        raise typer.BadParameter(f"not a git repository: {repo}", param_hint="--repo")
    client = _connect()
    try:
        if repo is None:
            built_by = images.base_route(client, name)
            wanted = route is BaseRoute.auto or built_by == route.value
            if images.base_is_current(client, name) and wanted and not force:
                typer.echo(f"{name} exists, built by {built_by} from the current recipe (use --force to rebuild)")
                return
            typer.echo(f"building {name}")
            with images.build_lock(name):
                images.build_base_image(
                    client,
                    name,
                    route=route.value,
                    from_image=from_image,
                    suite=suite,
                    mirror=mirror,
                    progress=_progress,
                )
            typer.echo(f"built {name} ({images.base_route(client, name)})")
            return
        repo = repo.resolve()
        sha = _resolve_commit(repo, commit)
        base_image = base or name
        images.ensure_image(client, base_image, _progress)
        tag = images.repo_image_tag(client, repo, sha, setup, base_image)
        if force and images.image_exists(client, tag):
            client.images.remove(tag)
        exists = images.image_exists(client, tag)
        tag = images.build_repo_image(client, repo, sha, setup=setup, base=base_image, progress=_progress)
        typer.echo(f"{tag} {'exists' if exists else 'built'}")
    except (images.ImageError, docker.errors.DockerException) as exc:
        raise fail(engine.describe_exc(exc), FAILED) from None


def _size(num: int) -> str:
    return f"{num / 1e6:.0f} MB"


@sandbox_app.command()
def doctor() -> None:
    """Check the engine, our images, leftover containers and what building the base image needs."""
    client = _connect()
    version = client.version()
    typer.echo(f"engine: docker {version.get('Version', '?')} (API {version.get('ApiVersion', '?')}) answers")
    built_by = images.base_route(client, images.BASE_IMAGE)
    if built_by is None:
        state = "missing (build it: codemonkeys sandbox build)"
    else:
        current = "current" if images.base_is_current(client, images.BASE_IMAGE) else "older recipe: build --force"
        state = f"present, built by {built_by} ({current})"
    typer.echo(f"base image {images.BASE_IMAGE}: {state}")
    from_image = images.base_from_image()
    typer.echo(f"registry image {from_image}: {'present' if images.image_exists(client, from_image) else 'not pulled'}")
    ours = client.images.list(filters={"label": f"{engine.LABEL}=1"})
    typer.echo(f"images: {len(ours)}")
    for image in ours:
        kind = image.labels.get(engine.KIND_LABEL, "?")
        typer.echo(f"  {', '.join(image.tags) or image.short_id}  [{kind}]  {_size(image.attrs.get('Size', 0))}")
    containers = engine.our_containers(client)
    typer.echo(f"containers: {len(containers)}")
    for container in containers:
        alive = engine.owner_alive(container.labels)
        owner = {True: "owner running", False: "owner gone", None: "owner unknown"}[alive]
        pid = container.labels.get(engine.PID_LABEL, "?")
        typer.echo(f"  {container.name}  {container.status}  run={container.labels.get(engine.RUN_LABEL, '?')}")
        typer.echo(f"    pid {pid}: {owner}")
    if not sys.platform.startswith("linux"):
        typer.echo("debootstrap: cannot run here (the base image comes from the registry image)")
        return
    typer.echo(f"debootstrap: {images.debootstrap_path() or 'missing (sudo apt-get install debootstrap)'}")
    try:
        typer.echo(f"apt mirror: {images.apt_mirror()}")
    except images.ImageError as exc:
        typer.echo(f"apt mirror: {exc}")


@sandbox_app.command()
def prune(
    remove_images: Annotated[
        bool, typer.Option("--images", help="Also remove our images (base, repo and setup images).")
    ] = False,
    everything: Annotated[
        bool, typer.Option("--all", help="Also remove containers of runs still going (they will fail).")
    ] = False,
    run: Annotated[str | None, typer.Option(help="Only containers of this run (the run directory's name).")] = None,
) -> None:
    """Remove containers this tool left behind.

    Our containers carry the label codemonkeys=1 and their owner's pid: stopped ones and those whose owner
    process is gone are removed; --all takes those of running processes too.
    """
    client = _connect()
    try:
        removed = engine.prune_containers(client, include_live=everything, run_label=run)
        for container in removed:
            typer.echo(f"removed container {container.name}")
        left = [c for c in engine.our_containers(client, run) if c.id not in {r.id for r in removed}]
        typer.echo(f"{len(removed)} container(s) removed, {len(left)} of running processes kept")
        if remove_images:
            ours = client.images.list(filters={"label": f"{engine.LABEL}=1"})
            # Images built on top of others first: the base goes last.
            ours.sort(key=lambda image: image.labels.get(engine.KIND_LABEL) == "base")
            for image in ours:
                client.images.remove(image.id, force=True)
                typer.echo(f"removed image {', '.join(image.tags) or image.short_id}")
    except docker.errors.DockerException as exc:
        raise fail(engine.describe_exc(exc), FAILED) from None


if __name__ == "__main__":
    sandbox_app()
