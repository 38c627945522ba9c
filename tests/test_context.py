"""The context stage over real git repositories and real HTTP to the fake model server."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from codemonkeys.answers import AnswerFormatError
from codemonkeys.config import Settings, nest
from codemonkeys.context import build_context
from codemonkeys.context.models import ContextResult, FileRelevance
from codemonkeys.context.ranking import average_order, file_listing, pack, parse_ranking
from codemonkeys.context.relevance import parse_relevance
from codemonkeys.jsonfiles import read_jsonl
from codemonkeys.llm import BudgetExceeded, ModelCallError, ModelClient
from codemonkeys.problem import Problem
from codemonkeys.repo_files import OriginalFiles, SourceFile, estimate_tokens
from codemonkeys.stages import StageClock
from codemonkeys.store import InstanceStore, RunStore
from tests.fake_model_server import FakeModelServer
from tests.test_repo_files import big_python, commit_files

ISSUE = (
    "calc.ops.subtract returns a + b instead of a - b.\n\n>>> from calc.ops import subtract\n>>> subtract(3, 1)\n4\n"
)
FILE_PATH = re.compile(r'<file path="([^"]+)">')


def answer(summary: str | None) -> str:
    """A well-formed relevance answer after some reasoning."""
    if summary is None:
        return "The file has nothing to do with subtraction.\n\nRELEVANCE: Not Relevant"
    return f"Thinking about the issue: the bug is in subtract.\n\nRELEVANCE: Relevant\nSUMMARY: {summary}"


def fenced(paths: list[str]) -> str:
    return f"Reasoning about what the fix needs.\n\n```json\n{json.dumps(paths)}\n```\n"


class ScriptedModel:
    """Answers relevance calls by the file path in the prompt (first turn, then retry turn) and ranking
    conversations from a queue, each as (first answer, answer to the retry request)."""

    def __init__(self, relevance: dict[str, list[str]], rankings: list[tuple[str, str]]) -> None:
        self.relevance = relevance
        self.rankings = list(rankings)
        self.retries = dict(rankings)
        self.lock = threading.Lock()

    def __call__(self, messages: list[dict], model: str) -> str:
        first = (
            messages[0]["content"] + messages[1]["content"]
            if messages[0]["role"] == "system"
            else messages[0]["content"]
        )
        turn = sum(m["role"] == "assistant" for m in messages)
        if "Rank these files" in first:
            if turn == 0:
                with self.lock:
                    return self.rankings.pop(0)[0]
            return self.retries[messages[-2]["content"]]
        match = FILE_PATH.search(first)
        assert match, "a relevance prompt names its file"
        path = match.group(1)
        if path == "calc/broken.py" and path not in self.relevance:
            raise RuntimeError("the model endpoint fails for this file")
        answers = self.relevance.get(path, [answer(None)])
        return answers[min(turn, len(answers) - 1)]


REPO_FILES: dict[str, str | bytes] = {
    "calc/__init__.py": "from calc.ops import add, subtract\n",
    "calc/ops.py": "def add(a, b):\n    return a + b\n\n\ndef subtract(a, b):\n    return a + b\n",
    "calc/parse.py": "def parse(text):\n    return [int(t) for t in text.split()]\n",
    "calc/huge.py": big_python(),
    "calc/retry.py": "def retry(f):\n    return f()\n",
    "calc/garbled.py": "def garbled():\n    pass\n",
    "docs/notes.md": "# Notes\n\nNothing here.\n",
    "calc/tests/test_ops.py": "from calc.ops import subtract\n\n\ndef test_subtract(x=3):\n    assert subtract(x, 1) == 2  # TEST_BODY\n",
    "logo.png": b"\x89PNG\0\0",
    "poetry.lock": "[[package]]\n",
    "node_modules/x.js": "module.exports = 1;\n",
}

RELEVANCE = {
    "calc/ops.py": [answer("Defines subtract, which returns a + b: the fix changes this line.")],
    "calc/parse.py": ["**RELEVANCE:** relevant\n**SUMMARY:** Parses operands\nthat reach subtract."],
    "calc/huge.py": [answer("Large helper module; reference only.")],
    "calc/retry.py": ["I think it matters.", answer("Retries calls to subtract.")],
    "calc/garbled.py": ["Maybe?", "Still not sure."],
}

GOOD_RANKINGS = [
    (fenced(["calc/ops.py", "calc/parse.py", "nope/unknown.py", "calc/ops.py"]), ""),
    (fenced(["calc/parse.py", "calc/ops.py", "calc/huge.py"]), ""),
    (fenced(["./calc/ops.py", "ghost.py", "calc/huge.py"]), ""),
]


@pytest.fixture
def problem(tmp_path: Path) -> Problem:
    repo = tmp_path / "repo"
    sha = commit_files(repo, REPO_FILES)
    return Problem(instance_id="calc-1", repo_path=str(repo), commit=sha, issue=ISSUE)


def make_settings(server: FakeModelServer, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "models": ["openai/fake"],
        "api_base": server.url,
        "retry_base_delay": 0.01,
        "max_retries": 1,
        "request_timeout": 10.0,
        "run_dir": tmp_path / "run",
        "max_file_tokens": 200,
        "context_tokens": 1000,
    }
    return Settings.model_validate(nest(values | overrides, "test"))


def setup(server: FakeModelServer, tmp_path: Path, **overrides: object) -> tuple[ModelClient, Settings, InstanceStore]:
    settings = make_settings(server, tmp_path, **overrides)
    assert settings.run_dir is not None
    client = ModelClient(settings.models, settings.budget, usage_path=settings.run_dir / "usage.jsonl")
    return client, settings, RunStore(settings.run_dir).instance("calc-1")


async def run_context(
    problem: Problem,
    client: ModelClient,
    settings: Settings,
    store: InstanceStore,
    originals: OriginalFiles | None = None,
    clock: StageClock | None = None,
) -> ContextResult:
    """`build_context` with the run's model and context settings, and fresh originals and clock unless given."""
    return await build_context(
        problem,
        client,
        settings.models,
        settings.context,
        store,
        originals or OriginalFiles(problem.repo_path, problem.commit),
        clock or StageClock(),
    )


