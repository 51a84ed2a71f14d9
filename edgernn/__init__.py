"""edgernn: export, quantize and profile trained LSTM/GRU models on edge targets."""

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
