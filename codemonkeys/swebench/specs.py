"""The one adapter to the official `swebench` package's environment recipes (pinned 4.1.0: version 5 dropped the
per-repo specs): the official spec of a (repo, version), or one from the user's spec file, as an `EnvSpec`.

Requirement files are read from the local clone with `git show`, never downloaded: the official harness fetches
them from GitHub, which an offline evaluation cannot do."""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from swebench.harness.constants import MAP_REPO_VERSION_TO_SPECS
from swebench.harness.constants.python import (
    MAP_REPO_TO_ENV_YML_PATHS,
    MAP_REPO_TO_REQS_PATHS,
    MAP_REPO_VERSION_TO_SPECS_PY,
)
from swebench.harness.log_parsers import MAP_REPO_TO_PARSER
from swebench.harness.log_parsers import python as python_parsers
from swebench.harness.test_spec.python import clean_environment_yml, clean_requirements, get_test_directives

from codemonkeys.swebench.models import EnvSpec, SWEInstance

DEFAULT_LOG_PARSER = "parse_log_pytest"
REQUIREMENT_FILES = ("requirements.txt", "environment.yml")
SPEC_FILE_KEYS = {
    "python",
    "pre_install",
    "packages",
    "pip_packages",
    "install",
    "test_cmd",
    "eval_commands",
    "log_parser",
}
# Conda package names whose PyPI name differs, and conda packages that are toolchains or system libraries with
# no PyPI counterpart (a venv gets those from the machine, not from pip).
CONDA_TO_PIP = {
    "matplotlib-base": "matplotlib",
    "dask-core": "dask",
    "pytables": "tables",
    "pyqt": "PyQt5",
    "iris": "scitools-iris",  # PyPI's `iris` is another project
}
CONDA_ONLY = {
    "c-compiler",
    "compilers",
    "cxx-compiler",
    "ffmpeg",
    "graphviz",
    "gtk4",
    "hdf5",
    "libnetcdf",
    "make",
    "nodejs",
    "pip",
    "pkg-config",
    "qhull",
}
_CONDA_DEP = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+(?:\[[^\]]*\])?)\s*(?P<spec>.*)$")


class SpecError(ValueError):
    """No usable environment recipe; the message names the instance or file, the repo, the version and the key."""


def log_parsers() -> dict[str, Callable[..., dict[str, str]]]:
    """The official Python log parsers by function name (`parse_log_pytest`, `parse_log_django`, ...)."""
    return {
        name: value for name, value in vars(python_parsers).items() if name.startswith("parse_log_") and callable(value)
    }


