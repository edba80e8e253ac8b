"""dvc.yaml's code deps cover every stage's import closure, and imports run one way (tests/depgraph.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from dermsynth.cli import MODULES
from tests import depgraph

ROOT = Path(__file__).resolve().parents[1]


def stage_modules(root: Path) -> set[str]:
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    return {depgraph.stage_module(spec["cmd"], MODULES) for spec in stages.values()}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the package source and dvc.yaml that a test may edit."""
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "src" / "dermsynth", tmp_path / "src" / "dermsynth", ignore=ignore)
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    return tmp_path


def add_import(module: Path, line: str) -> None:
    """Add an import at the end of the module (at top level, where the graph reads it like any other)."""
    module.write_text(module.read_text() + f"\n{line}\n")


def test_every_stage_closure_is_covered_by_its_deps():
    assert depgraph.uncovered(ROOT, MODULES) == {}


def test_imports_run_one_way():
    assert depgraph.layering_violations(ROOT, stage_modules(ROOT)) == []


def test_the_closure_follows_imports_inside_functions_and_dynamic_imports():
    modules = depgraph.load_modules(ROOT / "src")
    generate = depgraph.closure("dermsynth.generate", modules)
    # generate loads its backend with importlib.import_module(f"dermsynth.generators.generate_{...}")
    assert {"dermsynth.generators.generate_openai", "dermsynth.generators.generate_diffusers"} <= generate
    assert "dermsynth.generators.openai_call" in generate  # imported by the OpenAI backend, two hops away
    assert "dermsynth.views.tracking" not in generate


def test_a_new_import_without_a_dep_fails(tree: Path):
    assert depgraph.uncovered(tree, MODULES) == {}
    add_import(tree / "src/dermsynth/embedded.py", "from dermsynth.views import figures  # noqa: F401")
    assert depgraph.uncovered(tree, MODULES) == {"embedded": ["src/dermsynth/views/figures.py"]}


def test_an_import_inside_a_helper_reaches_every_stage_that_uses_it(tree: Path):
    # stats.py is in the closure of evaluate, register, track and report (the reader study's intervals)
    add_import(tree / "src/dermsynth/analysis/stats.py", "from dermsynth.imaging import skin  # noqa: F401")
    gaps = depgraph.uncovered(tree, MODULES)
    assert set(gaps) == {"evaluate", "groh", "register", "report", "track"}
    assert all(paths == ["src/dermsynth/imaging/skin.py"] for paths in gaps.values())


def test_a_dep_folder_covers_new_modules_in_it(tree: Path):
    (tree / "src/dermsynth/analysis/extra.py").write_text('"""New helper."""\n')
    add_import(tree / "src/dermsynth/evaluate.py", "from dermsynth.analysis import extra  # noqa: F401")
    assert depgraph.uncovered(tree, MODULES) == {}


def test_a_package_init_with_code_is_not_inert(tree: Path):
    (tree / "src/dermsynth/imaging/__init__.py").write_text('"""Imaging."""\n\nGAMMA = 2.2\n')
    gaps = depgraph.uncovered(tree, MODULES)
    assert gaps["embedded"] == ["src/dermsynth/imaging/__init__.py"]


def test_sideways_and_upward_imports_are_reported(tree: Path):
    add_import(tree / "src/dermsynth/curate.py", "from dermsynth import validate  # noqa: F401")
    add_import(tree / "src/dermsynth/analysis/grid.py", "from dermsynth import train  # noqa: F401")
    assert depgraph.layering_violations(tree, stage_modules(tree)) == [
        "helper dermsynth.analysis.grid imports top-level module dermsynth.train",
        "stage dermsynth.curate imports stage dermsynth.validate",
    ]
