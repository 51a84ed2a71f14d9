#!/usr/bin/env bash
# Set up everything the tests need, then lint and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=${EXTRAS-tflite,tflite-keras,lab} ./scripts/setup.sh
./scripts/system_deps.sh
. .venv/bin/activate
ruff check edgernn tests benchmarks scripts
python -m pytest -q --durations=25 "$@"
