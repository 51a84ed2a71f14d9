#!/usr/bin/env bash
# Fetch the files the real bundled datasets read (speech, sensor, appliances, demand, sentiment)
# from PyPI, once, at setup time: the sktime and pmdarima wheels and the vaderSentiment source
# distribution (pinned versions; see edgernn/data/sources.py), downloaded without their
# dependencies and never installed. The data files are copied out into
# .venv/share/edgernn-data (or $EDGERNN_DATA). Idempotent: what is there is not fetched again,
# and nothing is downloaded at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON_VENV:-.venv/bin/python}
if [ ! -x "$PY" ]; then
  echo "fetch_data.sh: $PY not found; run ./scripts/setup.sh first" >&2
  exit 1
fi
DATA=${EDGERNN_DATA:-$("$PY" -c 'import sys; print(sys.prefix)')/share/edgernn-data}
mkdir -p "$DATA/downloads"
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$PY" -m edgernn.data.sources requirements | while read -r name req kind pattern; do
  if compgen -G "$DATA/downloads/$pattern" >/dev/null; then
    continue
  fi
  echo "fetching $req ($kind) from PyPI"
  if [ "$kind" = sdist ]; then
    sel=(--no-binary "$name")
  else
    sel=(--only-binary "$name")
  fi
  "$PY" -m pip download -q --no-deps "${sel[@]}" -d "$DATA/downloads" "$req" 2>&1 \
    | grep -v "^WARNING: Location" || true
  if ! compgen -G "$DATA/downloads/$pattern" >/dev/null; then
    echo "fetch_data.sh: could not download $req for $name" >&2
    exit 1
  fi
done
EDGERNN_DATA="$DATA" "$PY" -m edgernn.data.sources extract "$DATA"
