"""The tf_keras rebuild of a PyTorch model as plain data: a chain of layer steps plus weights.

A :class:`Plan` says what the Keras model takes (``input_labels`` in PyTorch's axis order:
``B`` batch, ``T`` time, ``C`` channels) and lists :class:`Step` s applied one after the other.
Inside the chain tensors are kept in Keras order (``B``, ``T``, ``C``, whichever are present);
``transpose`` steps appear only at the input and output when PyTorch's order differs. Weights
are numpy arrays already in Keras layout, keyed ``"<step name>/<part>"``.

Plans come from :func:`plan_sequence_model` (edgernn's own checkpoints, from the config) or
from the graph walk in ``tflite_keras.graph`` (any other model). :func:`optimize` folds
per-channel affine steps (standardisation, BatchNorm) into neighbouring Dense/Conv/RNN weights
and a last-step pooling into the RNN that precedes it. The TF worker
(``tflite_keras.worker``) turns a plan into Keras layers; a streaming builder can read the
same steps (every ``rnn`` step knows its cell, width and direction).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgernn.errors import ExportError

OPS = ("transpose", "embedding", "dense", "conv1d", "rnn", "affine", "layernorm", "activation", "pool")
POOL_MODES = ("last", "first", "mean", "max", "final")  # final: bidirectional final states
ORDER = {"B": 0, "T": 1, "C": 2}


@dataclass
class Step:
    """One layer of the chain. ``attrs`` by op:

    - transpose: ``perm`` (over all axes, batch included)
    - embedding: ``vocab``, ``dim``; weights ``embeddings``
    - dense: ``units``; weights ``kernel`` [in, out], ``bias``
    - conv1d: ``filters``, ``kernel``, ``stride``, ``dilation``, ``groups``, ``pad`` [left, right];
      weights ``kernel`` [k, in/groups, out], ``bias``
    - rnn: ``cell`` (lstm|gru), ``hidden``, ``bidirectional``, ``return_sequences``; weights
      ``d<dir>_kernel``, ``d<dir>_recurrent``, ``d<dir>_bias`` (Keras gate order)
    - affine: y = x * scale + shift per channel; ``origin`` (what it came from); weights
      ``scale``, ``shift``
    - layernorm: ``eps``, ``affine``; weights ``gamma``, ``beta``
    - activation: ``fn`` (relu|tanh|sigmoid|gelu|gelu_tanh|silu|leaky_relu|softmax|log_softmax),
      ``alpha`` for leaky_relu
    - pool: ``mode`` (last|first|mean|max over time, or ``final``: a bidirectional RNN's final
      states, forward last step and backward first step)
    """

    op: str
    name: str
    attrs: dict[str, Any] = field(default_factory=dict)
    where: str = ""  # source location it came from, for notes and errors

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"unknown plan op {self.op!r}")


@dataclass
class Plan:
    """What the Keras model takes and the steps it applies (JSON-able except weights)."""

    tokens: bool
    input_labels: list[str]  # PyTorch axis order of the input, e.g. ["B", "T", "C"]
    batch: int | None  # None: dynamic batch axis in the file
    seq: int | None  # None: dynamic sequence axis in the file
    seq_len: int  # the example length
    features: int  # input channels (0 for token ids)
    unroll: bool
    source: str  # what the plan was read from, for the notes
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def input_shape(self) -> list[int | None]:
        """The file's input shape in PyTorch order (None where dynamic)."""
        size = {"B": self.batch, "T": self.seq, "C": self.features}
        return [size[a] for a in self.input_labels]

    @property
    def batch_axis(self) -> int:
        return self.input_labels.index("B")

    def rnn_steps(self) -> list[Step]:
        return [s for s in self.steps if s.op == "rnn"]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Plan:
        return cls(**{**d, "steps": [Step(**s) for s in d["steps"]]})


def keras_order(labels: list[str] | tuple[str, ...]) -> list[str]:
    return sorted(labels, key=ORDER.__getitem__)


