"""Docker environments: the official SWE-bench instance image when one is here or a registry serves it, else an
image built once per (repo, version) from the offline base image: a virtualenv at /opt/env holding the spec's
packages, installed with pip from the package index the way this machine's pip reaches it.

The repository is not in that image: the docker sandbox copies the tree at each commit in and runs the setup
(`setup_command`: the spec's repository commands and its install) once per commit, in a repo image of its own.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import tarfile
import time
from pathlib import Path

import docker
import docker.errors

from codemonkeys.sandbox import engine, images
from codemonkeys.sandbox.local import venv_hook_files
from codemonkeys.swebench import python_versions
from codemonkeys.swebench.envs_build import (
    HELPER,
    BuildLog,
    EnvBuildError,
    host_pip_index,
    install_groups,
    left_out,
    split_pre_install,
)
from codemonkeys.swebench.models import EnvManifest, EnvSpec

ENV_DIR = "/opt/env"
ENV_PREFIX = f". {ENV_DIR}/bin/activate &&"  # `.`, not `source`: image builds run their steps with sh
OFFICIAL_PREFIX = "source /opt/miniconda3/bin/activate testbed &&"
OFFICIAL_WORKDIR = "/testbed"
MANIFEST_LABEL = "codemonkeys.env.manifest"
REGISTRY_TIMEOUT = 10.0  # seconds for a registry to say whether it has an image
_CONTEXT = "/tmp/codemonkeys-env"
_CA = "/etc/codemonkeys/pip-ca.pem"
_PROBE = (
    "for p in /usr/local/bin/python3* /usr/bin/python3*; do case $p in *-config) continue;; esac; "
    '[ -x "$p" ] && "$p" -c \'import sys, venv, ensurepip; print(sys.executable, "%d.%d.%d" % sys.version_info[:3])\' '
    "2>/dev/null; done; true"
)
# Registries found unreachable by this process: asking again for every instance would only cost time.
_unreachable: dict[str, str] = {}


def official_image_name(instance_id: str, template: str) -> str:
    return template.format(instance=instance_id.replace("__", "_1776_")).lower()


def _registry(name: str) -> str:
    first = name.split("/", 1)[0]
    return first if "/" in name and ("." in first or ":" in first or first == "localhost") else "docker.io"


def official_available(client: docker.DockerClient, name: str) -> tuple[bool, str]:
    """Whether the official image is here, or was just pulled from a registry that answered in time; and why."""
    if images.image_exists(client, name):
        return True, f"{name} is present"
    registry = _registry(name)
    if registry in _unreachable:
        return False, _unreachable[registry]
    try:
        probe = docker.from_env(timeout=REGISTRY_TIMEOUT)
        try:
            probe.api.inspect_distribution(name)
        finally:
            probe.close()
    except Exception as exc:
        why = f"{name} is not here and no registry serves it ({engine.describe_exc(exc)})"
        if not (isinstance(exc, docker.errors.APIError) and exc.status_code in (401, 403, 404)):
            _unreachable[registry] = why
        return False, why
    try:
        client.images.pull(name)
    except docker.errors.DockerException as exc:
        return False, f"pulling {name} failed: {engine.describe_exc(exc)}"
    return True, f"{name} was pulled"


def official_manifest(spec: EnvSpec, name: str, log: BuildLog) -> EnvManifest:
    return EnvManifest(
        key=spec.key,
        kind="docker",
        spec=spec,
        location=name,
        official_image=True,
        python_wanted=spec.python,
        python_used=spec.python,
        build_log=str(log.path),
    )


def setup_command(spec: EnvSpec) -> str | None:
    """Run once per commit in the repo image (behind ENV_PREFIX): the spec's repository commands, its install."""
    _, steps = split_pre_install(spec.pre_install)
    return " && ".join([*steps, *([spec.install] if spec.install else [])]) or None


def env_image_tag(spec: EnvSpec, digest: str) -> str:
    return f"codemonkeys/env-{spec.key}:{digest}"


def _pythons(client: docker.DockerClient, image: str) -> list[python_versions.Interpreter]:
    out = client.containers.run(
        image,
        ["sh", "-c", _PROBE],
        entrypoint=[],
        user="root",
        remove=True,
        network_mode="none",
        labels=engine.owner_labels("env-build", "build"),
    )
    found = {}
    for line in out.decode(errors="replace").splitlines():
        path, _, version = line.partition(" ")
        if path.startswith("/") and re.fullmatch(r"\d+\.\d+\.\d+", version):
            found.setdefault(version, python_versions.Interpreter(path=path, version=version))
    return list(found.values())


