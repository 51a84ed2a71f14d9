"""TFLite through litert-torch: fp32 parity, statelessness, int64 -> int32 tokens, quantized
variants (dynamic, fp16, calibrated int8 / int16x8) and converter crashes in the child process.

Models are small and untrained (hidden 16, sequence 8) and each is converted once per session:
a conversion costs several seconds (a child process imports torch and litert-torch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_quantizer")

import edgernn.convert.formats.tflite_litert as tfl  # noqa: E402  (registers "tflite-litert")
import edgernn.convert.quantize.tflite_litert as tflq  # noqa: E402  (registers its quantizers)
from edgernn.convert.exporting import export_model  # noqa: E402
from edgernn.convert.quantize.base import NotApplicable  # noqa: E402
from edgernn.errors import EdgeRNNError, ExportError  # noqa: E402
from edgernn.model.loading import LoadedModel  # noqa: E402
from edgernn.model.spec import Axis, InputSpec  # noqa: E402
from edgernn.models.sequence import SequenceModel  # noqa: E402
from edgernn.probe import runtimes  # noqa: E402

SEQ, FEATURES, HIDDEN, VOCAB = 8, 4, 16, 4000
FP32_TOL = 1e-4


def _model(cell: str, tokens: bool = False) -> LoadedModel:
    torch.manual_seed(0)
    inp = ({"kind": "tokens", "vocab_size": VOCAB, "embed_dim": 32} if tokens
           else {"kind": "features", "features": FEATURES})
    config = {
        "arch": "sequence", "input": inp, "task": "classify", "num_classes": 3, "horizon": None,
        "layers": [{"cell": cell, "hidden": HIDDEN, "num_layers": 1, "bidirectional": False}],
    }
    module = SequenceModel(config).eval()
    if not tokens:  # non-trivial standardisation, as after training
        module.x_mean.copy_(torch.tensor([1.0, -2.0, 0.5, 3.0]))
        module.x_std.copy_(torch.tensor([2.0, 0.5, 1.0, 4.0]))
    axes = [Axis(1, "batch"), Axis(SEQ, "seq")] + ([] if tokens else [Axis(FEATURES)])
    spec = InputSpec(axes, "int64" if tokens else "float32", "classify",
                     vocab_size=VOCAB if tokens else None, num_classes=3)
    return LoadedModel(module, spec, "checkpoint", Path(f"{cell}{'_tokens' if tokens else ''}.pt"),
                       "0" * 64, config)


def _inputs(lm: LoadedModel, n: int, seed: int) -> np.ndarray:
    """``n`` samples (sample-first) in the model's dtype and units."""
    rng = np.random.default_rng(seed)
    if lm.spec.is_tokens:
        return rng.integers(0, VOCAB, size=(n, SEQ)).astype(np.int64)
    mean = lm.module.x_mean.numpy()
    std = lm.module.x_std.numpy()
    return (rng.standard_normal((n, SEQ, FEATURES)) * std + mean).astype(np.float32)


@torch.no_grad()
def _torch_out(lm: LoadedModel, x: np.ndarray) -> np.ndarray:
    return lm.module(torch.from_numpy(x)).numpy()


def _run_all(path: str, x: np.ndarray) -> np.ndarray:
    sess = runtimes.load("litert", path, threads=1)
    return np.concatenate([sess.run(x[i : i + 1]) for i in range(len(x))])


# (model, modes): every mode is exercised once; the token model has a large embedding, so its
# files are weight-dominated and show the size savings
CASES = {
    "lstm": (lambda: _model("lstm"), ["dynamic", "int8", "int16x8"]),
    "gru": (lambda: _model("gru"), ["dynamic"]),
    "tokens": (lambda: _model("lstm", tokens=True), ["dynamic", "fp16", "int8"]),
}


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """Export each case through the real pipeline once; returns {case: (model, {variant: art})}."""
    cache: dict[str, tuple[LoadedModel, dict]] = {}

    def get(case: str):
        if case not in cache:
            make, modes = CASES[case]
            lm = make()
            out = tmp_path_factory.mktemp(f"litert-{case}")
            calib = _inputs(lm, 64, seed=1)
            manifest = export_model(lm, out, ["tflite-litert"], modes, calib=calib,
                                    calib_source="64 synthetic samples")
            arts = {a["variant"]: {**a, "path": str(out / a["path"]) if a["path"] else ""}
                    for a in manifest["artifacts"]}
            cache[case] = (lm, arts)
        return cache[case]

    return get


def test_registered_and_available():
    from edgernn.convert.formats import FORMATS, expand_formats
    from edgernn.convert.quantize import quantizers_for

    assert "tflite-litert" in FORMATS and "tflite-litert" in expand_formats(["tflite"])
    fmt = FORMATS["tflite-litert"]
    assert (fmt.family, fmt.suffix, fmt.runtime) == ("tflite", ".tflite", "litert")
    assert fmt.available() is None
    qs = quantizers_for("tflite-litert", ["dynamic", "fp16", "int8", "int16x8"])
    assert [q.label for q in qs] == ["int8-dynamic", "fp16", "int8", "int16x8"]
    assert all(q.available() is None for q in qs)


