"""What local and docker environment builds share: the build log, the package index as this machine's pip sees
it, how a spec's `pre_install` commands divide, and the repository facts the smoke check and builds need."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel, Field

from codemonkeys.swebench.envs_helper import NOT_ON_INDEX
from codemonkeys.swebench.models import EnvSpec

HELPER = Path(__file__).with_name("envs_helper.py")
REPORT_MARK = "CODEMONKEYS-REPORT "
# Commands that change the system rather than the repository: they need root and a package manager.
_SYSTEM = re.compile(
    r"\b(apt-get|apt|dpkg|locale-gen|update-locale|yum|dnf|apk|sudo|useradd|ldconfig)\b|(^|[\s>'\"=])/(etc|usr|opt|var)/"
)
_SELF_INSTALL = re.compile(r"^(-e\s+|--editable\s+)?\.(\[[^\]]*\])?$")
_NOT_PACKAGES = re.compile(r"(tests?|testing|docs?|examples?|benchmarks?|asv_bench|scripts?|tools|ci|build|bin)")


class EnvBuildError(Exception):
    """An environment that could not be built or failed its smoke check; the build log is kept at `log_path`."""

    def __init__(self, message: str, log_path: str | Path) -> None:
        super().__init__(f"{message} (build log: {log_path})")
        self.log_path = str(log_path)


class BuildLog:
    """One build attempt's log: every command with its output, and every decision taken on the way."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115 - closed by close()
        self._deadline = time.monotonic() + timeout
        self._timeout = timeout

    def line(self, text: str) -> None:
        self._handle.write(text.rstrip("\n") + "\n")
        self._handle.flush()

    def remaining(self) -> float:
        """Seconds left of the build's time limit; raises EnvBuildError once it is spent."""
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise EnvBuildError(f"the build took longer than its limit of {self._timeout:g} s", self.path)
        return left

    def run(self, argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> int:
        """Runs argv with its output in the log; on the build's deadline its whole process group is killed."""
        self.line(f"$ {shlex.join(argv)}" + (f"    (in {cwd})" if cwd else ""))
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = proc.wait(self.remaining())
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise EnvBuildError(
                f"`{shlex.join(argv)}` ran past the build's limit of {self._timeout:g} s", self.path
            ) from None
        self.line(f"(exit {code})")
        return code

    def shell(self, command: str, *, cwd: Path, env: dict[str, str]) -> int:
        return self.run(["bash", "-c", command], cwd=cwd, env=env)

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.path.read_text(errors="replace").splitlines()[-lines:])

    def report(self) -> dict | None:
        """The last report the helper printed (it prints one per subcommand)."""
        for line in reversed(self.path.read_text(errors="replace").splitlines()):
            if line.startswith(REPORT_MARK):
                return json.loads(line[len(REPORT_MARK) :])
        return None

    def close(self) -> None:
        self._handle.close()


