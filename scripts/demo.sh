#!/usr/bin/env bash
# The main job on the bundled example: set up, train an LSTM and a GRU on real weather data,
# export + quantize every variant, measure each on this host, print one table.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=${EXTRAS-tflite,tflite-keras} ./scripts/setup.sh
exec .venv/bin/edgernn demo "$@"
