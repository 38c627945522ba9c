"""Local environments: one virtualenv per (repo, version), made with the interpreter nearest to the spec's.

The venv holds the dependencies only. Instances of one version sit at different commits and share it, so each
sandbox imports the repository from its own tree (the local sandbox puts the tree and src/ on PYTHONPATH).
To get the repository's own dependencies (install_requires, extras such as `.[test]`), the build runs the
spec's install once in a temporary worktree, then removes the repository's distribution again and leaves
its console scripts as shims importing from sys.path. Each sandbox's setup then builds in its tree what the
install would have (C extensions in place, egg-info metadata, setuptools_scm version files): see
`setup_command` and `envs_helper.py inplace`.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
import tomllib
from pathlib import Path

from codemonkeys.sandbox.local import safe_environment
from codemonkeys.swebench import python_versions
from codemonkeys.swebench.envs_build import (
    HELPER,
    BuildLog,
    EnvBuildError,
    git_files,
    host_pip_index,
    install_groups,
    left_out,
    split_pre_install,
    top_level_package,
)
from codemonkeys.swebench.models import EnvManifest, EnvSpec, PackageChoice, SWEInstance

VENV = "venv"
BUILD_TREE = "build-tree"
BUILD_DEPS = "build-deps"
_LOCK_ERRORS = ("index.lock", "already locked", "could not lock", "unable to create", "file exists")


def setup_command(manifest: EnvManifest) -> str | None:
    """The sandbox setup for a tree at any commit: the spec's repository commands, then the in-place build that
    stands in for its install."""
    _, steps = split_pre_install(manifest.spec.pre_install)
    if manifest.spec.install:
        venv = Path(manifest.location)
        argv = [str(venv / "bin" / "python"), str(venv.parent / HELPER.name), "inplace"]
        if isolated_build(manifest.spec):
            argv.append(str(venv.parent / BUILD_DEPS))
        steps.append(shlex.join(argv))
    return " && ".join(steps) or None


def isolated_build(spec: EnvSpec) -> bool:
    """Whether the spec's install builds the repository in pip's build isolation (with the latest build
    requirements) rather than with what the environment has."""
    install = spec.install
    return "pip install" in install and not any(f in install for f in ("--no-build-isolation", "--no-use-pep517"))


def environment(venv: Path) -> dict[str, str]:
    """The host's environment minus secrets and pip settings, with the venv first on PATH and pip pointed at the
    package index only."""
    env = {k: v for k, v in safe_environment(os.environ).items() if not k.startswith("PIP_")}
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE"):
        env.pop(name, None)
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", os.defpath)])
    env["VIRTUAL_ENV"] = str(venv)
    return env | host_pip_index().environment()


def _git(repo_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """git on the shared repository, retried while a sandbox holds git's lock on it."""
    for attempt in range(20):
        out = subprocess.run(["git", *args], cwd=repo_path, capture_output=True, text=True)
        if out.returncode == 0 or not any(s in out.stderr.lower() for s in _LOCK_ERRORS):
            return out
        time.sleep(0.05 * (attempt + 1))
    return out


def _pip_list(python: Path, env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True, env=env)
    listed = [line for line in out.stdout.splitlines() if line.startswith("[")]
    return {item["name"]: item["version"] for item in json.loads(listed[-1])} if listed else {}


def _provides(python: Path, package: str, env: dict[str, str], cwd: Path) -> str:
    """Where the venv alone (no tree on the path) imports `package` from; empty when it cannot."""
    code = "import importlib.util, sys; s = importlib.util.find_spec(sys.argv[1]); print(s.origin if s else '')"
    out = subprocess.run([str(python), "-c", code, package], capture_output=True, text=True, env=env, cwd=cwd)
    return out.stdout.strip() if out.returncode == 0 else ""


def _build_requirements(repo_path: Path, commit: str) -> list[str]:
    """pyproject.toml's [build-system] requires at `commit`, else what pip assumes for a setup.py project."""
    shown = _git(repo_path, "show", f"{commit}:pyproject.toml")
    if shown.returncode == 0:
        try:
            requires = tomllib.loads(shown.stdout).get("build-system", {}).get("requires")
        except tomllib.TOMLDecodeError:
            requires = None
        if isinstance(requires, list):
            return [str(r) for r in requires]
    return ["setuptools>=40.8.0", "wheel"]


def _setup_commit(instance: SWEInstance, repo_path: Path) -> str:
    """Where SWE-bench reads an environment's requirements: its setup commit when the clone has it."""
    for commit in (instance.environment_setup_commit, instance.base_commit):
        if commit and _git(repo_path, "cat-file", "-e", f"{commit}^{{commit}}").returncode == 0:
            return commit
    return instance.base_commit