def relevance_calls(server: FakeModelServer) -> list[str]:
    return [
        m.group(1) for c in server.calls if len(c.messages) > 1 and (m := FILE_PATH.search(c.messages[1]["content"]))
    ]


def prompt_for(server: FakeModelServer, path: str) -> str:
    """The first prompt of the relevance conversation about `path`: the shared part, then the file."""
    call = next(c for c in server.calls if len(c.messages) > 1 and f'<file path="{path}">' in c.messages[1]["content"])
    return call.messages[0]["content"] + "\n" + call.messages[1]["content"]


def ranking_calls(server: FakeModelServer) -> int:
    return sum("Rank these files" in c.messages[0]["content"] for c in server.calls)


# --- parsing -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("RELEVANCE: Relevant\nSUMMARY: Defines subtract.", (True, "Defines subtract.")),
        ("Reasoning.\n**RELEVANCE:** Relevant\n**SUMMARY:** Defines `sub`.", (True, "Defines `sub`.")),
        ("**RELEVANCE: Relevant**\n**SUMMARY: Defines sub.**", (True, "Defines sub.")),
        ("  relevance :  RELEVANT  \n  summary:   Line one.\nLine two.\n", (True, "Line one.\nLine two.")),
        ("RELEVANCE: Not Relevant", (False, "")),
        ("**RELEVANCE:** NOT RELEVANT.", (False, "")),
        ("RELEVANCE: Irrelevant", (False, "")),
        ("```\nRELEVANCE: Relevant\nSUMMARY: Uses __init__ hooks.\n```", (True, "Uses __init__ hooks.")),
        (
            "I must answer RELEVANCE: Relevant or RELEVANCE: Not Relevant.\nRELEVANCE: Not Relevant\n",
            (False, ""),
        ),
        (
            "RELEVANCE: Not Relevant\nOn reflection, no.\nRELEVANCE: Relevant\nSUMMARY: It calls subtract.",
            (True, "It calls subtract."),
        ),
    ],
)
def test_parse_relevance_tolerates_formatting(text: str, expected: tuple[bool, str]) -> None:
    assert parse_relevance(text) == expected


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("This file is relevant.", "could not find a line starting with `RELEVANCE:`"),
        ("RELEVANCE: maybe", "could not find"),
        ("RELEVANCE: Relevant", "no `SUMMARY:`"),
        ("RELEVANCE: Relevant\nSUMMARY:   \n", "no `SUMMARY:`"),
        ("SUMMARY: Defines subtract.\nRELEVANCE: Relevant", "no `SUMMARY:`"),
    ],
)
def test_parse_relevance_rejects_malformed_answers(text: str, complaint: str) -> None:
    with pytest.raises(AnswerFormatError, match=re.escape(complaint)):
        parse_relevance(text)


