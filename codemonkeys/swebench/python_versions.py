"""The Python interpreters this machine has, and the one nearest to what an environment spec asks for.

Looked for as `python3.X` on PATH, in pyenv's versions and in the usual system prefixes. pyenv shims are
skipped: they answer for whatever version is selected where they run, so the versions directory is read
instead. Each candidate is asked for its version once per process, and must be a CPython that can make a
virtualenv (`venv` and `ensurepip` import).
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from pathlib import Path

from pydantic import BaseModel

_PROBE = (
    "import sys, platform, venv, ensurepip; "
    "print(platform.python_implementation(), '%d.%d.%d' % tuple(sys.version_info[:3]))"
)


class Interpreter(BaseModel):
    path: str
    version: str = ""

    @property
    def minor(self) -> tuple[int, int]:
        return version_tuple(self.version)


def version_tuple(version: str) -> tuple[int, int]:
    """(major, minor) of "3.9", "3.9.18" or "python3.9"; (0, 0) when it has none."""
    found = re.search(r"(\d+)\.(\d+)", version)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def _candidates() -> list[Path]:
    names = [f"python3.{minor}" for minor in range(6, 20)] + ["python3"]
    found: list[Path] = []
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or Path(directory).name == "shims":
            continue
        found += [Path(directory) / name for name in names]
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found += sorted((pyenv_root / "versions").glob("*/bin/python3"))
    for prefix in ("/usr/local/bin", "/usr/bin", "/opt/python/bin"):
        found += [Path(prefix) / name for name in names]
    return [path for path in found if path.is_file() and os.access(path, os.X_OK)]


def _probe(path: Path) -> str | None:
    try:
        out = subprocess.run([str(path), "-c", _PROBE], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    words = out.stdout.split()
    if out.returncode != 0 or len(words) != 2 or words[0] != "CPython":
        return None
    return words[1]


@functools.cache
def interpreters() -> tuple[Interpreter, ...]:
    """Every usable interpreter, one per real file, newest first."""
    seen: set[str] = set()
    usable = []
    for path in _candidates():
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        version = _probe(path)
        if version is not None:
            usable.append(Interpreter(path=str(path), version=version))
    return tuple(sorted(usable, key=lambda i: [int(n) for n in i.version.split(".")], reverse=True))


def ranked(wanted: str, available: list[Interpreter] | tuple[Interpreter, ...]) -> list[Interpreter]:
    """`available` nearest first: the same minor version, then by distance in minor versions (the newer of two
    equally far ones first); other major versions last."""
    want = version_tuple(wanted)

    def distance(interpreter: Interpreter) -> tuple[int, int, int]:
        major, minor = interpreter.minor
        return (major != want[0], abs(minor - want[1]), -minor)

    return sorted(available, key=distance)


def nearest(wanted: str) -> list[Interpreter]:
    """This machine's interpreters, nearest to `wanted` first; empty when there is none."""
    return ranked(wanted, interpreters())
