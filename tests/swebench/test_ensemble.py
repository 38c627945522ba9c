"""`codemonkeys swebench ensemble` as a user runs it: real subprocesses, the toy repository as a SWE-bench
instance with a real local environment, prediction files and a real `swebench run` directory as inputs, real
HTTP to the scripted fake model (`openai/wrong` writes the wrong test and fix), and the official grading."""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.oracle import oracle
from tests.e2e.toy_repo import RIGHT_TEST, WRONG_TEST
from tests.fake_model_server import FakeModelServer
from tests.swebench.shaped import make_benchmark, write_predictions
from tests.swebench.test_batch_e2e import CLI, _env, cli, common, solve_args

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("env-cache")


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _predictions(run_dir: Path) -> dict[str, dict]:
    return {p["instance_id"]: p for p in _lines(run_dir / "predictions.jsonl")}


def _usage(run_dir: Path) -> Counter[str]:
    path = run_dir / "usage.jsonl"
    return Counter(r["instance"] for r in _lines(path)) if path.exists() else Counter()


def cli_report(run_dir: Path) -> dict:
    """`codemonkeys report RUN_DIR --json` as a user runs it: the figures it prints."""
    proc = subprocess.run([*CLI[:-1], "report", str(run_dir), "--json"], capture_output=True, text=True, env=_env())
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def ensemble_args(dataset: Path, inputs: list[str], server: FakeModelServer, run_dir: Path) -> list[str]:
    return [
        "ensemble",
        "--dataset",
        str(dataset),
        *inputs,
        "--api-base",
        server.url,
        "--model",
        "openai/right",
        "--samples",
        "2",
        "--iterations",
        "4",
        "--test-timeout",
        "60",
        "--run-dir",
        str(run_dir),
    ]


def test_the_right_patch_of_a_second_file_wins_over_our_wrong_one(tmp_path: Path, env_cache: Path) -> None:
    iid = "acme__calc-50"
    repos, dataset, specs, patches = make_benchmark(tmp_path, [iid])
    ours = tmp_path / "ours"
    theirs = write_predictions(tmp_path / "theirs.jsonl", {iid: patches["gold"]}, model="theirs")
    ensemble_dir = tmp_path / "ensemble"
    with FakeModelServer(oracle) as server:
        run = solve_args(dataset, repos, specs, env_cache, server, ours)
        run[run.index("openai/right") - 1 : run.index("openai/right") + 1] = []
        run[run.index("--samples") + 1] = "1"
        solved = cli(*run)
        assert solved.returncode == 0, solved.stderr
        wrong = _predictions(ours)[iid]["model_patch"]
        assert "- 0.5" in wrong, "our run wrote the wrong fix"
        inputs = ["--predictions", str(ours / "predictions.jsonl"), "--predictions", str(theirs), "--runs", str(ours)]
        before = len(server.calls)
        proc = cli(*ensemble_args(dataset, inputs, server, ensemble_dir), *common(repos, specs, env_cache))
        stages = Counter(c.stage for c in server.calls[before:])
    assert proc.returncode == 0, proc.stderr
    assert "1 finished, 0 failed" in proc.stderr
    inst = ensemble_dir / iid
    pool = json.loads((inst / "pool.json").read_text())
    assert [p["patch"] for p in pool["patches"]] == [wrong, patches["gold"]]
    assert pool["patches"][0]["provenance"] == [
        {"origin": str(ours / "predictions.jsonl"), "name": "codemonkeys"},
        {"origin": str(ours), "name": "candidate-0"},
    ], "our prediction and our run's candidate are one fix"
    votes = json.loads((inst / "votes.json").read_text())
    assert votes["scripts"] == [WRONG_TEST], "the run's script votes; no new testing trajectory"
    assert votes["votes"] == {"0": 1, "1": 1}
    assert not (inst / "testing").exists()
    assert stages == {"selection": 2}, "only selection calls the model"
    selection = json.loads((inst / "selection.json").read_text())
    assert selection["chosen_candidate"] == 1 and not selection["fallback"]
    result = json.loads((inst / "result.json").read_text())
    assert result["status"] == "patched" and result["candidates"] == 2
    prediction = _predictions(ensemble_dir)[iid]
    assert prediction["model_name_or_path"] == "codemonkeys-ensemble"
    assert prediction["model_patch"] == patches["gold"]
    assert prediction["source"] == [{"origin": str(theirs), "name": "theirs"}]

    page = (inst / "report.html").read_text()
    assert "pooled (ensemble)</th><td>3 proposal(s) of 2 distinct fix(es)" in page
    assert f"candidate 1 [chosen, top]: 1 vote, proposed by theirs ({theirs})" in page
    assert (
        f"candidate 0 [top]: 1 vote, proposed by codemonkeys ({ours / 'predictions.jsonl'}), candidate-0 ({ours})"
        in page
    )
    assert "the candidates were pooled, and the runs' own test scripts voted" in page
    assert "editing not finished" not in page and "Not recorded" not in page, "an ensemble's page lacks nothing"

    # Every pooled candidate is graded, so the run's figures see the ensemble's coverage and choice.
    eval_dir = ensemble_dir / "eval"
    graded = cli(
        "eval",
        "--dataset",
        str(dataset),
        "--predictions",
        str(ensemble_dir / "predictions.jsonl"),
        "--candidates",
        str(ensemble_dir),
        "--run-dir",
        str(eval_dir),
        *common(repos, specs, env_cache),
    )
    assert graded.returncode == 0, graded.stderr
    assert json.loads((eval_dir / f"codemonkeys.{eval_dir.name}.json").read_text())["resolved_ids"] == [iid]
    figures = cli_report(ensemble_dir)
    row = figures["rows"][0]
    assert (row["trajectories"], row["with_patch"], row["candidates"], row["correct"]) == (3, 3, 2, 1)
    assert (row["covered"], row["selected"], row["random"]) == (True, True, pytest.approx(1 / 3))


