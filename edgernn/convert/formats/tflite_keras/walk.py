"""What each PyTorch layer means for the Keras chain (shared by the TorchScript and torch.fx
readers in ``tflite_keras.graph``; tensor functions and methods are in ``tflite_keras.ops``).

The walker follows the model symbolically (values in ``tflite_keras.values``). Layers append
:class:`~edgernn.convert.formats.tflite_keras.plan.Step` s; every step must consume the previous
step's output (a chain); anything else raises
``Unsupported("tflite-keras cannot rebuild <what> at <file:line>")``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any, NoReturn

import numpy as np

from edgernn.convert.formats.tflite_keras.ops import TensorOps
from edgernn.convert.formats.tflite_keras.plan import Plan, Step, axes_for, keras_order, rnn_steps_for
from edgernn.convert.formats.tflite_keras.values import AXIS, Poison, State, Sym, Zero, module_params
from edgernn.errors import Unsupported

# module class name -> kind of layer; torch.nn modules outside this table are refused
LEAVES = {
    "Linear": "linear", "Conv1d": "conv1d", "LSTM": "rnn", "GRU": "rnn", "Embedding": "embedding",
    "LayerNorm": "layernorm", "BatchNorm1d": "batchnorm", "ReLU": "act", "Tanh": "act",
    "Sigmoid": "act", "GELU": "act", "SiLU": "act", "LeakyReLU": "act", "Softmax": "act",
    "LogSoftmax": "act", "Dropout": "identity", "Dropout1d": "identity", "AlphaDropout": "identity",
    "Identity": "identity", "Flatten": "flatten",
}
CONTAINERS = {"Sequential", "ModuleList", "ModuleDict"}
_ACT_FN = {"ReLU": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "GELU": "gelu", "SiLU": "silu",
           "LeakyReLU": "leaky_relu", "Softmax": "softmax", "LogSoftmax": "log_softmax"}


class Walker(TensorOps):
    """Builds a :class:`Plan` while a reader replays the model's graph through it."""

    def __init__(self, spec: Any, unroll: bool, source: str):
        labels, batch, seq, seq_len = axes_for(spec, unroll)
        features = 0 if spec.is_tokens else int(spec.shape[labels.index("C")])
        self.plan = Plan(spec.is_tokens, labels, batch, seq, seq_len, features, unroll, source)
        self.weights: dict[str, np.ndarray] = {}
        self.where = ""
        self._names: Counter[str] = Counter()
        self.input = Sym(-1, tuple(labels), tuple(int(s) for s in spec.shape), spec.is_tokens)
        order = keras_order(labels)
        if order != labels:  # the chain runs in Keras order (B, T, C)
            perm = [labels.index(a) for a in order]
            self.plan.steps.append(Step("transpose", "input_layout", {"perm": perm}))
            self.input = replace(self.input, step=0)

    # ---------------------------------------------------------------- helpers

    def message(self, what: str) -> str:
        return f"tflite-keras cannot rebuild {what} at {self.where or 'an unknown location'}"

    def fail(self, what: str) -> NoReturn:
        raise Unsupported(self.message(what))

    def name(self, base: str) -> str:
        base = re.sub(r"\W", "_", base).strip("_") or "layer"
        if base[0].isdigit():
            base = f"l{base}"
        self._names[base] += 1
        return base if self._names[base] == 1 else f"{base}_{self._names[base]}"

    def add(self, x: Sym, step: Step, labels: tuple[str, ...], shape: tuple[int, ...]) -> Sym:
        """Append ``step`` consuming ``x``; its output has ``labels``/``shape``."""
        if x.step != len(self.plan.steps) - 1:
            self.fail("a branch (a tensor used by two layers, e.g. a skip connection)")
        step.where = step.where or self.where
        self.plan.steps.append(step)
        return Sym(len(self.plan.steps) - 1, labels, shape)

    def tensor(self, v: Any, what: str = "this value") -> Sym:
        """``v`` as a chain tensor (an RNN's final hidden state becomes a pooling step)."""
        if isinstance(v, Sym):
            return v
        if isinstance(v, State):
            if v.kind == "c":
                self.fail("a use of the LSTM cell state c_n (the fused TFLite LSTM does not output it)")
            if v.index is None and v.entries == 1:
                v = replace(v, index=0)
            if v.index is None:
                self.fail("a use of the whole h_n stack (select the last layer: h_n[-1])")
            if v.bidirectional:
                self.fail("one direction of a bidirectional RNN's final state "
                          "(use torch.cat([h_n[-2], h_n[-1]], dim=1) or the output sequence)")
            if v.index != v.layers - 1:
                self.fail(f"the final state of RNN layer {v.index} (only the last layer's is rebuilt)")
            return self.pool(v.out, "last")
        if isinstance(v, Poison):
            raise Unsupported(v.message)
        self.fail(f"{what} ({type(v).__name__}, not a tensor of the layer chain)")

    def _dim(self, x: Sym, d: Any) -> int:
        if not isinstance(d, int):
            self.fail(f"a dimension given as {d!r}")
        n = len(x.labels)
        if not -n <= d < n:
            self.fail(f"dimension {d} of a {n}-d tensor")
        return d % n

    def pool(self, x: Sym, mode: str) -> Sym:
        t = x.labels.index("T")
        labels = x.labels[:t] + x.labels[t + 1:]
        shape = x.shape[:t] + x.shape[t + 1:]
        base = f"{mode}_pool" if mode in ("mean", "max") else f"{mode}_step"
        return self.add(x, Step("pool", self.name(base), {"mode": mode}), labels, shape)

    def finish(self, out: Any) -> tuple[Plan, dict[str, np.ndarray]]:
        """Check the returned value ends the chain; add the output transpose if needed."""
        if isinstance(out, (tuple, list)):
            if len(out) != 1:
                self.fail(f"a model with {len(out)} outputs (tflite-keras rebuilds single-output models)")
            out = out[0]
        y = self.tensor(out, "the returned value")
        if y.integer:
            self.fail("an integer output")
        if y.step != len(self.plan.steps) - 1:
            self.fail("an output that is not the end of the layer chain")
        if not any(s.op != "transpose" for s in self.plan.steps):
            self.fail("a model without layers")
        order = keras_order(y.labels)
        if list(y.labels) != order:
            self.add(y, Step("transpose", "output_layout", {"perm": [order.index(a) for a in y.labels]}),
                     y.labels, y.shape)
        return self.plan, self.weights

    # ---------------------------------------------------------------- layers (modules)

    def layer(self, kind: str, m: Any, path: str, args: list[Any],
              hp: Callable[[str, str, int], Any]) -> Any:
        """A call of a torch.nn module of class ``kind`` with positional ``args``; ``hp(attr,
        aten_kind, index)`` reads a hyperparameter (from the module, or its graph when traced)."""
        role = LEAVES.get(kind)
        if role is None:
            self.fail(f"nn.{kind}")
        if role == "rnn":
            return self.rnn(kind.lower(), m, path, args, hp)
        if not args:
            self.fail(f"nn.{kind} without an input")
        if len(args) > 1 and any(a is not None for a in args[1:]):
            self.fail(f"nn.{kind} called with {len(args)} inputs")
        x = args[0]
        if role == "identity":
            return x
        x = self.tensor(x)
        p = module_params(m)
        if role == "act":
            fn = _ACT_FN[kind]
            attrs: dict[str, Any] = {}
            if kind == "GELU":
                attrs["approximate"] = hp("approximate", "aten::gelu", 1)
            elif kind == "LeakyReLU":
                attrs["negative_slope"] = hp("negative_slope", "aten::leaky_relu", 1)
            elif kind in ("Softmax", "LogSoftmax"):
                attrs["dim"] = hp("dim", f"aten::{fn}", 1)
            return self.activation(fn, x, **attrs)
        if role == "flatten":
            return self.flatten(x, hp("start_dim", "aten::flatten", 1), hp("end_dim", "aten::flatten", 2))
        if x.integer and role != "embedding":
            self.fail(f"nn.{kind} on integer token ids")
        return getattr(self, f"_{role}")(x, p, path, hp)

    def _linear(self, x: Sym, p: dict[str, np.ndarray], path: str, hp: Any) -> Sym:
        w = p["weight"]
        if x.labels[-1] != "C" or x.width != w.shape[1]:
            self.fail(f"nn.Linear over the {AXIS[x.labels[-1]]} axis")
        name = self.name(path)
        self.weights[f"{name}/kernel"] = w.T.copy()
        self.weights[f"{name}/bias"] = p.get("bias", np.zeros(w.shape[0], np.float32))
        return self.add(x, Step("dense", name, {"units": int(w.shape[0])}), x.labels,
                        x.shape[:-1] + (int(w.shape[0]),))

    def _conv1d(self, x: Sym, p: dict[str, np.ndarray], path: str, hp: Any) -> Sym:
        w = p["weight"]  # [out, in/groups, k]
        if x.labels != ("B", "C", "T"):
            self.fail(f"nn.Conv1d on a tensor laid out {list(x.labels)} (expects [batch, channels, time])")
        mode = hp("padding_mode", "pad", 0)
        if mode not in (None, "zeros"):
            self.fail(f"nn.Conv1d with padding_mode={mode!r}")
        stride, dil = _one(hp("stride", "conv", 3)), _one(hp("dilation", "conv", 5))
        groups = x.width // int(w.shape[1])
        k = int(w.shape[2])
        pad = hp("padding", "conv", 4)
        if isinstance(pad, str):
            total = dil * (k - 1) if pad == "same" else 0
            left, right = total // 2, total - total // 2
        else:
            left = right = _one(pad)
        name = self.name(path)
        self.weights[f"{name}/kernel"] = np.transpose(w, (2, 1, 0)).copy()
        self.weights[f"{name}/bias"] = p.get("bias", np.zeros(w.shape[0], np.float32))
        t = (x.shape[2] + left + right - dil * (k - 1) - 1) // stride + 1
        attrs = {"filters": int(w.shape[0]), "kernel": k, "stride": stride, "dilation": dil,
                 "groups": groups, "pad": [left, right]}
        return self.add(x, Step("conv1d", name, attrs), x.labels, (x.shape[0], int(w.shape[0]), t))

    def _embedding(self, x: Sym, p: dict[str, np.ndarray], path: str, hp: Any) -> Sym:
        if not x.integer:
            self.fail("nn.Embedding on float values")
        w = p["weight"]
        name = self.name(path)
        self.weights[f"{name}/embeddings"] = w
        return self.add(x, Step("embedding", name, {"vocab": int(w.shape[0]), "dim": int(w.shape[1])}),
                        x.labels + ("C",), x.shape + (int(w.shape[1]),))

    def _layernorm(self, x: Sym, p: dict[str, np.ndarray], path: str, hp: Any) -> Sym:
        shape = hp("normalized_shape", "aten::layer_norm", 1)
        if x.labels[-1] != "C" or list(shape or []) != [x.width]:
            self.fail(f"nn.LayerNorm({shape}) over a tensor laid out {list(x.labels)}")
        name = self.name(path)
        affine = "weight" in p
        if affine:
            self.weights[f"{name}/gamma"] = p["weight"]
            self.weights[f"{name}/beta"] = p.get("bias", np.zeros(x.width, np.float32))
        eps = float(hp("eps", "aten::layer_norm", 4))
        return self.add(x, Step("layernorm", name, {"eps": eps, "affine": affine}), x.labels, x.shape)

    def _batchnorm(self, x: Sym, p: dict[str, np.ndarray], path: str, hp: Any) -> Sym:
        if len(x.labels) < 2 or x.labels[1] != "C":
            self.fail(f"nn.BatchNorm1d on a tensor laid out {list(x.labels)}")
        if "running_mean" not in p:
            self.fail("nn.BatchNorm1d without running statistics")
        eps = float(hp("eps", "aten::batch_norm", 7))
        scale = p.get("weight", np.ones(x.width, np.float32)) / np.sqrt(p["running_var"] + eps)
        shift = p.get("bias", np.zeros(x.width, np.float32)) - p["running_mean"] * scale
        return self.affine(x, scale, shift, f"BatchNorm1d {path}", path)

    def rnn(self, cell: str, m: Any, path: str, args: list[Any], hp: Any) -> tuple:
        p = module_params(m)
        kind = cell.upper()
        if any(k.startswith("weight_hr") for k in p):
            self.fail(f"nn.{kind} with proj_size")
        x = self.tensor(args[0]) if args else self.fail(f"nn.{kind} without an input")
        hx = args[1] if len(args) > 1 else None
        flat = list(hx) if isinstance(hx, (tuple, list)) else [hx]
        if not all(h is None or isinstance(h, Zero) for h in flat):
            self.fail(f"nn.{kind} with an initial state that is not zero")
        batch_first = bool(hp("batch_first", f"aten::{cell}", 8))
        want = ("B", "T", "C") if batch_first else ("T", "B", "C")
        if x.labels != want:
            self.fail(f"nn.{kind}(batch_first={batch_first}) on a tensor laid out {list(x.labels)}")
        if x.integer or x.width != p["weight_ih_l0"].shape[1]:
            self.fail(f"nn.{kind} on a tensor of {x.width} channels")
        steps = rnn_steps_for(cell, p, self.name(path), self.where, self.weights)
        width = steps[0].attrs["hidden"] * (2 if steps[0].attrs["bidirectional"] else 1)
        shape = tuple(width if a == "C" else s for a, s in zip(x.labels, x.shape, strict=True))
        out = x
        for s in steps:
            out = self.add(out, s, x.labels, shape)
        h = State("h", out, len(steps), steps[0].attrs["bidirectional"])
        return (out, (h, replace(h, kind="c"))) if cell == "lstm" else (out, h)


def _one(v: Any) -> int:
    if isinstance(v, (tuple, list)):
        if len(set(v)) != 1:
            raise Unsupported(f"tflite-keras cannot rebuild a Conv1d setting {v!r}")
        v = v[0]
    return int(v)
