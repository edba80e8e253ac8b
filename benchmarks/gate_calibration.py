"""The regression gate's false-alarm rate and power at CI scale, measured: reports/benchmarks.json `gate`.

Every run is the CI-scale study (configs/ci.yaml) in a scratch clone of HEAD, up to `evaluate`
(whose reports/metrics.json is all the gate reads: register, report and track are left out to
save their minutes), then `dermsynth gate --baseline reports/baseline-ci.json` as `make ci-study`.

- **Null runs** differ from the baseline only in what must not count as a regression: each has
  its own `train.seed`, and they take turns adding a new `split.seed` (the same design, other
  images in each role) and `features.precision: bfloat16` (the baseline is float32). The share
  that fail is the gate's false-alarm rate (goal: 5% or less, over at least 20 runs).
- **Planted runs**, several per plant, each with its own `train.seed` too: 20% of psoriasis's
  training labels flipped to squamous cell carcinoma, the synthetic images dropped, a quarter of
  the epochs, the far group's seeds replaced by near-group images (benchmarks/gate_plants.py;
  the epochs are a parameter override). The share that fail is each plant's detection rate
  (goal: 80% or more).

Every run's train.seed is distinct, 100 apart (a study trains seeds train.seed to train.seed + draws x
repeats - 1), so no two runs share a training stream and DVC's run cache never hands one run another's results.
Each run's estimands are appended to build/gate_calibration/<study>/runs.jsonl as it finishes (a
run that broke is tried again on the next start). <study> hashes what makes the numbers (src/ but
the gate, dvc.yaml, params.yaml, configs/, the CI baseline, the lock, the plants), not the gate:
the verdicts are the gate at HEAD applied to the stored estimands, so a change to the gate is
judged on the runs already made, and the section is rewritten after each run. The benchmark takes
hours on 2 cores; it resumes where it stopped and can be spread over sessions.

A study's scratch clone keeps the commit it was cloned at, and every run of the study is made by it.
`--study KEY` goes on with an earlier study's runs after HEAD has moved on, for a change shown not
to alter the CI-scale numbers (docs/gate.md says which and how); the section then names the
commit that made the runs and the one whose gate judged them.

    python benchmarks/gate_calibration.py                   # 20 null runs and 5 per plant
    python benchmarks/gate_calibration.py --hours 1         # start no run after an hour
    python benchmarks/gate_calibration.py --null 4 --per-plant 1
    python benchmarks/gate_calibration.py --study e1bf89d32527   # go on with that study's runs
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml
from gate_power import detectable, markdown, planted_effects

from dermsynth.analysis.stats import holm, wilson
from dermsynth.core import config, files, paths
from dermsynth.gate import compare, drop_tests

ROOT = Path(__file__).resolve().parent.parent
PLANTS = ("flip_labels", "drop_synthetic", "quarter_epochs", "near_seeds")
NULL_KINDS = ("train_seed", "split_seed", "bfloat16")
SAME_IMAGES = {"train_seed", "bfloat16"}  # null runs scored on the baseline's test images
GOALS = {"false_alarm_rate": 0.05, "detection_rate": 0.8, "null_runs": 20}
SITECUSTOMIZE = """import os
if os.environ.get("GATE_PLANT"):
    import gate_plants
    gate_plants.install(os.environ["GATE_PLANT"])
