"""`codemonkeys swebench eval --env local` on real upstream code, without GitHub: sympy 1.12 from its source
distribution on the package index, a bug in `sympy.utilities.misc`, and the OFFICIAL sympy 1.12 spec of
swebench 4.1.0 (no spec file): a virtualenv with Python 3.9 (or the nearest here) and mpmath==1.3.0, sympy's
own `bin/test -C --verbose` as the test command and the official sympy log parser (see sdist_instance.py).

The sdist and the environment are kept in a cache directory: pytest's cache (`.pytest_cache/d/`, so a later
session finds them warm; `--cache-clear` makes it cold), or this session's temporary directory when the cache
provider is off (`-p no:cacheprovider`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codemonkeys.swebench import python_versions
from codemonkeys.swebench.models import EnvManifest
from tests.swebench.sdist_instance import FAIL_TO_PASS, PASS_TO_PASS, TEST_FILE, make_sympy_benchmark
from tests.swebench.shaped import write_predictions

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "codemonkeys", "swebench"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the downloaded sdist and the built environment are kept."""
    if hasattr(request.config, "cache"):
        return request.config.cache.mkdir("codemonkeys-swebench-sdist")
    path = tmp_path_factory.getbasetemp() / "sdist-cache"
    path.mkdir(exist_ok=True)
    return path


def cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEMONKEYS_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_eval_of_a_real_sympy_bug_with_the_official_spec(tmp_path: Path, cache: Path) -> None:
    gold_id, empty_id, wrong_id = "sympy__sympy-900001", "sympy__sympy-900002", "sympy__sympy-900003"
    bench = make_sympy_benchmark(tmp_path, cache, [gold_id, empty_id, wrong_id])
    predictions = write_predictions(
        tmp_path / "preds.jsonl",
        {gold_id: bench.patches["gold"], empty_id: "", wrong_id: bench.patches["wrong"]},
    )
    env_cache = cache / "envs"
    run_dir = tmp_path / "eval"
    start = time.monotonic()
    proc = cli(
        "eval",
        "--dataset",
        str(bench.dataset),
        "--predictions",
        str(predictions),
        "--env",
        "local",
        "--repos",
        str(bench.repos),
        "--set",
        f"swebench.env_cache={env_cache}",
        "--run-dir",
        str(run_dir),
    )
    seconds = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    assert "resolved 1/3" in proc.stdout, proc.stdout
    report = json.loads((run_dir / f"codemonkeys.{run_dir.name}.json").read_text())
    assert report["resolved_ids"] == [gold_id], proc.stderr
    assert report["empty_patch_ids"] == [empty_id]
    assert report["unresolved_ids"] == [wrong_id]
    assert report["error_ids"] == []

    # Graded by the official sympy parser on sympy's own runner's output, with the instance's test file only.
    gold_log = (run_dir / "logs" / gold_id / "prediction.log").read_text()
    assert f"{TEST_FILE}[10]" in gold_log, gold_log[-3000:]
    assert "test_replace_keys_are_not_patterns ok" in gold_log
    assert "cache:              no" in gold_log, "bin/test -C ran"
    wrong = json.loads((run_dir / "logs" / wrong_id / "report.json").read_text())[wrong_id]
    assert wrong["patch_successfully_applied"] and not wrong["resolved"]
    assert wrong["tests_status"]["FAIL_TO_PASS"] == {"success": [], "failure": FAIL_TO_PASS}
    assert wrong["tests_status"]["PASS_TO_PASS"] == {"success": PASS_TO_PASS, "failure": []}
    wrong_log = (run_dir / "logs" / wrong_id / "prediction.log").read_text()
    assert "test_replace_keys_are_not_patterns E" in wrong_log
    assert "nothing to repeat" in wrong_log  # the `+` key is still a pattern
    gold = json.loads((run_dir / "logs" / gold_id / "report.json").read_text())[gold_id]
    assert gold["tests_status"]["FAIL_TO_PASS"] == {"success": FAIL_TO_PASS, "failure": []}
    assert gold["tests_status"]["PASS_TO_PASS"] == {"success": PASS_TO_PASS, "failure": []}

    # The environment the tests ran in (sympy's runner names its interpreter): the official recipe, the Python
    # it wanted and the one it got, the mpmath pin.
    executable = re.search(r"^executable: +(\S+) +\((\d+\.\d+\.\d+)-final-0\) \[CPython\]$", gold_log, re.M)
    assert executable, gold_log[:2000]
    venv = Path(executable[1]).parent.parent
    assert venv.parent.parent == env_cache / "local" and venv.parent.name.startswith("sympy__sympy-1.12-")
    manifest = EnvManifest.model_validate_json((venv.parent / "manifest.json").read_text())
    assert manifest.location == str(venv)
    assert manifest.spec.source == "official"
    assert manifest.spec.log_parser == "parse_log_sympy"
    assert manifest.spec.test_cmd.endswith("bin/test -C --verbose")
    assert manifest.python_wanted == "3.9"
    nearest = python_versions.nearest("3.9")[0].version
    assert manifest.python_used == nearest
    if python_versions.version_tuple(nearest) != (3, 9):
        assert any(d.startswith(f"Python {nearest} instead of 3.9") for d in manifest.deviations)
    assert executable[2] == manifest.python_used
    assert "mpmath==1.3.0" in manifest.spec.pip_packages
    assert any(c.requested == "mpmath==1.3.0" and c.installed == "mpmath==1.3.0" for c in manifest.packages)
    assert {c.installed for c in manifest.packages if c.installed.startswith("mpmath==")} == {"mpmath==1.3.0"}
    assert manifest.smoke is not None and manifest.smoke.ok, manifest.smoke
    print(f"eval of 3 sympy predictions: {seconds:.0f}s (environment build {manifest.seconds:.0f}s)")
