"""ONNX export and quantization: parity at two sequence lengths, honest quantization, manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

import edgernn
from edgernn.api import export
from edgernn.convert.exporting import load_manifest
from edgernn.convert.formats.onnx_weights import constant_node_weights, weight_census
from edgernn.errors import ExportError
from edgernn.model.loading import load_model
from edgernn.models.layers import parse_layers
from edgernn.models.sequence import SequenceModel
from tests.conftest import cli
from tests.onnx_count import independent_shares, op_types
from tests.user_models import (
    BareGRU,
    BareRNN,
    BiLSTMConv,
    ConvFrontLSTM,
    GRUClassifier,
    LoopRNN,
    PackedInputLSTM,
    PackedLSTM,
    SeqFirstGRU,
)

CONTRACT = {"path", "format", "quantization", "size_bytes", "sha256", "parity_max_abs_diff"}


@pytest.fixture(scope="session")
def lstm_export(weather_models, workdir):
    out = workdir / "lstm-export"
    return export(weather_models["lstm"], "x86", out, ["onnx"], ["dynamic", "fp16", "int8"]), out


def _by_variant(manifest):
    return {a["variant"]: a for a in manifest["artifacts"]}


def test_manifest_contract_and_parity_at_two_lengths(lstm_export):
    manifest, out = lstm_export
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    arts = _by_variant(manifest)
    fp32 = arts["onnx-fp32"]
    assert set(fp32) >= CONTRACT
    assert fp32["size_bytes"] == (out / fp32["path"]).stat().st_size
    seqs = {c["seq"] for c in fp32["parity"]}
    assert seqs == {14, 8}  # the example length and another one
    assert {c["batch"] for c in fp32["parity"]} == {1, 2}
    assert fp32["parity_ok"] and fp32["parity_max_abs_diff"] < 1e-4
    assert fp32["accepts_other_seq_len"] is True


def test_parity_recomputed_independently_at_a_third_length(weather_models, lstm_export):
    manifest, out = lstm_export
    lm = load_model(weather_models["lstm"])
    x = lm.example_input(batch=5, seq=31)
    sess = ort.InferenceSession(str(out / _by_variant(manifest)["onnx-fp32"]["path"]))
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, lm.module(x).detach().numpy(), atol=1e-5)


def test_int8_lstm_is_about_4x_smaller_and_uses_dynamic_quantize_lstm(tmp_path):
    # weight-dominated LSTM (hidden 128, two layers) as in the shared notes
    cfg = {"arch": "sequence", "input": {"kind": "features", "features": 8},
           "layers": [x.to_dict() for x in parse_layers("lstm:128x2")],
           "task": "classify", "num_classes": 2, "horizon": None}
    p = edgernn.save(SequenceModel(cfg), tmp_path / "big.pt", torch.randn(1, 16, 8))
    arts = _by_variant(export(p, "x86", tmp_path / "out", ["onnx"], ["dynamic", "fp16"]))
    ratio = arts["onnx-fp32"]["size_bytes"] / arts["onnx-int8-dynamic"]["size_bytes"]
    assert 3.5 < ratio < 4.2
    assert 1.9 < arts["onnx-fp32"]["size_bytes"] / arts["onnx-fp16"]["size_bytes"] < 2.05
    q = arts["onnx-int8-dynamic"]
    assert q["ops"].get("DynamicQuantizeLSTM") == 2 and "LSTM" not in q["ops"]
    assert q["quantized_fraction"] > 0.95
    assert q["parity_max_abs_diff"] < 0.05


def test_gru_int8_stores_the_gru_weights_int8(weather_models, tmp_path):
    arts = _by_variant(export(weather_models["gru"], "x86", tmp_path, ["onnx"], ["dynamic"]))
    q = arts["onnx-int8-dynamic"]
    assert any("1 GRU: weights stored int8" in n and "onnxruntime#9796" in n
               for n in q["notes"])
    assert q["ops"]["GRU"] == 1  # onnxruntime's own GRU kernel, on int8-stored weights
    share = independent_shares(tmp_path / q["path"])["int8"]
    assert share > 0.9 and abs(q["quantized_fraction"] - share) <= 0.02


def test_fp16_is_smaller_and_onnx_int8_is_skipped_with_reason(lstm_export):
    arts = _by_variant(lstm_export[0])
    assert arts["onnx-fp32"]["size_bytes"] / arts["onnx-fp16"]["size_bytes"] > 1.5
    assert arts["onnx-int8"]["status"] == "skipped"
    assert "QDQ" in arts["onnx-int8"]["error"]


def test_manifest_paths_are_relative_and_load_back(lstm_export):
    manifest, out = lstm_export
    _, arts = load_manifest(out)
    for a in arts:
        if a.status == "ok":
            assert not json.dumps(manifest).count(str(out))  # portable manifest
            assert (out / a.path).exists()


# -- users' models: every variant checked against PyTorch and an independent weight count -------

def run_all(path, x: torch.Tensor) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(str(path))
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x.numpy()}), strict=True))


def torch_outputs(model, x) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(x)
    flat = list(out) if isinstance(out, tuple) else [out]
    return [t.numpy() for t in flat]


# per quantization: (relative tolerance on the output scale) for the independent parity check
TOL = {"fp32": 1e-5, "fp16": 5e-3, "int8-dynamic": 0.1}


@pytest.mark.parametrize(
    "model, example, kw, shape, rnn",
    [
        (SeqFirstGRU(), torch.randn(9, 1, 3), {"batch_axis": 1, "seq_axis": 0}, (6, 3, 3), "GRU"),
        (BiLSTMConv(), torch.randn(1, 10, 4), {}, (2, 17, 4), "LSTM"),
    ],
    ids=["seq-first-gru", "conv-bilstm-tuple-output"],
)
def test_user_models_export_quantize_with_parity(tmp_path, model, example, kw, shape, rnn):
    """edgernn.save scripts these models, so their RNN weights sit in Constant nodes."""
    torch.manual_seed(0)
    model.eval()
    p = edgernn.save(model, tmp_path / "m.pt", example, **kw)
    arts = _by_variant(export(p, "x86", tmp_path / "o", ["onnx"], ["dynamic", "fp16"]))
    x = torch.randn(*shape)
    refs = torch_outputs(model, x)
    for variant in ("onnx-fp32", "onnx-fp16", "onnx-int8-dynamic"):
        a = arts[variant]
        assert a["status"] == "ok", a
        path = tmp_path / "o" / a["path"]
        got = run_all(path, x)
        # every output, by name, in the model's order, at another batch and sequence length
        assert list(got) == ["output", "output_1"][: len(refs)]
        for g, r in zip(got.values(), refs, strict=True):
            assert g.shape == r.shape
            tol = TOL[a["quantization"]] * max(1.0, float(np.abs(r).max()))
            np.testing.assert_allclose(g, r, atol=tol, rtol=0)
    shares16 = independent_shares(tmp_path / "o" / arts["onnx-fp16"]["path"])
    assert shares16["fp16"] == 1.0  # Constant-held RNN weights are float16 as well
    q = arts["onnx-int8-dynamic"]
    qpath = tmp_path / "o" / q["path"]
    assert abs(q["quantized_fraction"] - independent_shares(qpath)["int8"]) <= 0.02
    ops = op_types(qpath)
    if rnn == "LSTM":  # both layers' weights are int8, whichever node held them
        assert ops.count("DynamicQuantizeLSTM") == 2 and "LSTM" not in ops
        assert q["quantized_fraction"] > 0.85
    else:  # onnxruntime has no int8 GRU: edgernn stores both layers' weights int8
        assert ops.count("GRU") == 2 and "MatMulInteger" in ops
        assert q["quantized_fraction"] > 0.7  # hidden 8: the fp32 biases weigh in
        assert any("2 GRU: weights stored int8" in n for n in q["notes"])


def test_mixed_bidirectional_token_stack(tmp_path):
    cfg = {"arch": "sequence", "input": {"kind": "tokens", "vocab_size": 50, "embed_dim": 8},
           "layers": [x.to_dict() for x in parse_layers("bigru:8,lstm:8x2")],
           "task": "classify", "num_classes": 3, "horizon": None}
    p = edgernn.save(SequenceModel(cfg), tmp_path / "mix.pt", torch.randint(0, 50, (1, 12)))
    fp32 = _by_variant(export(p, "x86", tmp_path / "o", ["onnx"], []))["onnx-fp32"]
    assert fp32["parity_ok"], fp32
    assert fp32["ops"]["GRU"] == 1 and fp32["ops"]["LSTM"] == 2


def test_packing_inside_forward_exports_with_parity(tmp_path):
    """pack_padded_sequence at full length inside forward: the exporter follows it."""
    p = tmp_path / "packed.pt"
    torch.save(PackedLSTM(), p)
    manifest = export(p, "x86", tmp_path / "o", ["onnx"], [],
                      load={"trust_pickle": True, "imports": ("tests.user_models",),
                            "input_shape": "batch=1,seq=6,4"})
    fp32 = _by_variant(manifest)["onnx-fp32"]
    assert fp32["status"] == "ok" and fp32["parity_ok"]


def test_packed_sequence_input_is_named(tmp_path):
    p = tmp_path / "packed_in.pt"
    torch.save(PackedInputLSTM(), p)
    with pytest.raises(ExportError, match="PackedSequence input"):
        load_model(p, trust_pickle=True, imports=("tests.user_models",),
                   input_shape="batch=1,seq=6,4")


# -- scripted foreign graphs: weights in Constant nodes, GRU, nothing to quantize, sub-graphs ----

def _scripted(model: torch.nn.Module, path) -> str:
    """Save ``model`` as users do: torch.jit.script (not trace) + torch.jit.save, no edgernn spec."""
    torch.manual_seed(0)
    scripted = torch.jit.script(model.eval())
    torch.jit.save(scripted, str(path))
    return str(path)


@pytest.fixture(scope="module")
def conv_lstm(tmp_path_factory):
    """ConvFrontLSTM scripted, exported by the CLI with --quantize dynamic,fp16."""
    d = tmp_path_factory.mktemp("conv-lstm")
    torch.manual_seed(0)
    model = ConvFrontLSTM().eval()
    p = _scripted(model, d / "user.pt")
    code, out, err = cli(["export", p, "--format", "onnx", "--quantize", "dynamic,fp16",
                          "--input-shape", "batch=1,seq=20,8", "--out", d / "o"])
    assert code == 0, err
    return model, d / "o", _by_variant(json.loads((d / "o" / "manifest.json").read_text()))


def test_scripted_conv_lstm_weights_in_constants_are_quantized(conv_lstm):
    model, out, arts = conv_lstm
    fp32, q = arts["onnx-fp32"], arts["onnx-int8-dynamic"]
    # the exporter keeps the scripted LSTM's weights in Constant nodes, not initializers
    g32 = onnx.load(str(out / fp32["path"])).graph
    lstm = next(n for n in g32.node if n.op_type == "LSTM")
    assert lstm.input[1] not in {t.name for t in g32.initializer}
    assert q["status"] == "ok", q
    qpath = out / q["path"]
    ops = op_types(qpath)
    assert ops.count("DynamicQuantizeLSTM") == 1 and "LSTM" not in ops
    assert ops.count("ConvInteger") == 2
    assert qpath.stat().st_size <= 0.35 * (out / fp32["path"]).stat().st_size
    # the reported share equals a count over initializers AND Constant tensors ...
    assert abs(q["quantized_fraction"] - independent_shares(qpath)["int8"]) <= 0.02
    # ... and the share the model's own parameters predict: every matrix int8, biases float
    params = [p for p in model.parameters() if p.numel() >= 16]
    matrices = sum(p.numel() for p in params if p.dim() >= 2)
    assert abs(q["quantized_fraction"] - matrices / sum(p.numel() for p in params)) <= 0.02
    note = "; ".join(q["notes"])
    assert "1 LSTM -> DynamicQuantizeLSTM" in note and "2 Conv -> ConvInteger" in note
    x = torch.randn(3, 33, 8)
    ref = torch_outputs(model, x)[0]
    np.testing.assert_allclose(run_all(qpath, x)["output"], ref, atol=0.1 * max(1, np.abs(ref).max()))


def test_weight_census_counts_constant_node_tensors(conv_lstm):
    """On the fp32 file most weights sit in Constant nodes: the census sees all of them."""
    _, out, arts = conv_lstm
    path = out / arts["onnx-fp32"]["path"]
    census = weight_census(path)
    graph = onnx.load(str(path)).graph
    in_inits = sum(numpy_helper.to_array(t).size for t in graph.initializer
                   if numpy_helper.to_array(t).size >= 16)
    in_consts = sum(numpy_helper.to_array(n.attribute[0].t).size for n in graph.node
                    if n.op_type == "Constant" and n.attribute[0].t.data_type == onnx.TensorProto.FLOAT
                    and numpy_helper.to_array(n.attribute[0].t).size >= 16)
    assert in_consts > 10 * in_inits  # the LSTM's W, R and B
    assert (census.float32, census.int8, census.float16) == (in_inits + in_consts, 0, 0)
    assert constant_node_weights(path) == 3


def test_scripted_conv_lstm_fp16_covers_constant_weights(conv_lstm):
    model, out, arts = conv_lstm
    f16 = arts["onnx-fp16"]
    assert f16["status"] == "ok", f16
    path = out / f16["path"]
    assert independent_shares(path)["fp16"] == 1.0
    assert 0.45 < path.stat().st_size / (out / arts["onnx-fp32"]["path"]).stat().st_size < 0.55
    assert any("float16 weights: 100% of" in n for n in f16["notes"])
    x = torch.randn(2, 13, 8)
    ref = torch_outputs(model, x)[0]
    np.testing.assert_allclose(run_all(path, x)["output"], ref, atol=5e-3 * max(1, np.abs(ref).max()))


def gru_int8_split(rnn: torch.nn.GRU) -> tuple[int, int]:
    """Elements a one-layer GRU keeps as int8 (W and R) and as fp32 (the biases and one scale
    per output row of W and of R, 3 x hidden each) in edgernn's int8 GRU, counted by hand."""
    mats = rnn.weight_ih_l0.numel() + rnn.weight_hh_l0.numel()
    return mats, rnn.bias_ih_l0.numel() + rnn.bias_hh_l0.numel() + 2 * 3 * rnn.hidden_size


