"""ONNX export and quantization: parity at two sequence lengths, honest quantization, manifest."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

import edgernn
from edgernn.api import export
from edgernn.errors import ExportError
from edgernn.exporting import load_manifest
from edgernn.loading import load_model
from edgernn.models.layers import parse_layers
from edgernn.models.sequence import SequenceModel
from tests.user_models import BiLSTMConv, PackedInputLSTM, PackedLSTM, SeqFirstGRU

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


def test_gru_int8_says_gru_stays_fp32(weather_models, tmp_path):
    arts = _by_variant(export(weather_models["gru"], "x86", tmp_path, ["onnx"], ["dynamic"]))
    q = arts["onnx-int8-dynamic"]
    assert any("GRU op(s) stay fp32" in n for n in q["notes"])
    assert q["ops"]["GRU"] == 1
    assert q["quantized_fraction"] < 0.1  # only the linear head


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


@pytest.mark.parametrize(
    "model, example, kw, shape",
    [
        (SeqFirstGRU(), torch.randn(9, 1, 3), {"batch_axis": 1, "seq_axis": 0}, (6, 3, 3)),
        (BiLSTMConv(), torch.randn(1, 10, 4), {}, (2, 17, 4)),
    ],
    ids=["seq-first-gru", "conv-bilstm-tuple-output"],
)
def test_user_models_export_with_parity(tmp_path, model, example, kw, shape):
    model.eval()
    p = edgernn.save(model, tmp_path / "m.pt", example, **kw)
    arts = _by_variant(export(p, "x86", tmp_path / "o", ["onnx"], []))
    assert arts["onnx-fp32"]["status"] == "ok", arts["onnx-fp32"]
    sess = ort.InferenceSession(str(tmp_path / "o" / arts["onnx-fp32"]["path"]))
    x = torch.randn(*shape)
    ref = model(x)
    ref = ref[0] if isinstance(ref, tuple) else ref
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, ref.detach().numpy(), atol=1e-5)


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
