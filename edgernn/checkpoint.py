"""Writing model files: edgernn checkpoints and spec-carrying TorchScript archives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgernn.errors import EdgeRNNError
from edgernn.spec import Axis, InputSpec

CHECKPOINT_KEY = "edgernn_checkpoint"
CHECKPOINT_VERSION = 1
SPEC_EXTRA_FILE = "edgernn_spec.json"


def spec_from_example(
    example: torch.Tensor, batch_axis: int = 0, seq_axis: int = 1, **fields: Any
) -> InputSpec:
    """Input spec from an example tensor: ``batch_axis`` and ``seq_axis`` become dynamic."""
    if example.dim() < 2:
        raise EdgeRNNError("example_input must have at least a batch and a sequence axis")
    names = {batch_axis % example.dim(): "batch", seq_axis % example.dim(): "seq"}
    axes = [Axis(int(s), names.get(i)) for i, s in enumerate(example.shape)]
    dtype = str(example.dtype).removeprefix("torch.")
    return InputSpec(axes=axes, dtype=dtype, **fields)


def save_checkpoint(
    path: str | Path, config: dict[str, Any], state_dict: dict[str, torch.Tensor],
    spec: InputSpec, meta: dict[str, Any] | None = None,
) -> Path:
    """Write an edgernn checkpoint (loadable with ``torch.load(weights_only=True)``)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            CHECKPOINT_KEY: CHECKPOINT_VERSION,
            "config": config,
            "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
            "input_spec": spec.to_dict(),
            "meta": json.loads(json.dumps(meta or {}, default=str)),  # plain types only
        },
        p,
    )
    return p


def save(
    model: nn.Module, path: str | Path, example_input: torch.Tensor, *,
    task: str | None = None, batch_axis: int = 0, seq_axis: int = 1,
    num_classes: int | None = None, horizon: int | None = None,
    vocab_size: int | None = None, meta: dict[str, Any] | None = None,
) -> Path:
    """Save a model for edgernn.

    An edgernn ``SequenceModel`` becomes a checkpoint (config + state_dict + input spec).
    Any other module becomes a TorchScript archive (scripted, else traced) with the input spec
    stored inside it, so the file can be loaded without running pickled code.
    """
    from edgernn.models.sequence import SequenceModel

    model = model.eval()
    spec = spec_from_example(
        example_input, batch_axis, seq_axis, task=task, num_classes=num_classes,
        horizon=horizon, vocab_size=vocab_size,
    )
    if isinstance(model, SequenceModel):
        cfg = model.config
        spec.task = spec.task or cfg["task"]
        spec.num_classes = spec.num_classes or cfg.get("num_classes")
        spec.horizon = spec.horizon or cfg.get("horizon")
        return save_checkpoint(path, cfg, model.state_dict(), spec, meta)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        scripted = torch.jit.script(model)
    except Exception:
        with torch.no_grad():
            scripted = torch.jit.trace(model, (example_input,), check_trace=False)
    extra = {SPEC_EXTRA_FILE: json.dumps({"input_spec": spec.to_dict(), "meta": meta or {}})}
    torch.jit.save(scripted, str(p), _extra_files=extra)
    return p
