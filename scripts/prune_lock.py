"""Remove from dvc.lock the entries of stages that dvc.yaml no longer defines.

`dvc repro` rewrites the entry of each stage it runs but never drops one whose stage was
renamed or removed (a matrix value taken out of params.yaml, a stage split in two), so
`dvc status` and `dvc exp show` readers would see stages that do not exist. Stage names come
from DVC's own index of dvc.yaml (matrix and foreach entries expanded); the file is edited as
text, entry by entry, so the rest of it stays byte for byte as DVC wrote it.

    python scripts/prune_lock.py           # prune in place and list what went
    python scripts/prune_lock.py --check   # list stale entries, exit 1 if there are any (tests/test_dvc_lock.py)
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from pathlib import Path

ENTRY = re.compile(r"^  (\S[^:]*):\s*$")  # a stage's key: two spaces in, under `stages:`


def defined_stages(root: Path) -> set[str]:
    """Every stage name dvc.yaml defines, as dvc.lock names them (e.g. `train@light_to_dark-psoriasis-seed`)."""
    from dvc.repo import Repo

    # DVC resolves dvc.yaml against the working directory as well as root_dir: run from the root
    with contextlib.chdir(root), Repo(str(root), uninitialized=True) as repo:
        return {stage.addressing for stage in repo.index.stages if stage.addressing.split(":")[-1] != "data.dvc"}


def entries(text: str) -> list[tuple[str, int, int]]:
    """(stage, first line, end line) of each entry under `stages:` in dvc.lock's text."""
    lines = text.splitlines(keepends=True)
    starts = [(m.group(1), i) for i, line in enumerate(lines) if (m := ENTRY.match(line))]
    ends = [i for _, i in starts[1:]] + [len(lines)]
    return [(name, start, end) for (name, start), end in zip(starts, ends, strict=True)]


def stale(text: str, defined: set[str]) -> list[str]:
    return [name for name, _, _ in entries(text) if name not in defined]


def prune(text: str, defined: set[str]) -> str:
    lines = text.splitlines(keepends=True)
    drop = {i for name, start, end in entries(text) if name not in defined for i in range(start, end)}
    return "".join(line for i, line in enumerate(lines) if i not in drop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1], help="the repository")
    parser.add_argument("--check", action="store_true", help="only list stale entries; exit 1 if there are any")
    args = parser.parse_args(argv)
    lock = args.root / "dvc.lock"
    text = lock.read_text()
    defined = defined_stages(args.root)
    gone = stale(text, defined)
    for name in gone:
        print(f"dvc.lock: {name}: no such stage in dvc.yaml" + ("" if args.check else " (removed)"))
    if args.check:
        return 1 if gone else 0
    if gone:
        lock.write_text(prune(text, defined))
        print(f"dvc.lock: {len(gone)} stale entries removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