def axes_for(spec: Any, unroll: bool) -> tuple[list[str], int | None, int | None, int]:
    """Input labels, batch, seq and example length of an InputSpec for this variant.

    The fused form needs a static batch (1 for a named batch axis) and keeps a named sequence
    axis dynamic; the unrolled form keeps a named batch axis dynamic and fixes the length."""
    from edgernn.errors import Unsupported

    n = len(spec.axes)
    want = 2 if spec.is_tokens else 3
    if n != want:
        shape = "[batch, seq] token ids" if spec.is_tokens else "[batch, seq, features]"
        raise Unsupported(f"tflite-keras cannot rebuild an input of rank {n} (expects {shape})")
    b = spec.batch_axis
    t = spec.seq_axis
    if t is None or t == b:
        rest = [i for i in range(n) if i != b]
        t = rest[0]
    labels = ["C"] * n
    labels[b], labels[t] = "B", "T"
    batch_ax, seq_ax = spec.axes[b], spec.axes[t]
    seq_len = int(seq_ax.size)
    if unroll:
        batch = None if batch_ax.name else int(batch_ax.size)
        seq = seq_len
    else:
        batch = 1 if batch_ax.name else int(batch_ax.size)
        seq = None if seq_ax.name else seq_len
    return labels, batch, seq, seq_len


# ------------------------------------------------------------------ RNN weights in Keras layout


