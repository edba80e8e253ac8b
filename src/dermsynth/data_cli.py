"""`dermsynth data ...`: get the real Fitzpatrick 17k into data/ (the folder data.dvc tracks).

Thin glue between the command line and metadata.install_metadata / acquire.download /
acquire.import_images; each verb ends by saying how to version the result.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dermsynth import metadata
from dermsynth.acquisition import acquire
from dermsynth.cohort import selection
from dermsynth.core import paths
from dermsynth.core.config import Params

DATA = Path("data")


def rows_to_fetch(params: Params, all_labels: bool, limit: int | None):
    raw = selection.read_metadata(paths.dataset_metadata(str(DATA)))
    explicit = params.prepare.selection == "explicit"
    rows = raw[raw["label"].isin(params.prepare.conditions)] if explicit and not all_labels else raw
    return rows.head(limit) if limit else rows


def external_table(dataset: str, folder: Path) -> int:
    """`dermsynth data external`: the harmonised table and what it holds per study condition and FST group."""
    from dermsynth.acquisition import external
    from dermsynth.core import files

    table = external.IMPORTERS[dataset](folder)
    out = paths.EXTERNAL / f"{dataset}.csv"
    files.write_csv(out, table)
    files.write_json(out.with_suffix(".json"), {"dataset": dataset, "folder": str(folder.resolve())})
    scored = table["label"] != ""
    print(f"data: external {dataset}: {len(table)} images, {int(scored.sum())} of a study condition; wrote {out}")
    print(external.summary(table).to_string())
    return 0


def main(params: Params, args: argparse.Namespace) -> int:
    if args.verb == "external":
        return external_table(args.dataset, Path(args.folder))
    images, reports = paths.dataset_images(str(DATA)), paths.DATA_REPORTS
    if args.verb == "metadata":
        dest = metadata.install_metadata(paths.dataset_metadata(str(DATA)))
        print(f"data: wrote {dest} (sha256 {metadata.SHIPPED_SHA256[:12]}..., CC BY-NC-SA 3.0)")
        return 0
    if args.verb == "download":
        result = acquire.download(
            rows_to_fetch(params, args.all_labels, args.limit),
            images,
            reports,
            workers=args.workers,
            timeout=args.timeout,
            retries=args.retries,
            verify_md5=args.verify_md5,
        )
    else:
        raw = selection.read_metadata(paths.dataset_metadata(str(DATA)))
        result = acquire.import_images(Path(args.source), raw, images, reports, verify_md5=args.verify_md5)
    print(
        f"data: {args.verb}: "
        + ", ".join(f"{k}={v}" for k, v in result["status"].value_counts().items())
        + f"; report in {reports}/"
    )
    if args.dvc_add:
        acquire.dvc_add(paths.root())
    else:
        print(acquire.versioning_hint(DATA))
    return 0