def _context(files: dict[str, bytes]) -> bytes:
    """A tar extracted at / before the build steps: the helper, its request, pip's config and CA bundle."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def build(spec: EnvSpec, tag: str, log: BuildLog, notes: list[str]) -> EnvManifest:
    """The env image `tag` (reused when it exists: its label holds the manifest); raises EnvBuildError."""
    start = time.monotonic()
    try:
        client = engine.connect()
    except engine.EngineError as exc:
        raise EnvBuildError(str(exc), log.path) from None
    try:
        images.ensure_image(client, images.BASE_IMAGE, log.line)
        if images.image_exists(client, tag):
            label = (client.images.get(tag).labels or {}).get(MANIFEST_LABEL)
            if label:
                log.line(f"{tag} exists: reusing it; its manifest label:\n{label}")
                return EnvManifest.model_validate_json(label).model_copy(update={"build_log": str(log.path)})
        return _build(client, spec, tag, log, notes, start)
    except (images.ImageError, docker.errors.DockerException) as exc:
        report = log.report() or {}
        failed = ", ".join(report.get("failed", []))
        what = f"could not install {failed}" if failed else engine.describe_exc(exc)
        raise EnvBuildError(f"{spec.key}: building {tag} failed: {what}", log.path) from None
    finally:
        client.close()


def _build(
    client: docker.DockerClient, spec: EnvSpec, tag: str, log: BuildLog, notes: list[str], start: float
) -> EnvManifest:
    found = _pythons(client, images.BASE_IMAGE)
    if not found:
        raise EnvBuildError(f"{images.BASE_IMAGE} has no Python 3 with venv", log.path)
    python = python_versions.ranked(spec.python, found)[0]
    log.line(f"interpreters in {images.BASE_IMAGE}: {', '.join(i.version for i in found)}; using {python.path}")
    deviations = list(notes)
    if python.minor != python_versions.version_tuple(spec.python):
        deviations.append(
            f"Python {python.version} instead of {spec.python}: the nearest in {images.BASE_IMAGE} "
            f"({', '.join(i.version for i in found)})"
        )
    system, tree = split_pre_install(spec.pre_install)
    if tree:
        deviations.append(f"pre_install commands on the repository run in each commit's setup: {'; '.join(tree)}")
    index = host_pip_index()
    groups, dropped = install_groups(spec)
    deviations += dropped
    hook = venv_hook_files(ENV_DIR)
    files = {
        f"{_CONTEXT}/{HELPER.name}": HELPER.read_bytes(),
        f"{_CONTEXT}/request.json": json.dumps({"groups": groups}).encode(),
        "/etc/pip.conf": index.config(_CA).encode(),
        **{f"{_CONTEXT}/hook/{name}": text.encode() for name, text in hook.items()},
    }
    # The base interpreter's own site-packages, which the venv does not read: a symlink to the venv's python
    # (tox --current-env's .tox/<env>/bin/python) starts that interpreter, and the hook gives it the venv.
    copy_hook = (
        "import os, shutil, sys, sysconfig; "
        "[shutil.copy(os.path.join(sys.argv[1], n), sysconfig.get_path('purelib')) for n in os.listdir(sys.argv[1])]"
    )
    if index.cert:
        files[_CA] = Path(index.cert).read_bytes()
    log.line(f"pip.conf in the image:\n{index.config(_CA)}")
    user = client.images.get(images.BASE_IMAGE).attrs["Config"].get("User") or "root"
    seconds = int(log.remaining())
    steps = [
        (f"mkdir -p {ENV_DIR} && chown {user} {ENV_DIR} && chmod -R a+rX {_CONTEXT} /etc/pip.conf", "root"),
        *[(f"timeout {seconds} bash -c {shlex.quote(command)}", "root") for command in system],
        (f"{python.path} -m venv {ENV_DIR}", ""),
        (f"{python.path} -c {shlex.quote(copy_hook)} {_CONTEXT}/hook", "root"),
        (
            f"timeout {seconds} {ENV_DIR}/bin/python {_CONTEXT}/{HELPER.name} install "
            f"{_CONTEXT}/request.json {ENV_DIR}/codemonkeys-install.json",
            "",
        ),
        (f"rm -rf {_CONTEXT}", "root"),
    ]
    partial = f"{tag}-partial"
    labels = {engine.LABEL: "1", engine.KIND_LABEL: "env", images.WORKDIR_LABEL: images.REPO_WORKDIR}
    try:
        images._commit_image(
            client, images.BASE_IMAGE, partial, images.REPO_WORKDIR, steps, labels, _context(files), log.line
        )
        report = log.report() or {}
        deviations += left_out(report.get("choices", []))
        manifest = EnvManifest(
            key=spec.key,
            kind="docker",
            spec=spec,
            location=tag,
            python_wanted=spec.python,
            python_used=report.get("python", python.version),
            packages=report.get("choices", []),
            deviations=deviations,
            build_log=str(log.path),
            seconds=round(time.monotonic() - start, 1),
        )
        # A second, empty step: the manifest label can only be written once the install has reported.
        labels[MANIFEST_LABEL] = manifest.model_dump_json(exclude={"smoke"})
        images._commit_image(client, partial, tag, images.REPO_WORKDIR, [], labels, None, log.line)
    finally:
        if images.image_exists(client, partial):
            client.images.remove(partial)
    log.line(f"built {tag}")
    return manifest
