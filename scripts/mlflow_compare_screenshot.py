"""Screenshot MLflow's run-comparison view of two arms of the study, in headless Chromium.

Usage (from the repository root):

    .venv/bin/python scripts/mlflow_compare_screenshot.py [--store sqlite:///mlflow.db]
        [--out reports/figures/mlflow_compare.png]
        [--condition psoriasis --direction light_to_dark --arms fitz_only synthetic_and_seed]

Starts `mlflow server` on a free 127.0.0.1 port against the store (default: the one dermsynth.views.tracking
uses, $MLFLOW_TRACKING_URI or sqlite:///<repo>/mlflow.db; an http(s):// store is used as it is),
takes the latest run of each arm (tags arm, condition, direction; no dose-stage runs; the configuration
run with tag repeat=all if there is one, else repeat=0) and opens

    http://127.0.0.1:<port>/#/compare-runs?runs=["<run id>",...]&experiments=["<experiment id>",...]

(the JSON lists URL-encoded) in headless Chromium. The PNG is checked (page title and run ids in the
DOM, size, not one colour), then the server's whole process group is stopped. Exit status 2 with a
message when Chromium is missing, no run matches, the server does not start or the page is blank.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


class Failure(Exception):
    """A problem the command reports in one line (exit status 2)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM the process group led by ``proc``, SIGKILL it after ``timeout``, and reap the leader."""
    pgid = proc.pid  # start_new_session=True: the leader's pid is the group id
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc.poll()
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
    proc.wait(timeout=timeout)


@contextmanager
def mlflow_server(
    store: str, log: Path, artifacts: Path | None = None, timeout: float = 60.0
) -> Iterator[tuple[str, int]]:
    """`mlflow server` on a free loopback port in its own process group.

    Yields its URL and process group id once /health answers; the whole group is stopped on exit.
    """
    port = free_port()
    serve = ["--artifacts-destination", str(artifacts)] if artifacts else ["--no-serve-artifacts"]
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store, *serve]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                state = f"silent for {timeout:.0f} s" if proc.returncode is None else f"exited ({proc.returncode})"
                raise Failure(f"mlflow server {state} on {url}/health; its log:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield url, proc.pid
    finally:
        stop_group(proc)


def latest_runs(store: str, condition: str, direction: str, arms: list[str]) -> tuple[list[str], list[str]]:
    """Run ids (in ``arms`` order) and experiment ids of the newest matching run of each arm."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs, found_in = [], set()
    for arm in arms:
        where = f"tags.arm = '{arm}' and tags.condition = '{condition}' and tags.direction = '{direction}'"
        found = client.search_runs(experiments, where, max_results=500, order_by=["attributes.start_time DESC"])
        newest = {r.data.tags.get("repeat"): r for r in reversed(found) if r.data.tags.get("stage") != "dose"}
        pick = newest.get("all") or newest.get("0")
        if pick is None:
            raise Failure(f"no run in {store} with arm={arm}, condition={condition}, direction={direction}")
        runs.append(pick.info.run_id)
        found_in.add(pick.info.experiment_id)
    return runs, sorted(found_in)


def compare_url(base: str, runs: list[str], experiments: list[str]) -> str:
    def as_json(ids: list[str]) -> str:
        return urllib.parse.quote(json.dumps(ids, separators=(",", ":")))

    return f"{base}/#/compare-runs?runs={as_json(runs)}&experiments={as_json(experiments)}"


def find_chromium() -> str:
    chromium = next((found for name in CHROMIUM if (found := shutil.which(name))), None)
    if chromium is None:
        raise Failure(f"no Chromium found on PATH (tried {', '.join(CHROMIUM)}); on Debian: apt-get install chromium")
    return chromium


def screenshot(chromium: str, url: str, out: Path, budget_ms: int, size: str = "1600,1200") -> str:
    """Save ``url`` as a PNG with headless Chromium; return the rendered DOM."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--dump-dom"]
        cmd += [f"--user-data-dir={profile}", f"--screenshot={out}", f"--window-size={size}"]
        cmd += [f"--virtual-time-budget={budget_ms}", url]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120 + budget_ms / 1000, check=False)
    if done.returncode != 0 or not out.exists():
        raise Failure(f"chromium failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def check_page(out: Path, dom: str, runs: list[str]) -> None:
    """Fail unless the comparison rendered: title and run ids in the DOM, a big PNG of more than one colour."""
    from PIL import Image

    missing = [r for r in runs if r not in dom]
    if "Comparing" not in dom or missing:
        raise Failure(f"the comparison page did not render (runs missing from the page: {missing or 'none'})")
    with Image.open(out) as image:
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 16)
        width, height = rgb.size
    main = max(colours)[0] / (width * height) if colours else 0.0
    if width < 800 or height < 600 or (colours is not None and (len(colours) < 32 or main > 0.98)):
        raise Failure(f"{out} looks blank: {width}x{height}, {len(colours or [])} colours, {main:.0%} one colour")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="tracking URI (default: dermsynth.views.tracking.tracking_uri())")
    parser.add_argument("--out", type=Path, default=Path("reports/figures/mlflow_compare.png"))
    parser.add_argument("--condition", default="psoriasis")
    parser.add_argument("--direction", default="light_to_dark")
    parser.add_argument("--arms", nargs="+", default=["fitz_only", "synthetic_and_seed"])
    parser.add_argument("--budget-ms", type=int, default=20000, help="Chromium's virtual time budget")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.store is None:
        from dermsynth.views import tracking

        args.store = tracking.tracking_uri()
    try:
        runs, experiments = latest_runs(args.store, args.condition, args.direction, args.arms)  # inputs first
        chromium = find_chromium()
        if args.store.startswith(("http://", "https://")):
            url = compare_url(args.store.rstrip("/"), runs, experiments)
            dom = screenshot(chromium, url, args.out, args.budget_ms)
        else:
            with tempfile.TemporaryDirectory() as tmp, mlflow_server(args.store, Path(tmp) / "server.log") as (base, _):
                url = compare_url(base, runs, experiments)
                dom = screenshot(chromium, url, args.out, args.budget_ms)
        check_page(args.out, dom, runs)
    except Failure as problem:
        print(f"mlflow_compare_screenshot: {problem}", file=sys.stderr)
        return 2
    print(f"{args.out}: {' vs '.join(args.arms)} ({args.direction}, {args.condition}) from {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