def test_available_names_install_line(monkeypatch):
    monkeypatch.setattr(tfl, "_missing", lambda *mods: "litert_torch")
    reason = tfl.TfliteLitertFormat().available()
    assert "litert-torch" in reason and "pip install 'edgernn[tflite]'" in reason


@pytest.mark.parametrize("case", ["lstm", "gru", "tokens"])
def test_fp32_parity_unrolled_fixed_shape(converted, case):
    lm, arts = converted(case)
    art = arts["tflite-litert-fp32"]
    assert art["status"] == "ok", art["error"]
    assert art["parity_ok"] is True
    assert art["accepts_other_seq_len"] is False and art["dynamic_batch"] is False
    assert not tfl.LOOP_OPS & set(art["ops"]) and art["ops"].get("FULLY_CONNECTED", 0) >= SEQ
    assert any(f"sequence length {SEQ}" in n and n.startswith("unrolled") for n in art["notes"])
    x = _inputs(lm, 16, seed=2)  # inputs the converter never saw
    diff = np.abs(_run_all(art["path"], x) - _torch_out(lm, x)).max()
    assert diff < FP32_TOL, diff


def test_stateless_repeated_calls(converted):
    _, arts = converted("lstm")
    sess = runtimes.load("litert", arts["tflite-litert-fp32"]["path"], threads=1)
    x = _inputs(converted("lstm")[0], 1, seed=3)
    outs = [sess.run(x) for _ in range(3)]
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[1], outs[2])


def test_int64_tokens_become_int32(converted):
    lm, arts = converted("tokens")
    art = arts["tflite-litert-fp32"]
    sess = runtimes.load("litert", art["path"], threads=1)
    assert sess.details["input_dtype"] == "int32"
    assert any("int64 token input became int32" in n for n in art["notes"])
    x = _inputs(lm, 2, seed=4)
    assert x.dtype == np.int64
    np.testing.assert_allclose(_run_all(art["path"], x), _torch_out(lm, x), atol=FP32_TOL)


@pytest.mark.parametrize("case", ["lstm", "gru", "tokens"])
def test_dynamic_int8_smaller_and_close(converted, case):
    lm, arts = converted(case)
    fp32, dyn = arts["tflite-litert-fp32"], arts["tflite-litert-int8-dynamic"]
    assert dyn["status"] == "ok", dyn["error"]
    assert dyn["size_bytes"] < fp32["size_bytes"]
    assert dyn["quantized_fraction"] > 0.8  # biases stay float32
    assert any("FULLY_CONNECTED" in n and n.startswith("int8-weight ops") for n in dyn["notes"])
    if case == "tokens":  # weight-dominated: the embedding table is stored int8 too
        # not 4x: per-row scales and int64 zero points add 12 bytes per embedding row
        assert fp32["size_bytes"] / dyn["size_bytes"] > 2.4
        assert any("EMBEDDING_LOOKUP" in n for n in dyn["notes"])
    x = _inputs(lm, 16, seed=5)
    ref = _torch_out(lm, x)
    diff = np.abs(_run_all(dyn["path"], x) - ref).max()
    assert diff < 0.05 * max(1.0, np.abs(ref).max()), diff


def test_fp16_halves_weight_dominated_file(converted):
    lm, arts = converted("tokens")
    fp32, f16 = arts["tflite-litert-fp32"], arts["tflite-litert-fp16"]
    assert f16["status"] == "ok", f16["error"]
    assert 1.7 < fp32["size_bytes"] / f16["size_bytes"] < 2.2
    assert any("compute stays float32" in n for n in f16["notes"])
    x = _inputs(lm, 8, seed=6)
    np.testing.assert_allclose(_run_all(f16["path"], x), _torch_out(lm, x), atol=1e-2)


@pytest.mark.parametrize("case,variant", [("lstm", "int8"), ("lstm", "int16x8"), ("tokens", "int8")])
def test_full_integer_with_calibration(converted, case, variant):
    lm, arts = converted(case)
    art = arts[f"tflite-litert-{variant}"]
    assert art["status"] == "ok", art["error"]
    if variant == "int8":  # exporting records the calibration source for mode int8
        assert art["calibration"] == "64 synthetic samples"
    assert any("calibrated on 64 sample" in n for n in art["notes"])
    sess = runtimes.load("litert", art["path"], threads=1)
    want = {"int8": "int8", "int16x8": "int16"}[variant]
    assert sess.details["input_dtype"] == ("int32" if lm.spec.is_tokens else want)
    x = _inputs(lm, 32, seed=7)  # same distribution as the calibration samples
    ref = _torch_out(lm, x)
    out = _run_all(art["path"], x)
    err = np.abs(out - ref)
    spread = float(ref.max() - ref.min())
    assert err.mean() < 0.1 * spread and err.max() < 0.5 * spread, (err.mean(), err.max(), spread)
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.9


