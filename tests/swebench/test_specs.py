"""Environment recipes: the official spec of each of the 12 real Verified records, requirement files read from
a local clone at the right commit, and the user's spec files (JSON and TOML)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from codemonkeys.swebench import specs
from codemonkeys.swebench.dataset import load_instances
from codemonkeys.swebench.models import SWEInstance
from codemonkeys.swebench.specs import SpecError, get_spec, load_spec_file

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "swebench_verified_sample.jsonl"
SYMPY_CMD = "PYTHONWARNINGS='ignore::UserWarning,ignore::SyntaxWarning' bin/test -C --verbose"
DJANGO_CMD = "./tests/runtests.py --verbosity 2 --settings=test_sqlite --parallel 1"

# instance → (python, test_cmd, log parser, packages), as the official swebench 4.1.0 specs give them.
OFFICIAL = {
    "astropy__astropy-14369": ("3.9", "pytest -rA", "parse_log_pytest_v2", ""),
    "django__django-14007": ("3.8", DJANGO_CMD, "parse_log_django", "requirements.txt"),
    "matplotlib__matplotlib-24570": ("3.11", "pytest -rA", "parse_log_matplotlib", "environment.yml"),
    "mwaskom__seaborn-3187": ("3.9", "pytest --no-header -rA", "parse_log_seaborn", ""),
    "pallets__flask-5014": ("3.11", "pytest -rA", "parse_log_pytest", "requirements.txt"),
    "psf__requests-2317": ("3.9", "pytest -rA", "parse_log_pytest_options", "pytest"),
    "pydata__xarray-4695": ("3.10", "pytest -rA", "parse_log_pytest", "environment.yml"),
    "pylint-dev__pylint-6528": ("3.9", "pytest -rA", "parse_log_pytest_options", "requirements.txt"),
    "pytest-dev__pytest-6202": ("3.9", "pytest -rA", "parse_log_pytest", ""),
    "scikit-learn__scikit-learn-14087": (
        "3.6",
        "pytest -rA",
        "parse_log_pytest_v2",
        "numpy scipy cython pytest pandas matplotlib",
    ),
    "sphinx-doc__sphinx-8459": ("3.9", "tox --current-env -epy39 -v --", "parse_log_pytest_v2", ""),
    "sympy__sympy-17655": ("3.9", SYMPY_CMD, "parse_log_sympy", "mpmath flake8"),
}


@pytest.fixture(scope="module")
def instances() -> dict[str, SWEInstance]:
    return {i.instance_id: i for i in load_instances(str(SAMPLE))}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def commit_files(repo: Path, files: dict[str, str], message: str = "files") -> str:
    """Writes `files` into `repo` (a fresh git repository when needed), commits, returns the commit id."""
    if not (repo / ".git").exists():
        repo.mkdir(parents=True, exist_ok=True)
        git(repo, "init", "-q")
        git(repo, "config", "user.email", "t@example.com")
        git(repo, "config", "user.name", "t")
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.mark.parametrize("iid", sorted(OFFICIAL))
def test_each_record_gets_its_official_spec(instances: dict[str, SWEInstance], iid: str) -> None:
    python, test_cmd, parser, packages = OFFICIAL[iid]
    spec = get_spec(instances[iid])
    assert (spec.python, spec.test_cmd, spec.log_parser, spec.packages) == (python, test_cmd, parser, packages)
    assert spec.source == "official"
    assert spec.install.startswith("python -m pip install")
    assert spec.repo == instances[iid].repo and spec.version == instances[iid].version


def test_official_lists_and_package_names_are_carried_over(instances: dict[str, SWEInstance]) -> None:
    sklearn = get_spec(instances["scikit-learn__scikit-learn-14087"])
    assert sklearn.requirements == ["numpy", "scipy", "cython", "pytest", "pandas", "matplotlib"]
    assert sklearn.pip_packages == ["cython", "numpy==1.19.2", "setuptools", "scipy==1.5.2"]
    assert get_spec(instances["sympy__sympy-17655"]).requirements == ["mpmath", "flake8"]
    astropy = get_spec(instances["astropy__astropy-14369"])
    assert len(astropy.pre_install) == 1 and astropy.pre_install[0].startswith("sed -i")
    assert "pytest==7.4.0" in astropy.pip_packages
    sphinx = get_spec(instances["sphinx-doc__sphinx-8459"])
    assert "tox==4.16.0" in sphinx.pip_packages and len(sphinx.pre_install) == 9
    assert get_spec(instances["django__django-14007"]).requirements == []  # no clone given: nothing read


def test_test_directives_are_the_official_ones(instances: dict[str, SWEInstance]) -> None:
    assert specs.test_directives(instances["django__django-14007"]) == [
        "custom_pk.fields",
        "custom_pk.models",
        "custom_pk.tests",
    ]
    assert specs.test_directives(instances["astropy__astropy-14369"]) == ["astropy/units/tests/test_format.py"]
    assert specs.test_directives(instances["mwaskom__seaborn-3187"]) == [
        "tests/_core/test_plot.py",
        "tests/test_relational.py",
    ]


def test_unknown_repo_version_or_recipe_is_a_named_error(instances: dict[str, SWEInstance]) -> None:
    django = instances["django__django-14007"]
    with pytest.raises(SpecError) as caught:
        get_spec(django.model_copy(update={"version": "0.0"}))
    message = str(caught.value)
    assert "instance django__django-14007: repo django/django, version 0.0" in message
    assert "known: " in message and "4.0" in message and "3.2" in message
    with pytest.raises(SpecError, match=r"instance toy-1: repo me/toy, version 1\.0: no official spec"):
        get_spec(django.model_copy(update={"instance_id": "toy-1", "repo": "me/toy", "version": "1.0"}))
    with pytest.raises(SpecError, match="not a Python repository"):
        get_spec(django.model_copy(update={"repo": "chartjs/Chart.js", "version": "4.0"}))
    with pytest.raises(SpecError, match="no test command or log parser"):
        get_spec(django.model_copy(update={"repo": "dbt-labs/dbt-core", "version": "1.7"}))


DJANGO_PY3 = "-r base.txt\n# the test suite\n-e .\nasgiref >= 3.3.2\n-r absent.txt\ntypes-pkg_resources==0.1\n"
DJANGO_BASE = "pytz\n.[test]\nsqlparse>=0.2.2\n-r nested.txt\n"


def test_requirements_are_read_at_the_environment_setup_commit_with_includes(
    instances: dict[str, SWEInstance], tmp_path: Path
) -> None:
    repo = tmp_path / "django"
    setup = commit_files(
        repo,
        {
            "tests/requirements/py3.txt": DJANGO_PY3,
            "tests/requirements/base.txt": DJANGO_BASE,
            "tests/requirements/nested.txt": "Pillow>=6.2.0  # images\n",
        },
    )
    base = commit_files(repo, {"tests/requirements/py3.txt": "later-only\n"})
    instance = instances["django__django-14007"].model_copy(
        update={"base_commit": base, "environment_setup_commit": setup}
    )
    spec = get_spec(instance, repo_path=repo)
    # Includes first (nested ones followed, a missing one skipped as the official code does), then the file's own
    # lines without comments or the editable repo, types-pkg_resources replaced as the official code does.
    assert spec.requirements == [
        "pytz",
        "sqlparse>=0.2.2",
        "Pillow>=6.2.0  # images",
        "asgiref >= 3.3.2",
        "types-setuptools",
    ]
    at_base = get_spec(instance.model_copy(update={"environment_setup_commit": ""}), repo_path=repo)
    assert at_base.requirements == ["later-only"]


def test_flask_includes_resolve_relative_to_the_requirements_directory(
    instances: dict[str, SWEInstance], tmp_path: Path
) -> None:
    repo = tmp_path / "flask"
    commit = commit_files(
        repo,
        {
            "requirements/dev.txt": "-r tests.txt\n-r typing.txt\npre-commit==3.2.2\n",
            "requirements/tests.txt": "#\n# pip-compile\n#\npytest==7.3.1\n",
            "requirements/typing.txt": "mypy==1.2.0\n",
            "tests.txt": "wrong-directory\n",
        },
    )
    instance = instances["pallets__flask-5014"].model_copy(update={"environment_setup_commit": commit})
    assert get_spec(instance, repo_path=repo).requirements == ["pytest==7.3.1", "mypy==1.2.0", "pre-commit==3.2.2"]


def test_missing_requirement_files_or_commits_are_named(instances: dict[str, SWEInstance], tmp_path: Path) -> None:
    repo = tmp_path / "pylint"
    commit = commit_files(repo, {"requirements.txt": "astroid\n"})
    pylint = instances["pylint-dev__pylint-6528"].model_copy(update={"environment_setup_commit": commit})
    with pytest.raises(SpecError, match=r"no requirements file at requirements_test\.txt in commit " + commit):
        get_spec(pylint, repo_path=repo)
    xarray = instances["pydata__xarray-4695"].model_copy(update={"environment_setup_commit": commit})
    with pytest.raises(SpecError, match=r"no environment\.yml at ci/requirements/environment\.yml, environment\.yml"):
        get_spec(xarray, repo_path=repo)
    absent = instances["pylint-dev__pylint-6528"]
    with pytest.raises(SpecError, match=f"commit {absent.environment_setup_commit} .* is not in the repository"):
        get_spec(absent, repo_path=repo)


ENV_YML = """\
name: testbed
channels:
  - conda-forge
