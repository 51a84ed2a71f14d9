"""PyTorch's own dynamic int8 (``torch.ao.quantization.quantize_dynamic`` on LSTM, GRU and
Linear): the peer row ``torch-int8-dynamic`` beside ``torch-fp32``, so every table shows what
staying in PyTorch would give."""

from __future__ import annotations

import io

import torch

from edgernn.model.eager import DYNAMIC_TYPES, torch_int8_module
from edgernn.model.loading import LoadedModel

__all__ = ["DYNAMIC_TYPES", "torch_int8_module"]


def torch_int8_reason(model: LoadedModel) -> str | None:
    """Why PyTorch dynamic int8 does not apply to ``model``; None when it does."""
    if isinstance(model.module, torch.jit.ScriptModule):
        return ("PyTorch dynamic quantization needs the eager module; a TorchScript archive "
                "cannot be re-quantized (load a trusted pickle or an edgernn checkpoint)")
    if not any(isinstance(m, DYNAMIC_TYPES) for m in model.module.modules()):
        return "no LSTM, GRU or Linear layer for PyTorch dynamic quantization"
    return None


def torch_int8_bytes(model: LoadedModel) -> int:
    """Bytes of the quantized module's saved state_dict (what shipping it would take)."""
    buf = io.BytesIO()
    torch.save(torch_int8_module(model.module).state_dict(), buf)
    return buf.tell()