def test_scripted_gru_weights_become_int8_and_the_share_says_so(tmp_path):
    model = GRUClassifier()
    p = _scripted(model, tmp_path / "gru.pt")
    arts = _by_variant(export(Path(p), "x86", tmp_path / "o", ["onnx"], ["dynamic"],
                              load={"input_shape": "batch=1,seq=12,6"}))
    q = arts["onnx-int8-dynamic"]
    assert q["status"] == "ok", q
    qpath = tmp_path / "o" / q["path"]
    assert abs(q["quantized_fraction"] - independent_shares(qpath)["int8"]) <= 0.02
    # int8: the head's weights too; its 4 biases are under the 16-element floor of a weight
    head = model.head.weight.numel()
    mats, floats = gru_int8_split(model.rnn)
    assert abs(q["quantized_fraction"] - (head + mats) / (head + mats + floats)) <= 0.005
    ops = op_types(qpath)
    assert "GRU" in ops and "MatMulInteger" in ops
    assert any("1 GRU: weights stored int8" in n for n in q["notes"])


def test_nothing_to_quantize_is_a_skipped_row_saying_why(tmp_path):
    p = _scripted(BareRNN(), tmp_path / "bare.pt")
    arts = _by_variant(export(Path(p), "x86", tmp_path / "o", ["onnx"], ["dynamic", "fp16"],
                              load={"input_shape": "batch=1,seq=9,4"}))
    q = arts["onnx-int8-dynamic"]
    assert q["status"] == "skipped"
    assert q["error"].startswith("nothing to quantize: 1 RNN stays fp32")
    assert not list((tmp_path / "o").glob("*int8*"))
    assert arts["onnx-fp16"]["status"] == "ok"  # fp16 does change the RNN's weights
    # the variants about ops this graph lacks are in the manifest, not shown as rows
    assert arts["onnx-int8-scan"]["status"] == "not applicable"
    assert arts["onnx-int8-dynamic-fp32conv"]["status"] == "not applicable"


