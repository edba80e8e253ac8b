"""`dermsynth predict`, `dermsynth promote` and `dermsynth score-external`: the registered models at work.

All three load a model through MLflow (NAME@ALIAS, NAME/VERSION, a models:/ or runs:/ URI, or
a packaged folder) from the project's store, so what they score is exactly what
`mlflow models serve` would serve.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from dermsynth.core import files
from dermsynth.core.config import Params
from dermsynth.serving.scoring import expand, load_model, scored


def default_model(params: Params) -> str:
    return f"{params.register.prefix}-{params.train.directions[0]}@champion"


def predict(params: Params, images: list[str], model_spec: str | None, out: str | None) -> int:
    """Label and probabilities per image, as CSV on stdout or in ``out``; 1 when any image could not be read."""
    model = load_model(model_spec or default_model(params))
    files_in, folders = expand(images)
    rows, failed = [], 0
    for path, row in scored(model, files_in, "predict", bar=folders):
        if row["error"]:
            failed += 1
            print(f"dermsynth predict: error: {row['error']}", file=sys.stderr)
        rows.append({"image": str(path), **row.to_dict()})
    table = pd.DataFrame(rows)
    if out:
        files.write_csv(Path(out), table)
        print(f"predict: {len(table) - failed} images scored, {failed} unreadable; wrote {out}", file=sys.stderr)
    else:
        table.to_csv(sys.stdout, index=False, float_format="%.5f")
    return 1 if failed else 0


def main(params: Params, args: argparse.Namespace) -> int:
    if args.command == "predict":
        return predict(params, args.images, args.model, args.out)
    if args.command == "promote":
        from dermsynth.serving.promote import promote

        return promote(params, args.name, args.dry_run)
    from dermsynth.serving.external_eval import score_external

    return score_external(params, args.dataset, args.folder, args.model or default_model(params))
