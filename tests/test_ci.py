"""The two CI definitions run the same steps: GitHub's workflow calls .ci/run, which lints and re-tests."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_the_github_workflow_runs_ci_run_and_nothing_else_of_its_own():
    workflow = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text())
    (job,) = workflow["jobs"].values()
    commands = [step["run"] for step in job["steps"] if "run" in step]
    assert commands[-1] == "bash .ci/run"
    assert not any("make " in c for c in commands)  # every make target lives in .ci/run, not here too


def test_ci_run_lints_tests_gates_and_checks_the_tree():
    script = (REPO / ".ci/run").read_text()
    steps = re.findall(r"^(?:step|logged) ([a-z-]+)", script, flags=re.M)
    assert steps[:3] == ["install", "lint", "test"]
    assert {"test-slow", "ci-study"} <= set(steps)
    assert script.index("logged ci-study") < script.rindex("step test")  # the fast suite again, after the study
    assert "git status --porcelain" in script[script.rindex("step test") :]
    assert script.rstrip().endswith('exit "$failed"')
