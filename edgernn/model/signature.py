"""Resolving a loaded model's signature: its inputs (from the file or ``--input``), its outputs
(from a trial run) and its state pairs (``--state``, else by equal shapes)."""

from __future__ import annotations

import inspect
from typing import Any, Protocol

import torch

from edgernn.errors import EdgeRNNError
from edgernn.model.spec import Axis, InputSpec, Signature, TensorSpec


class SignedModel(Protocol):
    """What resolving a signature needs of a loaded model (``loading.LoadedModel`` is one)."""

    module: torch.nn.Module
    spec: InputSpec
    signature: Signature | None

    def __call__(self, *inputs: torch.Tensor) -> list[torch.Tensor]: ...

    def example_inputs(self, **sizes: int) -> list[torch.Tensor]: ...

OUTPUT_NAME = "output"


def flat_tensors(out: object) -> list[torch.Tensor]:
    """The tensors of a model's output in the exporter's order (tuples/lists/dicts flattened)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in flat_tensors(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in flat_tensors(o)]
    return []


def forward_args(module: torch.nn.Module) -> tuple[list[str], int] | None:
    """Names of forward's tensor arguments (self excluded) and how many are required;
    None when they cannot be read."""
    fwd = getattr(module, "forward", None)
    schema = getattr(fwd, "schema", None)
    if schema is not None:  # a ScriptModule's method
        args = list(schema.arguments)[1:]
        return [a.name for a in args], sum(1 for a in args if not a.has_default_value())
    try:
        params = [p for p in inspect.signature(fwd).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return None
    return [p.name for p in params], sum(1 for p in params if p.default is p.empty)


def _output_specs(model: SignedModel, inputs: list[TensorSpec],
                  name_axes: bool = True) -> list[TensorSpec]:
    """Outputs from trial runs: sizes at the example shape; axes that follow a named input
    axis (found by running at that axis's size + 1) get its name."""
    base = model(*model.example_inputs())
    specs = [TensorSpec(_default_name(k), [Axis(int(d)) for d in t.shape],
                        str(t.dtype).removeprefix("torch."), "prediction")
             for k, t in enumerate(base)]
    names = {a.name: a.size for t in inputs for a in t.axes if a.name} if name_axes else {}
    for name, size in names.items():
        try:
            other = model(*model.example_inputs(**{name: size + 1}))
        except Exception:
            continue  # the model does not take another size on this axis; parity will tell
        if len(other) != len(base):
            continue
        for spec, t0, t1 in zip(specs, base, other, strict=True):
            if t0.dim() != t1.dim():
                continue
            for i, (d0, d1) in enumerate(zip(t0.shape, t1.shape, strict=True)):
                if d0 != d1 and spec.axes[i].name is None:
                    spec.axes[i] = Axis(int(d0), name)
    return specs


def error_line(e: BaseException) -> str:
    """The telling line of an exception: TorchScript puts the cause last, Python first."""
    lines = [x.strip() for x in str(e).strip().splitlines() if x.strip()]
    if not lines:
        return type(e).__name__
    if lines[0].startswith("The following operation failed"):
        return lines[-1][:300]
    return lines[0][:300]


def _default_name(k: int) -> str:
    return OUTPUT_NAME if k == 0 else f"{OUTPUT_NAME}_{k}"


def resolve_signature(model: SignedModel, given: list[TensorSpec],
                      pairs: list[tuple[str, str]], stored: dict[str, Any] | None,
                      name_axes: bool = True) -> Signature:
    """The model's signature; every inconsistency is a one-line EdgeRNNError. ``name_axes``
    False skips the extra runs that find which output axes follow a named input axis (for
    a caller that only runs the model, such as the torch runtime, whose load time is timed)."""
    if given:
        inputs = given
    elif stored:
        sig = Signature.from_dict(stored)
        inputs = sig.inputs
        if not pairs:
            pairs = list(sig.state.items())
    else:
        spec = model.spec
        inputs = [TensorSpec("input", list(spec.axes), spec.dtype, "data")]
    names = [t.name for t in inputs]
    if len(set(names)) != len(names):
        raise EdgeRNNError(f"--input names must be distinct, got {', '.join(names)}")
    fa = forward_args(model.module)
    if fa is not None:
        args, required = fa
        if len(inputs) < required:
            missing = ", ".join(args[len(inputs):required])
            raise EdgeRNNError(
                f"the model's forward takes {', '.join(args[:max(required, 1)])} but only "
                f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} described; pass "
                "--input NAME:SHAPE[:DTYPE] for each, in forward's order (missing: "
                f"{missing}; e.g. " + " ".join(f"--input {a}:SHAPE" for a in args[:required])
                + ")")
        if len(inputs) > len(args) and not any(a.startswith("*") for a in args):
            raise EdgeRNNError(f"the model's forward takes {len(args)} input(s) "
                               f"({', '.join(args)}) but {len(inputs)} were given")
    sig = Signature(list(inputs))
    model.signature = sig
    sig.outputs = _output_specs(model, inputs, name_axes)  # the caller names a failure
    _pair_states(sig, pairs)
    return sig


