"""Text from issues and models must render as text: checked with a real CommonMark renderer (markdown-it-py, which
rich already depends on), so a string that breaks out of its block fails here as it would on GitHub."""

from __future__ import annotations

from markdown_it import MarkdownIt

from codemonkeys.github import markdown as md

EVIL = "```\n</details><img src=x onerror=alert(1)>\n~~~\n@team please #1\n````\n"


def render(text: str) -> str:
    return MarkdownIt("commonmark", {"html": True}).render(text)


def test_a_block_holds_any_backtick_run_and_html() -> None:
    html = render("before\n\n" + md.block(EVIL, "diff") + "\n\nafter")
    assert html.count("<pre>") == 1
    assert "<img" not in html  # the tag is text inside the block (&lt;img)
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<p>after</p>" in html


def test_inline_text_is_inert() -> None:
    html = render(md.text("**bold** <b>x</b> [link](http://e) @someone ` tick"))
    assert "<strong>" not in html and "<b>" not in html and "<a " not in html
    assert "@someone" not in html  # a zero-width space keeps GitHub from pinging
    assert "**bold**" in html


def test_inline_code_survives_backticks() -> None:
    html = render("x " + md.code("a``b`") + " y")
    assert "<code>a``b`</code>" in html


def test_details_summary_cannot_close_the_section() -> None:
    html = render(md.details("</summary></details><script>", "body"))
    assert "<script>" not in html and html.count("</details>") == 1


def test_clip_says_how_much_was_cut() -> None:
    text = "line\n" * 1000
    clipped = md.clip(text, 100)
    assert len(clipped) < 200 and "more characters" in clipped
    assert md.clip("short", 100) == "short"


def test_a_summary_shows_its_text_as_written() -> None:
    html = render(md.details("test 1 (voted) a_b", "body"))
    assert "<summary>test 1 (voted) a_b</summary>" in html
