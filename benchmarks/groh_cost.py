"""Step one's cost at real scale, projected from rates measured in this run: reports/benchmarks.json `groh`.

The `groh` stage on the real Fitzpatrick 17k (configs/real-data.yaml: VGG16, ImageNet weights,
224 px) runs the backbone over every image of known skin type, (1 + `groh.views`) passes each,
then trains 7 schemes x `groh.repeats` heads whose cost is one fc7 product (4096 x 4096) per
training image, epoch and repeat, forward and backward (3 products). This script measures, on
this machine and device, the VGG16 backbone's images/s at 224 px and the GEMM rate at the heads'
shape, counts the real CSV's images and each scheme's training rows (cohort/groh.py on the
bundled CSV), and writes the projection, marked as one, beside the measured embedded run's
stage time (`repro.default.families.groh` when benchmarks/repro_timings.py has run):

    python benchmarks/groh_cost.py [--device cuda] [--batches 4]

Nothing here is a measured real-data run: no real images exist offline.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
from importlib import resources
from pathlib import Path

import pandas as pd
import torch
from features_benchmark import backbone_rate, gemm_rate

from dermsynth.cohort import groh
from dermsynth.core import config, files, paths
from dermsynth.model.backbone import DTYPES
from dermsynth.model.embedding import describe, pick_device
from dermsynth.model.precision import resolve

FC7 = 4096
ROOT = Path(__file__).resolve().parent.parent  # the figures go to the repository's reports/, from any cwd


def real_rows() -> pd.DataFrame:
    text = resources.files("dermsynth").joinpath("resources", "fitzpatrick17k.csv").read_text()
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def training_rows(frame: pd.DataFrame, params: config.Params) -> dict[str, int]:
    """Each scheme's rows that fit (its training side less the validation share), on the real CSV."""
    out = {}
    for scheme in params.groh.schemes:
        split = groh.scheme_split(frame, scheme, params.groh.test_fraction, params.groh.seed)
        out[scheme] = int((~groh.validation_mask(split.train, params.groh.val_fraction, params.groh.seed)).sum())
    return out


def projection(params: config.Params, images: int, fit_rows: dict[str, int], backbone: dict, gemm: float) -> dict:
    """Hours for the backbone passes and for the heads' fc7 work at the measured rates (a floor for the heads)."""
    passes = images * (1 + params.groh.views)
    head_flop = sum(fit_rows.values()) * params.train.epochs * params.groh.repeats * 3 * 2 * FC7 * FC7
    return {"images": images, "backbone_passes": passes, "backbone_h": passes / backbone["images_per_s"] / 3600,
            "fit_rows_per_scheme": fit_rows, "head_tflop": head_flop / 1e12, "head_floor_h": head_flop / gemm / 3600,
            "total_h": passes / backbone["images_per_s"] / 3600 + head_flop / gemm / 3600}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--batches", type=int, default=4, help="timed batches of 16 images at 224 px")
    args = parser.parse_args()
    params = config.load(ROOT / "params.yaml")
    device = pick_device(args.device)
    precision = resolve(params.features.precision, device)
    torch.set_num_threads(torch.get_num_threads())
    backbone = backbone_rate(device, precision, 224, 16, args.batches)
    gemm = gemm_rate(device, DTYPES[precision], n=FC7)
    frame = real_rows()
    images = len(groh.known_skin_type(frame))
    out = {"device": describe(device), "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
           "precision": precision, "backbone_224": backbone, "gemm_flops_per_s": gemm,
           "real_scale_projection": projection(params, images, training_rows(frame, params), backbone, gemm),
           "note": "a projection from this run's rates, not a real-data run (no real images offline)"}  # fmt: skip
    path = ROOT / paths.REPORTS / "benchmarks.json"
    merged = json.loads(path.read_text()) if path.exists() else {}
    embedded = merged.get("repro", {}).get("default", {}).get("families", {}).get("groh")
    out["embedded_stage_s"] = embedded["seconds"] if embedded else None
    merged.setdefault("groh", {})[out["device"]] = out
    files.write_json(path, merged)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
