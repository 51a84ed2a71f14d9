"""Step models made from edgernn's whole-sequence checkpoints (``export --streaming``).

A step takes one time step (or a chunk of K steps) and every recurrent layer's state, and
returns the prediction after the chunk and the new states: ``(x, h0[, c0], h1, ...) ->
(output, h0_out[, c0_out], ...)``. The step model is saved as a TorchScript archive that
carries its signature, so ``edgernn bench`` takes it like any user's step model.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from edgernn.errors import EdgeRNNError
from edgernn.model.checkpoint import SPEC_EXTRA_FILE
from edgernn.model.loading import LoadedModel
from edgernn.model.spec import Axis, InputSpec, Signature, TensorSpec
from edgernn.models.sequence import SequenceModel

if TYPE_CHECKING:
    import numpy as np


class StepModel(nn.Module):
    """One chunk of a SequenceModel with its recurrent state passed in and out."""

    def __init__(self, model: SequenceModel, chunk: int = 1):
        super().__init__()
        self.m = model
        self.chunk = chunk
        self.kinds = [("lstm" if isinstance(r, nn.LSTM) else "gru") for r in model.rnns]

    def forward(self, x: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m = self.m
        if m.tokens:
            h = m.embed(x)  # x [B, K] ids
        else:
            h = (x - m.x_mean) / m.x_std
            if self.chunk == 1:
                h = h.unsqueeze(1)  # x [B, F]: one step
        new: list[torch.Tensor] = []
        k = 0
        for rnn, kind in zip(m.rnns, self.kinds, strict=True):
            if kind == "lstm":
                h, (hn, cn) = rnn(h, (states[k], states[k + 1]))
                new += [hn, cn]
                k += 2
            else:
                h, hn = rnn(h, states[k])
                new.append(hn)
                k += 1
        out = m.head(h[:, -1, :])
        if m.config["task"] == "forecast":
            out = out * m.y_std + m.y_mean
        return (out, *new)


def refuse_reason(model: LoadedModel) -> str | None:
    """Why ``model`` cannot become a step model; None when it can."""
    arch = (getattr(model.module, "config", None) or {}).get("arch")
    if arch == "encdec":
        return "an encoder/decoder runs its decoder after the whole window: it has no step form"
    if arch == "ensemble":
        return ("step models of ensembles are not written yet; save its members "
                "(edgernn.model.checkpoint.write_members) and export each with --streaming")
    if not isinstance(model.module, SequenceModel):
        return ("--streaming turns edgernn checkpoints into step models; a model edgernn did not "
                "write is exported as a step model directly: describe its inputs with --input "
                "(and --state)")
    bi = [i for i, r in enumerate(model.module.rnns) if r.bidirectional]
    if bi:
        return (f"layer block {bi[0]} is bidirectional: its backward direction needs the whole "
                "sequence before the first output, so it has no step form")
    return None


def step_signature(model: SequenceModel, chunk: int) -> tuple[list[TensorSpec], dict[str, str]]:
    """Inputs (x, then each layer block's h[, c]) and the state pairs by output index."""
    cfg = model.config["input"]
    if model.tokens:
        x = TensorSpec("x", [Axis(1, "batch"), Axis(chunk)], "int64")
    elif chunk == 1:
        x = TensorSpec("x", [Axis(1, "batch"), Axis(cfg["features"])])
    else:
        x = TensorSpec("x", [Axis(1, "batch"), Axis(chunk), Axis(cfg["features"])])
    inputs, pairs = [x], {}
    for i, rnn in enumerate(model.rnns):
        names = [f"h{i}", f"c{i}"] if isinstance(rnn, nn.LSTM) else [f"h{i}"]
        for n in names:
            inputs.append(TensorSpec(n, [Axis(rnn.num_layers), Axis(1, "batch"),
                                         Axis(rnn.hidden_size)], "float32", "state"))
            pairs[n] = str(len(inputs) - 1)  # output k (after the prediction) feeds input k
    return inputs, pairs


def make_step_model(model: LoadedModel, out_dir: Path, chunk: int = 1) -> LoadedModel:
    """Write ``<name>.step.pt`` (TorchScript with its signature) into ``out_dir`` and return it
    loaded, with the whole-sequence model kept as the chained check's reference."""
    from edgernn.model.loading import load_model

    why = refuse_reason(model)
    if why:
        raise EdgeRNNError(f"cannot make a step model of {model.path.name}: {why}")
    if chunk < 1:
        raise EdgeRNNError("--chunk must be at least 1")
    seq = model.module
    assert isinstance(seq, SequenceModel)
    step = StepModel(seq, chunk).eval()
    inputs, pairs = step_signature(seq, chunk)
    spec = model.spec
    x_spec = InputSpec(inputs[0].axes, inputs[0].dtype, spec.task, spec.vocab_size,
                       spec.num_classes, spec.horizon)
    example = tuple(torch.zeros(t.shape, dtype=getattr(torch, t.dtype)) for t in inputs)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nn.LSTM's shape checks become constants: intended
        traced = torch.jit.trace(step, example, check_trace=False)
    sig = Signature(inputs, [], {})
    sig_d = {**sig.to_dict(), "state": pairs, "paired": "given"}
    meta = {**model.meta, "step_of": model.name, "chunk": chunk}
    extra = {SPEC_EXTRA_FILE: json.dumps({"input_spec": x_spec.to_dict(), "signature": sig_d,
                                          "meta": json.loads(json.dumps(meta, default=str))})}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{model.name}.step{chunk if chunk > 1 else ''}.pt"
    torch.jit.save(traced, str(path), _extra_files=extra)
    lm = load_model(path)
    lm.whole = seq
    lm.chunk = chunk
    return lm


def step_data(x: np.ndarray, chunk: int) -> np.ndarray:
    """Whole-sequence samples [N, T(, F)] as step data [N, T // K, K(, F)] (chunk 1: as is
    for features, [N, T, 1] for token ids); a tail shorter than a chunk is dropped."""
    import numpy as np

    n, t = x.shape[0], x.shape[1] // chunk * chunk
    if chunk == 1 and x.ndim == 3:
        return np.ascontiguousarray(x)
    return np.ascontiguousarray(x[:, :t].reshape(n, t // chunk, chunk, *x.shape[2:]))
