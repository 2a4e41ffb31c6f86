#!/usr/bin/env bash
# Installs what the tests need (see setup.sh), checks lint, format and types, then runs the whole
# test suite. Any finding fails the run.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh --install-only --with-tests
.venv/bin/python -m pip install -q -e ".[dev]"

# Seconds, so they go first: ruff (lint and format) on everything Python, mypy --strict on the
# package. mypy reads the package through a folder that lays it out under its import name
# (pyproject maps utterd.daemon to daemon/, which an editable install hides from mypy).
.venv/bin/ruff check daemon models quantize tests bench
.venv/bin/ruff format --check daemon models quantize tests bench
shim=$(mktemp -d)
trap 'rm -rf "$shim"' EXIT
mkdir "$shim/utterd"
for room in daemon models quantize; do ln -s "$PWD/$room" "$shim/utterd/$room"; done
(cd "$shim" && "$OLDPWD/.venv/bin/mypy" --config-file "$OLDPWD/pyproject.toml" \
  -p utterd.daemon -p utterd.models -p utterd.quantize)

.venv/bin/python -m pytest -q -p no:cacheprovider "$@"

# The same checkout installed, speaking and tested on an emulated arm64 Debian (.ci/arm64/run.sh;
# README "Supported boards"). UTTERD_SKIP_ARM64=1 skips it on a development machine, not in CI.
.ci/arm64/run.sh
