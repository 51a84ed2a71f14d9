"""ONNX int8-weight-only: int8-stored weights, fp32 compute, on plain-torch LSTM/GRU models.

The real export pipeline writes the files; every check here reads them with onnx and runs them
with onnxruntime directly (no edgernn counting or running code), against PyTorch: the file must
hold each LSTM/GRU's W and R as int8 behind Cast + Mul, compute what fp32 arithmetic on the
rounded weights gives, be under 0.4x the fp32 file, and lose its Cast + Mul to onnxruntime's
constant folding when a session loads it.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, numpy_helper
from torch import nn

from edgernn.convert.exporting import export_model, seven_bit
from edgernn.convert.quantize import quantizers_for
from edgernn.model.loading import LoadedModel
from edgernn.model.spec import Axis, InputSpec
from tests.onnx_count import independent_shares

SEQ, FEAT, HIDDEN = 30, 16, 64
LABEL = "int8-weight-only"


class Head(nn.Module):
    """An RNN over [batch, seq, feat] and a Linear head on the last step."""

    def __init__(self, rnn: nn.Module, out: int = 10):
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(rnn.hidden_size * (2 if rnn.bidirectional else 1), out)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y[:, -1])


MODELS = {  # name -> (module factory, RNN op, nodes, directions)
    "lstm3": (lambda: Head(nn.LSTM(FEAT, HIDDEN, num_layers=3, batch_first=True)), "LSTM", 3, 1),
    "gru2": (lambda: Head(nn.GRU(FEAT, HIDDEN, num_layers=2, batch_first=True)), "GRU", 2, 1),
    "bilstm": (lambda: Head(nn.LSTM(FEAT, HIDDEN, batch_first=True, bidirectional=True)),
               "LSTM", 1, 2),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (module, {quantization: artifact dict with an absolute path}); exported once."""
    made: dict[str, tuple] = {}

    def get(name: str):
        if name not in made:
            torch.manual_seed(len(name))
            module = MODELS[name][0]().eval()
            spec = InputSpec([Axis(1, "batch"), Axis(SEQ, "seq"), Axis(FEAT)], "float32", "classify")
            lm = LoadedModel(module, spec, "pickle", Path(f"{name}.pt"), "0" * 64)
            out = tmp_path_factory.mktemp(f"wo-{name}")
            manifest = export_model(lm, out, ["onnx"], ["dynamic"])
            arts = {a["quantization"]: {**a, "path": str(out / a["path"]) if a["path"] else ""}
                    for a in manifest["artifacts"]}
            made[name] = (module, arts)
        return made[name]

    return get


def _weight_only(exported, name: str) -> tuple[nn.Module, dict, dict]:
    module, arts = exported(name)
    art = arts[LABEL]
    assert art["status"] == "ok", art
    return module, art, arts["fp32"]


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in model.graph.node for o in n.output}


