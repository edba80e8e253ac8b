"""`dermsynth promote NAME`: move a registered model's `champion` alias to its `challenger`, per skin type checked.

The rule picks challengers on validation data (serving/selection.py). Promotion is the release
check after it, the same kind of check as the CI gate: both versions score the direction's
test images through their full chain, and a challenger whose accuracy on any FST group falls
more than `gate.tolerance` below the champion's is refused. `--dry-run` prints the comparison
and changes nothing. The previous champion keeps the `previous_champion` alias, for a rollback.
"""

from __future__ import annotations

import sys

import pandas as pd

from dermsynth.analysis.metrics import cell
from dermsynth.core import paths
from dermsynth.core.config import Params
from dermsynth.core.errors import DermsynthError
from dermsynth.core.study import DIRECTIONS
from dermsynth.serving.registry import CHALLENGER, CHAMPION, alias_version
from dermsynth.serving.scoring import load_model, scored

PREVIOUS = "previous_champion"


def direction_of(client: object, name: str, version: str) -> str:
    """The version's `direction` tag, else the direction its registered name ends with."""
    tags = client.get_model_version(name, version).tags  # type: ignore[attr-defined]
    direction = tags.get("direction") or next((d for d in DIRECTIONS if name.endswith(f"-{d}")), "")
    if direction not in DIRECTIONS:
        raise DermsynthError(f"{name} v{version}: no direction tag and the name ends with none of {list(DIRECTIONS)}")
    return direction


def test_rows(params: Params, direction: str) -> pd.DataFrame:
    splits = pd.read_csv(paths.SPLITS_TABLE, dtype=str, keep_default_na=False)
    rows = splits[(splits["direction"] == direction) & (splits["role"] == "test")].reset_index(drop=True)
    images = paths.dataset_images(params.dataset.root)
    return rows.assign(path=[paths.image_file(images, h) for h in rows["md5hash"]])


def per_group(spec: str, rows: pd.DataFrame, z: float) -> dict[str, dict[str, float]]:
    """Accuracy with its Wilson interval (analysis.metrics.cell) per FST group of one model version on ``rows``."""
    model = load_model(spec)
    labels = [row["label"] for _, row in scored(model, list(rows["path"]), f"score {spec}")]
    correct = pd.Series([p == t for p, t in zip(labels, rows["label"], strict=True)], index=rows.index)
    return {str(group): cell(correct[part.index], z) for group, part in rows.groupby("group", sort=True)}


def compare(champion: dict, challenger: dict, tolerance: float) -> pd.DataFrame:
    """One row per FST group: both accuracies, the change, and whether it is a regression beyond ``tolerance``."""
    rows = []
    for group in champion:
        a, b = champion[group], challenger[group]
        rows.append(
            {
                "group": group,
                "n": a["n"],
                "champion": f"{a['acc']:.3f} [{a['wilson_low']:.3f}, {a['wilson_high']:.3f}]",
                "challenger": f"{b['acc']:.3f} [{b['wilson_low']:.3f}, {b['wilson_high']:.3f}]",
                "change": round(b["acc"] - a["acc"], 4),
                "regression": b["acc"] < a["acc"] - tolerance,
            }
        )
    return pd.DataFrame(rows)


def promote(params: Params, name: str, dry_run: bool) -> int:
    """0 when the challenger is (or would be, with --dry-run) promoted or already champion; 1 when refused."""
    import mlflow

    client = mlflow.MlflowClient()
    load_model(f"{name}@{CHAMPION}")  # sets the store and fails clearly when the model or alias is missing
    champion, challenger = alias_version(client, name, CHAMPION), alias_version(client, name, CHALLENGER)
    if challenger is None or champion is None:
        raise DermsynthError(f"{name} has no {CHALLENGER if champion else CHAMPION} alias: run `dvc repro` first")
    if champion == challenger:
        print(f"promote: {name}: the challenger v{challenger} is already the champion; nothing to do")
        return 0
    rows = test_rows(params, direction_of(client, name, challenger))
    table = compare(
        per_group(f"{name}/{champion}", rows, params.evaluate.z),
        per_group(f"{name}/{challenger}", rows, params.evaluate.z),
        params.gate.tolerance,
    )
    print(f"promote: {name}: champion v{champion} vs challenger v{challenger}, test accuracy per FST group:")
    print(table.to_string(index=False))
    if table["regression"].any():
        worse = ", ".join(table.loc[table["regression"], "group"])
        print(f"promote: refused: v{challenger} falls more than {params.gate.tolerance} below v{champion} "
              f"on FST {worse}", file=sys.stderr)  # fmt: skip
        return 1
    if dry_run:
        print(f"promote: --dry-run: v{challenger} would become the champion (v{champion} now); nothing changed")
        return 0
    client.set_registered_model_alias(name, PREVIOUS, champion)
    client.set_registered_model_alias(name, CHAMPION, challenger)
    print(f"promote: {name}: champion is now v{challenger} ({PREVIOUS}: v{champion})")
    return 0