def test_bare_gru_weights_are_stored_int8(tmp_path):
    model = BareGRU()
    p = _scripted(model, tmp_path / "bare.pt")
    arts = _by_variant(export(Path(p), "x86", tmp_path / "o", ["onnx"], ["dynamic"],
                              load={"input_shape": "batch=1,seq=9,4"}))
    q = arts["onnx-int8-dynamic"]
    assert q["status"] == "ok", q
    share = independent_shares(tmp_path / "o" / q["path"])["int8"]
    mats, floats = gru_int8_split(model.rnn)
    assert abs(share - mats / (mats + floats)) <= 0.005


def test_weights_inside_a_loop_body_are_quantized(tmp_path):
    model = LoopRNN()
    p = _scripted(model, tmp_path / "loop.pt")
    arts = _by_variant(export(Path(p), "x86", tmp_path / "o", ["onnx"], ["dynamic"],
                              load={"input_shape": "batch=1,seq=7,8"}))
    q = arts["onnx-int8-dynamic"]
    assert q["status"] == "ok", q
    qpath = tmp_path / "o" / q["path"]
    loop = next(n for n in onnx.load(str(qpath)).graph.node if n.op_type == "Loop")
    body = [n.op_type for n in loop.attribute[0].g.node]
    assert body.count("MatMulInteger") == 2 and "Gemm" not in body and "MatMul" not in body
    assert q["ops"]["MatMulInteger"] == 3  # the census counts the loop body's ops too
    assert abs(q["quantized_fraction"] - independent_shares(qpath)["int8"]) <= 0.02
    assert q["quantized_fraction"] > 0.9
    x = torch.randn(2, 11, 8)
    ref = torch_outputs(model, x)[0]
    np.testing.assert_allclose(run_all(qpath, x)["output"], ref, atol=0.1 * max(1, np.abs(ref).max()))


