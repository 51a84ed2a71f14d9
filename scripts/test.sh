#!/usr/bin/env bash
# Set up everything the tests need, then lint and run the test suite.
#   ./scripts/test.sh            the whole suite (test beds: emulated Pi, adb stand-in,
#                                PostgreSQL, Ray; TF conversions)
#   ./scripts/test.sh --quick    the quick tier: every module's fast paths, no test beds,
#                                no sweeps, no TensorFlow conversion of big models (< 5 min)
# Further arguments go to pytest. Test beds the run starts are stopped at its end;
# EDGERNN_KEEP_TESTBEDS=1 keeps them running.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
if [ "${1:-}" = --quick ]; then quick=1; shift; fi
EXTRAS=${EXTRAS-tflite,tflite-keras,lab} ./scripts/setup.sh
. .venv/bin/activate
ruff check edgernn tests benchmarks scripts
if [ $quick = 1 ]; then
  ./scripts/system_deps.sh bubblewrap espeak-ng  # the sandbox for TorchScript; synthetic speech
  exec python -m pytest -q -m "not slow" --durations=10 "$@"
fi
./scripts/system_deps.sh
export EDGERNN_FUZZ=${EDGERNN_FUZZ:-ci}  # >= 10,000 fuzz cases (tests/test_fuzz.py); quick: 660
# two pytest-xdist workers (-n 2 --dist loadgroup): tests sharing a test bed (emulated Pi,
# adb, PostgreSQL, Ray) run on one worker, see tests/conftest.py; EDGERNN_XDIST=0 runs serially
if [ "${EDGERNN_XDIST:-1}" = 1 ]; then
  exec python -m pytest -q -n 2 --dist loadgroup --no-loadscope-reorder --durations=25 "$@"
fi
exec python -m pytest -q --durations=25 "$@"
