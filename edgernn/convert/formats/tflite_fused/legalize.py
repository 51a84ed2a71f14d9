"""Flatbuffer side of the fused TFLite route: ``edgernn.*`` composites become fused kernels.

litert-torch keeps a composite it does not know as a ``STABLEHLO_COMPOSITE`` op whose
decomposition is a subgraph (here a placeholder, see ``tflite_fused.markers``). In the
``fused`` form each ``edgernn.lstm`` op becomes one ``UNIDIRECTIONAL_SEQUENCE_LSTM`` (PyTorch
gates i, f, g, o; the two biases summed; ``proj_size`` as projection weights; state in two
variable tensors that the runtime must reset before each sequence); in the ``loop`` form a
``WHILE`` loop with the input projection hoisted out (``tflite_fused.loops``). Each
``edgernn.gru`` op becomes such a loop in both forms (TFLite has no fused GRU).

Weights are fp32, or int8 with one symmetric scale per tensor for layers in ``int8_layers``
(the "hybrid" kernels: int8 weights, float activations, inputs quantized on the fly with
``asymmetric_quantize_inputs``). Placeholder subgraphs that nothing calls any more are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgernn.convert.formats.tflite_fused.markers import GIVEN, GRU, LSTM, Layer
from edgernn.errors import ExportError, Unsupported

_TANH = 4  # ActivationFunctionType.TANH


FORMS = ("fused", "loop")


@dataclass
class Legalized:
    blob: bytes
    fused_lstm: int
    loops: int
    notes: list[str]  # why a layer that could have been the fused op is a loop


class _Model:
    """A ModelT with helpers to add buffers, tensors and operator codes."""

    def __init__(self, blob: bytes):
        from ai_edge_litert import schema_py_generated as fb

        self.fb = fb
        self.m = fb.ModelT.InitFromPackedBuf(bytearray(blob), 0)
        _inline_offset_buffers(self.m, blob)
        self.names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}

    def op_name(self, op: Any) -> str:
        c = self.m.operatorCodes[op.opcodeIndex]
        return self.names.get(max(int(c.builtinCode), int(c.deprecatedBuiltinCode)), "")

    def opcode(self, name: str, version: int = 1) -> int:
        code = getattr(self.fb.BuiltinOperator, name)
        for i, c in enumerate(self.m.operatorCodes):
            if max(int(c.builtinCode), int(c.deprecatedBuiltinCode)) == code:
                c.version = max(int(c.version), version)
                return i
        oc = self.fb.OperatorCodeT()
        oc.builtinCode = code
        oc.deprecatedBuiltinCode = min(code, 127)
        oc.version = version
        self.m.operatorCodes.append(oc)
        return len(self.m.operatorCodes) - 1

    def const(self, sg: Any, name: str, arr: np.ndarray, scale: float | None = None) -> int:
        """A constant tensor in ``sg`` (int8 with ``scale`` when given)."""
        fb = self.fb
        buf = fb.BufferT()
        buf.data = np.frombuffer(np.ascontiguousarray(arr).tobytes(), np.uint8)
        self.m.buffers.append(buf)
        t = fb.TensorT()
        t.shape = np.asarray(arr.shape, np.int32)
        t.type = {np.dtype(np.int8): fb.TensorType.INT8, np.dtype(np.int32): fb.TensorType.INT32,
                  np.dtype(np.float32): fb.TensorType.FLOAT32}[arr.dtype]
        t.buffer = len(self.m.buffers) - 1
        t.name = name.encode()
        if scale is not None:
            q = fb.QuantizationParametersT()
            q.scale = np.asarray([scale], np.float32)
            q.zeroPoint = np.asarray([0], np.int64)
            t.quantization = q
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    def tensor(self, sg: Any, name: str, shape: list[int], kind: str = "FLOAT32") -> int:
        """A tensor that an op computes (``kind``: a TensorType name)."""
        self.m.buffers.append(self.fb.BufferT())
        t = self.fb.TensorT()
        t.shape = np.asarray(shape, np.int32)
        t.type = getattr(self.fb.TensorType, kind)
        t.buffer = len(self.m.buffers) - 1
        t.name = name.encode()
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    def variable(self, sg: Any, name: str, shape: list[int]) -> int:
        fb = self.fb
        self.m.buffers.append(fb.BufferT())
        t = fb.TensorT()
        t.shape = np.asarray(shape, np.int32)
        t.type = fb.TensorType.FLOAT32
        t.buffer = len(self.m.buffers) - 1
        t.name = name.encode()
        t.isVariable = True
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    def pack(self) -> bytes:
        import flatbuffers

        b = flatbuffers.Builder(1 << 20)
        b.Finish(self.m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def legalize(blob: bytes, layers: dict[int, Layer], int8_layers: Iterable[int] = (),
             form: str = "fused") -> Legalized:
    """Replace every ``edgernn.*`` composite of ``blob`` (a .tflite file's bytes); ``form``
    "fused" or "loop" decides what an LSTM becomes. An LSTM is the fused op only when it
    starts from zeros and nothing reads its final cell state (the op keeps both in variable
    tensors); otherwise it is a loop, and the returned notes say why."""
    md = _Model(blob)
    int8 = set(int8_layers)
    n_lstm = n_loops = 0
    notes: list[str] = []
    for sg in md.m.subgraphs:
        ops = []
        for op in sg.operators or []:
            name, lid, given = _composite(md, op)
            if name not in (LSTM, GRU):
                ops.append(op)
                continue
            layer = layers.get(lid)
            if layer is None:
                raise ExportError(f"composite {name}.{lid} names an unknown layer")
            ports = _Ports.of(md, sg, op, name, given)
            if name == LSTM and form == "fused" and not given and ports.c_n is None:
                ops += _fused_lstm(md, sg, layer, layer.id in int8, ports)
                n_lstm += 1
                continue
            if name == LSTM and form == "fused":
                why = " and ".join(w for w, on in (("a given initial state", given),
                                                    ("its final cell state is read", ports.c_n is not None))
                                   if on)
                notes.append(f"{layer.describe()}: TFLite cell ops, not the fused op ({why})")
            ops += _as_loop(md, sg, layer, layer.id in int8, ports)
            n_loops += 1
        sg.operators = ops
    _drop_unused_subgraphs(md)
    return Legalized(md.pack(), n_lstm, n_loops, notes)


@dataclass
class _Ports:
    """A composite's tensors, told apart by rank (see ``markers._composite``): x and y
    [B, T, F] or [T, B, F], h [B, out], c [1, 1, B, hidden]; None where litert-torch dropped
    an unused output (or there is no given state)."""

    x: int
    y: int | None
    h0: int | None
    c0: int | None
    h_n: int | None
    c_n: int | None

    @classmethod
    def of(cls, md: _Model, sg: Any, op: Any, name: str, given: bool) -> _Ports:
        def by_rank(tensors: Any) -> dict[int, int]:
            found: dict[int, int] = {}
            for t in (int(v) for v in tensors):
                rank = len(sg.tensors[t].shape)
                if rank in found:
                    raise ExportError(f"composite {name} has two rank-{rank} ports")
                found[rank] = t
            return found

        ins, outs = by_rank(op.inputs), by_rank(op.outputs)
        if 3 not in ins:
            raise ExportError(f"composite {name} has no sequence input")
        wanted = [2] + ([4] if name == LSTM else [])
        if given and any(r not in ins for r in wanted):
            raise ExportError(f"composite {name}: its given initial state was folded into a "
                              "constant by the converter")
        return cls(ins[3], outs.get(3), ins.get(2), ins.get(4), outs.get(2), outs.get(4))


def _as_loop(md: _Model, sg: Any, layer: Layer, int8: bool, p: _Ports) -> list[Any]:
    """The loop form of one layer and direction, with its state in and out wired to the
    composite's ports (zeros FILLed when no state is given; the rank-4 cell state reshaped)."""
    from edgernn.convert.formats.tflite_fused.loops import Builder, recurrent_while

    ops: list[Any] = []
    b = Builder(md, sg, f"edgernn_{layer.cell}{layer.id}/", int8, ops)
    batch = int(sg.tensors[p.x].shape[1 if layer.time_major else 0])
    xs = [int(d) for d in sg.tensors[p.x].shape]
    y = p.y if p.y is not None else b.tensor("y", [*xs[:2], layer.out])
    h0 = p.h0 if p.h0 is not None else b.zeros("h0", [batch, layer.out])
    h_n = p.h_n if p.h_n is not None else b.tensor("h_n", [batch, layer.out])
    state_in, state_out = [h0], [h_n]
    if layer.cell == "lstm":
        hc = [batch, layer.hidden]
        state_in.append(b.reshape(p.c0, hc, "c0") if p.c0 is not None else b.zeros("c0", hc))
        state_out.append(b.tensor("c_n", hc))
    ops += recurrent_while(md, sg, layer, int8, p.x, y, state_in, state_out)
    if p.c_n is not None:
        o = md.fb.ReshapeOptionsT()
        o.newShape = np.asarray([1, 1, *hc], np.int32)
        b.add("RESHAPE", [state_out[1], b.const("c_n_shape", np.asarray([1, 1, *hc], np.int32))],
              [p.c_n], o, "ReshapeOptions")
    return ops


def composite_ids(blob: bytes) -> set[int]:
    """Layer ids of the ``edgernn.lstm`` / ``edgernn.gru`` composites in a .tflite file (the
    layers a conversion really uses: one called with a given state left none)."""
    md = _Model(blob)
    return {lid for sg in md.m.subgraphs for op in sg.operators or []
            for name, lid, _ in [_composite(md, op)] if name in (LSTM, GRU)}


def _composite(md: _Model, op: Any) -> tuple[str, int, bool]:
    """(name, layer id, given state) of a composite op (``edgernn.lstm.<id>[.s]``);
    ("", -1, False) otherwise."""
    if md.op_name(op) != "STABLEHLO_COMPOSITE":
        return "", -1, False
    o = op.builtinOptions2
    name = (o.name or b"").decode() if isinstance(o.name, bytes) else str(o.name or "")
    given = name.endswith("." + GIVEN)
    base, _, tail = name.removesuffix("." + GIVEN).rpartition(".")
    if base in (LSTM, GRU) and tail.isdigit():
        return base, int(tail), given
    return name, -1, False


def quantize_symmetric(w: np.ndarray) -> tuple[np.ndarray, float]:
    """int8 weights and their one scale (max |w| maps to 127)."""
    amax = float(np.max(np.abs(w))) if w.size else 0.0
    scale = amax / 127.0 if amax > 0 else 1.0
    return np.clip(np.rint(w / scale), -127, 127).astype(np.int8), scale


def _fused_lstm(md: _Model, sg: Any, layer: Layer, int8: bool, ports: _Ports) -> list[Any]:
    """One ``UNIDIRECTIONAL_SEQUENCE_LSTM`` (+ a GATHER of its last step when the graph reads
    the final hidden state)."""
    fb = md.fb
    x_t, h_n = ports.x, ports.h_n
    w = layer.weights
    h = layer.hidden
    shape = [int(d) for d in sg.tensors[x_t].shape]
    batch = shape[1] if layer.time_major else shape[0]
    if batch < 1:
        raise Unsupported("the fused TFLite LSTM needs a fixed batch size (its state is a variable)")
    p = f"edgernn_lstm{layer.id}/"
    y_t = ports.y
    if y_t is None:  # only the final state is read
        y_t = md.tensor(sg, p + "y", [*shape[:2], layer.out])

    def weight(name: str, arr: np.ndarray) -> int:
        arr = np.ascontiguousarray(arr, np.float32)
        if int8:
            q, s = quantize_symmetric(arr)
            return md.const(sg, p + name, q, s)
        return md.const(sg, p + name, arr)

    gates = "ifgo"  # PyTorch order: input, forget, cell (g), output
    wi = {g: w["w_ih"][k * h:(k + 1) * h] for k, g in enumerate(gates)}
    wr = {g: w["w_hh"][k * h:(k + 1) * h] for k, g in enumerate(gates)}
    b = {g: (w["b_ih"] + w["b_hh"])[k * h:(k + 1) * h] for k, g in enumerate(gates)}
    ins = [x_t]
    ins += [weight(f"w_i{g}", wi[g]) for g in gates]
    ins += [weight(f"w_r{g}", wr[g]) for g in gates]
    ins += [-1, -1, -1]  # no peepholes
    ins += [md.const(sg, p + f"b_{g}", np.ascontiguousarray(b[g], np.float32)) for g in gates]
    if "w_hr" in w:
        ins += [weight("w_proj", w["w_hr"]), -1]
    else:
        ins += [-1, -1]
    ins += [md.variable(sg, p + "h", [batch, layer.out]), md.variable(sg, p + "c", [batch, h])]
    ins += [-1, -1, -1, -1]  # no layer norm
    new = fb.OperatorT()
    new.opcodeIndex = md.opcode("UNIDIRECTIONAL_SEQUENCE_LSTM", version=3 if int8 else 1)
    new.inputs = np.asarray(ins, np.int32)
    new.outputs = np.asarray([y_t], np.int32)
    opts = fb.UnidirectionalSequenceLSTMOptionsT()
    opts.fusedActivationFunction = _TANH
    opts.timeMajor = layer.time_major
    opts.asymmetricQuantizeInputs = int8
    new.builtinOptionsType = fb.BuiltinOptions.UnidirectionalSequenceLSTMOptions
    new.builtinOptions = opts
    if h_n is None:
        return [new]
    last = fb.OperatorT()
    last.opcodeIndex = md.opcode("GATHER")
    steps = shape[0] if layer.time_major else shape[1]
    last.inputs = np.asarray([y_t, md.const(sg, p + "last", np.asarray(steps - 1, np.int32))],
                             np.int32)
    last.outputs = np.asarray([h_n], np.int32)
    gather = fb.GatherOptionsT()
    gather.axis = 0 if layer.time_major else 1
    last.builtinOptionsType = fb.BuiltinOptions.GatherOptions
    last.builtinOptions = gather
    return [new, last]


def _drop_unused_subgraphs(md: _Model) -> None:
    """Remove subgraphs no op refers to (the replaced placeholders), renumbering the rest."""
    fb = md.fb

    def refs(op: Any) -> list[tuple[Any, str]]:
        out = []
        o, o2 = op.builtinOptions, op.builtinOptions2
        if isinstance(o, fb.WhileOptionsT):
            out += [(o, "condSubgraphIndex"), (o, "bodySubgraphIndex")]
        if isinstance(o, fb.IfOptionsT):
            out += [(o, "thenSubgraphIndex"), (o, "elseSubgraphIndex")]
        if isinstance(o, fb.CallOnceOptionsT):
            out += [(o, "initSubgraphIndex")]
        if isinstance(o2, fb.StableHLOCompositeOptionsT):
            out += [(o2, "decompositionSubgraphIndex")]
        return out

    used = {0}
    todo = [0]
    while todo:
        g = todo.pop()
        for op in md.m.subgraphs[g].operators or []:
            for obj, attr in refs(op):
                k = int(getattr(obj, attr))
                if k not in used:
                    used.add(k)
                    todo.append(k)
    keep = sorted(used)
    if len(keep) == len(md.m.subgraphs):
        return
    new_index = {old: new for new, old in enumerate(keep)}
    md.m.subgraphs = [md.m.subgraphs[k] for k in keep]
    for sg in md.m.subgraphs:
        for op in sg.operators or []:
            for obj, attr in refs(op):
                setattr(obj, attr, new_index[int(getattr(obj, attr))])
    for sig in md.m.signatureDefs or []:
        sig.subgraphIndex = new_index.get(int(sig.subgraphIndex), 0)


def _inline_offset_buffers(m: Any, blob: bytes) -> None:
    """Buffers stored after the flatbuffer (offset/size, used for large models) become inline."""
    for buf in m.buffers or []:
        if int(getattr(buf, "offset", 0) or 0) > 1:
            start, size = int(buf.offset), int(buf.size)
            buf.data = np.frombuffer(blob[start:start + size], np.uint8)
            buf.offset = 0
            buf.size = 0


def write(path: Path, blob: bytes) -> None:
    Path(path).write_bytes(blob)
