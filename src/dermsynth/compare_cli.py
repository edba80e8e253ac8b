"""`dermsynth compare-generators GEN...`: the study run for several generators through `dvc exp`, and one table.

For each generator, `dvc exp run -S generate.generator=GEN` runs the study in the workspace
(DVC re-runs `generate` and what depends on it; stages whose inputs did not change, e.g. the
trainings without synthetic images, come from its run cache). A snapshot of the outputs is
then kept in reports/generators/<GEN>.json, and reports/generators/comparison.{csv,md} joins them
(analysis/generators.py). Every experiment is in `dvc exp show`, and its MLflow runs carry the
`generator` tag, so the same comparison works in the UI. At the end the workspace's params.yaml
and dvc.lock are put back and `dvc checkout` restores their outputs.

`openai` runs with generate.openai.max_usd=0 unless --allow-paid: only images already in the
content cache are used, and a missing one stops that generator's run instead of paying for it.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from dermsynth.analysis import recovery
from dermsynth.analysis.generators import comparison, markdown
from dermsynth.core import files, paths
from dermsynth.core.config import Params
from dermsynth.core.errors import DermsynthError
from dermsynth.generators.controls import is_embedded
from dermsynth.views.figures import confidence

OUT = paths.REPORTS / "generators"


def settings(generator: str, diffusers_model: str | None, allow_paid: bool) -> list[str]:
    """The `-S` overrides of one generator's experiment.

    The name is quoted for DVC's (Hydra's) override grammar, which would read a bare `null` as None.
    """
    out = ["-S", f"generate.generator='{generator}'"]
    if generator == "diffusers":
        if not diffusers_model:
            raise DermsynthError("compare-generators: diffusers needs --diffusers-model FOLDER (a saved pipeline)")
        out += ["-S", f"generate.diffusers.model={diffusers_model}"]
    if generator == "openai" and not allow_paid:
        out += ["-S", "generate.openai.max_usd=0"]
    return out


def run_experiment(generator: str, overrides: list[str]) -> tuple[float, bool]:
    """Run one generator's study; the generate stage's seconds and whether DVC restored it from its run cache."""
    name = f"gen-{generator}-{time.strftime('%Y%m%d-%H%M%S')}"
    cmd = ["dvc", "exp", "run", "-n", name, *overrides]
    print(f"compare-generators: {' '.join(cmd)}", flush=True)
    started, generate_s, cached = None, 0.0, False
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            now = time.perf_counter()
            if started is not None and line.startswith(("Running stage", "Stage '")):
                generate_s, started = now - started, None
            if line.startswith("Running stage 'generate'"):
                started = now
            if line.startswith("Stage 'generate' is cached") or "Stage 'generate' didn't change" in line:
                cached = True
    if proc.returncode != 0:
        raise DermsynthError(f"compare-generators: the {generator} experiment failed (exit {proc.returncode})")
    return generate_s, cached


def usd(params: Params) -> float:
    """What the generator's stored images cost at list price (openai); 0 for offline generators."""
    if params.generate.generator != "openai":
        return 0.0
    from dermsynth.generators.openai_budget import price

    cfg = params.generate.openai
    stored = len(pd.read_csv(paths.GENERATED / paths.MANIFEST_NAME))
    return stored * price(cfg.model, cfg.quality, cfg.size)


def snapshot(generator: str, generate_s: float, cached: bool) -> dict:
    """What the comparison needs of the workspace's outputs after one generator's experiment."""
    from dermsynth.core import config

    config.load.cache_clear()
    params = config.load()  # params.yaml as the experiment left it
    tests = pd.read_csv(paths.TABLES / "synthetic_vs_seed.csv")
    versus_fitz = pd.read_csv(paths.TABLES / "paired_tests.csv")
    return {
        "generator": generator,
        "model": params.generate.model_name(),
        "arms": files.read_json(paths.STUDY_METRICS)["arms"],
        "synthetic_vs_seed": json.loads(tests.to_json(orient="records")),
        "paired_tests": json.loads(versus_fitz.to_json(orient="records")),
        "signal": files.read_json(paths.SUMMARY).get("signal", {}),
        "embedded": dataclasses.asdict(params.embedded),
        "quality": files.read_json(paths.QUALITY_REPORTS / "quality.json"),
        "usd": usd(params),
        "generate_s": round(generate_s, 2),
        "cached": cached,
    }


def restore(saved: dict[Path, bytes]) -> None:
    for path, data in saved.items():
        files.write_bytes(path, data)
    done = subprocess.run(["dvc", "checkout", "--quiet"], capture_output=True, text=True, check=False)
    note = "" if done.returncode == 0 else f" (dvc checkout: {done.stderr.strip()[-300:]})"
    print(f"compare-generators: params.yaml and dvc.lock restored{note}")


def write_recovery(snapshots: list[dict], params: Params) -> None:
    """reports/generators/recovery.{csv,md}: what the pipeline recovers (embedded data only: real data plant none)."""
    if not snapshots or not is_embedded(params):
        return
    recovered = recovery.table(snapshots)
    files.write_csv(paths.RECOVERY_TABLE, recovered)
    first = snapshots[0]
    text = recovery.markdown(
        recovered, recovery.planted(first["embedded"], first["signal"]), confidence(params.evaluate.z)
    )
    files.write_text(paths.RECOVERY, text)
    print(text)
    print(f"compare-generators: wrote {paths.RECOVERY}; `dvc repro` puts it into reports/report.md (stage report)")


def run_all(generators: list[str], diffusers_model: str | None, allow_paid: bool) -> list[dict]:
    """Each generator's experiment and snapshot; the workspace's params.yaml and dvc.lock put back at the end."""
    overrides = {g: settings(g, diffusers_model, allow_paid) for g in generators}  # all checked before any run
    saved = {p: p.read_bytes() for p in (Path("params.yaml"), Path("dvc.lock")) if p.exists()}
    snapshots = []
    try:
        for generator in generators:
            seconds, cached = run_experiment(generator, overrides[generator])
            snap = snapshot(generator, seconds, cached)
            files.write_json(OUT / f"{generator}.json", snap)
            snapshots.append(snap)
    finally:
        restore(saved)
    return snapshots


def stored(generators: list[str]) -> list[dict]:
    """The snapshots an earlier run wrote (--tables-only: the tables again, no experiment)."""
    missing = [g for g in generators if not (OUT / f"{g}.json").exists()]
    if missing:
        raise DermsynthError(
            f"compare-generators --tables-only: no snapshot for {', '.join(missing)} in {OUT}; run without "
            "--tables-only first"
        )
    return [files.read_json(OUT / f"{g}.json") for g in generators]


def main(
    params: Params, generators: list[str], diffusers_model: str | None, allow_paid: bool, tables_only: bool = False
) -> int:
    snapshots = stored(generators) if tables_only else run_all(generators, diffusers_model, allow_paid)
    table = comparison(snapshots)
    files.write_csv(OUT / "comparison.csv", table)
    data = (
        "the embedded dataset (simulated images)" if is_embedded(params) else params.dataset.root
    ) + f", backbone {params.features.backbone} with weights {params.features.weights}"
    files.write_text(OUT / "comparison.md", markdown(table, data))
    print(markdown(table, data))
    write_recovery(snapshots, params)
    print(f"compare-generators: {len(generators)} generators; wrote {OUT}/comparison.csv and .md")
    return 0
