"""A recurrent layer as a TFLite ``WHILE`` loop over time, the input projection hoisted out.

Before the loop, ONE ``FULLY_CONNECTED`` computes ``W_ih x_t + b`` for every time step at once
(a matrix product over ``B*T`` rows instead of ``T`` matrix-vector products). The loop carries
``(t, pre, h[, c], out)``; its body reads step ``t`` of ``pre`` (GATHER), adds the recurrent
projection ``W_hh h`` (one FULLY_CONNECTED), applies the gates, writes ``h'`` at step ``t`` of
``out`` (DYNAMIC_UPDATE_SLICE) and adds one to ``t``; the condition is ``t < T``.

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


def _tensor(md: Any, sg: Any, name: str, shape: list[int], kind: str = _F32) -> int:
    fb = md.fb
    md.m.buffers.append(fb.BufferT())
    t = fb.TensorT()
    t.shape = np.asarray(shape, np.int32)
    t.type = getattr(fb.TensorType, kind)
    t.buffer = len(md.m.buffers) - 1
    t.name = name.encode()
    sg.tensors.append(t)
    return len(sg.tensors) - 1


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


class _Builder:
    """Adds ops to one subgraph: tensors by shape, the options each op needs."""

    def __init__(self, md: Any, sg: Any, prefix: str, int8: bool, ops: list[Any]):
        self.md, self.sg, self.p, self.int8, self.ops = md, sg, prefix, int8, ops

    def tensor(self, tag: str, shape: list[int], kind: str = _F32) -> int:
        return _tensor(self.md, self.sg, self.p + tag, shape, kind)

    def const(self, tag: str, arr: np.ndarray) -> int:
        return self.md.const(self.sg, self.p + tag, np.asarray(arr))  # 0-d stays 0-d

    def weight(self, tag: str, arr: np.ndarray) -> int:
        from edgernn.convert.formats.tflite_fused.legalize import quantize_symmetric

        arr = np.ascontiguousarray(arr, np.float32)
        if self.int8:
            q, s = quantize_symmetric(arr)
            return self.md.const(self.sg, self.p + tag, q, s)
        return self.md.const(self.sg, self.p + tag, arr)

    def add(self, name: str, ins: list[int], outs: list[int], opts: Any = None,
            opts_type: str | None = None, version: int = 1) -> None:
        self.ops.append(_op(self.md, name, ins, outs, opts, opts_type, version))

    def fc(self, x: int, w: np.ndarray, b: np.ndarray | None, tag: str, shape: list[int]) -> int:
        o = self.md.fb.FullyConnectedOptionsT()
        o.asymmetricQuantizeInputs = self.int8
        out = self.tensor(tag, shape)
        bias = self.const(tag + "_b", b.astype(np.float32)) if b is not None else -1
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


def recurrent_while(md: Any, main: Any, op: Any, layer: Layer, int8: bool) -> list[Any]:
    """The ops (input projection, WHILE) that replace composite ``op`` in subgraph ``main``."""
    fb = md.fb
    x_main, y_main = int(op.inputs[0]), int(op.outputs[0])
    xs = [int(d) for d in main.tensors[x_main].shape]
    t_axis = 0 if layer.time_major else 1
    steps, batch, feat = xs[t_axis], xs[1 - t_axis], xs[2]
    h, out_w = layer.hidden, layer.out
    gates = 4 if layer.cell == "lstm" else 3
    w = layer.weights
    p = f"edgernn_{layer.cell}{layer.id}/"
    seq = [steps, batch] if layer.time_major else [batch, steps]

    ops: list[Any] = []
    m = _Builder(md, main, p, int8, ops)
    bias = w["b_ih"] + w["b_hh"] if layer.cell == "lstm" else w["b_ih"]
    flat = m.reshape(x_main, [steps * batch, feat], "x_rows")
    pre = m.reshape(m.fc(flat, w["w_ih"], bias, "pre_rows", [steps * batch, gates * h]),
                    [*seq, gates * h], "pre")

    state = [[batch, out_w]] + ([[batch, h]] if layer.cell == "lstm" else [])

    def carried(b: _Builder, tag: str) -> list[int]:
        return ([b.tensor(tag + "t", [], _I32), b.tensor(tag + "pre", [*seq, gates * h])]
                + [b.tensor(f"{tag}s{k}", s) for k, s in enumerate(state)]
                + [b.tensor(tag + "out", [*seq, out_w])])

    cond, cond_i = _subgraph(md, p + "cond")
    c = _Builder(md, cond, p, int8, cond.operators)
    c_in = carried(c, "c_")
    less = c.tensor("less", [], _BOOL)
    c.add("LESS", [c_in[0], c.const("T", np.asarray(steps, np.int32))], [less])
    cond.inputs, cond.outputs = np.asarray(c_in, np.int32), np.asarray([less], np.int32)

    body, body_i = _subgraph(md, p + "body")
    b = _Builder(md, body, p, int8, body.operators)
    b_in = carried(b, "b_")
    t, pre_b, hid, out = b_in[0], b_in[1], b_in[2], b_in[-1]
    gather = fb.GatherOptionsT()
    gather.axis = t_axis
    pre_t = b.tensor("pre_t", [batch, gates * h])
    b.add("GATHER", [pre_b, t], [pre_t], gather, "GatherOptions")
    hh = [batch, h]
    if layer.cell == "gru":
        gh = b.fc(hid, w["w_hh"], w["b_hh"], "gh", [batch, 3 * h])
        pr, pz, pn = b.split(pre_t, 3, "pre_", hh)
        hr, hz, hn = b.split(gh, 3, "gh_", hh)
        r = b.unary("LOGISTIC", b.binary("ADD", pr, hr, "r_pre", hh), "r", hh)
        z = b.unary("LOGISTIC", b.binary("ADD", pz, hz, "z_pre", hh), "z", hh)
        n = b.unary("TANH", b.binary("ADD", pn, b.binary("MUL", r, hn, "r_hn", hh), "n_pre", hh), "n", hh)
        delta = b.binary("MUL", z, b.binary("SUB", hid, n, "h_minus_n", hh), "z_delta", hh)
        h_new = b.binary("ADD", n, delta, "h_new", hh)
        new_state = [h_new]
    else:
        cell = b_in[3]
        g_all = b.binary("ADD", pre_t, b.fc(hid, w["w_hh"], None, "rec", [batch, 4 * h]), "gates",
                         [batch, 4 * h])
        gi, gf, gg, go = b.split(g_all, 4, "gate_", hh)
        i_ = b.unary("LOGISTIC", gi, "i", hh)
        f_ = b.unary("LOGISTIC", gf, "f", hh)
        g_ = b.unary("TANH", gg, "g", hh)
        o_ = b.unary("LOGISTIC", go, "o", hh)
        c_new = b.binary("ADD", b.binary("MUL", f_, cell, "f_c", hh),
                         b.binary("MUL", i_, g_, "i_g", hh), "c_new", hh)
        h_new = b.binary("MUL", o_, b.unary("TANH", c_new, "tanh_c", hh), "h_new", hh)
        if "w_hr" in w:
            h_new = b.fc(h_new, w["w_hr"], None, "proj", [batch, out_w])
        new_state = [h_new, c_new]
    step_shape = [1, batch, out_w] if layer.time_major else [batch, 1, out_w]
    h_step = b.reshape(h_new, step_shape, "h_step")
    unit = np.zeros(3, np.int32)
    unit[t_axis] = 1
    start = b.binary("MUL", t, b.const("unit", unit), "start", [3], _I32)
    out_new = b.tensor("out_new", [*seq, out_w])
    b.add("DYNAMIC_UPDATE_SLICE", [out, h_step, start], [out_new])
    t_new = b.binary("ADD", t, b.const("one", np.asarray(1, np.int32)), "t_new", [], _I32)
    body.inputs = np.asarray(b_in, np.int32)
    body.outputs = np.asarray([t_new, pre_b, *new_state, out_new], np.int32)

    ins = ([m.const("t0", np.asarray(0, np.int32)), pre]
           + [m.const(f"s{k}_0", np.zeros(s, np.float32)) for k, s in enumerate(state)]
           + [m.const("out0", np.zeros([*seq, out_w], np.float32))])
    outs = ([m.tensor("t_end", [], _I32), m.tensor("pre_end", [*seq, gates * h])]
            + [m.tensor(f"s{k}_end", s) for k, s in enumerate(state)] + [y_main])
    wo = fb.WhileOptionsT()
    wo.condSubgraphIndex, wo.bodySubgraphIndex = cond_i, body_i
    m.add("WHILE", ins, outs, wo, "WhileOptions")
    return ops
