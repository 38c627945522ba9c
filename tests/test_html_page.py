"""The shared page shell: escaping, diff colouring, table structure, and the sort script in a real browser."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from codemonkeys.html_page import details, diff_html, esc, page, table
from tests.browser import rendered_dom

HOSTILE = "<script>alert('x')</script></pre>\"&"


def test_esc_escapes_markup_and_quotes():
    assert esc(HOSTILE) == "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&lt;/pre&gt;&quot;&amp;"
    assert esc(3) == "3"


def test_page_is_a_complete_self_contained_document():
    html = page(HOSTILE, "<p>body</p>", script="console.log(1)")
    assert html.startswith("<!doctype html>")
    assert "<meta charset=utf-8>" in html and "name=viewport" in html
    assert f"<title>{esc(HOSTILE)}</title>" in html and "<script>alert" not in html
    assert html.count("<style>") == 1 and "max-width:1200px" in html
    assert "console.log(1)" in html and "aria-sort" in html
    assert not re.search(r"""(src|href)=["']?https?:""", html), "nothing may be fetched"


def test_diff_lines_get_their_classes_and_are_escaped():
    patch = "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old </pre>\n+new <script>\n ctx\n"
    html = diff_html(patch)
    assert html.startswith('<pre class="diff">') and html.endswith("</pre>")
    assert html.count("</pre>") == 1 and "<script>" not in html
    assert re.findall(r'<span class="(\w+)">', html) == ["file", "file", "file", "hunk", "del", "add"]
    assert '<span class="del">-old &lt;/pre&gt;</span>' in html
    assert "<span> ctx</span>" in html


def test_table_escapes_headers_keeps_cells_and_places_classes():
    html = table(
        ["<b>", "n"], [["<i>a</i>", "1"], ["b", "2"]], sortable=True, id="t", classes=[["ok", ""], ["", "bad"]]
    )
    assert html.startswith('<table id="t" class="sortable"><thead><tr><th>&lt;b&gt;</th><th>n</th></tr></thead>')
    assert '<tr><td class="ok"><i>a</i></td><td>1</td></tr>' in html
    assert '<tr><td>b</td><td class="bad">2</td></tr>' in html
    assert 'class="sortable"' not in table(["a"], [["1"]])


def test_details_escapes_summary_and_opens_on_request():
    assert details("<x>", "<p>y</p>") == "<details><summary>&lt;x&gt;</summary><p>y</p></details>"
    assert details("s", "", open=True).startswith("<details open>")


@pytest.mark.slow
def test_sortable_table_sorts_numbers_text_and_data_sort_keys(tmp_path: Path):
    rows = [
        ["b", "10", '<span data-sort="0">no</span>'],
        ["a", "9", '<span data-sort="1">yes</span>'],
        ["c", "100", ""],
    ]
    html = page("t", table(["name", "n", "flag"], rows, sortable=True, id="t"))
    path = tmp_path / "t.html"
    path.write_text(html, encoding="utf-8")
    probe = """const t=document.getElementById('t'),th=t.tHead.rows[0].cells,out=[];
    const col=()=>[...t.tBodies[0].rows].map(r=>r.cells[0].textContent).join('');
    th[1].click();out.push(col(),th[1].getAttribute('aria-sort'));
    th[1].click();out.push(col(),th[1].getAttribute('aria-sort'));
    th[0].click();out.push(col());th[2].click();out.push(col());
    document.body.setAttribute('data-result',out.join('|'));"""
    dom = rendered_dom(path, probe)
    result = re.search(r'data-result="([^"]*)"', dom)
    assert result, dom[:500]
    # numeric 9 < 10 < 100 (text order would put 100 before 9); data-sort "" < "0" < "1"
    assert result.group(1) == "abc|ascending|cba|descending|abc|cba"