def rnn_weights(cell: str, hidden: int, wih: np.ndarray, whh: np.ndarray, bih: np.ndarray | None,
                bhh: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One direction of one PyTorch LSTM/GRU layer as Keras (kernel, recurrent, bias).

    LSTM gates i,f,g,o are Keras i,f,c,o (the two biases summed); GRU gates r,z,n become
    z,r,h for ``GRU(reset_after=True)``, whose bias keeps input and recurrent rows apart."""
    g = wih.shape[0]
    bih = np.zeros(g, np.float32) if bih is None else bih
    bhh = np.zeros(g, np.float32) if bhh is None else bhh
    if cell == "gru":
        h = hidden
        perm = np.r_[h:2 * h, 0:h, 2 * h:3 * h]
        wih, whh, bih, bhh = wih[perm], whh[perm], bih[perm], bhh[perm]
    bias = bih + bhh if cell == "lstm" else np.stack([bih, bhh])
    return (wih.T.astype(np.float32).copy(), whh.T.astype(np.float32).copy(),
            bias.astype(np.float32))


def rnn_steps_for(cell: str, params: dict[str, np.ndarray], prefix: str, where: str,
                  weights: dict[str, np.ndarray]) -> list[Step]:
    """The Keras steps (one per layer) of a PyTorch nn.LSTM / nn.GRU, from its parameters."""
    hidden = int(params["weight_hh_l0"].shape[1])
    layers = sum(1 for k in params if k.startswith("weight_ih_l") and not k.endswith("_reverse"))
    bidir = "weight_ih_l0_reverse" in params
    steps = []
    for k in range(layers):
        name = f"{prefix}_{k}" if layers > 1 else prefix
        for d, sfx in enumerate(["", "_reverse"] if bidir else [""]):
            kern, rec, bias = rnn_weights(cell, hidden, params[f"weight_ih_l{k}{sfx}"],
                                          params[f"weight_hh_l{k}{sfx}"],
                                          params.get(f"bias_ih_l{k}{sfx}"), params.get(f"bias_hh_l{k}{sfx}"))
            weights[f"{name}/d{d}_kernel"], weights[f"{name}/d{d}_recurrent"] = kern, rec
            weights[f"{name}/d{d}_bias"] = bias
        steps.append(Step("rnn", name, {"cell": cell, "hidden": hidden, "bidirectional": bidir,
                                        "return_sequences": True}, where))
    return steps


# ------------------------------------------------------------------ edgernn's SequenceModel


def plan_sequence_model(model: Any, unroll: bool) -> tuple[Plan, dict[str, np.ndarray]]:
    """The plan of an edgernn SequenceModel, read from its config and modules."""
    cfg, module, spec = model.config, model.module, model.spec
    try:
        tokens = cfg["input"]["kind"] == "tokens"
        layer_cfgs = list(cfg["layers"])
        task = cfg["task"]
        rnns = list(module.rnns)
    except (KeyError, TypeError, AttributeError) as e:
        raise ExportError(f"tflite-keras: the model config is not a SequenceModel config ({e!r})") from None
    if (spec.is_tokens != tokens or spec.axis_index("batch") not in (0, None)
            or spec.seq_axis not in (1, None)):
        raise ExportError(
            f"tflite-keras: input spec {spec.shape} does not match a SequenceModel input "
            f"([batch, seq{'' if tokens else ', features'}] with batch first)")
    labels, batch, seq, seq_len = axes_for(spec, unroll)
    weights: dict[str, np.ndarray] = {}
    plan = Plan(tokens, labels, batch, seq, seq_len, 0 if tokens else int(spec.axes[2].size), unroll,
                "the SequenceModel config")

    def arr(t: Any) -> np.ndarray:
        return t.detach().cpu().numpy().astype(np.float32)

    if tokens:
        emb = arr(module.embed.weight)
        weights["embed/embeddings"] = emb
        plan.steps.append(Step("embedding", "embed", {"vocab": int(emb.shape[0]), "dim": int(emb.shape[1])}))
    else:
        std = arr(module.x_std).reshape(-1)
        weights["standardise/scale"] = 1.0 / std
        weights["standardise/shift"] = -arr(module.x_mean).reshape(-1) / std
        plan.steps.append(Step("affine", "standardise", {"origin": "input standardisation"}))
    if len(layer_cfgs) != len(rnns):
        raise ExportError("tflite-keras: the config's layers do not match the model's recurrent blocks")
    for bi, (lc, rnn) in enumerate(zip(layer_cfgs, rnns, strict=True)):
        cell = str(lc.get("cell", "")).lower()
        kind = type(rnn).__name__
        if cell not in ("lstm", "gru") or kind.lower() != cell:
            raise ExportError(
                f"tflite-keras: recurrent block {bi} is {kind!r}; only LSTM and GRU are rebuilt")
        if not getattr(rnn, "batch_first", True):
            raise ExportError(f"tflite-keras: block {bi}: only batch_first RNNs are rebuilt")
        params = {k: arr(v) for k, v in rnn.named_parameters()}
        plan.steps += rnn_steps_for(cell, params, f"{cell}{bi}", "", weights)
    if not plan.rnn_steps():
        raise ExportError("tflite-keras: the model has no recurrent layer")
    last = plan.steps[-1]
    plan.steps.append(Step("pool", "last_step", {"mode": "final" if last.attrs["bidirectional"] else "last"}))
    head_w, head_b = arr(module.head.weight), arr(module.head.bias)
    weights["head/kernel"], weights["head/bias"] = head_w.T.copy(), head_b
    plan.steps.append(Step("dense", "head", {"units": int(head_b.shape[0])}))
    if task == "forecast":
        y_std, y_mean = arr(module.y_std).reshape(-1), arr(module.y_mean).reshape(-1)
        n = int(head_b.shape[0])
        weights["destandardise/scale"] = np.broadcast_to(y_std, (n,)).astype(np.float32)
        weights["destandardise/shift"] = np.broadcast_to(y_mean, (n,)).astype(np.float32)
        plan.steps.append(Step("affine", "destandardise", {"origin": "forecast de-standardisation"}))
    return plan, weights


# ------------------------------------------------------------------ folding


def optimize(plan: Plan, weights: dict[str, np.ndarray]) -> None:
    """Fold neighbouring steps in place; each fold adds a note. Exact in real arithmetic."""
    i = 0
    while i < len(plan.steps) - 1:
        folded = _fold_pair(plan.steps[i], plan.steps[i + 1], weights)
        if folded is None:
            i += 1
            continue
        note, drop = folded
        plan.notes.append(note)
        del plan.steps[i + drop]
        i = max(0, i - 1)  # the merged step may fold with its other neighbour


def _fold_pair(a: Step, b: Step, w: dict[str, np.ndarray]) -> tuple[str, int] | None:
    """Fold two neighbours: (note, 0) when ``a`` went into ``b``, (note, 1) when ``b`` went
    into ``a``; None when the pair does not fold."""
    if a.op == "affine" and b.op == "affine":
        s1, t1 = _affine(a, w)
        s2, t2 = _affine(b, w)
        w[f"{b.name}/scale"] = (s1 * s2).astype(np.float32)
        w[f"{b.name}/shift"] = (t1 * s2 + t2).astype(np.float32)
        note = f"{_origin(a)} merged with {_origin(b)}"
        b.attrs["origin"] = f"{_origin(a)} and {_origin(b)}"
        return note, 0
    if a.op == "affine" and b.op in ("dense", "rnn"):
        s, t = _affine(a, w)
        kernels = [f"{b.name}/kernel"] if b.op == "dense" else \
            [f"{b.name}/d{d}_kernel" for d in range(2 if b.attrs["bidirectional"] else 1)]
        for kname in kernels:
            kern = w[kname].astype(np.float64)  # [in, out]
            shift = t @ kern
            w[kname] = (kern * s[:, None]).astype(np.float32)
            bname = kname.replace("kernel", "bias")
            bias = w[bname].astype(np.float64)
            if b.op == "rnn" and b.attrs["cell"] == "gru":
                bias[0] = bias[0] + shift  # the GRU's input bias row
            else:
                bias = bias + shift
            w[bname] = bias.astype(np.float32)
        return f"{_origin(a)} folded into the weights of {b.name}", 0
    if b.op == "affine" and a.op in ("dense", "conv1d"):
        s, t = _affine(b, w)
        w[f"{a.name}/kernel"] = (w[f"{a.name}/kernel"] * s).astype(np.float32)
        w[f"{a.name}/bias"] = (w[f"{a.name}/bias"] * s + t).astype(np.float32)
        return f"{_origin(b)} folded into the weights of {a.name}", 1
    if (a.op == "rnn" and b.op == "pool" and a.attrs["return_sequences"]
            and b.attrs["mode"] == ("final" if a.attrs["bidirectional"] else "last")):
        a.attrs["return_sequences"] = False  # Keras returns exactly these features
        return f"{b.attrs['mode']}-step features taken from {a.name}'s final state", 1
    return None


def _origin(step: Step) -> str:
    return str(step.attrs.get("origin", step.name))


def _affine(step: Step, w: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return w[f"{step.name}/scale"].astype(np.float64), w[f"{step.name}/shift"].astype(np.float64)


# ------------------------------------------------------------------ notes


def describe_plan(plan: Plan) -> list[str]:
    """Artifact notes: where the plan came from, what each recurrent layer became, the folds."""
    notes = [f"rebuilt from {plan.source}: " + " -> ".join(_step_text(s) for s in plan.steps)]
    rnns = plan.rnn_steps()

    def names(cell: str) -> list[str]:
        return [s.name + (" (bidirectional)" if s.attrs["bidirectional"] else "")
                for s in rnns if s.attrs["cell"] == cell]

    lstm, gru = names("lstm"), names("gru")
    if plan.unroll:
        if rnns:
            notes.append(f"all recurrent layers unrolled over {plan.seq_len} time steps "
                         f"({', '.join(lstm + gru)}): no loop, no state variables, fixed sequence length")
    else:
        if lstm:
            notes.append(f"LSTM fused into UNIDIRECTIONAL_SEQUENCE_LSTM ({', '.join(lstm)}); its state "
                         "lives in variable tensors: call reset_all_variables() before every invoke")
        if gru:
            notes.append(f"GRU as a WHILE loop ({', '.join(gru)}): TFLite has no fused GRU op; "
                         "tflite-keras-unrolled offers the unrolled form")
        if any(s.attrs["bidirectional"] for s in rnns):
            notes.append("bidirectional layers: a forward and a time-reversed (REVERSE_V2) pass, "
                         "concatenated")
        if rnns:
            notes.append(f"batch fixed at {plan.batch}: the converter needs a static batch to fuse the "
                         "LSTM / lower the GRU loop")
    if plan.tokens:
        notes.append("token ids are int32 in the file (the PyTorch model takes int64)")
    notes += plan.notes
    return notes


def _step_text(s: Step) -> str:
    a = s.attrs
    if s.op == "rnn":
        return f"{'bi' if a['bidirectional'] else ''}{a['cell'].upper()}({a['hidden']})"
    if s.op == "dense":
        return f"Dense({a['units']})"
    if s.op == "conv1d":
        return f"Conv1D({a['filters']}, k={a['kernel']})"
    if s.op == "activation":
        return a["fn"]
    if s.op == "pool":
        return f"{a['mode']}-step" if a["mode"] in ("last", "first", "final") else f"{a['mode']}-pool"
    if s.op == "affine":
        return "scale+shift"
    return {"embedding": "Embedding", "layernorm": "LayerNorm", "transpose": "transpose"}[s.op]