dependencies:
  - python>=3.8
  - numpy>=1.19
  - matplotlib-base
  - dask-core=2022.8
  - six=1.16.0=pyh6c4a22f_0
  - conda-forge::pandas 1.5.*
  - c-compiler
  - pip
  - pip:
      - types-pkg_resources
      - sphinx-gallery>=0.10
  - pytest
"""


def test_environment_yml_becomes_pip_requirements(instances: dict[str, SWEInstance], tmp_path: Path) -> None:
    repo = tmp_path / "xarray"
    commit = commit_files(repo, {"environment.yml": ENV_YML})  # the second of the official paths
    xarray = instances["pydata__xarray-4695"].model_copy(update={"environment_setup_commit": commit})
    expected = [
        "numpy>=1.19",
        "matplotlib",
        "dask==2022.8.*",
        "six==1.16.0",
        "pandas==1.5.*",
        "types-setuptools",
        "sphinx-gallery>=0.10",
        "pytest",
    ]
    assert get_spec(xarray, repo_path=repo).requirements == expected
    matplotlib = instances["matplotlib__matplotlib-24570"].model_copy(update={"environment_setup_commit": commit})
    assert get_spec(matplotlib, repo_path=repo).requirements == expected


def test_conda_names_of_other_pypi_projects_are_mapped(instances: dict[str, SWEInstance], tmp_path: Path) -> None:
    """xarray's ci/requirements/environment.yml asks conda-forge for `iris` (SciTools Iris): PyPI's `iris` is an
    unrelated project, which imported but made xarray's iris tests fail."""
    repo = tmp_path / "xarray"
    commit = commit_files(repo, {"ci/requirements/environment.yml": "dependencies:\n  - iris\n  - iris>=3.1\n"})
    xarray = instances["pydata__xarray-4695"].model_copy(update={"environment_setup_commit": commit})
    assert get_spec(xarray, repo_path=repo).requirements == ["scitools-iris", "scitools-iris>=3.1"]


