"""edgernn: export, quantize and profile trained LSTM/GRU models on edge targets."""

from __future__ import annotations

__version__ = "0.1.0"

from edgernn.checkpoint import save  # noqa: E402
from edgernn.errors import EdgeRNNError  # noqa: E402
from edgernn.loading import load_model  # noqa: E402

__all__ = ["EdgeRNNError", "__version__", "load_model", "save"]