class PipIndex(BaseModel):
    """Where this machine's pip installs from, minus what only makes sense on this machine (local paths)."""

    index_url: str | None = None
    extra_index_urls: list[str] = Field(default_factory=list)
    trusted_hosts: list[str] = Field(default_factory=list)
    cert: str | None = Field(None, description="CA bundle file pip verifies the index with (a proxy's CA)")
    proxy: str | None = None
    timeout: str | None = None

    def environment(self) -> dict[str, str]:
        """PIP_* variables for a pip on this machine that reads no config file: the same index, no local paths."""
        env = {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
        values = {
            "PIP_INDEX_URL": self.index_url,
            "PIP_EXTRA_INDEX_URL": " ".join(self.extra_index_urls),
            "PIP_TRUSTED_HOST": " ".join(self.trusted_hosts),
            "PIP_CERT": self.cert,
            "PIP_PROXY": self.proxy,
            "PIP_TIMEOUT": self.timeout,
        }
        return env | {key: value for key, value in values.items() if value}

    def config(self, cert_path: str | None) -> str:
        """A pip.conf for an image, with the CA bundle copied to `cert_path`."""
        values = {
            "index-url": self.index_url,
            "extra-index-url": " ".join(self.extra_index_urls),
            "trusted-host": " ".join(self.trusted_hosts),
            "cert": cert_path if self.cert else None,
            "proxy": self.proxy,
            "timeout": self.timeout,
            "disable-pip-version-check": "true",
        }
        return "[global]\n" + "".join(f"{key} = {value}\n" for key, value in values.items() if value)


def _web(url: str) -> bool:
    return url.startswith(("http://", "https://"))


@functools.cache
def host_pip_index() -> PipIndex:
    """Read once from `pip config list` (config files and PIP_* variables) and the proxy variables."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    found: dict[str, str] = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            found[key.rsplit(".", 1)[-1]] = value.strip().strip("'\"")
    index = found.get("index-url", "")
    cert = found.get("cert") or os.environ.get("PIP_CERT")
    proxy = found.get("proxy") or os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    return PipIndex(
        index_url=index if _web(index) else None,
        extra_index_urls=[url for url in found.get("extra-index-url", "").split() if _web(url)],
        trusted_hosts=found.get("trusted-host", "").split(),
        cert=cert if cert and Path(cert).is_file() else None,
        proxy=proxy or None,
        timeout=found.get("timeout") or found.get("default-timeout"),
    )


def split_pre_install(commands: list[str]) -> tuple[list[str], list[str]]:
    """(system commands, repository commands). System ones (package managers, locales, files under /etc or
    /usr) need root and run once in an image; the rest edit the tree and run in its root before the install,
    with the official images' `/testbed` read as the tree they run in."""
    system, tree = [], []
    for command in commands:
        if _SYSTEM.search(command):
            system.append(command)
        else:
            tree.append(re.sub(r"/testbed\b", "$PWD", command))
    return system, tree


def install_groups(spec: EnvSpec) -> tuple[list[dict], list[str]]:
    """The helper's install request, in the official order (pip itself first, brought up to date where it can
    be), and the requirement lines left out because they install the repository itself. `packages` given as
    names is already in `requirements` (the spec adapter maps conda names), so it is not installed twice."""
    lines = [line for line in spec.requirements if not _SELF_INSTALL.match(line.strip())]
    dropped = [
        f"requirement `{line.strip()}` installs the repository itself: left to the per-commit setup"
        for line in spec.requirements
        if _SELF_INSTALL.match(line.strip())
    ]
    groups = [
        {"name": "pip", "lines": ["pip"], "args": ["--upgrade"], "optional": True},
        {"name": "requirements", "lines": lines, "conda": spec.packages.strip() == "environment.yml"},
        {"name": "pip_packages", "lines": spec.pip_packages},
    ]
    return groups, dropped


def left_out(choices: list[dict]) -> list[str]:
    """Deviations for the environment.yml packages the helper left out, not being on the package index."""
    marker = NOT_ON_INDEX.split("{python}")[0]
    return [
        f"{choice['requested']}: {choice['note']} (conda would have installed it)"
        for choice in choices
        if str(choice.get("note", "")).startswith(marker)
    ]


_SCM_MARKS = ("setuptools_scm", "setuptools-scm", "use_scm_version")
_SCM_TAG = re.compile(r"^(?:[\w-]+-)?[vV]?(?P<version>\d+(?:\.\d+){0,2}[^+]*)(?:\+.*)?$")


def scm_version_env(repo: str, repo_path: Path, commit: str) -> str | None:
    """`SETUPTOOLS_SCM_PRETEND_VERSION_FOR_<NAME>=<version>` for a repository versioned by setuptools_scm: the
    version it computes in a clone with the tags (default scheme: the tag at the commit, else the tag's last
    number bumped, `.dev<distance>+g<hash>`). A tree copied without its history (the docker sandbox makes a
    fresh repository of it) would otherwise be version 0.1.dev1 (pytest's `minversion` check then fails).
    None when the repository does not use setuptools_scm or no tag precedes the commit."""
    shown = [
        subprocess.run(["git", "show", f"{commit}:{name}"], cwd=repo_path, capture_output=True, text=True)
        for name in ("setup.py", "setup.cfg", "pyproject.toml")
    ]
    if not any(out.returncode == 0 and any(mark in out.stdout for mark in _SCM_MARKS) for out in shown):
        return None
    described = subprocess.run(
        ["git", "describe", "--tags", "--long", "--match", "*[0-9]*", commit],
        cwd=repo_path,
        capture_output=True,
        text=True,
    )
    found = re.fullmatch(r"(?P<tag>.+)-(?P<distance>\d+)-g(?P<node>[0-9a-f]+)", described.stdout.strip())
    tag = _SCM_TAG.match(found["tag"]) if found else None
    if not found or not tag:
        return None
    version = tag["version"]
    with contextlib.suppress(ImportError, ValueError):
        from packaging.version import Version

        version = str(Version(version))
    if int(found["distance"]):
        bumped = re.sub(r"\.dev\d*$", "", version)
        last = re.fullmatch(r"(.*?)(\d+)", bumped) if bumped == version else None
        if last:
            bumped = f"{last[1]}{int(last[2]) + 1}"
        elif bumped == version:
            return None
        version = f"{bumped}.dev{found['distance']}+g{found['node']}"
    name = re.sub(r"[-_.]+", "_", repo.split("/")[-1]).upper()
    return f"SETUPTOOLS_SCM_PRETEND_VERSION_FOR_{name}={shlex.quote(version)}"


def git_files(repo_path: Path, commit: str) -> list[str]:
    out = subprocess.run(["git", "ls-tree", "-r", "--name-only", commit], cwd=repo_path, capture_output=True, text=True)
    return out.stdout.splitlines() if out.returncode == 0 else []


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def top_level_package(repo: str, files: list[str]) -> str | None:
    """The repository's importable package: a directory with `__init__.py` at the root, in src/ or lib/; the
    one named like the repository, else the largest. None for a repository without one."""
    packages: dict[str, int] = {}
    for path in files:
        found = re.fullmatch(r"(?:(?:src|lib)/)?([A-Za-z_][\w]*)/__init__\.py", path)
        if found and not _NOT_PACKAGES.fullmatch(found.group(1)):
            packages[found.group(1)] = 0
    for path in files:
        parts = path.split("/")
        for depth in (0, 1):
            if len(parts) > depth + 1 and parts[depth] in packages and (depth == 0 or parts[0] in ("src", "lib")):
                packages[parts[depth]] += 1
    if not packages:
        return None
    name = _normal(repo.split("/")[-1])
    return next((p for p in packages if _normal(p) == name), None) or max(packages, key=lambda p: packages[p])


def smoke_test_file(test_patch: str, test_ids: list[str], files: list[str]) -> str | None:
    """One test file of the instance that exists at its commit: from the test patch, else from the test ids."""
    present = set(files)
    candidates = re.findall(r"^diff --git a/(\S+\.py) b/", test_patch, flags=re.MULTILINE)
    candidates += [test.split("::", 1)[0] for test in test_ids if ".py" in test.split("::", 1)[0]]
    return next((path for path in candidates if path in present), None)