"""
STUDY_FILES = ("src", "dvc.yaml", "params.yaml", "configs", "reports/baseline-ci.json", "requirements/lock.txt",
               "benchmarks/gate_plants.py")  # fmt: skip
VERDICT = re.compile(r"gate: (FAILED|passed) against \S+: (none|\d+) of (\d+) estimands")


def specs(null: int, per_plant: int, epochs: int) -> list[dict]:
    """The runs, interleaved (null, null, plant, ...) so that a partial benchmark measures both."""
    nulls = []
    for i in range(null):
        kind = NULL_KINDS[i % len(NULL_KINDS)]
        overrides = {"split.seed": 3000 + i} if kind == "split_seed" else {}
        overrides |= {"features.precision": "bfloat16"} if kind == "bfloat16" else {}
        nulls.append({"name": f"null-{i:02d}-{kind}", "kind": "null", "variant": kind, "overrides": overrides})
    plants = []
    for j in range(per_plant):
        for plant in PLANTS:
            overrides = {"train.epochs": max(1, epochs // 4)} if plant == "quarter_epochs" else {}
            plants.append({"name": f"plant-{plant}-{j}", "kind": "plant", "variant": plant, "overrides": overrides})
    runs, n, p = [], iter(nulls), iter(plants)  # two null runs, then a plant: the false-alarm rate needs more
    for _ in range(null + len(plants)):
        runs += [r for r in (next(n, None), next(n, None), next(p, None)) if r is not None]
    for k, run in enumerate(runs):  # every run its own training stream, also the planted ones
        run["overrides"] = {"train.seed": 1000 + 100 * k, "split.seed": 2022, "features.precision": "float32",
                            "train.epochs": epochs, **run["overrides"]}  # fmt: skip
    return runs


def commit(where: Path = ROOT) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True
    ).stdout.strip()


def study_key() -> str:
    """A hash of the committed files that make the CI-scale numbers (the gate excluded): runs of one key compare."""
    staged = subprocess.run(["git", "ls-tree", "-r", "HEAD", "--", *STUDY_FILES], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout  # fmt: skip
    staged = "\n".join(line for line in staged.splitlines() if not line.endswith("\tsrc/dermsynth/gate.py"))
    return hashlib.sha256(staged.encode()).hexdigest()[:12]


def scratch(folder: Path) -> Path:
    """A clone of HEAD sharing this checkout's environment, and the sitecustomize that switches plants on."""
    work = folder / "work"
    if not work.exists():
        subprocess.run(["git", "clone", "-q", str(ROOT), str(work)], check=True)
        (work / ".venv").symlink_to(ROOT / ".venv")
    hook = folder / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return work


def ci_overrides(work: Path) -> list[str]:
    out = subprocess.run(["dermsynth", "overrides", "configs/ci.yaml"], cwd=work, capture_output=True, text=True)
    return out.stdout.split()


