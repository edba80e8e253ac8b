"""`dermsynth services`: start, stop and show a team's PostgreSQL and MLflow server on this host.

Why a command and not a page of shell: the tests start the services exactly as a team does, so
what docs/team.md says is what CI ran.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from dermsynth.core.config import Params
from dermsynth.team import services


def show_start(state: services.State) -> None:
    print(f"services: PostgreSQL on 127.0.0.1:{state.pg_port} (data {state.cluster.data}), "
          f"MLflow server on {state.tracking_uri} (artifacts {Path(state.folder) / 'artifacts'})")  # fmt: skip
    print(f"  Optuna storage: {state.optuna_storage}")
    print(f"  MLflow store:   {state.mlflow_store}")
    print(f'  clients: eval "$(dermsynth services env --dir {shlex.quote(state.folder)})"')


def main(params: Params, args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    if args.verb == "start":
        show_start(services.start(folder))
        return 0
    if args.verb == "stop":
        state = services.stop(folder)
        print("services: stopped" if state else f"services: nothing was started in {folder}")
        return 0
    if args.verb == "env":
        state = services.load(folder.resolve())
        if state is None:
            print(f"services: nothing was started in {folder}: dermsynth services start --dir {folder}")
            return 1
        for key, value in services.client_env(state).items():
            print(f"export {key}={shlex.quote(value)}")
        print(f"export DERMSYNTH_OPTUNA_STORAGE={shlex.quote(state.optuna_storage)}")
        return 0
    found = services.status(folder)
    print(json.dumps(found, indent=2))
    return 0 if found.get("postgres") and found.get("mlflow") else 1
