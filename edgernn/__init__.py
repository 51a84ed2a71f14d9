"""edgernn: export, quantize and profile trained LSTM/GRU models on edge targets.

The data path, one folder per stage, each importing only from the stages above it:

    model/    model.pt -> LoadedModel (module, InputSpec, Signature: inputs, outputs, state)
    convert/  LoadedModel -> Artifact files + manifest.json (formats/ export, quantize/ plug-ins)
    measure/  Artifact + eval data -> probe job -> runners/ (local, ssh, adb) -> probe/ result
              -> bench row (judged against fp32 PyTorch, trials folded)
    results/  rows -> store (SQLite/PostgreSQL), JSON/CSV, tables -> selection -> report
    study/    training + compare -> claims -> decision.md (the LSTM-vs-GRU study)
    lab/      the same path as Ray tasks with device leases; cli/ and api.py are the faces.
Beside the path: data/ (datasets, eval files), models/ (reference architectures), probe/
(shipped to devices: stdlib + numpy + one runtime; only its host-only torch runtime reaches
up, to model/eager.py: the one import against the flow).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Imported on first use, not here: the probe (run once per measurement, in a fresh process)
# imports this package, and torch alone costs ~1.7 s per start.
_LAZY = {"save": "edgernn.model.checkpoint", "EdgeRNNError": "edgernn.errors",
         "load_model": "edgernn.model.loading"}

__all__ = ["EdgeRNNError", "__version__", "load_model", "save"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgernn' has no attribute {name!r}")
