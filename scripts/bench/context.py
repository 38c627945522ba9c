"""Context benchmark: what the relevance stage screens on real source distributions, against the original
CodeMonkeys selection (every Python file outside top-level test/ and tests/, whole), and relevance throughput.

For each sdist (downloaded with pip into the cache directory at run time, made a git repository) it prints the
files and characters relevance is sent under `--screen code` (ours), under `--screen all` (every text file,
the previous behaviour) and by the original selection, the ratio ours / original (target <= 0.5), and the
skipped files by reason. Then relevance's calls per second against the fake model at `--latency` with the
default concurrency, and how many distinct shared prefixes (instructions + issue) those calls carried.

    python scripts/bench/context.py [--sdist sympy==1.12 --sdist sphinx==7.2.6] [--cache DIR] [--calls 640]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from codemonkeys.config import ContextSettings, Settings, nest  # noqa: E402
from codemonkeys.context.relevance import judge_files  # noqa: E402
from codemonkeys.llm import ModelClient  # noqa: E402
from codemonkeys.mentions import issue_identifiers  # noqa: E402
from codemonkeys.problem import Problem  # noqa: E402
from codemonkeys.repo_files import SourceFile, list_source_files, screen_view  # noqa: E402
from codemonkeys.stages import Stage  # noqa: E402
from codemonkeys.store import RunStore  # noqa: E402
from tests.build_outputs import unpack_sdist  # noqa: E402
from tests.fake_model_server import FakeModelServer  # noqa: E402
from tests.swebench.sdist_instance import download_sdist  # noqa: E402
from tests.test_repo_files import commit_files  # noqa: E402

# An issue per project, so large files show the lines that mention its identifiers as they would in a run.
ISSUES = {
    "sympy": "`sympy.utilities.misc.replace('1.5', {'.': ','})` raises KeyError instead of returning '1,5'.",
    "sphinx": "autodoc: `autodoc_typehints = 'description'` drops the return type of a documented `@property`.",
    "django": "QuerySet.bulk_create() with update_conflicts=True ignores `db_column` of `unique_fields`.",
}
DEFAULT_ISSUE = "Calling `main()` with an empty configuration raises AttributeError."


def original_selection(repo: Path) -> tuple[int, int]:
    """Files and characters of every Python file outside top-level test/ and tests/ (the paper's selection)."""
    files = [p for p in repo.rglob("*.py") if p.relative_to(repo).parts[0] not in ("test", "tests", ".git")]
    return len(files), sum(len(p.read_text(encoding="utf-8", errors="replace")) for p in files)


def measure(repo: Path, sha: str, issue: str, settings: ContextSettings) -> list[SourceFile]:
    identifiers = issue_identifiers(issue)
    files, skipped = list_source_files(repo, sha, settings.max_file_tokens)
    ours = sum(
        len(screen_view(f, min(settings.screen_file_tokens, settings.max_file_tokens), identifiers).text) for f in files
    )
    every, _ = list_source_files(repo, sha, settings.max_file_tokens, screen="all")
    before = sum(len(screen_view(f, settings.max_file_tokens, identifiers).text) for f in every)
    original_files, original_chars = original_selection(repo)
    tests = sum(f.test for f in files)
    print(f"  {'':28} {'files':>7} {'characters':>12}")
    print(f"  {'ours (--screen code)':28} {len(files):>7} {ours:>12,}   ({tests} tests as outlines)")
    print(f"  {'every text file (--screen all)':28} {len(every):>7} {before:>12,}")
    print(f"  {'original selection':28} {original_files:>7} {original_chars:>12,}")
    print(
        f"  ratio ours / original: {ours / original_chars:.2f} (target <= 0.5); all / original: {before / original_chars:.2f}"
    )
    counts = Counter(s.category for s in skipped).most_common()
    print(f"  skipped {len(skipped)}: " + ", ".join(f"{reason} {n}" for reason, n in counts))
    return files


async def throughput(files: list[SourceFile], repo: Path, sha: str, issue: str, latency: float, work: Path) -> None:
    """Relevance calls per second with the default settings, against the fake model at `latency`."""

    def respond(messages: list[dict], model: str) -> str:
        return "The file does not touch the issue.\nRELEVANCE: Not Relevant"

    with FakeModelServer(respond, latency=latency) as server:
        flat = {"models": ["openai/fake"], "api_base": server.url, "run_dir": work / "run"}
        settings = Settings.model_validate(nest(flat, "bench"))
        store = RunStore(work / "run")
        client = ModelClient(settings.models, settings.budget, usage_path=store.usage_path)
        problem = Problem(instance_id="bench", repo_path=str(repo), commit=sha, issue=issue)
        start = time.perf_counter()
        verdicts = await judge_files(problem, files, client, settings.models, settings.context, store.instance("bench"))
        seconds = time.perf_counter() - start
    relevance = [c for c in server.calls if c.stage == Stage.RELEVANCE]
    prefixes = {c.messages[0]["content"] for c in relevance}
    print(
        f"  relevance throughput: {len(verdicts)} calls in {seconds:.1f} s = {len(verdicts) / seconds:.1f} calls/s "
        f"at {latency * 1000:.0f} ms latency, concurrency {settings.models.model_concurrency} "
        f"(ideal {settings.models.model_concurrency / latency:.0f}/s); peak in flight {server.max_in_flight}; "
        f"{len(prefixes)} distinct shared prefix(es) over {len(relevance)} calls"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sdist", action="append", help="name==version from the package index (repeatable)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "codemonkeys-bench-context")
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--calls", type=int, default=640, help="relevance calls of the throughput run (first sdist)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sdists = args.sdist or ["sympy==1.12", "sphinx==7.2.6"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for i, spec in enumerate(sdists):
            name, _, version = spec.partition("==")
            repo = work / name
            unpack_sdist(download_sdist(args.cache, name, version), repo)
            sha = commit_files(repo, {})
            issue = ISSUES.get(name.lower(), DEFAULT_ISSUE)
            print(f"{name} {version}")
            files = measure(repo, sha, issue, ContextSettings())
            if i == 0:
                asyncio.run(throughput(files[: args.calls], repo, sha, issue, args.latency, work))
            shutil.rmtree(repo)


if __name__ == "__main__":
    main()