def _int8_behind_cast_mul(model: onnx.ModelProto, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(int8 array, scale) when ``name`` is Mul(Cast(int8 initializer), float initializer)."""
    inits = {t.name: t for t in model.graph.initializer}
    made = _producers(model)
    mul = made.get(name)
    if mul is None or mul.op_type != "Mul":
        return None
    cast = made.get(mul.input[0])
    if cast is None or cast.op_type != "Cast" or cast.input[0] not in inits:
        return None
    q, s = inits[cast.input[0]], inits.get(mul.input[1])
    if q.data_type != TensorProto.INT8 or s is None or s.data_type != TensorProto.FLOAT:
        return None
    return numpy_helper.to_array(q), numpy_helper.to_array(s)


def _run(path: str, x: np.ndarray, options: ort.SessionOptions | None = None) -> np.ndarray:
    sess = ort.InferenceSession(path, options or ort.SessionOptions(),
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _rounded(module: nn.Module) -> nn.Module:
    """The module with its RNN weights, and Linear weights of >= 1024 elements, rounded to
    symmetric int8 per output row (numpy, the test's own arithmetic); biases as they are."""
    r = copy.deepcopy(module)
    with torch.no_grad():
        for pname, p in r.named_parameters():
            rnn_w = re.fullmatch(r"rnn\.weight_(ih|hh)_l\d+(_reverse)?", pname)
            if not (rnn_w or (pname == "head.weight" and p.numel() >= 1024)):
                continue
            w = p.numpy().astype(np.float32)
            scale = np.abs(w).max(axis=1, keepdims=True) / np.float32(127)
            scale[scale == 0] = 1.0
            p.copy_(torch.from_numpy(np.clip(np.rint(w / scale), -127, 127) * scale))
    return r


@pytest.mark.parametrize("name", list(MODELS))
def test_every_rnn_reads_int8_w_and_r_through_cast_mul(exported, name):
    _, art, fp32 = _weight_only(exported, name)
    _, op, layers, dirs = MODELS[name]
    m, ref = onnx.load(art["path"]), onnx.load(fp32["path"])
    rnns = [n for n in m.graph.node if n.op_type == op]
    ref_rnns = [n for n in ref.graph.node if n.op_type == op]
    assert len(rnns) == len(ref_rnns) == layers
    ref_inits = {t.name: numpy_helper.to_array(t) for t in ref.graph.initializer}
    gates = {"LSTM": 4, "GRU": 3}[op]
    for node, ref_node in zip(rnns, ref_rnns, strict=True):
        for idx in (1, 2):  # W, R
            found = _int8_behind_cast_mul(m, node.input[idx])
            assert found is not None, f"{node.name} input {idx} is not int8 behind Cast + Mul"
            q, scale = found
            want = ref_inits[ref_node.input[idx]]  # the fp32 file's weight of the same node
            assert q.shape == want.shape and q.shape[:2] == (dirs, gates * HIDDEN)
            assert scale.shape == (dirs, gates * HIDDEN, 1)  # one scale per output row
            assert np.abs(q).max() == 127  # 8-bit, not 7-bit
            err = np.abs(q.astype(np.float32) * scale - want)
            assert np.all(err <= scale / 2 + 1e-7)
        assert node.input[3] in {t.name for t in m.graph.initializer}  # bias stays fp32
    # no fp32 copy of any W or R stays in the file
    floats = {t.name for t in m.graph.initializer if t.data_type == TensorProto.FLOAT}
    assert not floats & {n.input[i] for n in rnns for i in (1, 2)}
    # the note's share is the file's (counted here with the test's own walk)
    share = float(re.search(r"int8-stored weights: ([\d.]+)%", " ".join(art["notes"])).group(1))
    assert share == pytest.approx(100 * independent_shares(art["path"])["int8"], abs=0.06)
    assert share > 90


@pytest.mark.parametrize("name", list(MODELS))
def test_outputs_are_fp32_arithmetic_on_rounded_weights(exported, name):
    module, art, _ = _weight_only(exported, name)
    x = np.random.default_rng(7).standard_normal((3, SEQ, FEAT)).astype(np.float32)
    got = _run(art["path"], x)
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
        rounded = _rounded(module)(torch.from_numpy(x)).numpy()
    scale = max(1.0, float(np.abs(ref).max()))
    assert np.abs(got - ref).max() < 2e-2 * scale  # 8-bit weights
    # fp32 compute: exactly what PyTorch gives on the same rounded weights
    assert np.abs(got - rounded).max() < 1e-5 * scale
    # other sequence lengths too (the fp32 file's dynamic axes kept)
    x2 = x[:, :11]
    with torch.no_grad():
        rounded2 = _rounded(module)(torch.from_numpy(x2)).numpy()
    assert np.abs(_run(art["path"], x2) - rounded2).max() < 1e-5 * scale


@pytest.mark.parametrize("name", list(MODELS))
def test_file_is_under_0_4x_the_fp32_file(exported, name):
    _, art, fp32 = _weight_only(exported, name)
    size, full = Path(art["path"]).stat().st_size, Path(fp32["path"]).stat().st_size
    assert size == art["size_bytes"]
    assert size < 0.4 * full, (size, full)


@pytest.mark.parametrize("name", ["lstm3", "bilstm"])
def test_onnxruntime_folds_the_cast_mul_at_load(exported, name, tmp_path):
    _, art, _ = _weight_only(exported, name)
    m = onnx.load(art["path"])
    int8 = {t.name for t in m.graph.initializer if t.data_type == TensorProto.INT8}
    assert sum(n.op_type == "Cast" and n.input[0] in int8 for n in m.graph.node) >= 2
    so = ort.SessionOptions()  # graph_optimization_level left at its default
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(art["path"], so, providers=["CPUExecutionProvider"])
    opt = onnx.load(so.optimized_model_filepath)
    ops = [n.op_type for n in opt.graph.node]
    assert "Cast" not in ops and "Mul" not in ops, ops
    assert not any(t.data_type == TensorProto.INT8 for t in opt.graph.initializer)
    inits = {t.name: t for t in opt.graph.initializer}
    for n in (n for n in opt.graph.node if n.op_type == "LSTM"):
        assert all(inits[n.input[i]].data_type == TensorProto.FLOAT for i in (1, 2))


def test_registered_by_default_beside_int8_dynamic_and_never_7_bit():
    (q,) = [q for q in quantizers_for("onnx", ["dynamic"]) if q.label == LABEL]
    assert (q.format, q.mode, q.twin, q.kind, q.opt_in) == ("onnx", "dynamic", "int8-dynamic",
                                                           "setting", None)
    assert seven_bit(q) is q  # fp32 compute: no 7-bit copy for CPUs that saturate int8 products