def _install_repository(
    spec: EnvSpec,
    instance: SWEInstance,
    repo_path: Path,
    env_dir: Path,
    env: dict[str, str],
    log: BuildLog,
) -> tuple[list[PackageChoice], list[str]]:
    """Runs the spec's install in a temporary worktree for the dependencies it brings, then detaches the
    repository itself from the venv; returns the dependencies it added and what was done instead."""
    python = env_dir / VENV / "bin" / "python"
    commit = _setup_commit(instance, repo_path)
    package = top_level_package(instance.repo, git_files(repo_path, commit))
    tree = env_dir / BUILD_TREE
    before = _pip_list(python, env)
    added = _git(repo_path, "worktree", "add", "--detach", "--force", str(tree), commit)
    if added.returncode != 0:
        raise EnvBuildError(f"{spec.key}: cannot check out {commit} of {repo_path}: {added.stderr.strip()}", log.path)
    try:
        _, tree_commands = split_pre_install(spec.pre_install)
        for command in [*tree_commands, spec.install]:
            if log.shell(command, cwd=tree, env=env) != 0:
                raise EnvBuildError(f"{spec.key}: `{command}` failed at {commit[:12]}: {log.tail(5)}", log.path)
        names = [instance.repo.split("/")[-1], *([package] if package else [])]
        log.run([str(python), str(env_dir / HELPER.name), "detach", str(tree), *names], cwd=env_dir, env=env)
        detached = log.report() or {}
    finally:
        _git(repo_path, "worktree", "remove", "--force", str(tree))
        shutil.rmtree(tree, ignore_errors=True)
        _git(repo_path, "worktree", "prune")
    after = _pip_list(python, env)
    source = f"the repository's install `{spec.install}` at {commit[:12]}"
    packages = [
        PackageChoice(
            requested=name,
            installed=f"{name}=={version}",
            note=f"{name}=={before[name]} changed by {source}"
            if name in before
            else f"a dependency brought in by {source}",
        )
        for name, version in sorted(after.items())
        if before.get(name) != version
    ]
    notes = [
        f"the repository is not installed in the venv (instances of {spec.key} at other commits share it): "
        f"its install ran once for its dependencies, then {', '.join(detached.get('removed', [])) or 'nothing'} "
        f"was removed; sandboxes import it from their own tree"
    ]
    if detached.get("shims"):
        notes.append(f"console scripts {', '.join(detached['shims'])} import the repository from the sandbox's tree")
    still = _provides(python, package, env, env_dir) if package else ""
    if still:
        notes.append(f"the venv still provides {package} from {still}; the sandbox's PYTHONPATH puts the tree first")
    return packages, notes


def build(spec: EnvSpec, instance: SWEInstance, repo_path: Path, env_dir: Path, log: BuildLog) -> EnvManifest:
    """Builds the venv at `env_dir/venv` (replacing any left by an earlier attempt); raises EnvBuildError."""
    start = time.monotonic()
    found = python_versions.nearest(spec.python)
    if not found:
        raise EnvBuildError(f"{spec.key}: no Python 3 interpreter with venv found on this machine", log.path)
    interpreter = found[0]
    log.line(f"interpreters: {', '.join(i.version for i in found)}; using {interpreter.path} ({interpreter.version})")
    deviations = []
    if interpreter.minor != python_versions.version_tuple(spec.python):
        deviations.append(
            f"Python {interpreter.version} instead of {spec.python}: the nearest of those found here "
            f"({', '.join(sorted({i.version for i in found}))})"
        )
    system, _ = split_pre_install(spec.pre_install)
    deviations += [f"pre_install skipped (needs root, not done for a local environment): {c}" for c in system]
    venv = env_dir / VENV
    for leftover in (venv, env_dir / BUILD_TREE, env_dir / BUILD_DEPS):
        shutil.rmtree(leftover, ignore_errors=True)
    _git(repo_path, "worktree", "prune")
    if log.run([interpreter.path, "-m", "venv", str(venv)]) != 0:
        raise EnvBuildError(f"{spec.key}: `{interpreter.path} -m venv` failed: {log.tail(5)}", log.path)
    shutil.copy(HELPER, env_dir / HELPER.name)
    env = environment(venv)

    groups, dropped = install_groups(spec)
    deviations += dropped
    if spec.install:
        requires = {"name": "build requirements", "optional": True}
        requires["lines"] = _build_requirements(repo_path, _setup_commit(instance, repo_path))
        if isolated_build(spec):
            # As pip's build isolation: the latest that fit, apart from the venv, first on the in-place build's path.
            requires["args"] = ["--target", str(env_dir / BUILD_DEPS)]
            requires["note"] = f"a build requirement of the repository, in {BUILD_DEPS}/ (as pip's build isolation)"
        else:
            requires["constrain"] = True
            requires["note"] = "a build requirement of the repository (the install builds without isolation)"
        groups.append(requires)
    request = env_dir / "install-request.json"
    request.write_text(json.dumps({"groups": groups}, indent=1))
    report_path = env_dir / "install-report.json"
    report_path.unlink(missing_ok=True)
    code = log.run(
        [str(venv / "bin" / "python"), str(env_dir / HELPER.name), "install", str(request), str(report_path)],
        cwd=env_dir,
        env=env,
    )
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    if code != 0:
        failed = ", ".join(report.get("failed", [])) or log.tail(5)
        raise EnvBuildError(f"{spec.key}: could not install {failed} with Python {interpreter.version}", log.path)
    packages = [PackageChoice.model_validate(choice) for choice in report["choices"]]
    deviations += left_out(report["choices"])
    if spec.install:
        added, notes = _install_repository(spec, instance, repo_path, env_dir, env, log)
        packages += added
        deviations += notes
    manifest = EnvManifest(
        key=spec.key,
        kind="local",
        spec=spec,
        location=str(venv),
        python_wanted=spec.python,
        python_used=report.get("python", interpreter.version),
        packages=packages,
        deviations=deviations,
        build_log=str(log.path),
        seconds=round(time.monotonic() - start, 1),
    )
    setup = setup_command(manifest)
    if setup:
        manifest.deviations.append(f"each sandbox's setup builds its tree in place: {setup}")
    return manifest