def test_int8_without_calibration_is_not_applicable(converted):
    lm, arts = converted("lstm")
    with pytest.raises(NotApplicable, match="pass --calib FILE.npz"):
        tflq.LitertInt8().quantize(lm, _fp32(arts), Path("unused.tflite"), None)


def test_calibration_with_wrong_sequence_length_fails_clearly(converted, tmp_path):
    lm, arts = converted("lstm")
    bad = np.zeros((4, SEQ + 2, FEATURES), np.float32)
    with pytest.raises(EdgeRNNError, match="input is fixed at"):
        tflq.LitertInt8().quantize(lm, _fp32(arts), tmp_path / "bad.tflite", bad)


def _fp32(arts):
    from edgernn.convert.artifact import Artifact

    return Artifact.from_dict(arts["tflite-litert-fp32"])


@pytest.mark.parametrize("fault,signal_name", [("abort", "SIGABRT"), ("segv", "SIGSEGV")])
def test_converter_crash_becomes_export_error(monkeypatch, tmp_path, fault, signal_name):
    monkeypatch.setenv(tfl.FAULT_ENV, fault)
    with pytest.raises(ExportError, match=f"crashed with {signal_name}"):
        tfl.TfliteLitertFormat().export(_model("gru"), tmp_path / "m.tflite")


def test_converter_hang_is_stopped(monkeypatch, tmp_path):
    monkeypatch.setenv(tfl.FAULT_ENV, "hang")
    monkeypatch.setenv(tfl.TIMEOUT_ENV, "2")
    with pytest.raises(ExportError, match="did not finish within 2 s"):
        tfl.TfliteLitertFormat().export(_model("gru"), tmp_path / "m.tflite")


def test_crash_is_a_failed_row_in_the_manifest(monkeypatch, tmp_path):
    monkeypatch.setenv(tfl.FAULT_ENV, "segv")
    manifest = export_model(_model("lstm"), tmp_path, ["tflite-litert"], ["dynamic"])
    (art,) = manifest["artifacts"]
    assert art["variant"] == "tflite-litert-fp32" and art["status"] == "export failed"
    assert "SIGSEGV" in art["error"] and "\n" not in art["error"]


def test_quantizer_crash_becomes_export_error(converted, monkeypatch, tmp_path):
    lm, arts = converted("gru")
    monkeypatch.setenv(tfl.FAULT_ENV, "abort")
    with pytest.raises(ExportError, match="ai-edge-quantizer int8-dynamic crashed with SIGABRT"):
        tflq.LitertDynamicInt8().quantize(lm, _fp32(arts), tmp_path / "q.tflite")


def test_torchscript_archive_converts_with_parity(tmp_path):
    lm = _model("gru")
    traced = torch.jit.trace(lm.module, (lm.example_input(),))
    torch.jit.save(traced, str(tmp_path / "ts.pt"))
    ts = LoadedModel(torch.jit.load(str(tmp_path / "ts.pt")), lm.spec, "torchscript",
                     tmp_path / "ts.pt", "0" * 64)
    art = tfl.TfliteLitertFormat().export(ts, tmp_path / "ts.tflite")
    assert any("TS2EPConverter" in n for n in art.notes)
    assert "TorchScript -> specialised ExportedProgram" in art.backend
    x = _inputs(lm, 4, seed=8)
    np.testing.assert_allclose(_run_all(art.path, x), _torch_out(lm, x), atol=FP32_TOL)


def test_packed_sequence_is_named(tmp_path):
    class Packed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(FEATURES, 8, batch_first=True)

        def forward(self, x):
            lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.int64)
            packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True)
            out, _ = self.rnn(packed)
            return torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True)[0][:, -1]

    lm = _model("lstm")
    lm.module = Packed().eval()
    with pytest.raises(ExportError, match="PackedSequence is not supported"):
        tfl.TfliteLitertFormat().export(lm, tmp_path / "m.tflite")


def test_untraceable_model_fails_in_one_line(tmp_path):
    class DataDependent(torch.nn.Module):
        def forward(self, x):
            return x.sum() if x.sum() > 0 else x.mean()  # data-dependent control flow

    lm = _model("lstm")
    lm.module = DataDependent()
    with pytest.raises(ExportError, match="torch.export") as e:
        tfl.TfliteLitertFormat().export(lm, tmp_path / "m.tflite")
    assert "\n" not in str(e.value)


def test_int8_calibrates_on_every_sample_given(converted, tmp_path):
    """1001 samples given, 1001 fed to the calibrator (the backend used to keep an evenly
    spaced 1000): the note counts what the child process actually passed to calibrate()."""
    lm, arts = converted("lstm")
    x = np.random.default_rng(12).uniform(-1, 1, size=(1001, SEQ, FEATURES)).astype(np.float32)
    art = tflq.LitertInt8().quantize(lm, _fp32(arts), tmp_path / "cal1001.tflite", x)
    assert any(n == "int8 activations, int8 weights; calibrated on 1001 sample(s)" for n in art.notes), \
        art.notes