@pytest.mark.parametrize("shape, dynamic", [("1,seq=12,6", False), ("batch=1,seq=12,6", True)],
                         ids=["unnamed-batch", "named-batch"])
def test_batch_axis_is_dynamic_only_when_named(tmp_path, shape, dynamic):
    p = _scripted(GRUClassifier(), tmp_path / "gru.pt")
    fp32 = _by_variant(export(Path(p), "x86", tmp_path / "o", ["onnx"], [],
                              load={"input_shape": shape}))["onnx-fp32"]
    assert fp32["status"] == "ok", fp32
    assert fp32["dynamic_batch"] is dynamic
    assert {c["batch"] for c in fp32["parity"]} == ({1, 2} if dynamic else {1})
    m = onnx.load(str(tmp_path / "o" / fp32["path"]))
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (m.graph.input[0], m.graph.output[0])]
    assert dims == ([["batch", "seq", 6], ["batch", 4]] if dynamic else [[1, "seq", 6], [1, 4]])
    sess = ort.InferenceSession(str(tmp_path / "o" / fp32["path"]))
    two = np.zeros((2, 12, 6), np.float32)
    if dynamic:
        assert sess.run(None, {"input": two})[0].shape == (2, 4)
    else:
        with pytest.raises(Exception, match="(?i)dimension|shape"):
            sess.run(None, {"input": two})


