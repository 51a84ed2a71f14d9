"""PyTorch's own dynamic int8 (``torch.ao.quantization.quantize_dynamic`` on LSTM, GRU and
Linear): the peer row ``torch-int8-dynamic`` beside ``torch-fp32``, so every table shows what
staying in PyTorch would give."""

from __future__ import annotations

import io

import torch

from edgernn.model.eager import DYNAMIC_TYPES, torch_int8_module
from edgernn.model.loading import LoadedModel
from edgernn.model.sandbox import RemoteModule

__all__ = ["DYNAMIC_TYPES", "torch_int8_module"]


def torch_int8_reason(model: LoadedModel) -> str | None:
    """Why PyTorch dynamic int8 does not apply to ``model``; None when it does."""
    if isinstance(model.module, RemoteModule):  # loaded in the sandbox: what it reported
        facts = model.module.facts
        scripted, dynamic = bool(facts.get("scripted")), bool(facts.get("dynamic_layers"))
    else:
        scripted = isinstance(model.module, torch.jit.ScriptModule)
        dynamic = any(isinstance(m, DYNAMIC_TYPES) for m in model.module.modules())
    if scripted:
        return ("PyTorch dynamic quantization needs the eager module; a TorchScript archive "
                "cannot be re-quantized (load a trusted pickle or an edgernn checkpoint)")
    if not dynamic:
        return "no LSTM, GRU or Linear layer for PyTorch dynamic quantization"
    return None


def torch_int8_bytes(model: LoadedModel) -> int:
    """Bytes of the quantized module's saved state_dict (what shipping it would take)."""
    if isinstance(model.module, RemoteModule):  # loaded in the sandbox: quantized there
        return model.module.int8_bytes()
    buf = io.BytesIO()
    torch.save(torch_int8_module(model.module).state_dict(), buf)
    return buf.tell()