def test_parse_ranking_takes_the_last_json_list_block() -> None:
    known = {"a.py", "b.py", "c.py"}
    text = (
        'First idea:\n```json\n["c.py"]\n```\nThe code:\n```python\nprint(1)\n```\n'
        'Final:\n```json\n["b.py", "x.py", "./a.py", "b.py", 3]\n```\nDone.\n```\n{"not": "a list"}\n```\n'
    )
    assert parse_ranking(text, known) == ["b.py", "a.py"]


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ('["a.py"]', "could not find a fenced code block"),
        ('```json\n["a.py",\n```', "could not find a fenced code block"),
        ('```json\n["x.py", "y.py"]\n```', "None of the paths"),
        ("```json\n[]\n```", "None of the paths"),
    ],
)
def test_parse_ranking_rejects_answers_without_a_usable_list(text: str, complaint: str) -> None:
    with pytest.raises(AnswerFormatError, match=complaint):
        parse_ranking(text, {"a.py"})


def test_average_order_counts_left_out_files_at_their_expected_place() -> None:
    candidates = ["huge.py", "ops.py", "parse.py", "retry.py"]
    rankings = [["ops.py", "parse.py"], ["parse.py", "ops.py", "huge.py"], ["ops.py", "huge.py"]]
    # ops: (0 + 1 + 0) / 3; parse: (1 + 0 + 2.5) / 3; huge: (2.5 + 2 + 1) / 3; retry: listed by none.
    assert average_order(rankings, candidates) == ["ops.py", "parse.py", "huge.py"]


def test_average_order_breaks_ties_by_how_many_rankings_listed_the_file() -> None:
    candidates = ["a.py", "b.py", "c.py", "d.py"]
    rankings = [["b.py"], ["a.py", "c.py", "b.py"]]
    # left out of the first ranking counts as 1 + (3 - 1) / 2 = 2
    # a: (2 + 0) / 2 = 1 from one ranking; b: (0 + 2) / 2 = 1 from two; c: (2 + 1) / 2; d: listed by none
    assert average_order(rankings, candidates) == ["b.py", "a.py", "c.py"]


# --- packing -----------------------------------------------------------------------------------------


def source(path: str, text: str) -> SourceFile:
    return SourceFile(path=path, text=text, tokens=estimate_tokens(text))


def test_pack_respects_the_budget_and_skips_what_does_not_fit() -> None:
    files = {
        "first.py": source("first.py", "a" * 3200),  # 800 tokens
        "too_big.py": source("too_big.py", "b" * 2800),  # 700 tokens: 200 are left, too few to condense it into
        "second.py": source("second.py", "c" * 2000),  # 500 tokens
        "third.py": source("third.py", "d" * 440),  # 110 tokens
        "fourth.py": source("fourth.py", "e" * 40),  # 10 tokens
    }
    packed = pack(["first.py", "too_big.py", "second.py", "third.py", "fourth.py"], files, 1000, 1000)
    assert [f.path for f in packed] == ["first.py", "third.py", "fourth.py"]
    assert sum(f.tokens for f in packed) == 920 <= 1000
    assert all(not f.outline and f.text == files[f.path].text for f in packed)


def test_pack_condenses_a_file_that_does_not_fit_whole_into_what_is_left() -> None:
    text = big_python()
    files = {"first.py": source("first.py", "a" * 1600), "huge.py": source("huge.py", text)}
    packed = pack(["first.py", "huge.py"], files, 1000, 50_000)
    assert [f.path for f in packed] == ["first.py", "huge.py"]
    assert packed[1].outline and "def function_1(a, b)" in packed[1].text and "BODY_MARKER" not in packed[1].text
    assert sum(f.tokens for f in packed) <= 1000


def test_pack_shows_big_files_as_outlines() -> None:
    text = big_python()
    files = {"huge.py": source("huge.py", text), "small.py": source("small.py", "x = 1\n")}
    packed = pack(["huge.py", "small.py"], files, 1000, 200)
    huge = packed[0]
    assert huge.outline and "def function_1(a, b)" in huge.text and "BODY_MARKER" not in huge.text
    assert huge.tokens == estimate_tokens(huge.text) < estimate_tokens(text)
    assert packed[1].outline is False and packed[1].text == "x = 1\n"


