# dermsynth: `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export GX_ANALYTICS_ENABLED := false

.DEFAULT_GOAL := help
.PHONY: help services services-stop install lock repro repro-real ci-study ci-baseline test test-fast test-slow test-all lint gate baseline ui clean remote push pull

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

# The environment is locked: requirements/lock.txt pins the whole tree of '.[dev,diffusers,team]' with hashes
# (`make lock` re-resolves it after pyproject.toml's dependencies change); the project itself is editable.
LOCK ?= requirements/lock.txt
TOOLS_LOCK := requirements/tools.txt

$(VENV)/bin/uv: $(TOOLS_LOCK)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --require-hashes -r $(TOOLS_LOCK)
	touch $@

# uv installs the lock (hash-checked like pip's --require-hashes) in well under a minute where pip takes over
# two. --compile-bytecode as pip does: where PYTHONDONTWRITEBYTECODE is set, a venv without .pyc files makes
# every stage process compile torch's sources again (about 8 s each).
$(VENV)/.installed: pyproject.toml $(LOCK) $(VENV)/bin/uv
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --require-hashes -r $(LOCK) --python $(VENV)/bin/python \
	|| { echo "make install: $(LOCK) did not install on $$(uname -sm);\
	 for another platform or torch build see scripts/lock.sh (make lock LOCK=...)" >&2; exit 1; }
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed ## create .venv and install the locked environment (torch, DVC, MLflow, GX, ...) and the project

lock: $(VENV)/bin/uv ## re-resolve requirements/lock.txt from pyproject.toml (after editing its dependencies)
	VENV=$(VENV) LOCK=$(LOCK) UV_LOCK_ARGS='$(UV_LOCK_ARGS)' scripts/lock.sh

# dvc repro never drops the dvc.lock entry of a stage dvc.yaml no longer defines: scripts/prune_lock.py does
repro: install ## run the whole study on the default (embedded) dataset: dvc repro
	dvc repro
	python scripts/prune_lock.py

repro-real: install ## the study on the real Fitzpatrick 17k in data/: dvc exp run with configs/real-data.yaml
	dvc exp run $$(dermsynth overrides configs/real-data.yaml)

ci-study: install ## the study at CI scale (configs/ci.yaml), gated against reports/baseline-ci.json
	dvc exp run $$(dermsynth overrides configs/ci.yaml)
	dermsynth gate --baseline reports/baseline-ci.json

ci-baseline: install ## accept the CI-scale study's current numbers (after `make ci-study`) as its baseline
	dermsynth gate --update --baseline reports/baseline-ci.json

test: install ## the test suite without the slow end-to-end tests (about 3 min; CI runs both)
	pytest -q -m "not slow"

test-fast: test ## the same as `make test` (its former name)

test-slow: install ## the end-to-end tests: real `dvc repro` runs of the shrunk study, queue, remote, server
	pytest -q -m slow

test-all: install ## every test, fast and slow
	pytest -q

lint: install ## ruff over src, tests and scripts (CI runs it first)
	ruff check src tests scripts benchmarks
	ruff format --check src tests scripts benchmarks

gate: install ## compare reports/metrics.json with the committed baseline (exit 1 on regression)
	dermsynth gate

baseline: install ## accept the current metrics as the new baseline
	dermsynth gate --update

tune: install ## Optuna over the head on the validation split (params.yaml `tune`), best values in reports/tuning/
	dermsynth tune

screenshot: install ## MLflow's compare view of two arms, in headless Chromium: reports/figures/mlflow_compare.png
	python scripts/mlflow_compare_screenshot.py

ui: install ## MLflow UI on the project's store: http://127.0.0.1:5000
	mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

services: install ## a team's PostgreSQL and MLflow server on this host, in .services/ (docs/team.md)
	dermsynth services start

services-stop: ## stop them (their data stays in .services/ for the next start)
	dermsynth services stop

remote: install ## set the team's DVC remote (commit .dvc/config): make remote URL=/mnt/team/dermsynth-dvc or s3://...
	@test -n "$(URL)" || { echo "usage: make remote URL=<shared folder | s3://bucket/path | gs://... | azure://...>"; exit 2; }
	dvc remote add --default --force team "$(URL)"
	dvc remote list

push: install ## send data, synthetic sets, features, models and reports to the DVC remote
	dvc push

pull: install ## fetch the pipeline's outputs from the DVC remote, refill the generators' caches, rebuild MLflow
	dvc pull dvc.yaml
	dermsynth cache import
	dermsynth track

clean: ## remove the stage outputs git does not track (build/, models/); reports in git, DVC cache, MLflow store kept
	rm -rf build models
