"""What an environment build asks pip for: each requirement once, in the official order."""

from __future__ import annotations

from codemonkeys.swebench.envs_build import install_groups
from codemonkeys.swebench.models import SWEInstance
from codemonkeys.swebench.specs import get_spec


def test_packages_given_as_names_are_installed_once() -> None:
    instance = SWEInstance(
        instance_id="x", repo="sympy/sympy", base_commit="abcd", problem_statement="", version="1.12"
    )
    groups, dropped = install_groups(get_spec(instance))
    lines = [line for group in groups if group["name"] != "pip" for line in group["lines"]]
    assert lines == ["mpmath", "flake8", "mpmath==1.3.0", "flake8-comprehensions"]
    assert [g["name"] for g in groups] == ["pip", "requirements", "pip_packages"]
    assert dropped == []
