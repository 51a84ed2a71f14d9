"""Quantized litert-torch files store each weight and each repeated quantization table once
(``share_identical_buffers``, run on every file the ai-edge-quantizer child writes).

litert-torch unrolls an LSTM: one FULLY_CONNECTED per time step reads the recurrent weight.
Full-integer quantization gives every step its own int32 bias with one scale and one int64 zero
point per output channel, which made the int8 file larger than the fp32 one. A plain-torch
model is converted once through the real pipeline; expected values are computed here, not with
edgernn's own census: the files are read with ``ai_edge_litert.schema_py_generated`` and run
with LiteRT's interpreter, and the un-shared file comes from calling ai-edge-quantizer directly.
"""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_quantizer")

import flatbuffers  # noqa: E402
from ai_edge_litert import schema_py_generated as fb  # noqa: E402
from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: E402

from edgernn.convert.exporting import export_model  # noqa: E402
from edgernn.convert.formats.tflite_common import share_identical_buffers  # noqa: E402
from edgernn.model.loading import LoadedModel  # noqa: E402
from edgernn.model.spec import Axis, InputSpec  # noqa: E402

# hidden 64: with hidden 32 the 24 per-step int32 biases (0.5 kB each) and their tables outweigh
# what int8 saves on 20 kB of weights, and no int8 file of that model can be smaller than fp32
SEQ, FEATURES, HIDDEN, CLASSES = 24, 8, 64, 3
GATES = 4 * HIDDEN


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(FEATURES, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


def _calib() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((32, SEQ, FEATURES)).astype(np.float32)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    torch.manual_seed(0)
    spec = InputSpec([Axis(1, "batch"), Axis(SEQ, "seq"), Axis(FEATURES)], "float32", "classify",
                     num_classes=CLASSES)
    lm = LoadedModel(Net().eval(), spec, "checkpoint", Path("net.pt"), "0" * 64)
    out = tmp_path_factory.mktemp("shared")
    manifest = export_model(lm, out, ["tflite-litert"], ["int8", "int16x8", "dynamic"],
                            calib=_calib(), calib_source="32 synthetic samples")
    arts = {a["variant"]: {**a, "path": str(out / a["path"]) if a["path"] else ""}
            for a in manifest["artifacts"]}
    for a in arts.values():
        assert a["status"] == "ok", (a["variant"], a["error"])
    return {"arts": arts, "out": out}


# --------------------------------------------------------------------------- independent reads


def _model(path_or_blob: str | bytes) -> fb.ModelT:
    blob = path_or_blob if isinstance(path_or_blob, bytes) else Path(path_or_blob).read_bytes()
    return fb.ModelT.InitFromPackedBuf(bytearray(blob), 0)


def _pack(m: fb.ModelT) -> bytes:
    b = flatbuffers.Builder(1 << 16)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _has_data(b: fb.BufferT) -> bool:
    return (b.data is not None and len(b.data) > 0) or int(b.offset or 0) > 1


def _int8_buffers(path_or_blob: str | bytes) -> Counter:
    """Distinct non-empty buffers holding int8 constants, by tensor shape."""
    m = _model(path_or_blob)
    seen = {(tuple(t.shape.tolist()), t.buffer) for sg in m.subgraphs for t in sg.tensors
            if t.type == fb.TensorType.INT8 and t.buffer > 0 and _has_data(m.buffers[t.buffer])}
    return Counter(shape for shape, _ in seen)


def _outputs(path_or_blob: str | bytes, n: int = 4) -> np.ndarray:
    """Outputs on ``n`` fixed inputs, quantized with the file's input scale if it has one."""
    kw = ({"model_content": path_or_blob} if isinstance(path_or_blob, bytes)
          else {"model_path": str(path_or_blob)})
    it = Interpreter(**kw, num_threads=1,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    x = np.random.default_rng(7).standard_normal((n, *i["shape"])).astype(np.float32)
    out = []
    for s in x:
        if i["dtype"] != np.float32:
            scale, zero = i["quantization"]
            info = np.iinfo(i["dtype"])
            s = np.clip(np.round(s / scale + zero), info.min, info.max).astype(i["dtype"])
        it.set_tensor(i["index"], s)
        it.invoke()
        out.append(it.get_tensor(o["index"]).copy())
    return np.stack(out)


def _unshared_int8(fp32_path: str, tmp: Path) -> Path:
    """The int8 file exactly as ai-edge-quantizer writes it (no edgernn post-pass), calibrated
    on the same samples in the same order as the pipeline's child."""
    from ai_edge_quantizer import quantizer, recipe

    it = Interpreter(model_path=fp32_path)
    key = next(iter(it.get_signature_list()))
    name = it.get_signature_list()[key]["inputs"][0]
    qt = quantizer.Quantizer(fp32_path, recipe.static_wi8_ai8())
    cal = qt.calibrate({key: [{name: s[None]} for s in _calib()]}, num_threads=1)
    out = tmp / "raw-int8.tflite"
    qt.quantize(cal, enable_progress_report=False).export_model(str(out), overwrite=True)
    return out


# --------------------------------------------------------------------------- tests


def test_int8_smaller_than_fp32_and_equal_to_the_unshared_file(made, tmp_path):
    arts = made["arts"]
    fp32 = arts["tflite-litert-fp32"]["path"]
    int8 = arts["tflite-litert-int8"]
    size = {k: Path(a["path"]).stat().st_size for k, a in arts.items()}
    raw = _unshared_int8(fp32, tmp_path)
    raw_size = raw.stat().st_size
    # (a) the fix: as ai-edge-quantizer writes it the int8 file is larger than fp32, after
    # the pass it is smaller
    assert raw_size > size["tflite-litert-fp32"] > size["tflite-litert-int8"], size
    assert int8["size_bytes"] == size["tflite-litert-int8"]
    # (b) one int8 copy of each weight, not one per step
    ops = Counter(op["op_name"] for op in Interpreter(model_path=int8["path"])._get_ops_details())
    assert ops["FULLY_CONNECTED"] >= SEQ  # unrolled: one per step
    shapes = _int8_buffers(int8["path"])
    assert shapes[(GATES, HIDDEN)] == 1 and shapes[(GATES, FEATURES)] == 1, shapes
    assert shapes[(CLASSES, HIDDEN)] == 1
    # (c) same values: the pass only changes where bytes are stored
    assert np.array_equal(_outputs(raw), _outputs(int8["path"]))
    assert share_identical_buffers(raw.read_bytes())[0] == Path(int8["path"]).read_bytes()
    notes = " | ".join(int8["notes"])
    assert (f"repeated quantization tables stored once ({raw_size / 1000:.1f} kB as "
            f"ai-edge-quantizer wrote it, {size['tflite-litert-int8'] / 1000:.1f} kB now") in notes
    assert "larger than its fp32" not in notes and "duplicate per-step" not in notes


def test_a_file_still_larger_than_fp32_says_why(made):
    arts = made["arts"]
    fp32 = Path(arts["tflite-litert-fp32"]["path"]).stat().st_size
    for variant in ("int16x8", "int8-dynamic"):
        a = arts[f"tflite-litert-{variant}"]
        size = Path(a["path"]).stat().st_size
        said = [n for n in a["notes"] if "larger than its fp32 source" in n]
        if size <= fp32:
            assert not said, (variant, said)
            continue
        assert len(said) == 1, (variant, a["notes"])
        assert said[0].startswith(f"the {variant} file ({size / 1000:.1f} kB) is larger than its "
                                  f"fp32 source ({fp32 / 1000:.1f} kB): ")
        # the per-step biases are the reason: count them in the file
        m = _model(a["path"])
        bias = {t.buffer for sg in m.subgraphs for t in sg.tensors
                if t.type in (fb.TensorType.INT32, fb.TensorType.INT64)
                and t.shape.tolist() == [GATES]
                and _has_data(m.buffers[t.buffer])}
        assert len(bias) >= SEQ - 1
        assert f"{len(bias)} integer bias buffer(s)" in said[0]
    # int16x8 stores 64-bit biases: with this model it stays larger
    assert Path(arts["tflite-litert-int16x8"]["path"]).stat().st_size > fp32


def test_pass_is_idempotent_on_dynamic_and_int16x8(made):
    """The pass ran on every variant's file: applying it again changes nothing, and the
    recurrent weight is one int8 buffer there too."""
    for variant in ("int8-dynamic", "int16x8"):
        path = made["arts"][f"tflite-litert-{variant}"]["path"]
        blob = Path(path).read_bytes()
        again, n = share_identical_buffers(blob)
        assert n == 0 and again is blob
        assert _int8_buffers(path)[(GATES, HIDDEN)] == 1


def test_per_step_weight_copies_are_merged(made):
    """Give each step's FULLY_CONNECTED its own int8 copy of the recurrent weight (what
    ai-edge-quantizer does when tensors of one buffer get separate quantization): the pass
    merges them back to one buffer and the outputs stay bit-identical."""
    path = made["arts"]["tflite-litert-int8"]["path"]
    m = _model(path)
    sg = m.subgraphs[0]
    names = {i: k for k, i in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    fcs = [op for op in sg.operators
           if names[m.operatorCodes[op.opcodeIndex].builtinCode] == "FULLY_CONNECTED"
           and sg.tensors[op.inputs[1]].shape.tolist() == [GATES, HIDDEN]]
    assert len(fcs) == SEQ - 1  # step 0 multiplies the zero initial state away
    w = fcs[0].inputs[1]
    src = m.buffers[sg.tensors[w].buffer]
    data = (src.data if src.data is not None and len(src.data)
            else np.frombuffer(Path(path).read_bytes(), np.uint8, src.size, src.offset))
    for k, op in enumerate(fcs[1:]):
        t = copy.deepcopy(sg.tensors[w])
        t.name = t.name + b"_step%d" % k
        m.buffers.append(fb.BufferT(data=np.array(data, np.uint8)))
        t.buffer = len(m.buffers) - 1
        sg.tensors.append(t)
        ins = op.inputs.copy()
        ins[1] = len(sg.tensors) - 1
        op.inputs = ins
    for b in m.buffers:  # inline every buffer for this hand-made file
        if int(b.offset or 0) > 1:
            b.data = np.frombuffer(Path(path).read_bytes(), np.uint8, b.size, b.offset).copy()
            b.offset = b.size = 0
    dup = _pack(m)
    assert _int8_buffers(dup)[(GATES, HIDDEN)] == SEQ - 1
    merged, n = share_identical_buffers(dup)
    assert n == SEQ - 2
    assert _int8_buffers(merged)[(GATES, HIDDEN)] == 1
    assert len(merged) < len(dup) - n * GATES * HIDDEN
    assert np.array_equal(_outputs(dup), _outputs(merged))
    assert np.array_equal(_outputs(merged), _outputs(path))


def _tiny(extra_scale: float = 0.25) -> bytes:
    """Input [1, 32] float -> four hybrid FULLY_CONNECTED with int8 weights [64, 32]:
    A and B identical (own buffers), C same bytes but another scale, D other bytes."""
    rng = np.random.default_rng(3)
    w = rng.integers(-127, 128, (64, 32), dtype=np.int8)
    w2 = rng.integers(-127, 128, (64, 32), dtype=np.int8)
    m = fb.ModelT()
    m.version = 3
    oc = fb.OperatorCodeT()
    oc.builtinCode = oc.deprecatedBuiltinCode = fb.BuiltinOperator.FULLY_CONNECTED
    oc.version = 1
    m.operatorCodes = [oc]
    m.buffers = [fb.BufferT(), fb.BufferT()]  # 0: the empty sentinel; 1: the input
    sg = fb.SubGraphT()
    sg.tensors, sg.operators = [], []

    def tensor(name: str, shape: list[int], ttype: int, data: np.ndarray | None = None,
               scale: float | None = None) -> int:
        t = fb.TensorT()
        t.name, t.shape, t.type = name.encode(), np.asarray(shape, np.int32), ttype
        m.buffers.append(fb.BufferT(data=None if data is None else data.view(np.uint8).ravel()))
        t.buffer = len(m.buffers) - 1
        if scale is not None:
            q = fb.QuantizationParametersT()
            q.scale, q.zeroPoint = np.asarray([scale], np.float32), np.asarray([0], np.int64)
            t.quantization = q
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    x = tensor("x", [1, 32], fb.TensorType.FLOAT32)
    outs = []
    for name, data, scale in (("A", w, 0.5), ("B", w.copy(), 0.5), ("C", w.copy(), extra_scale),
                              ("D", w2, 0.5)):
        wi = tensor(name, [64, 32], fb.TensorType.INT8, data, scale)
        yi = tensor(f"y{name}", [1, 64], fb.TensorType.FLOAT32)
        op = fb.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = 0, np.asarray([x, wi, -1], np.int32), [yi]
        op.builtinOptionsType = fb.BuiltinOptions.FullyConnectedOptions
        op.builtinOptions = fb.FullyConnectedOptionsT()
        sg.operators.append(op)
        outs.append(yi)
    sg.inputs, sg.outputs = [x], outs
    m.subgraphs = [sg]
    return _pack(m)


def _run_tiny(blob: bytes) -> list[np.ndarray]:
    it = Interpreter(model_content=blob, num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"],
                  np.random.default_rng(4).standard_normal((1, 32)).astype(np.float32))
    it.invoke()
    return [it.get_tensor(o["index"]).copy() for o in it.get_output_details()]


def test_share_identical_buffers_on_a_hand_built_file():
    blob = _tiny()
    new, n = share_identical_buffers(blob)
    assert n == 1  # only B joins A: C has another scale, D other bytes
    m = _model(new)
    buf = {t.name: t.buffer for t in m.subgraphs[0].tensors}
    assert buf[b"A"] == buf[b"B"] and len({buf[b"A"], buf[b"C"], buf[b"D"]}) == 3
    old = _model(blob)
    dropped = {t.name: t.buffer for t in old.subgraphs[0].tensors}[b"B"]
    assert len(m.buffers) == len(old.buffers) and not _has_data(m.buffers[dropped])
    assert len(new) <= len(blob) - 64 * 32
    a, b = _run_tiny(blob), _run_tiny(new)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    # same scale for C: it joins too
    assert share_identical_buffers(_tiny(extra_scale=0.5))[1] == 2
