"""SWE-bench environments per (repo, version), built once and smoke-checked before use (DESIGN.md,
"Environments for benchmarks").

`ensure_environment` gives the manifest of a ready environment: a cached one whose smoke check passed, else
one built now (docker: `envs_docker`, local: `envs_local`) under a lock that holds across coroutines, threads
and processes, so concurrent workers build it once. `sandbox_settings` turns a manifest into the sandbox
settings that run code in it; the pipeline and the evaluator both use it.

Cache layout (`swebench.env_cache`, default `<cache>/codemonkeys/envs`):
    <kind>/<key>-<digest>/manifest.json, build-<time>.log, venv/ (local)     one per spec
    <kind>/<key>-<digest>.lock
    docker/official/<image>/manifest.json, build-<time>.log                  one per official instance image
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import shlex
import time
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import docker.errors

from codemonkeys.config import SandboxSettings, Settings
from codemonkeys.jsonfiles import atomic_write_text
from codemonkeys.problem import Problem
from codemonkeys.sandbox import engine, images
from codemonkeys.sandbox.base import SandboxError
from codemonkeys.sandbox.factory import make_provider
from codemonkeys.sandbox.local import venv_hook_files
from codemonkeys.swebench import envs_docker, envs_local
from codemonkeys.swebench.envs_build import (
    HELPER,
    BuildLog,
    EnvBuildError,
    git_files,
    scm_version_env,
    smoke_test_file,
    top_level_package,
)
from codemonkeys.swebench.models import EnvManifest, EnvSpec, SmokeCheck, SWEInstance
from codemonkeys.swebench.repos import path_lock

__all__ = ["EnvBuildError", "cache_root", "ensure_environment", "sandbox_settings"]

log = logging.getLogger(__name__)

RECIPE = "1"  # change it when a build's steps change: every environment is then built anew
SMOKE_TIMEOUT = 600.0  # seconds: collecting a large test file of a large package
_OUTPUT_KEPT = 4000

_LOOP_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = weakref.WeakKeyDictionary()


def cache_root(settings: Settings) -> Path:
    return settings.swebench.env_cache or images.cache_dir() / "envs"


def sandbox_settings(
    manifest: EnvManifest, sandbox: SandboxSettings, instance: SWEInstance | None = None, repo_path: Path | None = None
) -> SandboxSettings:
    """`sandbox` changed so that `make_provider` gives sandboxes running in the manifest's environment. With
    the instance and its clone, a docker env image's setup gets the version setuptools_scm would compute in
    the clone: the tree it installs is copied without its history."""
    if manifest.kind == "local":
        update: dict[str, object] = {
            "kind": "local",
            "venv": manifest.location,
            "python": "python",
            "setup": envs_local.setup_command(manifest),
            "image": None,
            "workdir": None,
            "command_prefix": None,
        }
    elif manifest.official_image:
        update = {
            "kind": "docker",
            "image": manifest.location,
            "workdir": envs_docker.OFFICIAL_WORKDIR,
            "command_prefix": envs_docker.OFFICIAL_PREFIX,
            "setup": None,
            "venv": None,
        }
    else:
        setup = envs_docker.setup_command(manifest.spec)
        version = scm_version_env(instance.repo, repo_path, instance.base_commit) if instance and repo_path else None
        update = {
            "kind": "docker",
            "image": manifest.location,
            "workdir": None,
            "command_prefix": envs_docker.ENV_PREFIX,
            "setup": f"export {version} && {setup}" if setup and version else setup,
            "venv": None,
        }
    return sandbox.model_copy(update=update)


def _digest(spec: EnvSpec, kind: str) -> str:
    """Same recipe, kind, spec and installer → same environment."""
    digest = hashlib.sha256(f"{RECIPE}\0{kind}\0{spec.model_dump_json()}\0".encode())
    digest.update(HELPER.read_bytes())
    if kind == "docker":  # the image holds the venv hook (the local sandbox writes its own per sandbox)
        digest.update("".join(venv_hook_files(envs_docker.ENV_DIR).values()).encode())
    return digest.hexdigest()[:12]


def _lock_file(env_dir: Path) -> Path:
    return env_dir.parent / f"{env_dir.name}.lock"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")


@contextlib.asynccontextmanager
async def _held(lock_file: Path) -> AsyncIterator[None]:
    """Coroutines of one loop queue on an asyncio lock (no thread each); the one holding it takes the thread
    and file lock in a worker thread, so other threads and processes wait for the same build."""
    locks = _LOOP_LOCKS.setdefault(asyncio.get_running_loop(), {})
    async with locks.setdefault(str(lock_file), asyncio.Lock()):
        yield


def _read(path: Path) -> EnvManifest | None:
    try:
        return EnvManifest.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None


def _usable(manifest: EnvManifest) -> bool:
    """Smoke-checked, and what it describes is still there."""
    if manifest.smoke is None or not manifest.smoke.ok:
        return False
    if manifest.kind == "local":
        return (Path(manifest.location) / "bin" / "python").exists()
    try:
        client = engine.connect(timeout=30)
    except engine.EngineError:
        return False
    try:
        return images.image_exists(client, manifest.location)
    except docker.errors.DockerException:
        return False
    finally:
        client.close()


async def _smoke(manifest: EnvManifest, instance: SWEInstance, repo_path: Path, settings: Settings) -> SmokeCheck:
    """Import the package and collect one test of the instance, in a sandbox of the environment."""
    files = git_files(repo_path, instance.base_commit)
    package = top_level_package(instance.repo, files)
    steps = [f"python -c {shlex.quote(f'import {package}; print({package}.__file__)')}"] if package else []
    if "pytest" in manifest.spec.test_cmd:
        test_file = smoke_test_file(instance.test_patch, instance.FAIL_TO_PASS + instance.PASS_TO_PASS, files)
        if test_file:
            # 5: collected nothing, but the file imported.
            collect = f"python -m pytest --collect-only -q {shlex.quote(test_file)}"
            steps.append(f'{{ {collect}; code=$?; [ "$code" = 0 ] || [ "$code" = 5 ]; }}')
    command = " && ".join(steps) or "python --version"
    problem = Problem(
        instance_id=instance.instance_id,
        repo_path=str(repo_path),
        commit=instance.base_commit,
        issue=instance.problem_statement or "smoke check",
    )
    sandbox = sandbox_settings(manifest, settings.sandbox, instance, repo_path)
    try:
        provider = await make_provider(sandbox, problem, f"envsmoke-{manifest.key}"[:60])
    except (SandboxError, OSError) as exc:
        return SmokeCheck(ok=False, command=f"sandbox setup: {sandbox.setup}", output=str(exc)[-_OUTPUT_KEPT:])
    try:
        box = await provider.open("smoke")
        try:
            result = await box.run(command, max(SMOKE_TIMEOUT, settings.sandbox.test_timeout))
        finally:
            await box.close()
    except SandboxError as exc:
        return SmokeCheck(ok=False, command=command, output=str(exc)[-_OUTPUT_KEPT:])
    finally:
        await provider.aclose()
    ok = result.exit_code == 0 and not result.timed_out
    return SmokeCheck(ok=ok, command=command, output=result.output[-_OUTPUT_KEPT:])


def _ensure(
    env_dir: Path,
    lock_file: Path,
    build: Callable[[BuildLog], EnvManifest],
    instance: SWEInstance,
    repo_path: Path,
    settings: Settings,
) -> EnvManifest:
    """Under the lock: the cached manifest when usable, else build, smoke-check and record a new one."""
    manifest_file = env_dir / "manifest.json"
    with path_lock(lock_file):
        cached = _read(manifest_file)
        if cached is not None and _usable(cached):
            return cached
        stamp = time.strftime("%Y%m%dT%H%M%S")
        build_log = BuildLog(
            env_dir / f"build-{stamp}-{time.monotonic_ns() % 10**6:06d}.log", settings.swebench.build_timeout
        )
        try:
            build_log.line(f"building {env_dir.name} for {instance.instance_id} at {instance.base_commit}")
            log.info("building environment %s (log: %s)", env_dir.name, build_log.path)
            try:
                manifest = build(build_log)
                build_log.line("smoke check: import the package, collect one test")
                manifest.smoke = asyncio.run(_smoke(manifest, instance, repo_path, settings))
            except EnvBuildError:
                raise
            except Exception as exc:
                build_log.line(f"the build crashed: {exc!r}")
                raise EnvBuildError(f"{env_dir.name}: the build crashed: {exc}", build_log.path) from exc
            build_log.line(f"$ {manifest.smoke.command}\n{manifest.smoke.output}\nsmoke ok: {manifest.smoke.ok}")
            atomic_write_text(manifest_file, manifest.model_dump_json(indent=1))
            if not manifest.smoke.ok:
                raise EnvBuildError(
                    f"{env_dir.name}: the smoke check failed: {manifest.smoke.output.strip()[-800:]}", build_log.path
                )
            log.info("environment %s ready: %s", env_dir.name, manifest.location)
            return manifest
        finally:
            build_log.close()


async def ensure_environment(spec: EnvSpec, instance: SWEInstance, repo_path: Path, settings: Settings) -> EnvManifest:
    """The environment of `spec` for `instance` (repository at `repo_path`), ready and smoke-checked; built at
    most once per spec across the workers of this machine. Raises EnvBuildError (with the build log) when it
    cannot be built or fails its smoke check."""
    root = cache_root(settings)
    kind = settings.swebench.env
    repo_path = Path(repo_path)
    notes: list[str] = []
    if kind == "docker":
        official = envs_docker.official_image_name(instance.instance_id, settings.swebench.image_template)
        env_dir = root / "docker" / "official" / _slug(official)
        available, why = await asyncio.to_thread(_official, official, env_dir)
        if available:

            def build_official(build_log: BuildLog) -> EnvManifest:
                return envs_docker.official_manifest(spec, official, build_log)

            lock_file = _lock_file(env_dir)
            async with _held(lock_file):
                return await asyncio.to_thread(
                    _ensure, env_dir, lock_file, build_official, instance, repo_path, settings
                )
        notes.append(f"no official instance image: {why}; built from {images.BASE_IMAGE}")
    digest = _digest(spec, kind)
    env_dir = root / kind / f"{spec.key}-{digest}"

    def build(build_log: BuildLog) -> EnvManifest:
        if kind == "local":
            return envs_local.build(spec, instance, repo_path, env_dir, build_log)
        return envs_docker.build(spec, envs_docker.env_image_tag(spec, digest), build_log, notes)

    lock_file = _lock_file(env_dir)
    async with _held(lock_file):
        return await asyncio.to_thread(_ensure, env_dir, lock_file, build, instance, repo_path, settings)


def _official(name: str, env_dir: Path) -> tuple[bool, str]:
    """Whether the official image can be used; a missing engine is a build error with a log of its own."""

    def failed(message: str) -> EnvBuildError:
        log_path = env_dir / "engine.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(f"{message}\n")
        return EnvBuildError(message, log_path)

    try:
        client = engine.connect(timeout=60)
    except engine.EngineError as exc:
        raise failed(str(exc)) from None
    try:
        return envs_docker.official_available(client, name)
    except docker.errors.DockerException as exc:
        raise failed(f"checking for {name}: {engine.describe_exc(exc)}") from None
    finally:
        client.close()
