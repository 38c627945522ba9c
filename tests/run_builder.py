"""Hand-built run directories with known figures, written through the store classes as a run would write them,
plus a verdicts.jsonl as `swebench eval --candidates` would write it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from codemonkeys.context.models import ContextFile, ContextResult
from codemonkeys.jsonfiles import append_jsonl
from codemonkeys.llm import StageTotals
from codemonkeys.problem import Problem
from codemonkeys.result import SolveResult
from codemonkeys.store import InstanceStore, RunStore
from codemonkeys.swebench.models import EvalVerdict
from codemonkeys.trajectories.models import EditingResult, VoteResult


def diff(path: str, line: str) -> str:
    return f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-old\n+{line}\n"


def add_instance(
    run: Path,
    iid: str,
    patches: list[str | None],
    *,
    top: list[int],
    chosen: int | None,
    usage: dict[str, float],
    context: Sequence[str] = (),
    seconds: float = 10.0,
) -> InstanceStore:
    """One finished instance: editing trajectory i produced `patches[i]` (None: no patch)."""
    inst = RunStore(run).instance(iid)
    inst.problem.save(Problem(instance_id=iid, repo_path="/r", commit="abc", issue=f"issue of {iid} <b>"))
    for i, patch in enumerate(patches):
        inst.editing(i).save(EditingResult(index=i, patch=patch, touched=["a.py"] if patch else []))
    inst.votes.save(VoteResult(top=top))
    if context:
        inst.context.save(ContextResult(files=[ContextFile(path=p, text="", tokens=1) for p in context], ranked=[]))
    distinct = list(dict.fromkeys(p for p in patches if p))
    inst.result.save(
        SolveResult(
            instance_id=iid,
            status="patched" if chosen is not None else "no_candidate",
            patch=distinct[chosen] if chosen is not None else None,
            chosen_candidate=chosen,
            candidates=len(distinct),
            trajectories=len(patches),
            usage={stage: StageTotals(cost_usd=usd, calls=1) for stage, usd in usage.items()},
            cost_usd=sum(usage.values()),
            seconds=seconds,
        )
    )
    return inst


def verdict(eval_dir: Path, iid: str, candidate: str, resolved: bool) -> None:
    append_jsonl(
        eval_dir / "verdicts.jsonl", EvalVerdict(instance_id=iid, candidate=candidate, resolved=resolved).model_dump()
    )


def known_run(run: Path) -> dict[str, str]:
    """Five finished instances (four evaluated) and one unfinished; returns the gold patches. The figures:

    | id | n | patched | c | covered | majority | selected | random | resolved | recall |
    | a  | 4 | 3       | 2 | yes     | yes      | yes      | 2/3    | yes      | 1/2    |
    | b  | 2 | 2       | 1 | yes     | no       | yes      | 1/2    | yes      | 1      |
    | c  | 3 | 3       | 0 | no      | no       | no       | 0      | no       |        |
    | f  | 2 | 2       | 1 | yes     | yes      | no       | 1/2    | no       |        |
    | d  | 1 | 1       | not evaluated                                                      |
    """
    ev = run / "eval"
    p1, p2, p3, p4, p5, p6, p7, p8 = (diff("a.py", f"v{i}") for i in range(1, 9))
    add_instance(
        run,
        "org__a-1",
        [p1, p1, p2, None],
        top=[0],
        chosen=0,
        usage={"editing": 0.6, "relevance": 0.4},
        context=["a.py", "c.py"],
    )
    add_instance(run, "org__b-2", [p3, p4], top=[0], chosen=1, usage={"editing": 0.5}, context=["b.py"])
    add_instance(run, "org__c-3", [p5, p5, p5], top=[0], chosen=0, usage={"editing": 0.5})
    add_instance(run, "org__f-5", [p6, p7], top=[0], chosen=1, usage={"editing": 0.3})
    add_instance(run, "org__d-4", [p8], top=[0], chosen=0, usage={"editing": 0.2})
    RunStore(run).instance("org__e-6").problem.save(
        Problem(instance_id="org__e-6", repo_path="/r", commit="c", issue="")
    )
    for iid, candidates, prediction in [
        ("org__a-1", [True, False], True),
        ("org__b-2", [False, True], True),
        ("org__c-3", [False], False),
        ("org__f-5", [True, False], False),
    ]:
        verdict(ev, iid, "", prediction)
        for cid, resolved in enumerate(candidates):
            verdict(ev, iid, f"candidate-{cid}", resolved)
    return {"org__a-1": diff("a.py", "x") + diff("b.py", "y"), "org__b-2": diff("b.py", "z"), "org__c-3": p1}


def big_run(run: Path, instances: int, trajectories: int) -> None:
    """A batch the size of SWE-bench Verified: every trajectory its own candidate, candidate 0 resolving every
    third instance, instance ids carrying markup that the pages must escape."""
    ev = run / "eval"
    for n in range(instances):
        iid = f"org__repo<i>-{n}"
        patches = [diff(f"pkg/module_{n}.py", f"fix {t}") for t in range(trajectories)]
        add_instance(run, iid, patches, top=[0], chosen=n % trajectories, usage={"editing": 0.01 * (n % 7)})
        verdict(ev, iid, "", n % 3 == 0 and n % trajectories == 0)
        for cid in range(trajectories):
            verdict(ev, iid, f"candidate-{cid}", n % 3 == 0 and cid == 0)
