"""The import graph of the dermsynth package, and the DVC code deps it implies.

`dvc repro` re-runs a stage only when one of its deps changes, so a module that shapes a
stage's outputs but is missing from its deps leaves stale outputs that dvc.lock calls current.
This reads the package's source (imports anywhere in a module, including inside functions,
and `importlib.import_module(f"dermsynth.prefix...")` calls, which may load any module with
that prefix) and compares each stage's import closure with the deps in dvc.yaml.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import yaml

PACKAGE = "dermsynth"

# Modules in every stage's closure that are not deps, each with its reason. Everything else
# in a closure must be covered by a file or folder dep.
ALLOWED = {
    "dermsynth": "package marker: only __version__, read by nothing in the pipeline",
    "dermsynth.cli": "the `dermsynth` entry point: parses the stage's arguments and calls its module's main",
}


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    imports: frozenset[str]  # modules (or package prefixes ending in ".") this module may load


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def dynamic_prefix(call: ast.Call) -> str | None:
    """`importlib.import_module(f"dermsynth.x.{...}")` -> "dermsynth.x." (any module with that prefix)."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if name != "import_module" or not call.args:
        return None
    arg = call.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return str(arg.values[0].value) + "*"
    return None


def imported_names(tree: ast.AST) -> set[str]:
    """Every dermsynth module a module may load: `import a.b`, `from a import b` (b a module or a name)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Call) and (prefix := dynamic_prefix(node)):
            found.add(prefix)
    return {name for name in found if name == PACKAGE or name.startswith(PACKAGE + ".")}


def load_modules(src: Path) -> dict[str, Module]:
    """Every module of the package under ``src`` (the folder holding the `dermsynth` package)."""
    modules = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        name = module_name(path, src)
        modules[name] = Module(name, path, frozenset(imported_names(ast.parse(path.read_text()))))
    return modules


def resolve(name: str, modules: dict[str, Module]) -> set[str]:
    """The modules an imported name loads: itself and its parent packages (a name in a module: that module)."""
    if name.endswith("*"):
        hits = {m for m in modules if m.startswith(name[:-1])}
        return set().union(*(resolve(m, modules) for m in hits)) if hits else set()
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(modules)


def closure(start: str, modules: dict[str, Module]) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for imported in modules[name].imports:
            todo.extend(resolve(imported, modules) - seen)
    return seen | resolve(start, modules)


def inert(module: Module) -> bool:
    """A package __init__ with nothing but a docstring: importing it cannot change any output."""
    body = ast.parse(module.path.read_text()).body
    return module.path.name == "__init__.py" and all(
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body
    )


def covered(path: Path, deps: list[str], root: Path) -> bool:
    rel = path.relative_to(root).as_posix()
    return any(rel == dep.rstrip("/") or rel.startswith(dep.rstrip("/") + "/") for dep in deps)


def stage_module(cmd: str, dispatch: dict[str, str]) -> str:
    """`dermsynth train --arm x` -> dermsynth.train (the cli's table maps a few commands to other modules)."""
    words = cmd.split()
    if words[0] != PACKAGE:
        raise ValueError(f"stage command does not start with `dermsynth`: {cmd}")
    return f"{PACKAGE}.{dispatch.get(words[1], words[1])}"


def uncovered(root: Path, dispatch: dict[str, str]) -> dict[str, list[str]]:
    """Per dvc.yaml stage: modules of its import closure that no dep covers (relative paths)."""
    modules = load_modules(root / "src")
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    missing = {}
    for stage, spec in stages.items():
        deps = [d for d in spec.get("deps", []) if isinstance(d, str)]
        names = closure(stage_module(spec["cmd"], dispatch), modules) - set(ALLOWED)
        gaps = [
            modules[n].path.relative_to(root).as_posix()
            for n in sorted(names)
            if not inert(modules[n]) and not covered(modules[n].path, deps, root)
        ]
        if gaps:
            missing[stage] = gaps
    return missing


def layering_violations(root: Path, stage_modules: set[str]) -> list[str]:
    """Imports that break the one-way rule: helpers (sub-packages) never import top-level modules,
    and no stage module imports another stage module."""
    modules = load_modules(root / "src")
    top = {m for m, mod in modules.items() if m.count(".") == 1 and mod.path.name != "__init__.py"}
    problems = []
    for name, module in modules.items():
        loaded = set().union(*(resolve(i, modules) for i in module.imports)) if module.imports else set()
        if name.count(".") >= 2 or (module.path.name == "__init__.py" and name != PACKAGE):
            problems += [f"helper {name} imports top-level module {t}" for t in sorted(loaded & top)]
        elif name in stage_modules:
            problems += [f"stage {name} imports stage {t}" for t in sorted(loaded & stage_modules - {name})]
    return problems