class SeqToSeqHead(torch.nn.Module):
    """A user's sequence-to-sequence tagger: GRU -> LSTM -> a Linear on every step (3-D)."""

    def __init__(self):
        super().__init__()
        self.enc = torch.nn.GRU(3, 8, batch_first=True)
        self.dec = torch.nn.LSTM(8, 8, batch_first=True)
        self.head = torch.nn.Linear(8, 1)

    def forward(self, x):
        return self.head(self.dec(self.enc(x)[0])[0])


def test_onnxruntime_crash_on_the_fp16_file_is_a_failed_row_not_a_dead_export(tmp_path):
    """onnxruntime 1.32 dies with SIGSEGV building a session for this graph's fp16 file; the
    export must survive it, fail that row naming the signal and keep the others."""
    import subprocess
    import sys

    torch.manual_seed(0)
    p = _scripted(SeqToSeqHead().eval(), tmp_path / "tagger.pt")
    code, out, err = cli(["export", p, "--format", "onnx", "--quantize", "dynamic,fp16",
                          "--input-shape", "batch=1,seq=48,3", "--out", tmp_path / "o"])
    assert code == 0, err
    arts = _by_variant(json.loads((tmp_path / "o" / "manifest.json").read_text()))
    assert arts["onnx-fp32"]["status"] == "ok" and arts["onnx-int8-dynamic"]["status"] == "ok"
    fp16 = arts["onnx-fp16"]
    # what onnxruntime itself does with the same conversion, in a child of the test's own
    import onnx
    from onnxconverter_common import float16

    m16 = float16.convert_float_to_float16(onnx.load(str(tmp_path / "o" / "tagger.onnx.fp32.onnx")),
                                           keep_io_types=True)
    onnx.save(m16, str(tmp_path / "direct16.onnx"))
    r = subprocess.run([sys.executable, "-c", "import sys, onnxruntime as o; o.InferenceSession("
                        "sys.argv[1], providers=['CPUExecutionProvider'])",
                        str(tmp_path / "direct16.onnx")], capture_output=True)
    assert r.returncode == -11, "onnxruntime no longer crashes on this graph: retire this test"
    assert fp16["status"] == "export failed" and "crashed (SIGSEGV)" in fp16["error"]
    assert not (tmp_path / "o" / "tagger.onnx.fp16.onnx").exists()
