#!/usr/bin/env bash
# Re-resolve the locks from pyproject.toml (run by `make lock`; see README "A locked environment").
#
#   requirements/lock.txt   the whole dependency tree of `.[dev,diffusers,team]`, every pin with its hashes,
#                           one file for every platform (environment markers: on Linux torch's CUDA
#                           libraries, nvidia-* and triton; on macOS and Windows none)
#   requirements/tools.txt  pip, uv, packaging, setuptools, pinned and hashed the same way, agreeing with lock.txt
#
# uv resolves against PyPI from package metadata only (no wheel is downloaded, a few seconds). Its
# hashes are PyPI's, which are those of the torch/torchvision wheels a configured local mirror serves
# when it mirrors PyPI's files; pip checks them at install time either way.
#
# Environment: LOCK (output, default requirements/lock.txt), UV_LOCK_ARGS (default --universal), e.g.
#   make lock LOCK=requirements/lock-linux-cpu.txt \
#     UV_LOCK_ARGS="--python-platform x86_64-manylinux_2_28 --torch-backend cpu --emit-index-url"
# for Linux with PyTorch's CPU-only wheels (needs download.pytorch.org, which this project's machines
# do not reach; --emit-index-url writes that index into the lock for pip), then
#   rm -rf .venv && make install LOCK=requirements/lock-linux-cpu.txt
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
LOCK=${LOCK:-requirements/lock.txt}
read -r -a uv_args <<< "${UV_LOCK_ARGS:---universal}"
uv=("$VENV/bin/uv" pip compile --quiet --generate-hashes --python-version 3.11 --custom-compile-command "make lock")

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
# uv keeps the pins of an existing output file where they still satisfy pyproject.toml: a new dependency
# re-locks that dependency, not the whole tree (UV_LOCK_ARGS=--upgrade re-resolves everything)
[[ -f "$LOCK" ]] && grep -v '^# pyproject-dependencies-sha256' "$LOCK" > "$tmp"
"${uv[@]}" "${uv_args[@]}" --extra dev --extra diffusers --extra team pyproject.toml -o "$tmp"
# the digest of pyproject's dependency lists: tests/test_lock.py fails once they change without a `make lock`
{ echo "# pyproject-dependencies-sha256: $("$VENV/bin/python" scripts/check_lock.py --digest)"; cat "$tmp"; } > "$LOCK"
if [[ "$LOCK" == requirements/lock.txt ]]; then
  "${uv[@]}" --universal requirements/tools.in -c requirements/lock.txt -o requirements/tools.txt
  "$VENV/bin/python" scripts/check_lock.py  # the lock and the tools lock
else
  "$VENV/bin/python" scripts/check_lock.py --lock "$LOCK"
fi
echo "lock: wrote $LOCK ($(grep -c '^[a-z0-9]' "$LOCK") pins)"
