"""A real headless Chromium (Debian's `chromium`) for page tests: the DOM after the page's scripts ran, and
screenshots. A probe script can be injected into a copy of the page (beside it, so relative links and images
resolve) to record what only a browser knows, such as whether an image decoded."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run")


def chromium() -> str:
    """The browser's path; scripts/test.sh installs it, so a missing one fails (the page tests must run)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: apt-get install chromium (scripts/test.sh does it as root)")
    return path


def _run(args: list[str], timeout: float = 60.0) -> str:
    with tempfile.TemporaryDirectory(prefix="codemonkeys-chromium-") as profile:
        proc = subprocess.run(
            [chromium(), *_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    if proc.returncode != 0:
        raise AssertionError(f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def rendered_dom(page: Path, probe: str = "") -> str:
    """The serialized DOM once the page (and `probe`, JavaScript run on the window's load event) is done."""
    target = page
    if probe:
        target = page.with_name(f".probe-{page.name}")
        script = f"<script>window.addEventListener('load', () => {{ {probe} }});</script>"
        target.write_text(page.read_text(encoding="utf-8") + script, encoding="utf-8")
    try:
        return _run(["--virtual-time-budget=5000", "--dump-dom", target.resolve().as_uri()])
    finally:
        if probe:
            target.unlink(missing_ok=True)


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 2400) -> Path:
    _run(
        [
            f"--window-size={width},{height}",
            "--virtual-time-budget=5000",
            f"--screenshot={png}",
            page.resolve().as_uri(),
        ]
    )
    assert png.is_file() and png.stat().st_size > 1000, "chromium wrote no screenshot"
    return png