def load_spec_file(path: Path) -> dict[tuple[str, str], EnvSpec]:
    """Recipes for repositories or versions the official specs lack, from a JSON or TOML file shaped
    `{"owner/name": {"version": {python, test_cmd, ...}}}`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read the spec file {path}: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(f"{path}: not valid {'TOML' if path.suffix.lower() == '.toml' else 'JSON'}: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise SpecError(f"{path}: expected a table of repositories, each a table of versions")
    parsers = log_parsers()
    specs: dict[tuple[str, str], EnvSpec] = {}
    for repo, versions in data.items():
        if not isinstance(versions, dict) or not versions:
            raise SpecError(f"{path}: repo {repo}: expected a table of versions")
        for version, raw in versions.items():
            where = f"{path}: repo {repo}, version {version}"
            if not isinstance(raw, dict):
                raise SpecError(f"{where}: expected a table of keys")
            unknown = sorted(set(raw) - SPEC_FILE_KEYS)
            if unknown:
                raise SpecError(
                    f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(SPEC_FILE_KEYS))}"
                )
            parser = raw.get("log_parser", DEFAULT_LOG_PARSER)
            if parser not in parsers:
                raise SpecError(
                    f"{where}: key 'log_parser': {parser!r} is not an official parser; one of {', '.join(sorted(parsers))}"
                )
            packages = raw.get("packages", "")
            if not isinstance(packages, str):
                raise SpecError(f"{where}: key 'packages': expected a string of package names or a file name")
            fields = dict(raw)
            if isinstance(fields.get("test_cmd"), list):
                fields["test_cmd"] = " && ".join(fields["test_cmd"])
            try:
                specs[(repo, str(version))] = EnvSpec.model_validate(
                    {
                        **fields,
                        "repo": repo,
                        "version": str(version),
                        "requirements": [] if packages in REQUIREMENT_FILES else _package_names(packages),
                        "log_parser": parser,
                        "source": "file",
                    }
                )
            except ValidationError as exc:
                raise SpecError(f"{where}: {_describe(exc)}") from exc
    return specs


def get_spec(
    instance: SWEInstance, extra: dict[tuple[str, str], EnvSpec] | None = None, repo_path: Path | None = None
) -> EnvSpec:
    """The recipe for the instance's (repo, version): the user's spec file first, then the official specs.
    Requirement files are read from the clone at `repo_path` (left empty without one)."""
    key = (instance.repo, instance.version)
    if extra and key in extra:
        spec = extra[key]
        if spec.packages not in REQUIREMENT_FILES:
            return spec
        return spec.model_copy(update={"requirements": _requirements(instance, spec.packages, repo_path)})
    where = f"instance {instance.instance_id}: repo {instance.repo}, version {instance.version or '(none)'}"
    if instance.repo not in MAP_REPO_VERSION_TO_SPECS:
        raise SpecError(f"{where}: no official spec for this repository; give one in a spec file")
    if instance.repo not in MAP_REPO_VERSION_TO_SPECS_PY:
        raise SpecError(f"{where}: not a Python repository; only Python environments are supported")
    versions = MAP_REPO_VERSION_TO_SPECS_PY[instance.repo]
    if instance.version not in versions:
        known = ", ".join(sorted(versions))
        raise SpecError(f"{where}: no official spec for this version (known: {known}); give one in a spec file")
    raw: dict[str, Any] = versions[instance.version]
    if "test_cmd" not in raw or instance.repo not in MAP_REPO_TO_PARSER:
        raise SpecError(f"{where}: the official spec has no test command or log parser; give one in a spec file")
    test_cmd = raw["test_cmd"]
    packages = raw.get("packages", "")
    return EnvSpec(
        repo=instance.repo,
        version=instance.version,
        python=str(raw["python"]),
        pre_install=list(raw.get("pre_install", [])),
        packages=packages,
        requirements=_requirements(instance, packages, repo_path),
        pip_packages=list(raw.get("pip_packages", [])),
        install=raw.get("install", ""),
        test_cmd=" && ".join(test_cmd) if isinstance(test_cmd, list) else test_cmd,
        eval_commands=list(raw.get("eval_commands", [])),
        log_parser=MAP_REPO_TO_PARSER[instance.repo].__name__,
        source="official",
    )


def test_directives(instance: SWEInstance) -> list[str]:
    """What the test command is given: the test files the test patch touches (django: module names)."""
    return get_test_directives({"repo": instance.repo, "test_patch": instance.test_patch})


def _requirements(instance: SWEInstance, packages: str, repo_path: Path | None) -> list[str]:
    if packages not in REQUIREMENT_FILES:
        return _package_names(packages)
    if repo_path is None:
        return []
    commit = instance.environment_setup_commit or instance.base_commit
    _check_commit(instance, repo_path, commit)
    if packages == "requirements.txt":
        return _requirement_lines(instance, repo_path, commit)
    return _environment_yml_lines(instance, repo_path, commit)


def _package_names(packages: str) -> list[str]:
    """A spec's `packages` string (conda-style names, shell-quoted where they carry specifiers) as requirements."""
    return [requirement for name in shlex.split(packages) if (requirement := _conda_to_pip(name))]