def _pair_states(sig: Signature, pairs: list[tuple[str, str]]) -> None:
    """Fill ``sig.state``: the given pairs, else each non-first input with the first unused
    non-first output of the same shape. State outputs are renamed ``<input>_out``."""
    in_names = [t.name for t in sig.inputs]
    out_names = [t.name for t in sig.outputs]
    found: dict[str, int] = {}
    for inp, out in pairs:
        if inp not in in_names:
            raise EdgeRNNError(f"--state {inp}={out}: the model has no input {inp!r} "
                               f"(inputs: {', '.join(in_names)})")
        if out.isdigit():
            k = int(out)
            if k >= len(sig.outputs):
                raise EdgeRNNError(f"--state {inp}={out}: the model has {len(sig.outputs)} "
                                   f"output(s), numbered 0..{len(sig.outputs) - 1}")
        elif out in out_names:
            k = out_names.index(out)
        else:
            raise EdgeRNNError(f"--state {inp}={out}: the model has no output {out!r} "
                               f"(outputs: {', '.join(out_names)}, or their index)")
        t_in, t_out = sig.input(inp), sig.outputs[k]
        if t_in.shape != t_out.shape:
            raise EdgeRNNError(f"--state {inp}={out}: output {k} has shape {t_out.shape} but "
                               f"input {inp!r} has {t_in.shape}; a state must keep its shape")
        if k in found.values():
            raise EdgeRNNError(f"--state {inp}={out}: output {k} already feeds another input")
        found[inp] = k
    paired = "given" if found else "none"
    if not pairs:
        for t in sig.inputs[1:]:
            k = next((k for k, o in enumerate(sig.outputs) if k > 0 and k not in found.values()
                      and o.shape == t.shape and o.dtype == t.dtype), None)
            if k is not None:
                found[t.name] = k
                paired = "shape"
    for t in sig.inputs:
        if t.role == "state" and t.name not in found:
            raise EdgeRNNError(
                f"state input {t.name!r} {t.shape} has no output to pair with (outputs: "
                + ", ".join(f"{o.name} {o.shape}" for o in sig.outputs)
                + f"); pass --state {t.name}=OUTPUT")
    for name, k in found.items():
        sig.input(name).role = "state"
        out = sig.outputs[k]
        out.role, out.name = "state", f"{name}_out"
    sig.state = {name: sig.outputs[k].name for name, k in found.items()}
    sig.paired = paired


def plan_of(signature: dict[str, Any], batch: int = 1) -> dict[str, Any]:
    """The probe's view of a signature (a ``Signature.to_dict()``): every input's concrete
    shape at ``batch``, its dtype and role, the (input, output) index pairs that carry state
    and the prediction output's index."""
    sig = Signature.from_dict(signature)
    return {
        "inputs": [{"name": t.name, "shape": t.with_sizes(batch=batch), "dtype": t.dtype,
                    "role": t.role, "batch_axis": t.axis_index("batch")} for t in sig.inputs],
        "feed": [list(p) for p in sig.state_feed()],
        "prediction": sig.prediction_index,
    }