# --- the whole stage ---------------------------------------------------------------------------------


async def test_build_context_end_to_end(problem: Problem, tmp_path: Path) -> None:
    dropped = ("I would rank ops first.", "Still ```no list```.")
    model = ScriptedModel(RELEVANCE, [*GOOD_RANKINGS, dropped])
    with FakeModelServer(model, latency=0.05) as server:
        client, settings, store = setup(server, tmp_path, rankings=4)
        originals, clock = OriginalFiles(problem.repo_path, problem.commit), StageClock()
        result = await run_context(problem, client, settings, store, originals, clock)
    assert server.max_in_flight >= 4  # files are judged, and rankings made, concurrently
    assert {c.stage for c in server.calls} == {"relevance", "ranking"}
    assert set(clock.seconds) == {"relevance", "ranking"}

    # every file read is handed over, so the trajectories need not read it from git again
    originals.repo_path = tmp_path / "gone"
    assert originals("calc/ops.py") == REPO_FILES["calc/ops.py"]

    # every source file was asked about once, retried files twice; skipped files never
    asked = relevance_calls(server)
    assert sorted(set(asked)) == sorted(p for p in REPO_FILES if p.endswith(".py"))
    assert asked.count("calc/retry.py") == 2 and asked.count("calc/garbled.py") == 2
    assert asked.count("calc/ops.py") == 1
    assert {(s.path, s.reason) for s in result.skipped} == {
        ("docs/notes.md", "documentation"),
        ("logo.png", "image (.png)"),
        ("poetry.lock", "lock file"),
        ("node_modules/x.js", "vendored (node_modules/)"),
    }

    # the prompt carries the issue and the file; the huge file is shown as its outline, the test as its own
    prompts = {path: prompt_for(server, path) for path in ("calc/ops.py", "calc/huge.py", "calc/tests/test_ops.py")}
    assert ISSUE.strip() in prompts["calc/ops.py"] and REPO_FILES["calc/ops.py"] in prompts["calc/ops.py"]
    assert "def function_0(a, b)" in prompts["calc/huge.py"] and "BODY_MARKER" not in prompts["calc/huge.py"]
    assert "outline" in prompts["calc/huge.py"]
    test_prompt = prompts["calc/tests/test_ops.py"]
    assert "a test file, shown as its outline" in test_prompt
    assert "def test_subtract(x=3)\n" in test_prompt and "TEST_BODY" not in test_prompt

    # instructions and issue come first, byte-identical in every relevance call: the cached prefix
    firsts = {c.messages[0]["content"] for c in server.calls if c.stage == "relevance"}
    assert len(firsts) == 1 and ISSUE.strip() in firsts.pop()
    assert {c.messages[0]["role"] for c in server.calls if c.stage == "relevance"} == {"system"}
    assert all(ISSUE.strip() not in c.messages[1]["content"] for c in server.calls if c.stage == "relevance")
    retry_turn = next(c for c in server.calls if len(c.messages) == 4 and "calc/retry.py" in c.messages[1]["content"])
    assert retry_turn.messages[2] == {"role": "assistant", "content": "I think it matters."}
    assert "RELEVANCE: Relevant" in retry_turn.messages[3]["content"]

    verdicts = {v.path: v for v in result.relevance}
    assert verdicts["calc/ops.py"].relevant is True
    assert verdicts["calc/parse.py"].summary == "Parses operands\nthat reach subtract."
    assert verdicts["calc/retry.py"].relevant is True
    assert verdicts["calc/__init__.py"].relevant is False
    garbled = verdicts["calc/garbled.py"]
    assert garbled.relevant is None and "unparsable answer twice" in garbled.error
    assert "Still not sure." in garbled.error and not garbled.call_failed

    # the ranking prompt lists the relevant files with token counts and summaries, nothing else
    ranking_prompt = next(
        c.messages[0]["content"] for c in server.calls if "Rank these files" in c.messages[0]["content"]
    )
    assert 'path="calc/ops.py" tokens="' in ranking_prompt and "the fix changes this line" in ranking_prompt
    assert 'shown="outline of a' in ranking_prompt
    assert "docs/notes.md" not in ranking_prompt and "calc/garbled.py" not in ranking_prompt
    assert "about 500 tokens" in ranking_prompt and "under 1000 tokens" in ranking_prompt

    # three usable rankings averaged; the fourth was asked again once, then dropped
    assert ranking_calls(server) == 5
    assert sorted(result.rankings) == sorted(
        [
            ["calc/ops.py", "calc/parse.py"],
            ["calc/parse.py", "calc/ops.py", "calc/huge.py"],
            ["calc/ops.py", "calc/huge.py"],
        ]
    )
    assert result.ranked == ["calc/ops.py", "calc/parse.py", "calc/huge.py"]
    assert [n for n in result.notes if "dropped" in n] and "Still ```no list```." in " ".join(result.notes)
    assert [f.path for f in result.files] == result.ranked
    assert [f.outline for f in result.files] == [False, False, True]
    assert result.tokens <= settings.context.context_tokens

    saved = ContextResult.model_validate_json(store.context.path.read_text())
    assert saved == result
    for i in range(4):
        assert store.ranking_calls(i).exists()