def run_one(work: Path, hook: Path, spec: dict) -> dict:
    """One CI-scale study and its gate; the outcome as a record (the gate's own lines kept)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), str(ROOT / "benchmarks"), str(work / "src")])}
    if spec["kind"] == "plant" and spec["variant"] != "quarter_epochs":
        env["GATE_PLANT"] = spec["variant"]
    sets = [arg for key, value in spec["overrides"].items() for arg in ("-S", f"{key}={value}")]
    start = time.monotonic()
    study = subprocess.run(
        ["dvc", "exp", "run", "evaluate", *ci_overrides(work), *sets], cwd=work, env=env, capture_output=True, text=True
    )
    gate = subprocess.run(["dermsynth", "gate", "--baseline", "reports/baseline-ci.json"], cwd=work, env=env,
                          capture_output=True, text=True)  # fmt: skip
    found = VERDICT.search(gate.stdout)
    record = {**spec, "seconds": round(time.monotonic() - start, 1), "study_exit": study.returncode,
              "gate_exit": gate.returncode, "failed": None, "tested": None,
              "regressions": [line.strip() for line in gate.stdout.splitlines() if line.startswith("  ")]}  # fmt: skip
    if study.returncode != 0 or not found:  # the study or the gate broke: no verdict, and say why
        record["error"] = (study.stderr or gate.stderr or gate.stdout)[-2000:]
        return record
    record["failed"] = 0 if found[2] == "none" else int(found[2])
    record["tested"] = int(found[3])
    record["estimands"] = json.loads((work / "reports" / "metrics.json").read_text())["estimands"]
    info = json.loads((work / paths.FEATURES / "info.json").read_text())
    record["made_on"] = {"device": str(info.get("device")), "precision": str(info.get("precision"))}
    return record


def latest(records: list[dict]) -> list[dict]:
    """The last record of each run name: a run retried after it broke counts once, as it ended last."""
    return list({r["name"]: r for r in records}.values())


def effects(baseline: dict, fresh: dict, z: float, same_kind: bool = True) -> dict:
    """What the gate saw, pass or fail: the smallest Holm p and the five largest drops with their p (for power)."""
    tested = drop_tests(baseline, fresh, z, same_kind)
    adjusted = dict(zip(tested, holm([t["p"] for t in tested.values()]), strict=True))
    worst = sorted(tested, key=lambda k: tested[k]["difference"])[:5]
    drops = [{"estimand": k, "difference": round(tested[k]["difference"], 4), "low": round(tested[k]["low"], 4),
              "p": float(f"{tested[k]['p']:.3g}"), "p_holm": float(f"{adjusted[k]:.3g}")} for k in worst]  # fmt: skip
    return {"min_p_holm": float(f"{min(adjusted.values()):.3g}"), "largest_drops": drops}


def judge(records: list[dict], baseline: dict, params: config.Params, made_on: dict | None = None) -> list[dict]:
    """Each run's verdict by the gate at HEAD on its stored estimands, and what the gate saw (pass or fail).

    ``made_on`` is the baseline's device and precision: a run of another kind is judged as
    `dermsynth gate` judges it (gate.py); a run recorded without its own is taken to be on the
    baseline's device, at the precision of its overrides.
    """
    for record in records:
        if record.get("estimands"):
            same_kind = made_on is None or run_kind(record, made_on) == made_on
            problems, tested = compare(baseline, record["estimands"], params, same_kind)
            record |= {"failed": len(problems), "tested": tested, "regressions": problems,
                       "effects": effects(baseline, record["estimands"], params.evaluate.z, same_kind)}  # fmt: skip
    return records


def run_kind(record: dict, made_on: dict) -> dict:
    """The device and precision a run's features were made with, as the gate's `made_on`."""
    precision = record["overrides"].get("features.precision", made_on["precision"])
    return record.get("made_on") or {"device": made_on["device"], "precision": precision}


def reanalyse(work: Path, records: list[dict]) -> list[dict]:
    """Add the estimands of runs recorded without them, from DVC's experiment commits (matched by train.seed)."""
    refs = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], cwd=work, capture_output=True,
                          text=True).stdout.split()  # fmt: skip
    by_seed = {}
    for ref in refs:
        show = [subprocess.run(["git", "show", f"{ref}:{f}"], cwd=work, capture_output=True, text=True).stdout
                for f in ("params.yaml", "reports/metrics.json")]  # fmt: skip
        if show[0] and show[1]:
            by_seed[yaml.safe_load(show[0])["train"]["seed"]] = json.loads(show[1])
    for record in records:
        metrics = by_seed.get(record["overrides"]["train.seed"], {})
        if record["failed"] is not None and "estimands" not in record and "estimands" in metrics:
            record["estimands"] = metrics["estimands"]
    return records


def summary(records: list[dict], sha: str) -> dict:
    """Rates with Wilson intervals (95%) from the runs that reached a verdict; the goals beside them.

    ``sha``: the commit that made the runs (the study's scratch clone); the gate that judged them is HEAD's.
    """
    judged = [r for r in records if r["failed"] is not None]
    nulls = [r for r in judged if r["kind"] == "null"]
    alarms = sum(r["failed"] > 0 for r in nulls)
    out: dict = {"commit": sha, "judged_by_gate_at": commit(), "scale": "configs/ci.yaml",
                 "baseline": "reports/baseline-ci.json", "goals": GOALS,
                 "null_runs": len(nulls), "false_alarms": alarms, "errors": len(records) - len(judged)}  # fmt: skip
    if nulls:
        out["false_alarm_rate"] = alarms / len(nulls)
        out["false_alarm_interval"] = list(wilson(alarms, len(nulls), 1.96))
        out["false_alarms_by_variant"] = {
            v: f"{sum(r['failed'] > 0 for r in nulls if r['variant'] == v)} of {sum(r['variant'] == v for r in nulls)}"
            for v in NULL_KINDS
        }
        out["null_largest_drop_mean"] = _mean_largest_drop(nulls)
    out["planted"] = {}
    for plant in PLANTS:
        runs = [r for r in judged if r["kind"] == "plant" and r["variant"] == plant]
        if runs:
            hits = sum(r["failed"] > 0 for r in runs)
            out["planted"][plant] = {"runs": len(runs), "detected": hits, "detection_rate": hits / len(runs),
                                     "interval": list(wilson(hits, len(runs), 1.96)),
                                     "failing_estimands_mean": sum(r["failed"] for r in runs) / len(runs),
                                     "largest_drop_mean": _mean_largest_drop(runs)}  # fmt: skip
    out["complete"] = len(nulls) >= GOALS["null_runs"] and all(p in out["planted"] for p in PLANTS)
    return out


