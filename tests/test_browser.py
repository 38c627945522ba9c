"""The page-test helper itself: it must see what scripts did and whether images decoded, or page tests prove
nothing."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.browser import rendered_dom, screenshot

pytestmark = pytest.mark.slow
# A 1x1 PNG.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def test_the_dom_shows_what_scripts_did_and_which_images_loaded(tmp_path: Path) -> None:
    (tmp_path / "ok.png").write_bytes(PIXEL)
    page = tmp_path / "page.html"
    page.write_text(
        "<!doctype html><p id=p>before</p><img id=good src=ok.png><img id=bad src=missing.png>"
        "<script>document.getElementById('p').textContent = 'after';</script>"
    )
    probe = "for (const i of document.images) i.dataset.loaded = i.complete && i.naturalWidth > 0;"
    dom = rendered_dom(page, probe)
    assert '<p id="p">after</p>' in dom
    assert 'id="good" src="ok.png" data-loaded="true"' in dom
    assert 'id="bad" src="missing.png" data-loaded="false"' in dom
    assert not list(tmp_path.glob(".probe-*")), "the probe copy is removed"
    assert screenshot(page, tmp_path / "shot.png").read_bytes().startswith(b"\x89PNG")
