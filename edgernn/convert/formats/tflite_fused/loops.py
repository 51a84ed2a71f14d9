"""A recurrent layer as a TFLite ``WHILE`` loop over time, the input projection hoisted out.

Before the loop, ONE ``FULLY_CONNECTED`` computes ``W_ih x_t + b`` for every time step at once
(a matrix product over ``B*T`` rows instead of ``T`` matrix-vector products). The loop carries
``(t, pre, h[, c], out)``; each iteration runs ``CHUNK`` cells: it reads their steps of ``pre``
(GATHER + UNPACK), and per cell adds the recurrent projection ``W_hh h`` (one
FULLY_CONNECTED) and applies the gates; it writes their ``h'`` into ``out`` (PACK +
DYNAMIC_UPDATE_SLICE) and adds ``CHUNK`` to ``t``; the condition is ``t < T``. The zero
initial state and output buffer are FILLed at run time, not stored in the file.

- GRU (PyTorch's, ONNX's ``linear_before_reset``): pre = W_ih x + b_ih; gh = W_hh h + b_hh;
  r = sigmoid(pre_r + gh_r), z = sigmoid(pre_z + gh_z), n = tanh(pre_n + r * gh_n),
  h' = n + z * (h - n). TFLite has no fused GRU: this is its only form here.
- LSTM: pre = W_ih x + b_ih + b_hh; gates = pre_t + W_hh h, split i, f, g, o;
  c' = f c + i g; h' = o tanh(c') (then ``W_hr h'`` for ``proj_size``). The ``loop`` form of
  ``tflite-fused``: faster than the fused kernel on x86 from hidden ~128 (measured in
  ``benchmarks/real_architectures.py``), slower below.

With int8 weights both FULLY_CONNECTED ops run their hybrid kernel. State lives in the loop's
tensors, not in variables: nothing to reset between sequences.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgernn.convert.formats.tflite_fused.markers import Layer

_F32, _I32, _BOOL = "FLOAT32", "INT32", "BOOL"


def _op(md: Any, name: str, ins: list[int], outs: list[int], opts: Any = None,
        opts_type: str | None = None, version: int = 1) -> Any:
    fb = md.fb
    op = fb.OperatorT()
    op.opcodeIndex = md.opcode(name, version)
    op.inputs = np.asarray(ins, np.int32)
    op.outputs = np.asarray(outs, np.int32)
    if opts is not None:
        op.builtinOptionsType = getattr(fb.BuiltinOptions, opts_type)
        op.builtinOptions = opts
    return op


def _subgraph(md: Any, name: str) -> tuple[Any, int]:
    sg = md.fb.SubGraphT()
    sg.tensors, sg.operators, sg.inputs, sg.outputs = [], [], [], []
    sg.name = name.encode()
    md.m.subgraphs.append(sg)
    return sg, len(md.m.subgraphs) - 1


class Builder:
    """Adds ops to one subgraph: tensors by shape, the options each op needs."""

    def __init__(self, md: Any, sg: Any, prefix: str, int8: bool, ops: list[Any]):
        self.md, self.sg, self.p, self.int8, self.ops = md, sg, prefix, int8, ops
        self.shared: dict[int, tuple[np.ndarray, int]] = {}

    def tensor(self, tag: str, shape: list[int], kind: str = _F32) -> int:
        return self.md.tensor(self.sg, self.p + tag, shape, kind)

    def const(self, tag: str, arr: np.ndarray) -> int:
        return self.md.const(self.sg, self.p + tag, np.asarray(arr))  # 0-d stays 0-d

    def weight(self, tag: str, arr: np.ndarray) -> int:
        """A weight constant; the same array twice (one per unrolled step) is one tensor."""
        from edgernn.convert.formats.tflite_fused.legalize import quantize_symmetric

        def make() -> int:
            data = np.ascontiguousarray(arr, np.float32)
            if self.int8:
                q, s = quantize_symmetric(data)
                return self.md.const(self.sg, self.p + tag, q, s)
            return self.md.const(self.sg, self.p + tag, data)

        return self._once(arr, make)

    def _once(self, arr: np.ndarray, make: Any) -> int:
        """The constant made from ``arr`` in this subgraph, made on first use."""
        hit = self.shared.get(id(arr))
        if hit is None:
            hit = self.shared[id(arr)] = (arr, make())  # holds arr: its id is not reused
        return hit[1]

    def zeros(self, tag: str, shape: list[int]) -> int:
        """A float tensor of zeros made by FILL at run time (no constant of that size in the file)."""
        out = self.tensor(tag, shape)
        self.add("FILL", [self.const(tag + "_dims", np.asarray(shape, np.int32)),
                          self.const(tag + "_zero", np.asarray(0.0, np.float32))], [out])
        return out

    def add(self, name: str, ins: list[int], outs: list[int], opts: Any = None,
            opts_type: str | None = None, version: int = 1) -> None:
        self.ops.append(_op(self.md, name, ins, outs, opts, opts_type, version))

    def fc(self, x: int, w: np.ndarray, b: np.ndarray | None, tag: str, shape: list[int]) -> int:
        o = self.md.fb.FullyConnectedOptionsT()
        o.asymmetricQuantizeInputs = self.int8
        out = self.tensor(tag, shape)
        bias = -1 if b is None else self._once(
            b, lambda: self.const(tag + "_b", b.astype(np.float32)))
        self.add("FULLY_CONNECTED", [x, self.weight(tag + "_w", w), bias], [out], o,
                 "FullyConnectedOptions", version=9 if self.int8 else 1)
        return out

    def reshape(self, x: int, shape: list[int], tag: str) -> int:
        o = self.md.fb.ReshapeOptionsT()
        o.newShape = np.asarray(shape, np.int32)
        out = self.tensor(tag, shape)
        self.add("RESHAPE", [x, self.const(tag + "_shape", np.asarray(shape, np.int32))], [out],
                 o, "ReshapeOptions")
        return out

    def binary(self, kind: str, a: int, b: int, tag: str, shape: list[int],
               dtype: str = _F32) -> int:
        out = self.tensor(tag, shape, dtype)
        opts = {"ADD": "AddOptions", "MUL": "MulOptions", "SUB": "SubOptions"}[kind]
        self.add(kind, [a, b], [out], getattr(self.md.fb, opts + "T")(), opts)
        return out

    def unary(self, kind: str, a: int, tag: str, shape: list[int]) -> int:
        out = self.tensor(tag, shape)
        self.add(kind, [a], [out])
        return out

    def split(self, x: int, n: int, tag: str, shape: list[int]) -> list[int]:
        parts = [self.tensor(f"{tag}{k}", shape) for k in range(n)]
        o = self.md.fb.SplitOptionsT()
        o.numSplits = n
        self.add("SPLIT", [self.const(tag + "_axis", np.asarray(1, np.int32)), x], parts, o,
                 "SplitOptions")
        return parts


# time steps per loop iteration (the body unrolls this many cells). Measured on x86, 1 thread,
# XNNPACK on (3x LSTM-256 x 160 steps; 3x LSTM-32 x 50): p50 vs onnx-fp32 1.53x/1.91x at 1,
# 1.21x/1.54x at 4, 1.25x/1.69x at 8, 1.73x/2.28x at 16 (XNNPACK's cost per body grows with it)
CHUNK = 4


def recurrent_while(md: Any, main: Any, layer: Layer, int8: bool, x_main: int, y_main: int,
                    state_in: list[int], state_out: list[int]) -> list[Any]:
    """The ops that compute one layer and direction in subgraph ``main``: ``x_main`` in,
    ``y_main`` out, from the initial state tensors ``state_in`` (h[, c]) to ``state_out``.

    Each iteration of TFLite's WHILE costs more than a cell: it copies every loop-carried
    tensor (``Eval_static`` in its while kernel; the projections of all steps are [T, G*H]
    floats) and runs the body's ops one by one. The body therefore runs ``CHUNK`` steps per
    iteration (one GATHER of their projections, one PACK + DYNAMIC_UPDATE_SLICE of their
    outputs); the last T mod ``CHUNK`` steps, and all of them when T <= ``CHUNK`` (a step
    model: one), are cells written into ``main`` itself."""
    xs = [int(d) for d in main.tensors[x_main].shape]
    t_axis = 0 if layer.time_major else 1
    steps, batch, feat = xs[t_axis], xs[1 - t_axis], xs[2]
    gates = 4 if layer.cell == "lstm" else 3
    w = layer.weights
    p = f"edgernn_{layer.cell}{layer.id}/"
    seq = [steps, batch] if layer.time_major else [batch, steps]

    ops: list[Any] = []
    m = Builder(md, main, p, int8, ops)
    bias = w["b_ih"] + w["b_hh"] if layer.cell == "lstm" else w["b_ih"]
    flat = m.reshape(x_main, [steps * batch, feat], "x_rows")
    pre = m.reshape(m.fc(flat, w["w_ih"], bias, "pre_rows", [steps * batch, gates * layer.hidden]),
                    [*seq, gates * layer.hidden], "pre")
    if steps <= CHUNK:
        _tail(m, layer, pre, 0, state_in, None, y_main, state_out)
        return ops
    whole = steps - steps % CHUNK
    rest = steps - whole
    out0 = m.zeros("out0", [*seq, layer.out])
    carry = _loop(md, m, layer, int8, [pre, *state_in, out0], whole,
                  None if rest else [*state_out, y_main])
    if rest:  # the last steps as cells in the main graph: no second loop
        _tail(m, layer, pre, whole, carry[1:-1], carry[-1], y_main, state_out)
    return ops


def _tail(m: Builder, layer: Layer, pre: int, begin: int, state: list[int], out: int | None,
          y_main: int, state_out: list[int]) -> None:
    """Steps ``begin..T`` of ``pre`` as cells written into the main graph: into ``y_main``
    whole (``out`` None) or as the last steps of ``out``; the final state into ``state_out``."""
    t_axis = 0 if layer.time_major else 1
    shape = [int(d) for d in m.sg.tensors[pre].shape]
    steps = shape[t_axis] - begin
    if begin:
        size = list(shape)
        size[t_axis] = steps
        at = [0, 0, 0]
        at[t_axis] = begin
        part = m.tensor("pre_tail", size)
        m.add("SLICE", [pre, m.const("tail_begin", np.asarray(at, np.int32)),
                        m.const("tail_size", np.asarray(size, np.int32))], [part])
        pre = part
    hs, final = _cells(m, layer, _unpack(m, pre, steps, t_axis, "pre_t"), state, "tail_")
    if out is None:
        _pack(m, hs, t_axis, y_main)
    else:
        y_shape = [int(d) for d in m.sg.tensors[y_main].shape]
        y_shape[t_axis] = steps
        at = [0, 0, 0]
        at[t_axis] = begin
        ys = _pack(m, hs, t_axis, m.tensor("ys_tail", y_shape))
        m.add("DYNAMIC_UPDATE_SLICE", [out, ys, m.const("tail_at", np.asarray(at, np.int32))],
              [y_main])
    for new, want in zip(final, state_out, strict=True):
        _rebind(m.ops, new, want)


def _loop(md: Any, m: Builder, layer: Layer, int8: bool, carry: list[int], end: int,
          final: list[int] | None) -> list[int]:
    """One WHILE over steps ``0..end`` (``CHUNK`` per iteration) of ``carry`` =
    (pre, state..., out) in the main subgraph; returns the carried tensors after it
    (``final``, when given, names the state and out tensors it must write)."""
    fb = md.fb
    k, tag = CHUNK, "loop/"
    t_axis = 0 if layer.time_major else 1
    main_shapes = [[int(d) for d in m.sg.tensors[c].shape] for c in carry]
    seq_pre, seq_out = main_shapes[0], main_shapes[-1]
    p = m.p + tag

    def carried(b: Builder, side: str) -> list[int]:
        return ([b.tensor(side + "t", [], _I32)]
                + [b.tensor(f"{side}c{i}", s) for i, s in enumerate(main_shapes)])

    cond, cond_i = _subgraph(md, p + "cond")
    c = Builder(md, cond, p, int8, cond.operators)
    c_in = carried(c, "c_")
    less = c.tensor("less", [], _BOOL)
    c.add("LESS", [c_in[0], c.const("end", np.asarray(end, np.int32))], [less])
    cond.inputs, cond.outputs = np.asarray(c_in, np.int32), np.asarray([less], np.int32)

    body, body_i = _subgraph(md, p + "body")
    b = Builder(md, body, p, int8, body.operators)
    b_in = carried(b, "b_")
    t, pre_b, state, out = b_in[0], b_in[1], b_in[2:-1], b_in[-1]
    idx = b.binary("ADD", t, b.const("steps", np.arange(k, dtype=np.int32)), "idx", [k], _I32)
    chunk_shape = list(seq_pre)
    chunk_shape[t_axis] = k
    pre_k = b.tensor("pre_k", chunk_shape)
    gather = fb.GatherOptionsT()
    gather.axis = t_axis
    b.add("GATHER", [pre_b, idx], [pre_k], gather, "GatherOptions")
    hs, state = _cells(b, layer, _unpack(b, pre_k, k, t_axis, "pre_t"), state)
    out_shape = list(seq_out)
    out_shape[t_axis] = k
    ys = _pack(b, hs, t_axis, b.tensor("ys", out_shape))
    unit = np.zeros(3, np.int32)
    unit[t_axis] = 1
    start = b.binary("MUL", t, b.const("unit", unit), "start", [3], _I32)
    out_new = b.tensor("out_new", seq_out)
    b.add("DYNAMIC_UPDATE_SLICE", [out, ys, start], [out_new])
    t_new = b.binary("ADD", t, b.const("k", np.asarray(k, np.int32)), "t_new", [], _I32)
    body.inputs = np.asarray(b_in, np.int32)
    body.outputs = np.asarray([t_new, pre_b, *state, out_new], np.int32)

    outs = [m.tensor(tag + "t_end", [], _I32), m.tensor(tag + "pre_end", seq_pre)]
    if final is not None:
        outs += final
    else:
        outs += [m.tensor(f"{tag}c{i}_end", s) for i, s in enumerate(main_shapes[1:], 1)]
    wo = fb.WhileOptionsT()
    wo.condSubgraphIndex, wo.bodySubgraphIndex = cond_i, body_i
    m.add("WHILE", [m.const(tag + "t0", np.asarray(0, np.int32)), *carry], outs, wo,
          "WhileOptions")
    return outs[1:]


def _unpack(b: Builder, seq: int, k: int, t_axis: int, tag: str) -> list[int]:
    """``k`` steps of ``seq`` ([B, k, G] or [k, B, G]) as k tensors [B, G]."""
    shape = [int(d) for d in b.sg.tensors[seq].shape]
    row = [shape[1 - t_axis], shape[2]]
    parts = [b.tensor(f"{tag}{j}", row) for j in range(k)]
    o = b.md.fb.UnpackOptionsT()
    o.num, o.axis = k, t_axis
    b.add("UNPACK", [seq], parts, o, "UnpackOptions")
    return parts


def _pack(b: Builder, hs: list[int], t_axis: int, out: int) -> int:
    o = b.md.fb.PackOptionsT()
    o.valuesCount, o.axis = len(hs), t_axis
    b.add("PACK", hs, [out], o, "PackOptions")
    return out


def _rebind(ops: list[Any], old: int, new: int) -> None:
    """Make the op that writes tensor ``old`` write ``new`` instead (and its readers read it)."""
    for op in ops:
        op.outputs = np.asarray([new if int(t) == old else int(t) for t in op.outputs], np.int32)
        op.inputs = np.asarray([new if int(t) == old else int(t) for t in op.inputs], np.int32)


def _cells(b: Builder, layer: Layer, pre_steps: list[int], state: list[int],
           tag: str = "") -> tuple[list[int], list[int]]:
    """The cells of ``pre_steps`` (each [B, G*H]: the input projection of one step) in
    order from ``state`` (h[, c]); their outputs h' and the final state."""
    w = layer.weights
    batch = [int(d) for d in b.sg.tensors[pre_steps[0]].shape][0]
    h, out_w = layer.hidden, layer.out
    hh = [batch, h]
    hs = []
    for j, pre_t in enumerate(pre_steps):
        s = f"{tag}{j}_"
        if layer.cell == "gru":
            hid = state[0]
            gh = b.fc(hid, w["w_hh"], w["b_hh"], s + "gh", [batch, 3 * h])
            pr, pz, pn = b.split(pre_t, 3, s + "pre_", hh)
            hr, hz, hn = b.split(gh, 3, s + "gh_", hh)
            r = b.unary("LOGISTIC", b.binary("ADD", pr, hr, s + "r_pre", hh), s + "r", hh)
            z = b.unary("LOGISTIC", b.binary("ADD", pz, hz, s + "z_pre", hh), s + "z", hh)
            n = b.unary("TANH", b.binary("ADD", pn, b.binary("MUL", r, hn, s + "r_hn", hh),
                                         s + "n_pre", hh), s + "n", hh)
            delta = b.binary("MUL", z, b.binary("SUB", hid, n, s + "h_minus_n", hh),
                             s + "z_delta", hh)
            state = [b.binary("ADD", n, delta, s + "h_new", hh)]
        else:
            hid, cell = state
            g_all = b.binary("ADD", pre_t, b.fc(hid, w["w_hh"], None, s + "rec", [batch, 4 * h]),
                             s + "gates", [batch, 4 * h])
            gi, gf, gg, go = b.split(g_all, 4, s + "gate_", hh)
            i_ = b.unary("LOGISTIC", gi, s + "i", hh)
            f_ = b.unary("LOGISTIC", gf, s + "f", hh)
            g_ = b.unary("TANH", gg, s + "g", hh)
            o_ = b.unary("LOGISTIC", go, s + "o", hh)
            c_new = b.binary("ADD", b.binary("MUL", f_, cell, s + "f_c", hh),
                             b.binary("MUL", i_, g_, s + "i_g", hh), s + "c_new", hh)
            h_new = b.binary("MUL", o_, b.unary("TANH", c_new, s + "tanh_c", hh), s + "h_new", hh)
            if "w_hr" in w:
                h_new = b.fc(h_new, w["w_hr"], None, s + "proj", [batch, out_w])
            state = [h_new, c_new]
        hs.append(state[0])
    return hs, state
