"""Planning against the window: how big a model's window is, and how a conversation is shrunk to fit it."""

from __future__ import annotations

from codemonkeys.config import ModelSettings
from codemonkeys.regions import hunk_lines, regions, show_regions
from codemonkeys.window import Window, fit, window_of


def test_the_window_comes_from_settings_then_litellm_then_the_default() -> None:
    models = ModelSettings(context_windows={"openai/mine": 9000}, default_context_window=4000)
    assert window_of("openai/mine", models) == 9000
    assert window_of("anthropic/claude-sonnet-4-5", models) == 200_000
    assert window_of("openai/never-heard-of", models) == 4000
    window = Window.of("openai/mine", models.model_copy(update={"max_output_tokens": 1000}))
    assert (window.budget, window.opening, window.exact) == (8000, 4800, False)


def test_a_known_model_is_counted_with_its_tokenizer() -> None:
    window = Window.of("gpt-4o", ModelSettings())
    assert window.exact
    assert 1900 <= window.count("hello world " * 1000) <= 2100, "~2 tokens a repeat by tiktoken, not 12 chars / 4"


def message(role: str, text: str) -> dict:
    return {"role": role, "content": text}


def test_fit_shortens_the_oldest_turns_first_and_cuts_the_newest_last() -> None:
    window = Window("openai/x", limit=1100, answer=100)  # 1000 tokens: 4000 characters
    messages = [message("system", "s" * 800), message("user", "u" * 400)]
    for turn in range(3):
        messages += [message("assistant", f"a{turn}" * 300), message("user", f"f{turn}" * 300)]
    shorts = {i: f"(short {i})" for i in range(2, len(messages))}
    start = messages[:4]
    assert fit(start, window, shorts.get) is start, "what fits is sent as it is"
    sent = fit(messages, window, shorts.get)
    assert [m["content"] for m in sent[:2]] == [m["content"] for m in messages[:2]], "the opening is kept"
    assert sent[2]["content"] == "(short 2)", "the oldest turn goes first"
    assert sent[-1]["content"] == messages[-1]["content"], "the newest feedback stays whole while older can shrink"
    assert window.fits(sent)
    assert messages[2]["content"] == "a0" * 300, "the transcript itself is never changed"

    huge = [message("system", "s" * 800), message("user", "u" * 8000)]
    cut = fit(huge, window, {}.get)
    assert window.fits(cut) and "characters" in cut[-1]["content"], "the newest is cut in the middle last"


ORIGINAL = "\n".join(
    ["import os", ""]
    + [line for k in range(20) for line in (f"def f{k}(x):", f"    y = x + {k}", f"    return y * {k}", "")]
)


def patch_at(*lines: int) -> str:
    hunks = "".join(f"@@ -{n},1 +{n},1 @@\n-old\n+new\n" for n in lines)
    return f"diff --git a/m.py b/m.py\n--- a/m.py\n+++ b/m.py\n{hunks}"


def test_regions_are_the_touched_functions_merged() -> None:
    assert hunk_lines(patch_at(8, 20), "m.py") == [(8, 8), (20, 20)]
    assert hunk_lines(patch_at(8), "other.py") == []
    assert regions("m.py", ORIGINAL, [patch_at(8), patch_at(9), patch_at(20)]) == [(7, 9), (19, 21)]
    shown = show_regions(ORIGINAL, regions("m.py", ORIGINAL, [patch_at(8)]))
    assert "def f1(x):" in shown and "def f0(x):" not in shown and "def f2(x):" not in shown
    assert shown.startswith("... [lines 1-6 not shown] ...") and shown.endswith("not shown] ...")
    text_patch = patch_at(50).replace("m.py", "m.txt")
    outside = regions("m.txt", "\n".join(f"line {n}" for n in range(1, 101)), [text_patch])
    assert outside == [(40, 60)], "without a grammar: ten lines each side"
