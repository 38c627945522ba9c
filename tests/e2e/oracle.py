"""A scripted model that "knows" the toy repo's fix, routed by the stage the client names in its request header.

Model names steer it: a model whose name contains "wrong" writes the wrong test and the wrong fix, so
trajectories spread over `openai/right` and `openai/wrong` disagree and voting has to decide.
"""

from __future__ import annotations

import re

from tests.e2e.toy_repo import RIGHT_FIX, RIGHT_TEST, WRONG_FIX, WRONG_TEST
from tests.fake_model_server import current_stage

RELEVANT = {"calc/stats.py"}


def oracle(messages: list[dict], model: str) -> str:
    stage = current_stage()
    said = "\n".join(str(m.get("content")) for m in messages if m["role"] == "assistant")
    wrong = "wrong" in model
    if stage == "relevance":
        path = re.search(r'<file path="([^"]+)"', _all(messages))
        if path and path.group(1) in RELEVANT:
            return "It defines median.\nRELEVANCE: Relevant\nSUMMARY: defines median(), which the issue says is wrong."
        return "Unrelated.\nRELEVANCE: Not Relevant"
    if stage == "ranking":
        return 'The fix is in stats.\n```json\n["calc/stats.py", "calc/fmt.py"]\n```'
    if stage == "testing":
        if "<test>" not in said:
            return f"Plan: call median on an even list.\n<test>\n{WRONG_TEST if wrong else RIGHT_TEST}</test>"
        return "The script reproduces the issue.\n<done>"
    if stage == "editing":
        if "<edit>" not in said:
            return f"The middle pair must be averaged.\n<edit>\n{WRONG_FIX if wrong else RIGHT_FIX}</edit>"
        return "The test passes on the edited code.\n<done>"
    if stage != "selection":
        raise ValueError(f"the request names no known stage: {stage!r}")
    if "<test>" not in said:
        return f"Run the stricter test on every candidate.\n<test>\n{RIGHT_TEST}</test>"
    candidates = re.findall(r"<candidate_fix candidate_id=(\d+)>(.*?)</candidate_fix>", _all(messages), re.S)
    right = next(cid for cid, diff in candidates if "mid - 1" in diff)
    return (
        f"Candidate {right} averages the two middle values.\n<chosen_candidate_fix_id>{right}</chosen_candidate_fix_id>"
    )


def _all(messages: list[dict]) -> str:
    return "\n".join(str(m.get("content")) for m in messages)