def restyled(patch: str) -> str:
    """The same change as another tool writes it: other hunk headers and `index` lines, trailing spaces."""
    patch = re.sub(r"^@@ -(\d+),(\d+) \+(\d+),(\d+) @@.*$", r"@@ -1\1,\2 +1\3,\4 @@", patch, flags=re.M)
    patch = re.sub(r"^index \S+", "index 0000000..1111111", patch, flags=re.M)
    return re.sub(r"^(\+(?!\+\+ ).*)$", r"\1 ", patch, flags=re.M)


@pytest.fixture(scope="module")
def pooled(tmp_path_factory: pytest.TempPathFactory, env_cache: Path) -> dict:
    """One ensemble over prediction files only: instance 60's fix comes from two files in two forms (files in
    other orders), 61's second file has an empty patch; a third file has the wrong fix for both."""
    root = tmp_path_factory.mktemp("pooled")
    ids = ["acme__calc-60", "acme__calc-61"]
    repos, dataset, specs, patches = make_benchmark(root, ids)
    both = patches["gold"] + patches["unrelated"]
    files = [
        write_predictions(root / "a.jsonl", {ids[0]: both, ids[1]: patches["gold"]}, model="a"),
        write_predictions(
            root / "b.jsonl", {ids[0]: restyled(patches["unrelated"]) + restyled(patches["gold"]), ids[1]: ""}, "b"
        ),
        write_predictions(root / "c.jsonl", dict.fromkeys(ids, patches["wrong"]), model="c"),
    ]
    inputs = [arg for path in files for arg in ("--predictions", str(path))]
    run_dir = root / "ensemble"
    with FakeModelServer(oracle) as server:
        args = [*ensemble_args(dataset, inputs, server, run_dir), *common(repos, specs, env_cache), "--workers", "2"]
        proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    return {"ids": ids, "patches": patches, "both": both, "files": files, "run_dir": run_dir, "args": args}


def test_the_same_fix_in_two_files_is_pooled_once(pooled: dict) -> None:
    first, second = pooled["ids"]
    a, b, c = (str(path) for path in pooled["files"])
    pool = json.loads((pooled["run_dir"] / first / "pool.json").read_text())
    assert [p["patch"] for p in pool["patches"]] == [pooled["both"], pooled["patches"]["wrong"]]
    assert pool["patches"][0]["provenance"] == [{"origin": a, "name": "a"}, {"origin": b, "name": "b"}]
    assert pool["patches"][1]["provenance"] == [{"origin": c, "name": "c"}]
    assert pool["empty"] == []
    other = json.loads((pooled["run_dir"] / second / "pool.json").read_text())
    assert len(other["patches"]) == 2 and other["empty"] == [{"origin": b, "name": "b"}]
    predictions = _predictions(pooled["run_dir"])
    assert predictions[first]["model_patch"] == pooled["both"]
    assert predictions[first]["source"] == [{"origin": a, "name": "a"}, {"origin": b, "name": "b"}]
    assert predictions[second]["model_patch"] == pooled["patches"]["gold"]