def test_a_broken_environment_yml_is_named(instances: dict[str, SWEInstance], tmp_path: Path) -> None:
    repo = tmp_path / "mpl"
    matplotlib = instances["matplotlib__matplotlib-24570"]
    broken = commit_files(repo, {"environment.yml": "dependencies: [unclosed\n"})
    with pytest.raises(SpecError, match=f"environment.yml at {broken}: not valid YAML"):
        get_spec(matplotlib.model_copy(update={"environment_setup_commit": broken}), repo_path=repo)
    empty = commit_files(repo, {"environment.yml": "name: x\n"})
    with pytest.raises(SpecError, match="no 'dependencies' list"):
        get_spec(matplotlib.model_copy(update={"environment_setup_commit": empty}), repo_path=repo)


SPEC_JSON = {
    "me/toy": {
        "1.0": {
            "python": "3.11",
            "packages": "pytest 'attrs>=23'",
            "pip_packages": ["hypothesis"],
            "install": "python -m pip install -e .",
            "test_cmd": "pytest -rA",
            "eval_commands": ["export TOY=1"],
        }
    },
    "django/django": {"4.0": {"python": "3.11", "test_cmd": DJANGO_CMD, "log_parser": "parse_log_django"}},
}
SPEC_TOML = """\
["me/toy"."1.0"]
python = "3.11"
packages = "pytest 'attrs>=23'"
pip_packages = ["hypothesis"]
install = "python -m pip install -e ."
test_cmd = "pytest -rA"
eval_commands = ["export TOY=1"]

["django/django"."4.0"]
python = "3.11"
test_cmd = "./tests/runtests.py --verbosity 2 --settings=test_sqlite --parallel 1"
log_parser = "parse_log_django"
"""


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_a_spec_file_extends_and_overrides_the_official_specs(
    instances: dict[str, SWEInstance], tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"specs{suffix}"
    path.write_text(json.dumps(SPEC_JSON) if suffix == ".json" else SPEC_TOML)
    extra = load_spec_file(path)
    assert set(extra) == {("me/toy", "1.0"), ("django/django", "4.0")}
    django = instances["django__django-14007"]
    overridden = get_spec(django, extra)
    assert (overridden.python, overridden.source, overridden.log_parser) == ("3.11", "file", "parse_log_django")
    assert get_spec(django).python == "3.8"
    toy_instance = django.model_copy(update={"instance_id": "me__toy-1", "repo": "me/toy", "version": "1.0"})
    toy = get_spec(toy_instance, extra)
    assert toy.log_parser == "parse_log_pytest"
    assert toy.requirements == ["pytest", "attrs>=23"]
    assert (toy.pip_packages, toy.eval_commands, toy.test_cmd) == (["hypothesis"], ["export TOY=1"], "pytest -rA")
    assert get_spec(instances["sympy__sympy-17655"], extra).source == "official"


def test_a_spec_file_naming_requirements_txt_reads_it_from_the_clone_and_joins_a_command_list(
    instances: dict[str, SWEInstance], tmp_path: Path
) -> None:
    repo = tmp_path / "toy"
    commit = commit_files(repo, {"requirements.txt": "-r dev.txt\nattrs\n", "dev.txt": "pytest>=7\n"})
    path = tmp_path / "specs.json"
    path.write_text(
        json.dumps(
            {"me/toy": {"1.0": {"python": "3.11", "packages": "requirements.txt", "test_cmd": ["cd src", "pytest"]}}}
        )
    )
    extra = load_spec_file(path)
    toy = instances["psf__requests-2317"].model_copy(
        update={"repo": "me/toy", "version": "1.0", "base_commit": commit, "environment_setup_commit": ""}
    )
    spec = get_spec(toy, extra, repo_path=repo)
    assert spec.requirements == ["pytest>=7", "attrs"]
    assert spec.test_cmd == "cd src && pytest"
    assert get_spec(toy, extra).requirements == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"me/toy": {"1.0": {"python": "3.11"}}}', r"repo me/toy, version 1\.0: key 'test_cmd' is missing"),
        ('{"me/toy": {"1.0": {"test_cmd": "pytest"}}}', r"repo me/toy, version 1\.0: key 'python' is missing"),
        (
            '{"me/toy": {"2.0": {"python": "3.11", "test_cmd": "pytest", "tset_cmd": "x"}}}',
            r"repo me/toy, version 2\.0: unknown key\(s\) tset_cmd",
        ),
        (
            '{"me/toy": {"1.0": {"python": "3.11", "test_cmd": "pytest", "log_parser": "parse_log_nose"}}}',
            r"repo me/toy, version 1\.0: key 'log_parser': 'parse_log_nose' is not an official parser",
        ),
        (
            '{"me/toy": {"1.0": {"python": "3.11", "test_cmd": "pytest", "pre_install": "apt-get x"}}}',
            r"repo me/toy, version 1\.0: key 'pre_install'",
        ),
        (
            '{"me/toy": {"1.0": {"python": "3.11", "test_cmd": "pytest", "packages": ["a"]}}}',
            r"repo me/toy, version 1\.0: key 'packages'",
        ),
        ('{"me/toy": {"1.0": "pytest"}}', r"repo me/toy, version 1\.0: expected a table of keys"),
        ('{"me/toy": []}', r"repo me/toy: expected a table of versions"),
        ("[]", "expected a table of repositories"),
        ("{broken", "not valid JSON"),
    ],
)
def test_bad_spec_files_name_repo_version_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "specs.json"
    path.write_text(text)
    with pytest.raises(SpecError, match=message):
        load_spec_file(path)


def test_bad_toml_and_absent_spec_files(tmp_path: Path) -> None:
    path = tmp_path / "specs.toml"
    path.write_text('["me/toy"."1.0"\npython = 3\n')
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec_file(path)
    with pytest.raises(SpecError, match="cannot read the spec file"):
        load_spec_file(tmp_path / "absent.toml")
