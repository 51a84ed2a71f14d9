"""A GRU layer as a TFLite ``WHILE`` loop over time (TFLite has no fused GRU kernel).

The loop carries ``(t, x, h, out)``. Its body reads step ``t`` of ``x`` (GATHER), computes
PyTorch's GRU step (gates r, z, n; the reset gate multiplies the recurrent projection
including its bias, ONNX's ``linear_before_reset``)::

    gi = W_ih x_t + b_ih;  gh = W_hh h + b_hh          (two FULLY_CONNECTED, split in 3)
    r = sigmoid(gi_r + gh_r);  z = sigmoid(gi_z + gh_z);  n = tanh(gi_n + r * gh_n)
    h' = n + z * (h - n)

writes ``h'`` at step ``t`` of ``out`` (DYNAMIC_UPDATE_SLICE) and adds one to ``t``; the
condition is ``t < T``. With int8 weights the two FULLY_CONNECTED ops run their hybrid kernel.
State lives in the loop's tensors, not in variables: nothing to reset between sequences.
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


def _op(md: Any, sg: Any, name: str, ins: list[int], outs: list[int],
        opts: Any = None, opts_type: str | None = None, version: int = 1) -> Any:
    fb = md.fb
    op = fb.OperatorT()
    op.opcodeIndex = md.opcode(name, version)
    op.inputs = np.asarray(ins, np.int32)
    op.outputs = np.asarray(outs, np.int32)
    if opts is not None:
        op.builtinOptionsType = getattr(fb.BuiltinOptions, opts_type)
        op.builtinOptions = opts
    sg.operators.append(op)
    return op


def _subgraph(md: Any, name: str) -> Any:
    sg = md.fb.SubGraphT()
    sg.tensors, sg.operators, sg.inputs, sg.outputs = [], [], [], []
    sg.name = name.encode()
    md.m.subgraphs.append(sg)
    return sg, len(md.m.subgraphs) - 1


def gru_while(md: Any, main: Any, op: Any, layer: Layer, int8: bool) -> Any:
    """The WHILE op that replaces composite ``op`` in subgraph ``main``."""
    from edgernn.convert.formats.tflite_fused.legalize import quantize_symmetric

    fb = md.fb
    x_main, y_main = int(op.inputs[0]), int(op.outputs[0])
    xs = [int(d) for d in main.tensors[x_main].shape]
    t_axis = 0 if layer.time_major else 1
    b_axis = 1 - t_axis
    steps, batch, feat, h = xs[t_axis], xs[b_axis], xs[2], layer.hidden
    out_shape = [steps, batch, h] if layer.time_major else [batch, steps, h]
    p = f"edgernn_gru{layer.id}/"

    def carried(sg: Any, tag: str) -> list[int]:
        return [_tensor(md, sg, p + tag + "t", [], _I32), _tensor(md, sg, p + tag + "x", xs),
                _tensor(md, sg, p + tag + "h", [batch, h]), _tensor(md, sg, p + tag + "out", out_shape)]

    # condition: t < T
    cond, cond_i = _subgraph(md, p + "cond")
    c_in = carried(cond, "c_")
    less = _tensor(md, cond, p + "less", [], _BOOL)
    _op(md, cond, "LESS", [c_in[0], md.const(cond, p + "T", np.asarray(steps, np.int32))], [less])
    cond.inputs, cond.outputs = np.asarray(c_in, np.int32), np.asarray([less], np.int32)

    # body: one GRU step
    body, body_i = _subgraph(md, p + "body")
    t, x, hid, out = carried(body, "b_")
    w = layer.weights

    def weight(name: str, arr: np.ndarray) -> int:
        arr = np.ascontiguousarray(arr, np.float32)
        if int8:
            q, s = quantize_symmetric(arr)
            return md.const(body, p + name, q, s)
        return md.const(body, p + name, arr)

    gather = fb.GatherOptionsT()
    gather.axis = t_axis
    x_t = _tensor(md, body, p + "x_t", [batch, feat])
    _op(md, body, "GATHER", [x, t], [x_t], gather, "GatherOptions")

    def fc(src: int, wname: str, warr: np.ndarray, bname: str, barr: np.ndarray, dst: str) -> int:
        o = fb.FullyConnectedOptionsT()
        o.asymmetricQuantizeInputs = int8
        res = _tensor(md, body, p + dst, [batch, 3 * h])
        _op(md, body, "FULLY_CONNECTED",
            [src, weight(wname, warr), md.const(body, p + bname, np.ascontiguousarray(barr, np.float32))],
            [res], o, "FullyConnectedOptions", version=9 if int8 else 1)
        return res

    gi = fc(x_t, "w_ih", w["w_ih"], "b_ih", w["b_ih"], "gi")
    gh = fc(hid, "w_hh", w["w_hh"], "b_hh", w["b_hh"], "gh")
    axis = md.const(body, p + "axis1", np.asarray(1, np.int32))

    def split(src: int, tag: str) -> list[int]:
        parts = [_tensor(md, body, p + f"{tag}{g}", [batch, h]) for g in "rzn"]
        o = fb.SplitOptionsT()
        o.numSplits = 3
        _op(md, body, "SPLIT", [axis, src], parts, o, "SplitOptions")
        return parts

    ri, zi, ni = split(gi, "gi_")
    rh, zh, nh = split(gh, "gh_")

    def binary(kind: str, a: int, b: int, tag: str, shape: list[int] | None = None,
               dtype: str = _F32) -> int:
        res = _tensor(md, body, p + tag, shape if shape is not None else [batch, h], dtype)
        opts_t = {"ADD": "AddOptions", "MUL": "MulOptions", "SUB": "SubOptions"}[kind]
        _op(md, body, kind, [a, b], [res], getattr(fb, opts_t + "T")(), opts_t)
        return res

    def unary(kind: str, a: int, tag: str) -> int:
        res = _tensor(md, body, p + tag, [batch, h])
        _op(md, body, kind, [a], [res])
        return res

    r = unary("LOGISTIC", binary("ADD", ri, rh, "r_pre"), "r")
    z = unary("LOGISTIC", binary("ADD", zi, zh, "z_pre"), "z")
    n = unary("TANH", binary("ADD", ni, binary("MUL", r, nh, "r_gh_n"), "n_pre"), "n")
    h_new = binary("ADD", n, binary("MUL", z, binary("SUB", hid, n, "h_minus_n"), "z_delta"), "h_new")

    step_shape = [1, batch, h] if layer.time_major else [batch, 1, h]
    h_step = _tensor(md, body, p + "h_step", step_shape)
    reshape = fb.ReshapeOptionsT()
    reshape.newShape = np.asarray(step_shape, np.int32)
    _op(md, body, "RESHAPE", [h_new, md.const(body, p + "step_shape", np.asarray(step_shape, np.int32))],
        [h_step], reshape, "ReshapeOptions")
    unit = np.zeros(3, np.int32)
    unit[t_axis] = 1
    start = binary("MUL", t, md.const(body, p + "unit", unit), "start", [3], _I32)
    out_new = _tensor(md, body, p + "out_new", out_shape)
    _op(md, body, "DYNAMIC_UPDATE_SLICE", [out, h_step, start], [out_new])
    t_new = binary("ADD", t, md.const(body, p + "one", np.asarray(1, np.int32)), "t_new", [], _I32)
    body.inputs = np.asarray([t, x, hid, out], np.int32)
    body.outputs = np.asarray([t_new, x, h_new, out_new], np.int32)

    # the loop in the main graph
    ins = [md.const(main, p + "t0", np.asarray(0, np.int32)), x_main,
           md.const(main, p + "h0", np.zeros([batch, h], np.float32)),
           md.const(main, p + "out0", np.zeros(out_shape, np.float32))]
    outs = [_tensor(md, main, p + "t_end", [], _I32), _tensor(md, main, p + "x_end", xs),
            _tensor(md, main, p + "h_end", [batch, h]), y_main]
    new = fb.OperatorT()
    new.opcodeIndex = md.opcode("WHILE")
    new.inputs = np.asarray(ins, np.int32)
    new.outputs = np.asarray(outs, np.int32)
    wo = fb.WhileOptionsT()
    wo.condSubgraphIndex, wo.bodySubgraphIndex = cond_i, body_i
    new.builtinOptionsType = fb.BuiltinOptions.WhileOptions
    new.builtinOptions = wo
    return new