def test_an_instance_with_only_prediction_files_gets_testing_trajectories_first(pooled: dict) -> None:
    for iid in pooled["ids"]:
        inst = pooled["run_dir"] / iid
        tested = [json.loads((inst / "testing" / f"{i}.json").read_text()) for i in range(2)]
        assert [t["script"] for t in tested] == [RIGHT_TEST, RIGHT_TEST]
        assert (inst / "testing" / "0.calls.json").exists()
        votes = json.loads((inst / "votes.json").read_text())
        assert votes["scripts"] == [RIGHT_TEST], "the two trajectories' identical scripts vote once"
        assert votes["votes"] == {"0": 1, "1": 0}, "the wrong fix fails the even-and-odd test"
        result = json.loads((inst / "result.json").read_text())
        assert result["status"] == "patched" and result["trajectories"] == 2 and result["chosen_candidate"] == 0
        assert set(result["usage"]) == {"testing", "selection"}
        page = (inst / "report.html").read_text()
        assert page.count("): its script votes</summary>") == 2, "both testing trajectories are on the page"


def test_a_rerun_makes_no_model_call_for_finished_work(pooled: dict) -> None:
    run_dir, first = pooled["run_dir"], pooled["ids"][0]
    before = _usage(run_dir)
    predictions = _predictions(run_dir)
    with FakeModelServer(oracle) as server:
        args = [*pooled["args"]]
        args[args.index("--api-base") + 1] = server.url
        again = cli(*args)
        assert again.returncode == 0, again.stderr
        assert "already done 2" in again.stderr
        # As if stopped in a testing trajectory and during selection: both are unsaved, their transcripts and
        # the votes are kept, so the rerun replays both conversations' calls and reads the votes back.
        for name in ("result.json", "selection.json", "testing/1.json"):
            (run_dir / first / name).unlink()
        resumed = cli(*args)
        assert resumed.returncode == 0, resumed.stderr
        assert "1 finished" in resumed.stderr and "already done 1" in resumed.stderr
        assert server.calls == []
    assert _usage(run_dir) == before
    assert json.loads((run_dir / first / "selection.json").read_text())["chosen_candidate"] == 0
    assert _predictions(run_dir) == predictions


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_failures_single_candidates_and_empty_pools_each_get_their_result(tmp_path: Path, executor: str) -> None:
    """No model or environment is needed here: one candidate is chosen as it is, an empty pool gives an empty
    patch, and an instance whose spec is unknown fails alone; on Ray as in this process."""
    ids = ["acme__calc-70", "acme__calc-71", "acme__calc-72"]
    repos, dataset, specs, patches = make_benchmark(tmp_path, ids)
    records = _lines(dataset)
    records[0]["version"] = "9.9"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in records))
    a = write_predictions(tmp_path / "a.jsonl", {ids[0]: patches["gold"], ids[1]: patches["gold"]}, model="a")
    b = write_predictions(tmp_path / "b.jsonl", {ids[0]: patches["wrong"], ids[1]: restyled(patches["gold"])}, "b")
    run_dir = tmp_path / "ensemble"
    env_cache = tmp_path / "no-env"
    with FakeModelServer(oracle) as server:
        inputs = [
            "--predictions",
            str(a),
            "--predictions",
            str(b),
            "--instances",
            ",".join(ids),
            "--executor",
            executor,
        ]
        proc = cli(*ensemble_args(dataset, inputs, server, run_dir), *common(repos, specs, env_cache))
        assert server.calls == []
    assert proc.returncode == 1, proc.stderr
    assert "2 finished, 1 failed" in proc.stderr
    results = {iid: json.loads((run_dir / iid / "result.json").read_text()) for iid in ids}
    assert results[ids[0]]["status"] == "failed" and results[ids[0]]["stopped_stage"] == "environment"
    assert "9.9" in results[ids[0]]["error"]
    assert results[ids[1]]["status"] == "patched" and results[ids[1]]["patch"] == patches["gold"]
    assert results[ids[2]]["status"] == "no_candidate" and "no candidate patch was pooled" in results[ids[2]]["error"]
    assert not env_cache.exists(), "no environment was built"
    predictions = _predictions(run_dir)
    assert set(predictions) == {ids[1], ids[2]}, "a failed instance has no prediction until a rerun finishes it"
    assert predictions[ids[1]]["source"] == [{"origin": str(a), "name": "a"}, {"origin": str(b), "name": "b"}]
    assert predictions[ids[2]] == {
        "instance_id": ids[2],
        "model_name_or_path": "codemonkeys-ensemble",
        "model_patch": "",
        "source": [],
    }