def section(records: list[dict], sha: str, baseline: dict, params: config.Params, study: str) -> dict:
    """The summary, what the gate can detect at this scale, and what each plant moved (benchmarks/gate_power.py)."""
    judged = [r for r in records if r["failed"] is not None]
    default = json.loads((ROOT / paths.BASELINE).read_text())["estimands"]  # the default study's, for scale
    power = {"detectable": detectable(baseline, params), "detectable_default_study": detectable(default, params),
             "planted_effects": planted_effects(baseline, judged, params, SAME_IMAGES)}  # fmt: skip
    return summary(records, sha) | {"study": study} | power


def _mean_largest_drop(runs: list[dict]) -> float | None:
    """The mean over runs of each run's largest drop of an estimand: how far a plant moves the study beyond noise."""
    drops = [r["effects"]["largest_drops"][0]["difference"] for r in runs if r.get("effects")]
    return round(sum(drops) / len(drops), 4) if drops else None


def write(section: dict) -> None:
    """The `gate` section of reports/benchmarks.json, and its tables in reports/benchmarks-gate.md."""
    path = ROOT / paths.REPORTS / "benchmarks.json"
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged["gate"] = section
    files.write_json(path, merged)
    files.write_text(ROOT / paths.REPORTS / "benchmarks-gate.md", markdown(section))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--null", type=int, default=GOALS["null_runs"], help="null runs (default 20)")
    parser.add_argument("--per-plant", type=int, default=5, help="runs per planted regression (default 5)")
    parser.add_argument("--hours", type=float, default=None, help="start no run after this many hours")
    parser.add_argument("--summary-only", action="store_true", help="no new run: rewrite the gate section")
    parser.add_argument("--study", default=None, help="go on with this earlier study key's runs (default: HEAD's)")
    args = parser.parse_args(argv)
    study = args.study or study_key()
    folder = ROOT / paths.BUILD / "gate_calibration" / study
    if args.study and not (folder / "work").exists():
        parser.error(f"no study {args.study} under {folder.parent}: its runs and scratch clone are needed")
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "runs.jsonl"
    records = latest([json.loads(line) for line in log.read_text().splitlines()] if log.exists() else [])
    done = {r["name"] for r in records if r["failed"] is not None}  # a run that broke is tried again
    work, begin = scratch(folder), time.monotonic()
    sha = commit(work)
    epochs = int(yaml.safe_load((ROOT / "params.yaml").read_text())["train"]["epochs"])
    todo = [s for s in specs(args.null, args.per_plant, epochs) if s["name"] not in done]
    records = reanalyse(work, records)
    params = config.load(ROOT / "params.yaml")
    reference = json.loads((ROOT / paths.REPORTS / "baseline-ci.json").read_text())
    baseline, made_on = reference["estimands"], reference.get("made_on")
    records = judge(records, baseline, params, made_on)
    if args.summary_only:
        todo = []
    print(f"gate_calibration: {len(done)} runs of {sha[:12]} recorded, {len(todo)} to go (scratch {work})")
    for spec in todo:
        if args.hours is not None and time.monotonic() - begin > args.hours * 3600:
            print(f"gate_calibration: --hours {args.hours} reached; run again to go on")
            break
        record = run_one(work, folder / "hook", spec)
        with log.open("a") as out:  # one line per finished run: a killed benchmark loses only the run in progress
            out.write(json.dumps(record) + "\n")
        records = judge(latest([*records, record]), baseline, params, made_on)
        verdict = "no verdict: " + record["error"][-200:] if "error" in record else f"{record['failed']} regressed"
        print(f"gate_calibration: {spec['name']}: {verdict} ({record['seconds']:.0f} s)", flush=True)
        write(section(records, sha, baseline, params, study))
    written = section(records, sha, baseline, params, study)
    write(written)
    print(json.dumps({k: v for k, v in written.items() if k not in ("goals", "detectable")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
