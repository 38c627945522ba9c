"""Answer parsing: the commands real models write, drafts, mentions, fences and malformed replies."""

from __future__ import annotations

import pytest

from codemonkeys.trajectories.tags import AnswerFormatError, clean_script, parse_answer

SCRIPT = "import sys\nprint('hi')\nsys.exit(2)\n"


def test_test_block_after_reasoning() -> None:
    answer = parse_answer(f"Plan: call it and compare.\n\n<test>\n{SCRIPT}</test>\n", ("test",))
    assert answer.kind == "test"
    assert answer.body == SCRIPT


def test_code_fence_inside_test_is_stripped() -> None:
    reply = f"<test>\n```python\n{SCRIPT}```\n</test>"
    assert parse_answer(reply, ("test",)).body == SCRIPT


def test_fenced_script_next_to_prose_inside_test_is_extracted() -> None:
    reply = f"<test>\nHere is the script:\n```py\n{SCRIPT}```\nIt exits 2 today.\n</test>"
    assert parse_answer(reply, ("test",)).body == SCRIPT


def test_script_that_compiles_keeps_its_own_fences() -> None:
    script = 'import sys\nDOC = """\n```python\nx = 1\n```\n"""\nsys.exit(0 if DOC else 2)\n'
    assert clean_script(script) == script


def test_last_occurrence_wins() -> None:
    reply = "<test>\nprint('draft')\n</test>\nOn reflection:\n<test>\nprint('final')\n</test>"
    assert parse_answer(reply, ("test", "done")).body == "print('final')\n"


@pytest.mark.parametrize("reply", ["<done>", "<done></done>", "Looks right.\n<done>\n</done>", "<DONE/>", "<done />"])
def test_done_forms(reply: str) -> None:
    assert parse_answer(reply, ("test", "done")).kind == "done"


def test_conflicting_commands_are_a_format_error() -> None:
    with pytest.raises(AnswerFormatError, match="several commands"):
        parse_answer(f"<test>{SCRIPT}</test>\n<done>", ("test", "done"))


def test_tag_mentioned_in_backticks_is_not_a_command() -> None:
    reply = f"I will not answer `<done>` yet, the script needs a fix:\n<test>{SCRIPT}</test>"
    assert parse_answer(reply, ("test", "done")).kind == "test"


def test_tags_inside_a_test_body_are_part_of_the_script() -> None:
    script = "import sys\nhtml = '<done>'\nsys.exit(0 if html else 2)\n"
    assert parse_answer(f"<test>\n{script}</test>", ("test", "done")).body == script


def test_no_command() -> None:
    with pytest.raises(AnswerFormatError, match="no command"):
        parse_answer("I think the bug is in median().", ("test",))


def test_command_not_allowed_here_is_named() -> None:
    with pytest.raises(AnswerFormatError, match="not an answer this step accepts"):
        parse_answer("<done>", ("test",))


def test_unclosed_block_is_reported_as_cut_off() -> None:
    with pytest.raises(AnswerFormatError, match="no closing </test>"):
        parse_answer("<test>\nimport sys\nsys.ex", ("test", "done"))


def test_empty_test_is_rejected() -> None:
    with pytest.raises(AnswerFormatError, match="empty"):
        parse_answer("<test>\n\n</test>", ("test",))


def test_edit_body_is_kept_verbatim() -> None:
    body = "calc/stats.py\n<<<<<<< SEARCH\n    x = 1\n=======\n    x = 2\n>>>>>>> REPLACE\n"
    answer = parse_answer(f"Fix:\n<edit>\n{body}</edit>", ("edit", "test", "done"))
    assert answer.kind == "edit"
    assert answer.body == body


def test_chosen_candidate_id() -> None:
    reply = "Candidate 1 passes.\n<chosen_candidate_fix_id> 1 </chosen_candidate_fix_id>"
    answer = parse_answer(reply, ("test", "choose"))
    assert (answer.kind, answer.body) == ("choose", "1")


def test_chosen_candidate_id_must_be_a_number() -> None:
    with pytest.raises(AnswerFormatError, match="only a candidate id number"):
        parse_answer("<chosen_candidate_fix_id>the second</chosen_candidate_fix_id>", ("test", "choose"))
