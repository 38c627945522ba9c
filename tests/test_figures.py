"""The paper's figures against answers computed by hand: pass@k against a brute-force count, the power-law fit
against the curve it was drawn from, and a hand-built run directory's scores."""

from __future__ import annotations

import math
import random
from itertools import combinations
from pathlib import Path

import pytest

from codemonkeys.figures import batch_figures, fit_power_law, pass_at_k, patch_files
from codemonkeys.swebench.pooling import Provenance, pool_patches
from tests.run_builder import add_instance, diff, known_run, verdict


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of the k-subsets of n samples (the first c correct) that hold a correct one."""
    subsets = list(combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_matches_a_count_over_every_subset() -> None:
    for n in range(1, 8):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_stays_finite_for_large_n_and_rejects_impossible_draws() -> None:
    assert pass_at_k(10_000, 1, 1) == pytest.approx(1e-4)
    assert pass_at_k(10_000, 5_000, 10) == pytest.approx(1 - 0.5**10, rel=1e-3)
    for n, c, k in [(3, 1, 4), (3, 4, 1), (3, 1, 0)]:
        with pytest.raises(ValueError):
            pass_at_k(n, c, k)


def test_the_fit_recovers_an_exact_power_law() -> None:
    ks = list(range(1, 101))
    fit = fit_power_law(ks, [math.exp(-1.5 * k**-0.4) for k in ks])
    assert fit is not None
    assert (fit.a, fit.b) == (pytest.approx(-1.5, abs=1e-9), pytest.approx(-0.4, abs=1e-9))
    assert fit.predict(1000) == pytest.approx(math.exp(-1.5 * 1000**-0.4))


def test_the_fit_recovers_a_noisy_power_law() -> None:
    rng = random.Random(7)
    ks = list(range(1, 51))
    noisy = [min(0.999, math.exp(-2.0 * k**-0.3) * (1 + rng.gauss(0, 0.003))) for k in ks]
    fit = fit_power_law(ks, noisy)
    assert fit is not None
    assert fit.a == pytest.approx(-2.0, rel=0.05)
    assert fit.b == pytest.approx(-0.3, abs=0.03)


def test_the_fit_needs_two_points_strictly_between_zero_and_one() -> None:
    assert fit_power_law([1, 2, 3], [0.0, 0.5, 1.0]) is None
    assert fit_power_law([1], [0.5]) is None
    assert fit_power_law([1, 2, 3, 4], [0.0, 0.3, 0.5, 1.0]) is not None


def test_patch_files_are_the_new_paths() -> None:
    assert patch_files(diff("pkg/a.py", "x") + diff("b.py", "y")) == {"pkg/a.py", "b.py"}


def test_figures_of_a_hand_built_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    gold = known_run(run)
    f = batch_figures(run, gold=gold)
    assert (f.instances, f.unfinished, f.evaluated) == (5, 1, 4)
    assert f.resolved_rate == pytest.approx(2 / 4)
    assert f.coverage == pytest.approx(3 / 4)
    assert f.majority == pytest.approx(2 / 4)
    assert f.selection == pytest.approx(2 / 4)
    assert f.random == pytest.approx((2 / 3 + 1 / 2 + 0 + 1 / 2) / 4)
    assert f.oracle_gap_recovered == pytest.approx((1 / 2 - 5 / 12) / (3 / 4 - 5 / 12))
    assert f.recall == pytest.approx((1 / 2 + 1) / 2)
    assert f.usd_total == pytest.approx(2.5)
    assert f.usd_by_stage == pytest.approx({"editing": 2.1, "relevance": 0.4})
    assert f.usd_per_instance == pytest.approx(2.5 / 5)

    # pass@k per instance (n, c): a (4, 2), b (2, 1), c (3, 0), f (2, 1); past its n an instance counts coverage.
    assert f.samples == 4
    assert f.pass_at_k == pytest.approx([(0.5 + 0.5 + 0 + 0.5) / 4, (5 / 6 + 1 + 0 + 1) / 4, 3 / 4, 3 / 4])
    assert f.fit is not None and f.fit.a < 0
    assert [p.k for p in f.forecast] == [8, 16, 40]
    assert f.forecast[0].usd == pytest.approx(2.5 / 12 * 8 * 5)
    assert f.forecast[0].coverage == pytest.approx(f.fit.predict(8))

    rows = {r.instance_id: r for r in f.rows}
    a = rows["org__a-1"]
    assert (a.trajectories, a.with_patch, a.candidates, a.correct) == (4, 3, 2, 2)
    assert (a.resolved, a.covered, a.majority, a.selected) == (True, True, True, True)
    assert a.random == pytest.approx(2 / 3) and a.recall == pytest.approx(0.5)
    assert a.link == "org__a-1/report.html" and a.usd_by_stage == {"editing": 0.6, "relevance": 0.4}
    assert (rows["org__b-2"].majority, rows["org__b-2"].selected) == (False, True)
    assert rows["org__c-3"].recall is None, "a gold patch without a packed context has no recall"
    d = rows["org__d-4"]
    assert not d.evaluated and (d.resolved, d.covered, d.majority, d.correct, d.recall) == (None,) * 5


def test_without_candidate_verdicts_only_the_resolved_rate_is_known(tmp_path: Path) -> None:
    run = tmp_path / "run"
    known_run(run)
    ev = tmp_path / "predictions-only"
    verdict(ev, "org__a-1", "", True)
    verdict(ev, "org__b-2", "", False)
    verdict(ev, "org__b-2", "", True)  # a rerun's later verdict wins
    f = batch_figures(run, eval_dir=ev)
    assert (f.evaluated, f.resolved_rate) == (2, 1.0)
    assert (f.coverage, f.majority, f.selection, f.random, f.oracle_gap_recovered) == (None,) * 5
    assert (f.pass_at_k, f.fit, f.forecast, f.recall) == ([], None, [], None)


def test_a_run_without_eval_has_costs_but_no_scores(tmp_path: Path) -> None:
    run = tmp_path / "run"
    known_run(run)
    (run / "eval" / "verdicts.jsonl").unlink()
    f = batch_figures(run)
    assert (f.evaluated, f.resolved_rate, f.coverage) == (0, None, None)
    assert f.usd_total == pytest.approx(2.5)


def test_the_oracle_gap_is_unknown_when_coverage_equals_random(tmp_path: Path) -> None:
    run = tmp_path / "run"
    add_instance(run, "x-1", [diff("a.py", "1")], top=[0], chosen=0, usage={})
    verdict(run / "eval", "x-1", "", False)
    verdict(run / "eval", "x-1", "candidate-0", False)
    f = batch_figures(run)
    assert (f.coverage, f.random, f.selection, f.oracle_gap_recovered) == (0.0, 0.0, 0.0, None)


def test_an_ensemble_instance_counts_the_pooled_proposals(tmp_path: Path) -> None:
    """No editing trajectory: n is the systems' proposals (one empty), c those whose pooled fix resolves."""
    run = tmp_path / "ensemble"
    right, wrong = diff("a.py", "right"), diff("a.py", "wrong")
    inst = add_instance(run, "x-1", [], top=[1, 0], chosen=None, usage={"selection": 0.1})
    chose = {"status": "patched", "patch": right, "chosen_candidate": 0, "candidates": 2}
    inst.result.save(inst.result.load().model_copy(update=chose))
    inst.pool.save(
        pool_patches("x-1", [(Provenance(origin=o, name=o), p) for o, p in [("a", right), ("b", wrong), ("c", right)]])
    )
    empty = inst.pool.load()
    empty.empty.append(Provenance(origin="d", name="d"))
    inst.pool.save(empty)
    verdict(run / "eval", "x-1", "", True)
    verdict(run / "eval", "x-1", "candidate-0", True)
    verdict(run / "eval", "x-1", "candidate-1", False)
    row = batch_figures(run).rows[0]
    assert (row.trajectories, row.with_patch, row.candidates, row.correct) == (4, 3, 2, 2)
    assert (row.covered, row.majority, row.selected, row.random) == (True, False, True, pytest.approx(2 / 3))
