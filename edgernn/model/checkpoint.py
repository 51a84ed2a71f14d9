"""Writing model files: edgernn checkpoints and spec-carrying TorchScript archives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgernn.errors import EdgeRNNError
from edgernn.model.spec import Axis, InputSpec, Signature, TensorSpec

CHECKPOINT_KEY = "edgernn_checkpoint"
CHECKPOINT_VERSION = 1
SPEC_EXTRA_FILE = "edgernn_spec.json"


def read_spec_extra(raw: str | bytes, path: Path) -> tuple[dict | None, dict]:
    """The input spec and meta (with the signature, if any) stored in a TorchScript archive's
    ``edgernn_spec.json``; one line naming the file when it is not that JSON object (a pickle,
    other bytes, wrong types)."""
    if not raw:
        return None, {}
    bad = f"{path}: the embedded {SPEC_EXTRA_FILE} is not"
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        d = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise EdgeRNNError(f"{bad} UTF-8 JSON; re-save the model with edgernn.save()") from None
    if not isinstance(d, dict):
        raise EdgeRNNError(f"{bad} a JSON object (got {type(d).__name__})")
    spec_d, meta, sig = d.get("input_spec"), d.get("meta") or {}, d.get("signature")
    for key, val, want in (("input_spec", spec_d, dict), ("meta", meta, dict),
                           ("signature", sig, dict)):
        if val is not None and not isinstance(val, want):
            raise EdgeRNNError(f"{bad} usable: {key!r} must be an object, got "
                               f"{type(val).__name__}")
    return spec_d, ({**meta, "signature": sig} if sig else meta)


def spec_from_example(
    example: torch.Tensor, batch_axis: int = 0, seq_axis: int | None = 1, **fields: Any
) -> InputSpec:
    """Input spec from an example tensor: ``batch_axis`` and ``seq_axis`` become dynamic."""
    if example.dim() < 2:
        raise EdgeRNNError("example_input must have at least a batch and a sequence axis")
    names = {batch_axis % example.dim(): "batch"}
    if seq_axis is not None:
        names[seq_axis % example.dim()] = "seq"
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
    model: nn.Module, path: str | Path, example_input: torch.Tensor | tuple[torch.Tensor, ...],
    *, task: str | None = None, batch_axis: int = 0, seq_axis: int | None = 1,
    num_classes: int | None = None, horizon: int | None = None,
    vocab_size: int | None = None, meta: dict[str, Any] | None = None,
    input_names: list[str] | None = None, state: dict[str, int | str] | None = None,
    batch_axes: list[int] | None = None,
) -> Path:
    """Save a model for edgernn.

    An edgernn ``SequenceModel``, ``EncDecModel`` or ``EnsembleModel`` becomes a checkpoint
    (config + state_dict + input spec).
    Any other module becomes a TorchScript archive (scripted, else traced) with its signature
    stored inside it, so the file can be loaded without running pickled code.

    A step model passes a tuple ``example_input`` (data first, then the states),
    ``input_names`` and ``state`` (input name -> output index or name, e.g. ``{"state": 1}``);
    the data input's ``batch_axis`` is dynamic, each state's batch axis is ``batch_axes[i]``
    (default 1 for a 3-d ``[layers, batch, hidden]`` state, else 0), and a step input has no
    sequence axis unless ``seq_axis`` says so.
    """
    from edgernn.models.build import REFERENCE_MODELS

    model = model.eval()
    several = isinstance(example_input, (tuple, list))
    examples = tuple(example_input) if several else (example_input,)
    first = examples[0]
    if several and seq_axis == 1 and first.dim() == 2:
        seq_axis = None  # [batch, features]: one step, no sequence axis
    spec = spec_from_example(
        first, batch_axis, seq_axis, task=task, num_classes=num_classes,
        horizon=horizon, vocab_size=vocab_size,
    )
    if isinstance(model, REFERENCE_MODELS):
        cfg = model.config
        spec.task = spec.task or cfg["task"]
        spec.num_classes = spec.num_classes or cfg.get("num_classes")
        spec.horizon = spec.horizon or cfg.get("horizon")
        return save_checkpoint(path, cfg, model.state_dict(), spec, meta)
    payload: dict[str, Any] = {"input_spec": spec.to_dict(), "meta": meta or {}}
    if several:
        payload["signature"] = _signature(examples, spec, input_names, state, batch_axes)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        scripted = torch.jit.script(model)
    except Exception:
        with torch.no_grad():
            scripted = torch.jit.trace(model, examples, check_trace=False)
    torch.jit.save(scripted, str(p), _extra_files={SPEC_EXTRA_FILE: json.dumps(payload)})
    return p


def _signature(examples: tuple[torch.Tensor, ...], spec: InputSpec, names: list[str] | None,
               state: dict[str, int | str] | None, batch_axes: list[int] | None) -> dict[str, Any]:
    """The stored signature of a several-input model (outputs are found again at load)."""
    names = names or ["x", *(f"input_{i}" for i in range(1, len(examples)))]
    if len(names) != len(examples):
        raise EdgeRNNError(f"input_names has {len(names)} name(s) for {len(examples)} inputs")
    inputs = [TensorSpec(names[0], list(spec.axes), spec.dtype)]
    for i, t in enumerate(examples[1:], start=1):
        b = batch_axes[i] if batch_axes and i < len(batch_axes) else (1 if t.dim() == 3 else 0)
        axes = [Axis(int(d), "batch" if k == b else None) for k, d in enumerate(t.shape)]
        inputs.append(TensorSpec(names[i], axes, str(t.dtype).removeprefix("torch."),
                                 "state" if state and names[i] in state else "data"))
    for n in state or {}:
        if n not in names:
            raise EdgeRNNError(f"state names input {n!r}, which is not in input_names {names}")
    sig = Signature(inputs, [], {k: str(v) for k, v in (state or {}).items()},
                    "given" if state else "none")
    return sig.to_dict()


def write_members(path: str | Path, out_dir: str | Path) -> list[Path]:
    """Each member of an ensemble checkpoint written as its own checkpoint
    ``<stem>.member<i>.pt`` (same input spec; ``meta`` from the ensemble's record of that
    member), so the members can be exported and benched on their own for the record."""
    p, out = Path(path), Path(out_dir)
    ck = torch.load(p, map_location="cpu", weights_only=True)
    cfg = ck.get("config") or {}
    if cfg.get("arch") != "ensemble":
        raise EdgeRNNError(f"{p} is not an ensemble checkpoint")
    spec = InputSpec.from_dict(ck["input_spec"])
    records = (ck.get("meta") or {}).get("members") or []
    paths = []
    for i, member in enumerate(cfg["members"]):
        prefix = f"members.{i}."
        state = {k[len(prefix):]: v for k, v in ck["state_dict"].items() if k.startswith(prefix)}
        meta = {**(records[i] if i < len(records) else {}), "member_of": p.name, "member": i}
        paths.append(save_checkpoint(out / f"{p.stem}.member{i}.pt", member, state, spec, meta))
    return paths
