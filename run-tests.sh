#!/usr/bin/env bash
# Installs what the tests need (see setup.sh) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh --install-only --with-tests
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