async def test_resume_asks_only_for_missing_verdicts_and_replays_rankings(problem: Problem, tmp_path: Path) -> None:
    model = ScriptedModel(RELEVANCE, GOOD_RANKINGS)
    with FakeModelServer(model) as server:
        client, settings, store = setup(server, tmp_path)
        first = await run_context(problem, client, settings, store)

    # as if killed after three verdicts, one of them a failed call, and before ranking.json was written
    records = read_jsonl(store.relevance_log)
    kept = [r for r in records if r["path"] in {"calc/ops.py", "calc/parse.py", "calc/__init__.py"}]
    failed = {
        "path": "calc/huge.py",
        "tokens": 1,
        "relevant": None,
        "error": "model call failed: 500",
        "call_failed": True,
    }
    lines = [json.dumps(r) + "\n" for r in [*kept, failed]]
    store.relevance_log.write_text("".join(lines) + '{"path": "calc/to')
    store.context.path.unlink()

    with FakeModelServer(ScriptedModel(RELEVANCE, [])) as server:
        client, settings, store = setup(server, tmp_path)
        second = await run_context(problem, client, settings, store)
    assert sorted(relevance_calls(server)) == [
        "calc/garbled.py",
        "calc/garbled.py",
        "calc/huge.py",
        "calc/retry.py",
        "calc/retry.py",
        "calc/tests/test_ops.py",
    ]
    assert ranking_calls(server) == 0
    assert second.ranked == first.ranked and second.files == first.files
    assert {v.path: v.relevant for v in second.relevance} == {v.path: v.relevant for v in first.relevance}

    with FakeModelServer(ScriptedModel({}, [])) as server:
        client, settings, store = setup(server, tmp_path)
        third = await run_context(problem, client, settings, store)
    assert server.requests == 0
    assert third == second


