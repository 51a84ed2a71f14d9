"""Tensor functions and methods in the tflite-keras graph walk: transposes and no-op reshapes
relabel axes, indexing / mean / max over time become pooling steps, per-channel arithmetic
with constants an affine step, activations an activation step. A mixin of
:class:`~edgernn.convert.formats.tflite_keras.walk.Walker`, which provides ``fail``, ``tensor``,
``add``, ``pool``, ``name``, ``_dim`` and ``weights``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from edgernn.convert.formats.tflite_keras.plan import Step
from edgernn.convert.formats.tflite_keras.values import (
    AXIS,
    INT_MAX,
    Poison,
    State,
    Sym,
    Zero,
    first_poison,
    x_shape,
)
from edgernn.errors import Unsupported

_SIGS: dict[str, tuple[tuple[str, Any], ...]] = {
    "transpose": (("self", None), ("dim0", None), ("dim1", None)),
    "select": (("self", None), ("dim", None), ("index", None)),
    "slice": (("self", None), ("dim", 0), ("start", None), ("end", None), ("step", 1)),
    "flatten": (("self", None), ("start_dim", 0), ("end_dim", -1)),
    "squeeze": (("self", None), ("dim", None)),
    "unsqueeze": (("self", None), ("dim", None)),
    "mean": (("self", None), ("dim", None), ("keepdim", False), ("dtype", None)),
    "max": (("self", None), ("dim", None), ("keepdim", False)),
    "amax": (("self", None), ("dim", ()), ("keepdim", False)),
    "gelu": (("self", None), ("approximate", "none")),
    "leaky_relu": (("self", None), ("negative_slope", 0.01)),
    "softmax": (("self", None), ("dim", None)),
    "log_softmax": (("self", None), ("dim", None)),
    "add": (("self", None), ("other", None), ("alpha", 1)),
    "sub": (("self", None), ("other", None), ("alpha", 1)),
    "rsub": (("self", None), ("other", None), ("alpha", 1)),
    "mul": (("self", None), ("other", None)),
    "div": (("self", None), ("other", None)),
    "size": (("self", None), ("dim", None)),
    "cat": (("tensors", None), ("dim", 0)),
    "getitem": (("self", None), ("index", None)),
    "getattr": (("self", None), ("name", None)),
}
_ALIASES = {"truediv": "div", "concat": "cat", "concatenate": "cat", "multiply": "mul",
            "subtract": "sub", "divide": "div", "feature_dropout": "dropout", "alpha_dropout": "dropout",
            "dropout1d": "dropout", "__getitem__": "getitem", "new_zeros": "zeros", "zeros_like": "zeros"}
_IDENTITY = {"contiguous", "clone", "detach", "float", "to", "type_as", "dropout", "cpu", "requires_grad_"}
_ACTIVATIONS = {"relu", "tanh", "sigmoid", "gelu", "silu", "leaky_relu", "softmax", "log_softmax"}


class TensorOps:
    """Functions and methods on chain tensors (see the module docstring)."""

    def op(self, name: str, args: list[Any], kwargs: dict[str, Any], display: str) -> Any:
        """A function or method call ``name`` (``display`` names it in errors)."""
        name = _ALIASES.get(name, name)
        if name in _IDENTITY:
            return self._identity(name, args, kwargs)
        if name in _ACTIVATIONS:
            a = self.bind(name, args, kwargs) if name in _SIGS else {"self": args[0] if args else None}
            extra = {k: v for k, v in a.items() if k != "self"}
            return self.activation(name, self.tensor(a["self"]), **extra)
        fn = getattr(self, f"op_{name}", None)
        if fn is None:
            self.fail(display)
        if name not in ("getitem", "getattr"):  # a failed input is the cause: report it
            poison = first_poison([args, list(kwargs.values())])
            if poison is not None:
                raise Unsupported(poison.message)
        try:
            return fn(args, kwargs)
        except Unsupported as e:  # fails when used: an unknown op that uses it is named instead
            return Poison(str(e))

    def bind(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        sig = _SIGS[name]
        out = {k: d for k, d in sig}
        for (k, _), v in zip(sig, args, strict=False):
            out[k] = v
        for k, v in kwargs.items():
            if k in out:
                out[k] = v
            elif k == "input":
                out["self"] = v
        return out

    def _identity(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Ops that change nothing the chain sees (copies, devices, dropout in eval mode)."""
        x = args[0] if args else kwargs.get("input")
        if isinstance(x, Sym) and x.integer and name in ("float", "to"):
            self.fail(f"{name}() on integer token ids")
        if name in ("to", "type_as") and _casts_off_float32([*args[1:], *kwargs.values()]):
            self.fail(f"{name}() to a dtype other than float32")
        return x

    def activation(self, fn: str, x: Sym, **attrs: Any) -> Sym:
        if x.integer:
            self.fail(f"{fn} on integer token ids")
        step_attrs: dict[str, Any] = {"fn": fn}
        if fn == "gelu" and attrs.get("approximate", "none") == "tanh":
            step_attrs["fn"] = "gelu_tanh"
        if fn == "leaky_relu":
            step_attrs["alpha"] = float(attrs.get("negative_slope", 0.01))
        if fn in ("softmax", "log_softmax") and x.labels[self._dim(x, attrs.get("dim"))] != "C":
            self.fail(f"{fn} over the {AXIS[x.labels[self._dim(x, attrs.get('dim'))]]} axis")
        return self.add(x, Step("activation", self.name(fn), step_attrs), x.labels, x.shape)

    def affine(self, x: Sym, scale: Any, shift: Any, origin: str, base: str = "affine") -> Sym:
        w = x.width
        if w == 0:
            self.fail(f"{origin} on a tensor without a channel axis")
        name = self.name(base)
        self.weights[f"{name}/scale"] = np.broadcast_to(np.asarray(scale, np.float32), (w,)).copy()
        self.weights[f"{name}/shift"] = np.broadcast_to(np.asarray(shift, np.float32), (w,)).copy()
        return self.add(x, Step("affine", name, {"origin": origin}), x.labels, x.shape)

    def _channel_vector(self, x: Sym, c: Any, what: str) -> np.ndarray:
        """A constant that varies at most along the channel axis of ``x``, as a vector."""
        a = np.asarray(c, np.float32)
        if a.size == 1:
            return np.full(x.width, float(a.reshape(-1)[0]), np.float32)
        ok = a.ndim <= len(x.labels) and all(
            a.shape[-d] == 1 or (x.labels[-d] == "C" and a.shape[-d] == x.width)
            for d in range(1, a.ndim + 1))
        if not ok:
            self.fail(f"{what} by a constant of shape {list(a.shape)} (only per-channel constants)")
        return a.reshape(-1).copy()

    def _arith(self, op: str, a: Any, b: Any, alpha: Any = 1) -> Any:
        """``a op alpha*b`` where one side is a chain tensor and the other a constant: an affine
        step (per-channel scale and shift)."""
        if not isinstance(a, (Sym, State, Zero)) and not isinstance(b, (Sym, State, Zero)):
            return _python_arith(op, a, b, alpha)
        what = {"add": "an addition", "sub": "a subtraction", "mul": "a multiplication",
                "div": "a division"}[op]
        if isinstance(a, (Sym, State)) and isinstance(b, (Sym, State)):
            self.fail(f"{what} of two tensors (a branch)")
        if isinstance(a, Zero) or isinstance(b, Zero):
            self.fail(f"{what} with a zero tensor")
        swapped = not isinstance(a, (Sym, State))  # the constant comes first
        x = self.tensor(b if swapped else a)
        if x.width == 0:
            self.fail(f"{what} on a tensor without a channel axis")
        v = self._channel_vector(x, a if swapped else b, what)
        al = float(alpha)
        one, zero = np.ones_like(v), np.zeros_like(v)
        if op == "add":
            scale, shift = (al * one, v) if swapped else (one, al * v)
        elif op == "sub":
            scale, shift = (-al * one, v) if swapped else (one, -al * v)
        elif op == "mul":
            scale, shift = v, zero
        else:
            if swapped:
                self.fail("a division by a tensor")
            scale, shift = 1.0 / v, zero
        return self.affine(x, scale, shift, f"{what.split(' ', 1)[1]} by a constant", op)

    def op_add(self, args: list[Any], kw: dict[str, Any]) -> Any:
        a = self.bind("add", args, kw)
        return self._arith("add", a["self"], a["other"], a["alpha"])

    def op_sub(self, args: list[Any], kw: dict[str, Any]) -> Any:
        a = self.bind("sub", args, kw)
        return self._arith("sub", a["self"], a["other"], a["alpha"])

    def op_rsub(self, args: list[Any], kw: dict[str, Any]) -> Any:  # other - alpha * self
        a = self.bind("rsub", args, kw)
        return self._arith("sub", a["other"], a["self"], a["alpha"])

    def op_mul(self, args: list[Any], kw: dict[str, Any]) -> Any:
        a = self.bind("mul", args, kw)
        return self._arith("mul", a["self"], a["other"])

    def op_div(self, args: list[Any], kw: dict[str, Any]) -> Any:
        a = self.bind("div", args, kw)
        return self._arith("div", a["self"], a["other"])

    def op_neg(self, args: list[Any], kw: dict[str, Any]) -> Any:
        return self._arith("mul", args[0], -1.0)

    def op_transpose(self, args: list[Any], kw: dict[str, Any]) -> Any:
        a = self.bind("transpose", args, kw)
        x = a["self"]
        if isinstance(x, Zero):
            return x
        x = self.tensor(x)
        i, j = self._dim(x, a["dim0"]), self._dim(x, a["dim1"])
        perm = list(range(len(x.labels)))
        perm[i], perm[j] = j, i
        return self._permuted(x, perm)

    def op_t(self, args: list[Any], kw: dict[str, Any]) -> Any:
        return self.op_transpose([args[0], 0, 1], {})

    def op_permute(self, args: list[Any], kw: dict[str, Any]) -> Any:
        x = args[0] if args else kw.get("input")
        dims = list(args[1:]) if len(args) > 2 else list(args[1] if len(args) > 1 else kw.get("dims", ()))
        if isinstance(x, Zero):
            return x
        x = self.tensor(x)
        perm = [self._dim(x, d) for d in dims]
        if sorted(perm) != list(range(len(x.labels))):
            self.fail(f"permute{tuple(dims)}")
        return self._permuted(x, perm)

    def _permuted(self, x: Sym, perm: list[int]) -> Sym:
        return replace(x, labels=tuple(x.labels[p] for p in perm), shape=tuple(x.shape[p] for p in perm))

    def op_view(self, args: list[Any], kw: dict[str, Any]) -> Any:
        x = args[0] if args else kw.get("input")
        shape = args[1:] if len(args) > 2 else (args[1] if len(args) > 1 else kw.get("shape", kw.get("size")))
        if isinstance(x, Zero):
            return x
        x = self.tensor(x)
        target = [int(s) for s in (shape if isinstance(shape, (tuple, list)) else [shape])]
        if target.count(-1) == 1:
            known = int(np.prod([s for s in target if s != -1])) or 1
            target[target.index(-1)] = int(np.prod(x.shape)) // known
        if tuple(target) != x.shape:
            self.fail(f"a reshape from {list(x.shape)} to {target} (only no-op reshapes between layers)")
        return x

    op_reshape = op_view

    def op_flatten(self, args: list[Any], kw: dict[str, Any]) -> Any:
        a = self.bind("flatten", args, kw)
        return self.flatten(self.tensor(a["self"]), a["start_dim"], a["end_dim"])

    def flatten(self, x: Sym, start: Any, end: Any) -> Sym:
        if self._dim(x, start) != self._dim(x, end):
            self.fail(f"flatten({start}, {end}) of a tensor laid out {list(x.labels)} (it merges axes)")
        return x

    def op_squeeze(self, args: list[Any], kw: dict[str, Any]) -> Any:
        a = self.bind("squeeze", args, kw)
        v = a["self"]
        if isinstance(v, State) and v.index is None and a["dim"] in (0, -3) and v.entries == 1:
            return replace(v, index=0)
        self.fail("squeeze() of a tensor of the layer chain")

    def op_unsqueeze(self, args: list[Any], kw: dict[str, Any]) -> Any:
        self.fail("unsqueeze() (the chain keeps [batch, time, channels])")

    def op_select(self, args: list[Any], kw: dict[str, Any]) -> Any:
        a = self.bind("select", args, kw)
        return self._select(a["self"], a["dim"], a["index"])

    def _select(self, v: Any, dim: Any, index: Any) -> Any:
        if isinstance(v, State):
            if dim not in (0, -3) or v.index is not None or not isinstance(index, int):
                self.fail("indexing h_n other than h_n[layer]")
            if not -v.entries <= index < v.entries:
                self.fail(f"h_n[{index}] of {v.entries} entries")
            return replace(v, index=index % v.entries)
        if isinstance(v, (tuple, list)) and dim == 0:
            return v[index]
        x = self.tensor(v)
        d = self._dim(x, dim)
        if x.labels[d] != "T":
            self.fail(f"indexing the {AXIS[x.labels[d]]} axis")
        if index == -1:
            return self.pool(x, "last")
        if index == 0:
            return self.pool(x, "first")
        self.fail(f"time step {index} (only the first or last step of a variable-length sequence)")

    def op_slice(self, args: list[Any], kw: dict[str, Any]) -> Any:
        a = self.bind("slice", args, kw)
        return self._slice(a["self"], a["dim"], a["start"], a["end"], a["step"])

    def _slice(self, v: Any, dim: Any, start: Any, end: Any, step: Any) -> Any:
        """Only full slices (``x[:, :]``) pass; the time axis must be open-ended."""
        x = v if isinstance(v, (State, Zero)) else self.tensor(v)
        d = None if isinstance(x, (State, Zero)) else self._dim(x, dim)
        size = INT_MAX if d is None or x.labels[d] == "T" else x.shape[d]
        to_end = end is None or (isinstance(end, int) and end >= size)
        if start in (None, 0) and step in (None, 1) and to_end:
            return x
        axis = "h_n" if d is None else f"the {AXIS[x.labels[d]]} axis"
        self.fail(f"a slice [{start}:{end}:{step}] of {axis}")

    def op_getitem(self, args: list[Any], kw: dict[str, Any]) -> Any:
        v, idx = args[0], args[1]
        if isinstance(v, (tuple, list)) and isinstance(idx, int):
            return v[idx]
        if isinstance(v, dict):
            return v[idx]
        items = list(idx) if isinstance(idx, tuple) else [idx]
        if isinstance(v, State):
            if len(items) != 1:
                self.fail("indexing h_n other than h_n[layer]")
            return self._select(v, 0, items[0])
        x = self.tensor(v)
        dim = 0
        for k, it in enumerate(items):
            if it is Ellipsis:
                dim = len(x.labels) - (len(items) - k - 1)
            elif isinstance(it, slice):
                x = self._slice(x, dim, it.start, it.stop, it.step)
                dim += 1
            elif isinstance(it, int):
                x = self._select(x, dim, it)
            else:
                self.fail(f"indexing with {it!r}")
        return x

    def op_getattr(self, args: list[Any], kw: dict[str, Any]) -> Any:
        v, attr = args[0], args[1]
        if isinstance(v, tuple) and attr in ("values", "indices"):
            return v[0 if attr == "values" else 1]
        if isinstance(v, Sym) and attr == "shape":
            return x_shape(v)
        self.fail(f"the attribute .{attr}")

    def op_mean(self, args: list[Any], kw: dict[str, Any]) -> Any:
        a = self.bind("mean", args, kw)
        return self._reduce("mean", a["self"], a["dim"], a["keepdim"])

    def op_amax(self, args: list[Any], kw: dict[str, Any]) -> Any:
        a = self.bind("amax", args, kw)
        return self._reduce("max", a["self"], a["dim"], a["keepdim"])

    def op_max(self, args: list[Any], kw: dict[str, Any]) -> Any:
        a = self.bind("max", args, kw)
        if a["dim"] is None:
            self.fail("max() over all axes")
        y = self._reduce("max", a["self"], a["dim"], a["keepdim"])
        return (y, Poison(self.message("the indices of a max (argmax)")))

    def _reduce(self, mode: str, v: Any, dim: Any, keepdim: Any) -> Sym:
        x = self.tensor(v)
        dims = list(dim) if isinstance(dim, (tuple, list)) else [dim]
        if len(dims) != 1 or keepdim:
            self.fail(f"{mode}(dim={dim}, keepdim={keepdim}) (only over the time axis, keepdim=False)")
        d = self._dim(x, dims[0])
        if x.labels[d] != "T":
            self.fail(f"{mode} over the {AXIS[x.labels[d]]} axis")
        return self.pool(x, mode)

    def op_cat(self, args: list[Any], kw: dict[str, Any]) -> Any:
        a = self.bind("cat", args, kw)
        parts = list(a["tensors"] or [])
        if (len(parts) == 2 and all(isinstance(p, State) and p.kind == "h" for p in parts)
                and parts[0].out == parts[1].out and parts[0].bidirectional and a["dim"] in (1, -1)
                and [p.index for p in parts] == [parts[0].entries - 2, parts[0].entries - 1]):
            return self.pool(parts[0].out, "final")  # forward and backward final states
        self.fail("a concatenation (only torch.cat([h_n[-2], h_n[-1]], dim=1) of a bidirectional RNN)")

    def op_size(self, args: list[Any], kw: dict[str, Any]) -> Any:
        a = self.bind("size", args, kw)
        x = self.tensor(a["self"])
        return x_shape(x) if a["dim"] is None else x.shape[self._dim(x, a["dim"])]

    def op_dim(self, args: list[Any], kw: dict[str, Any]) -> Any:
        return len(self.tensor(args[0]).labels)

    def op_zeros(self, args: list[Any], kw: dict[str, Any]) -> Any:
        return Zero()


def _casts_off_float32(args: list[Any]) -> bool:
    """A dtype argument other than float32 (torch.dtype, or TorchScript's ScalarType code 6)."""
    import torch

    for v in args:
        if isinstance(v, torch.dtype) and v != torch.float32:
            return True
    return any(type(v) is int and v != 6 for v in args[:2])


def _python_arith(op: str, a: Any, b: Any, alpha: Any) -> Any:
    if op == "add":
        return a + b * alpha
    if op == "sub":
        return a - b * alpha
    if op == "rsub":
        return b - a * alpha
    if op == "mul":
        return a * b
    return a / b
