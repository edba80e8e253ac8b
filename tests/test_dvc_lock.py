"""dvc.lock names only the stages dvc.yaml defines (scripts/prune_lock.py removes the others)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_pruner():
    """scripts/ is not a package: import scripts/prune_lock.py by path, as `make repro` runs it."""
    spec = importlib.util.spec_from_file_location("prune_lock", REPO / "scripts" / "prune_lock.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


prune_lock = load_pruner()

LOCK = """schema: '2.0'
stages:
  embedded:
    cmd: dermsynth embedded
    outs:
    - path: build/embedded
      hash: md5
      md5: 0123456789abcdef0123456789abcdef.dir
  train@a-b-fitz_only:
    cmd: dermsynth train a b fitz_only
  fitz_only@a:
    cmd: dermsynth train a - fitz_only
"""


def test_the_committed_lock_names_only_defined_stages():
    defined = prune_lock.defined_stages(REPO)
    assert {"embedded", "features", "fitz_only@light_to_dark", "track"} <= defined  # matrix stages expanded
    assert prune_lock.stale((REPO / "dvc.lock").read_text(), defined) == []


def test_prune_drops_stale_entries_and_keeps_the_rest_byte_for_byte():
    defined = {"embedded", "fitz_only@a"}
    assert prune_lock.stale(LOCK, defined) == ["train@a-b-fitz_only"]
    pruned = prune_lock.prune(LOCK, defined)
    assert "train@a-b-fitz_only" not in pruned
    assert pruned == LOCK.replace("  train@a-b-fitz_only:\n    cmd: dermsynth train a b fitz_only\n", "")
    assert prune_lock.prune(pruned, defined) == pruned


def test_check_mode_exits_1_and_names_each_stale_stage(tmp_path: Path, capsys):
    (tmp_path / "dvc.yaml").write_text("stages:\n  embedded:\n    cmd: echo\n  fitz_only:\n    matrix:\n"
                                       "      direction: [a]\n    cmd: echo ${item.direction}\n")  # fmt: skip
    (tmp_path / "dvc.lock").write_text(LOCK)
    assert prune_lock.main(["--root", str(tmp_path), "--check"]) == 1
    assert "dvc.lock: train@a-b-fitz_only: no such stage in dvc.yaml" in capsys.readouterr().out
    assert prune_lock.main(["--root", str(tmp_path)]) == 0
    assert prune_lock.main(["--root", str(tmp_path), "--check"]) == 0