async def test_a_failing_provider_stops_the_context_and_a_rerun_asks_only_the_failed_file(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    sha = commit_files(repo, {"calc/ops.py": REPO_FILES["calc/ops.py"], "calc/broken.py": "x = 1\n"})
    problem = Problem(instance_id="calc-1", repo_path=str(repo), commit=sha, issue=ISSUE)
    with FakeModelServer(ScriptedModel(RELEVANCE, GOOD_RANKINGS[:1] * 3)) as server:
        client, settings, store = setup(server, tmp_path)
        with pytest.raises(ModelCallError, match="1 of 2 files could not be judged"):
            await run_context(problem, client, settings, store)
    assert not store.context.exists(), "a context with holes is never frozen"
    verdicts = {r["path"]: r for r in read_jsonl(store.relevance_log)}
    assert verdicts["calc/broken.py"]["call_failed"] and "model call failed" in verdicts["calc/broken.py"]["error"]
    assert verdicts["calc/ops.py"]["relevant"]

    healed = {**RELEVANCE, "calc/broken.py": [answer(None)]}
    with FakeModelServer(ScriptedModel(healed, GOOD_RANKINGS[:1] * 3)) as server:
        client, settings, store = setup(server, tmp_path)
        result = await run_context(problem, client, settings, store)
    assert relevance_calls(server) == ["calc/broken.py"]
    assert result.ranked == ["calc/ops.py"]
    assert not result.notes


async def test_budget_exceeded_propagates_and_keeps_finished_verdicts(problem: Problem, tmp_path: Path) -> None:
    with FakeModelServer(ScriptedModel(RELEVANCE, GOOD_RANKINGS)) as server:
        client, settings, store = setup(
            server, tmp_path, model_concurrency=1, budget_usd=0.5, prices={"openai/fake": (1000.0, 1000.0)}
        )
        with pytest.raises(BudgetExceeded):
            await run_context(problem, client, settings, store)
    assert len(read_jsonl(store.relevance_log)) == 1
    assert not store.context.exists()


async def test_no_relevant_file_packs_nothing_and_says_so(problem: Problem, tmp_path: Path) -> None:
    with FakeModelServer(ScriptedModel({}, [])) as server:
        client, settings, store = setup(server, tmp_path)
        result = await run_context(problem, client, settings, store)
    assert ranking_calls(server) == 0
    assert result.files == [] and result.ranked == []
    assert any("no file was judged relevant" in n for n in result.notes)
    assert store.context.exists()


async def test_every_ranking_dropped_falls_back_to_path_order(problem: Problem, tmp_path: Path) -> None:
    bad: Callable[[int], tuple[str, str]] = lambda i: (f"no list {i}", f"still none {i}")  # noqa: E731
    with FakeModelServer(ScriptedModel(RELEVANCE, [bad(0), bad(1)])) as server:
        client, settings, store = setup(server, tmp_path, rankings=2)
        result = await run_context(problem, client, settings, store)
    assert ranking_calls(server) == 4
    assert result.rankings == []
    assert result.ranked == ["calc/huge.py", "calc/ops.py", "calc/parse.py", "calc/retry.py"]
    assert any("every ranking was dropped" in n for n in result.notes)


async def test_a_failing_ranking_call_stops_the_context_and_a_rerun_ranks_again(
    problem: Problem, tmp_path: Path
) -> None:
    with FakeModelServer(ScriptedModel(RELEVANCE, [])) as server:
        client, settings, store = setup(server, tmp_path, max_retries=1)
        with pytest.raises(ModelCallError):
            await run_context(problem, client, settings, store)
    assert not store.context.exists()

    with FakeModelServer(ScriptedModel(RELEVANCE, GOOD_RANKINGS)) as server:
        client, settings, store = setup(server, tmp_path)
        result = await run_context(problem, client, settings, store)
    assert relevance_calls(server) == [], "verdicts from the first run are kept"
    assert result.rankings and result.ranked[0] == "calc/ops.py"


async def test_relevance_shows_a_file_no_larger_than_the_relevance_models_window(
    problem: Problem, tmp_path: Path
) -> None:
    """A file under max_file_tokens but over the relevance model's window is shown as its outline."""
    sha = commit_files(Path(problem.repo_path), {"calc/huge.py": big_python(functions=4, body_lines=300)})
    problem = problem.model_copy(update={"commit": sha})
    with FakeModelServer(lambda messages, model: "RELEVANCE: Not Relevant", context_window=3000) as server:
        client, settings, store = setup(server, tmp_path, context_windows={"openai/fake": 3000}, max_output_tokens=500)
        await run_context(problem, client, settings, store)
    assert server.largest_prompt <= 2500, "every relevance prompt fits the window"
    shown = [c for c in server.calls if "calc/huge.py" in json.dumps(c.messages)]
    assert shown and "def function_3(a, b)" in json.dumps(shown[0].messages)
    assert all(r["ok"] for r in read_jsonl(client.usage_path))


def test_the_ranking_listing_fits_its_budget_by_shortening_then_dropping_summaries_then_files() -> None:
    files = {f"pkg/m{i}.py": source(f"pkg/m{i}.py", "x = 1\n") for i in range(10)}
    relevant = [
        FileRelevance(path=p, tokens=2, relevant=True, summary=f"{p} matters because " + "reason " * 60) for p in files
    ]
    whole, note = file_listing(relevant, files, 1000, 100_000)
    assert note is None and whole.count("reason") == 600
    short, note = file_listing(relevant, files, 1000, 3_000)
    assert len(short) <= 3_000 and short.count("<file path=") == 10 and " …" in short
    assert note is not None and "summaries shortened" in note
    bare, note = file_listing(relevant, files, 1000, 800)
    assert len(bare) <= 800 + 100 and "reason" not in bare and bare.count("<file path=") == 10
    few, note = file_listing(relevant, files, 1000, 250)
    assert few.count("<file path=") < 10 and "more relevant files are not listed" in few
    assert note is not None and "relevant files left off" in note
