"""The model as PyTorch runs it on the host, for the probe's ``torch`` runtime: loaded as the
user gave it, or through PyTorch's own dynamic int8 (the peer row ``torch-int8-dynamic``)."""

from __future__ import annotations

import copy
from typing import Any

import torch

from edgernn.model.loading import LoadedModel, load_model

DYNAMIC_TYPES = (torch.nn.LSTM, torch.nn.GRU, torch.nn.Linear)


def torch_int8_module(module: torch.nn.Module) -> torch.nn.Module:
    """torch.ao dynamic int8 (qint8 weights) of a copy of ``module``."""
    import warnings

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.13 marks quantized tensors as deprecated
        return quantize_dynamic(copy.deepcopy(module), set(DYNAMIC_TYPES), dtype=torch.qint8)


def load_eager(path: str, int8_dynamic: bool = False, **options: Any) -> LoadedModel:
    """``path`` loaded for timing (one trial run: load time is timed), its module through
    ``torch_int8_module`` when ``int8_dynamic``."""
    lm = load_model(path, name_axes=False, **options)
    if int8_dynamic:
        lm.module = torch_int8_module(lm.module)
    return lm