def _git_show(repo_path: Path, commit: str, path: str) -> str | None:
    result = subprocess.run(
        ["git", "-C", str(repo_path), "show", f"{commit}:{path}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout if result.returncode == 0 else None


def _check_commit(instance: SWEInstance, repo_path: Path, commit: str) -> None:
    result = subprocess.run(
        ["git", "-C", str(repo_path), "cat-file", "-e", f"{commit}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise SpecError(
            f"instance {instance.instance_id}: commit {commit} (where its requirements are read) is not in the "
            f"repository at {repo_path}"
        )


def _first_file(instance: SWEInstance, repo_path: Path, commit: str, paths: list[str], what: str) -> tuple[str, str]:
    for path in paths:
        text = _git_show(repo_path, commit, path)
        if text is not None:
            return path, text
    raise SpecError(
        f"instance {instance.instance_id}: repo {instance.repo}, version {instance.version}: no {what} at "
        f"{', '.join(paths)} in commit {commit} of {repo_path}"
    )


def _excluded(line: str) -> bool:
    """The lines the official `get_requirements_by_commit` drops: the editable repo itself and comments."""
    return line.strip().startswith(("-e .", "#", ".[test"))


def _requirement_lines(instance: SWEInstance, repo_path: Path, commit: str) -> list[str]:
    """The official `get_requirements_by_commit` + `clean_requirements`, reading from the clone: `-r` includes
    (relative to the first file's directory) come first, then the file's own lines. Like the official code, an
    include that is not there is skipped; unlike it, includes inside includes are followed too."""
    paths = MAP_REPO_TO_REQS_PATHS.get(instance.repo, ["requirements.txt"])
    req_path, text = _first_file(instance, repo_path, commit, paths, "requirements file")
    req_dir = posixpath.dirname(req_path)
    included: list[str] = []
    own: list[str] = []
    seen = {posixpath.normpath(req_path)}

    def include(name: str) -> None:
        path = posixpath.normpath(posixpath.join(req_dir, name))
        if path in seen:
            return
        seen.add(path)
        body = _git_show(repo_path, commit, path)
        for line in (body or "").split("\n"):
            if line.strip().startswith("-r"):
                include(line.strip()[2:].strip())
            elif not _excluded(line):
                included.append(line)

    for line in text.split("\n"):
        if line.strip().startswith("-r"):
            include(line.strip()[2:].strip())
        elif not _excluded(line):
            own.append(line)
    cleaned = clean_requirements("\n".join([*included, "\n".join(own)]))
    return [line.strip() for line in cleaned.split("\n") if line.strip()]


def _environment_yml_lines(instance: SWEInstance, repo_path: Path, commit: str) -> list[str]:
    """The official environment.yml (after the official `clean_environment_yml`) as pip requirement lines:
    conda dependencies converted by name and version, its `pip:` section as written, python itself left out."""
    import yaml

    paths = MAP_REPO_TO_ENV_YML_PATHS.get(instance.repo, ["environment.yml"])
    yml_path, text = _first_file(instance, repo_path, commit, paths, "environment.yml")
    where = f"instance {instance.instance_id}: {yml_path} at {commit}"
    try:
        data = yaml.safe_load(clean_environment_yml(text))
    except yaml.YAMLError as exc:
        raise SpecError(f"{where}: not valid YAML: {exc}") from exc
    dependencies = data.get("dependencies") if isinstance(data, dict) else None
    if not isinstance(dependencies, list):
        raise SpecError(f"{where}: no 'dependencies' list")
    lines: list[str] = []
    for dep in dependencies:
        if isinstance(dep, str):
            converted = _conda_to_pip(dep)
            if converted:
                lines.append(converted)
        elif isinstance(dep, dict) and isinstance(dep.get("pip"), list):
            lines += [str(item).strip() for item in dep["pip"] if not str(item).strip().startswith("-")]
    return lines


def _conda_to_pip(dep: str) -> str | None:
    """A conda match spec (`numpy=1.19`, `numpy 1.19.*`, `conda-forge::pkg>=2`) as a pip requirement, or None
    for python itself and conda packages that pip cannot install; anything else (a URL) as written."""
    match = _CONDA_DEP.match(dep.split("::")[-1].strip())
    if not match:
        return dep.strip() or None
    name, spec = match["name"], match["spec"].replace(" ", "")
    base = name.split("[")[0].lower()
    if base == "python" or base in CONDA_ONLY:
        return None
    name = CONDA_TO_PIP.get(base, name)
    if "|" in spec:
        return name
    if spec[:1].isdigit() or (spec.startswith("=") and not spec.startswith("==")):
        version, *build = spec.lstrip("=").split("=")
        if build:  # `name=1.2=py_0`: an exact version and a build pip has no word for
            return f"{name}=={version}"
        version = version.rstrip("*").rstrip(".")
        return f"{name}=={version}.*" if version else name
    return f"{name}{spec}"


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        parts.append(f"key '{key}' is missing" if error["type"] == "missing" else f"key '{key}': {error['msg']}")
    return "; ".join(parts)
