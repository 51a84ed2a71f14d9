"""TFLite through a tf_keras rebuild: weight-transfer parity (LSTM, GRU, mixed and
bidirectional stacks, tokens, forecaster), the fused LSTM op and other sequence lengths,
statelessness (and why it needs reset_all_variables), the unrolled GRU, quantized variants
and converter crashes in the child process.

Models are small and untrained (hidden 16-32, sequence 10) and each artifact is converted
once per session: a conversion costs a few seconds (a child process imports TensorFlow).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("tf_keras")
pytest.importorskip("ai_edge_litert")

import edgernn.formats.tflite_keras as tfk  # noqa: E402  (registers the two formats)
import edgernn.quantize.tflite_keras as tfkq  # noqa: E402  (registers their quantizers)
from edgernn.errors import ExportError  # noqa: E402
from edgernn.exporting import check_parity  # noqa: E402
from edgernn.loading import LoadedModel  # noqa: E402
from edgernn.models.sequence import SequenceModel  # noqa: E402
from edgernn.probe import runtimes  # noqa: E402
from edgernn.quantize.base import NotApplicable  # noqa: E402
from edgernn.spec import Axis, InputSpec  # noqa: E402

SEQ, FEATURES, VOCAB = 10, 3, 50
FP32_TOL = 1e-4


def _model(name: str, layers: list[dict], tokens: bool = False, task: str = "classify") -> LoadedModel:
    torch.manual_seed(0)
    inp = ({"kind": "tokens", "vocab_size": VOCAB, "embed_dim": 8} if tokens
           else {"kind": "features", "features": FEATURES})
    config = {"arch": "sequence", "input": inp, "task": task,
              "num_classes": 3 if task == "classify" else None,
              "horizon": 2 if task == "forecast" else None, "layers": layers}
    module = SequenceModel(config).eval()
    with torch.no_grad():
        for p in module.parameters():  # larger than the default init, so errors would show
            p.uniform_(-0.6, 0.6)
        if not tokens:  # non-trivial standardisation, as after training
            module.x_mean.copy_(torch.tensor([1.0, -2.0, 0.5]))
            module.x_std.copy_(torch.tensor([2.0, 0.5, 4.0]))
        if task == "forecast":
            module.y_mean.fill_(10.0)
            module.y_std.fill_(3.0)
    axes = [Axis(1, "batch"), Axis(SEQ, "seq")] + ([] if tokens else [Axis(FEATURES)])
    spec = InputSpec(axes, "int64" if tokens else "float32", task,
                     vocab_size=VOCAB if tokens else None,
                     num_classes=3 if task == "classify" else None,
                     horizon=2 if task == "forecast" else None)
    return LoadedModel(module, spec, "checkpoint", Path(f"{name}.pt"), "0" * 64, config)


def _layer(cell: str, hidden: int, n: int = 1, bi: bool = False) -> dict:
    return {"cell": cell, "hidden": hidden, "num_layers": n, "bidirectional": bi}


MODELS = {
    "lstm": lambda: _model("lstm", [_layer("lstm", 32)]),
    "gru": lambda: _model("gru", [_layer("gru", 32)], task="forecast"),
    "mixed": lambda: _model("mixed", [_layer("gru", 16), _layer("lstm", 16, n=2),
                                      _layer("lstm", 8, bi=True)]),
    # a GRU after an LSTM of the same width: TF 2.21 hands the GRU the LSTM's state variable
    # as its zero initial state unless the file is repaired (unshare_state_tensors)
    "tokens": lambda: _model("tokens", [_layer("lstm", 16), _layer("gru", 16)], tokens=True),
    "bigru": lambda: _model("bigru", [_layer("lstm", 16), _layer("gru", 16, bi=True)]),
}


def _inputs(lm: LoadedModel, n: int, seed: int, seq: int = SEQ) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if lm.spec.is_tokens:
        return rng.integers(0, VOCAB, size=(n, seq)).astype(np.int64)
    mean, std = lm.module.x_mean.numpy(), lm.module.x_std.numpy()
    return (rng.standard_normal((n, seq, FEATURES)) * std + mean).astype(np.float32)


def _torch(lm: LoadedModel, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return lm.module(torch.from_numpy(x)).numpy()


def _run(path: str, x: np.ndarray) -> np.ndarray:
    """Sample by sample through the litert host runtime (batch fixed at 1 in loop files)."""
    sess = runtimes.load("litert", path, threads=1)
    return np.concatenate([sess.run(x[i:i + 1]) for i in range(len(x))])


@pytest.fixture(scope="session")
def kdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tflite_keras")


@pytest.fixture(scope="session")
def models() -> dict[str, LoadedModel]:
    return {k: f() for k, f in MODELS.items()}


@pytest.fixture(scope="session")
def fused(models, kdir) -> dict:
    """tflite-keras fp32 artifacts of every model, converted once."""
    return {k: tfk.TFLITE_KERAS.export(m, kdir / f"{k}.tflite") for k, m in models.items()}


@pytest.fixture(scope="session")
def gru_unrolled(models, kdir):
    return tfk.TFLITE_KERAS_UNROLLED.export(models["gru"], kdir / "gru.unrolled.tflite")


@pytest.fixture(scope="session")
def lstm_quantized(models, fused, kdir) -> dict:
    lm = models["lstm"]
    calib = _inputs(lm, 32, seed=7)
    out = {}
    for q in tfkq._MODES:
        quant = tfkq.TFLiteKerasQuantizer(tfk.TFLITE_KERAS, q)
        try:
            out[q] = quant.quantize(lm, fused["lstm"], kdir / f"lstm.{quant.label}.tflite", calib)
        except NotApplicable as e:
            out[q] = e
    return out


def test_available_and_registered():
    from edgernn.formats.base import FORMATS
    from edgernn.quantize.base import quantizers_for

    assert tfk.TFLITE_KERAS.available() is None
    assert {"tflite-keras", "tflite-keras-unrolled"} <= set(FORMATS)
    assert all(FORMATS[n].family == "tflite" and FORMATS[n].runtime == "litert"
               for n in ("tflite-keras", "tflite-keras-unrolled"))
    for name in ("tflite-keras", "tflite-keras-unrolled"):
        labels = [q.label for q in quantizers_for(name, ["dynamic", "fp16", "int8", "int16x8"])]
        assert labels == ["int8-dynamic", "fp16", "int8", "int16x8"]


def test_missing_tensorflow_reason(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a: None if n == "tf_keras" else real(n, *a))
    reason = tfk.TFLITE_KERAS.available()
    assert reason and "tf_keras" in reason and "pip install 'edgernn[tflite-keras]'" in reason
    assert "\n" not in reason


@pytest.mark.parametrize("name", list(MODELS))
def test_weight_transfer_parity(name, models, fused):
    lm, art = models[name], fused[name]
    x = _inputs(lm, 8, seed=1)
    ref = _torch(lm, x)
    out = _run(art.path, x)
    assert np.abs(out - ref).max() <= FP32_TOL * max(1.0, np.abs(ref).max())
    # the project's own parity check (what `edgernn export` runs) agrees
    check_parity(lm, art)
    assert art.parity_ok, art.parity


def test_fused_lstm_op_and_other_sequence_lengths(models, fused):
    art = fused["lstm"]
    assert art.ops.get("UNIDIRECTIONAL_SEQUENCE_LSTM") == 1
    assert "WHILE" not in art.ops
    # independently of our census: the interpreter's own op list (no delegate)
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=art.path,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in {o["op_name"] for o in it._get_ops_details()}
    assert art.accepts_other_seq_len and not art.dynamic_batch
    lm = models["lstm"]
    sess = runtimes.load("litert", art.path, threads=1)
    for seq in (3, SEQ, 25, SEQ):  # resize back and forth
        x = _inputs(lm, 1, seed=seq, seq=seq)
        ref = _torch(lm, x)
        assert np.abs(sess.run(x) - ref).max() <= FP32_TOL * max(1.0, np.abs(ref).max())


def test_mixed_stack_ops(fused):
    ops = fused["mixed"].ops
    # gru -> WHILE; lstm x2 -> 2 fused; bilstm -> 2 fused + time reversal
    assert ops.get("UNIDIRECTIONAL_SEQUENCE_LSTM") == 4
    assert ops.get("WHILE") == 1
    assert ops.get("REVERSE_V2", 0) >= 1
    assert fused["mixed"].accepts_other_seq_len
    assert any("WHILE loop" in n for n in fused["mixed"].notes)
    assert any("UNIDIRECTIONAL_SEQUENCE_LSTM" in n for n in fused["mixed"].notes)


def test_gru_after_lstm_gets_its_own_zero_state(fused):
    for name in ("tokens", "bigru"):
        art = fused[name]
        assert art.ops.get("UNIDIRECTIONAL_SEQUENCE_LSTM") == 1
        assert art.ops.get("WHILE") == (2 if name == "bigru" else 1)
        assert art.accepts_other_seq_len  # verified against PyTorch at other lengths
    # the repaired file's fixed inputs are constants, not variables
    from ai_edge_litert import schema_py_generated as fb

    m = fb.ModelT.InitFromPackedBuf(bytearray(Path(fused["tokens"].path).read_bytes()), 0)
    zero = [t for t in m.subgraphs[0].tensors if t.name and t.name.endswith(b"_zero_init")]
    assert all(not t.isVariable for t in zero)


def test_tokens_are_int32_in_the_file(fused):
    sess = runtimes.load("litert", fused["tokens"].path, threads=1)
    assert sess.details["input_dtype"] == "int32"
    assert any("int32" in n for n in fused["tokens"].notes)


def test_litert_session_is_stateless(models, fused):
    for name in ("lstm", "mixed"):
        x = _inputs(models[name], 1, seed=3)
        sess = runtimes.load("litert", fused[name].path, threads=1)
        outs = [sess.run(x) for _ in range(3)]
        assert all(np.array_equal(outs[0], o) for o in outs[1:])


def test_fused_lstm_keeps_state_without_reset(models, fused):
    """Why the runtime resets: a raw interpreter carries the LSTM state into the next invoke."""
    from ai_edge_litert.interpreter import Interpreter

    x = _inputs(models["lstm"], 1, seed=3)
    it = Interpreter(model_path=fused["lstm"].path, num_threads=1)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.resize_tensor_input(inp["index"], list(x.shape), strict=False)
    it.allocate_tensors()
    outs = []
    for _ in range(3):
        it.set_tensor(inp["index"], x)
        it.invoke()
        outs.append(it.get_tensor(out["index"]).copy())
    assert not np.allclose(outs[0], outs[1]) and not np.allclose(outs[1], outs[2])
    it.reset_all_variables()
    it.set_tensor(inp["index"], x)
    it.invoke()
    assert np.array_equal(it.get_tensor(out["index"]), outs[0])


def test_gru_unrolled(models, fused, gru_unrolled):
    art = gru_unrolled
    assert "WHILE" not in art.ops and art.ops.get("FULLY_CONNECTED", 0) >= SEQ
    assert not art.accepts_other_seq_len and art.dynamic_batch
    assert fused["gru"].ops.get("WHILE") == 1 and fused["gru"].accepts_other_seq_len
    lm = models["gru"]
    x = _inputs(lm, 4, seed=5)
    ref = _torch(lm, x)
    sess = runtimes.load("litert", art.path, threads=1)
    out = sess.run(x)  # batch 4 in one call
    assert np.abs(out - ref).max() <= FP32_TOL * max(1.0, np.abs(ref).max())
    check_parity(lm, art)
    assert art.parity_ok


def test_quantized_lstm_variants_run_and_are_smaller(models, fused, lstm_quantized):
    lm = models["lstm"]
    fp32_size = Path(fused["lstm"].path).stat().st_size
    x = _inputs(lm, 16, seed=11)
    ref = _torch(lm, x)
    for mode, tol in (("dynamic", 0.05), ("fp16", 0.01), ("int8", 0.25)):
        art = lstm_quantized[mode]
        assert not isinstance(art, Exception), art
        assert art.variant == f"tflite-keras-{tfkq.TFLiteKerasQuantizer(tfk.TFLITE_KERAS, mode).label}"
        assert Path(art.path).stat().st_size < fp32_size, mode
        assert art.ops.get("UNIDIRECTIONAL_SEQUENCE_LSTM") == 1, mode
        out = _run(art.path, x)
        assert np.isfinite(out).all()
        assert np.abs(out - ref).max() <= tol * max(1.0, np.abs(ref).max()), mode
        assert art.accepts_other_seq_len
    assert lstm_quantized["dynamic"].quantized_fraction > 0.5
    # input width 3 keeps each LSTM input-weight tensor under 1024 elements: the default
    # (MLIR) dynamic-range quantizer would leave the fused LSTM float, so the legacy one ran
    assert any("legacy dynamic-range quantizer" in n for n in lstm_quantized["dynamic"].notes)


def test_int16x8_has_no_fused_lstm(lstm_quantized):
    e = lstm_quantized["int16x8"]
    assert isinstance(e, NotApplicable)
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in str(e) and "\n" not in str(e)


def test_int8_needs_calibration(models, fused, kdir):
    q = tfkq.TFLiteKerasQuantizer(tfk.TFLITE_KERAS, "int8")
    with pytest.raises(NotApplicable, match=r"full int8 needs calibration data: pass --calib FILE\.npz"):
        q.quantize(models["lstm"], fused["lstm"], kdir / "nocal.tflite", None)


def test_gru_loop_int8_calibrator_crash_is_clean(models, fused, kdir):
    """TF 2.21's calibrator segfaults on WHILE-loop models; that must be one clean line."""
    lm = models["gru"]
    q = tfkq.TFLiteKerasQuantizer(tfk.TFLITE_KERAS, "int8")
    path = kdir / "gru.int8.tflite"
    try:
        art = q.quantize(lm, fused["gru"], path, _inputs(lm, 16, seed=2))
    except ExportError as e:
        msg = str(e)
        assert "\n" not in msg and "crashed (SIG" in msg and "tflite-keras-unrolled" in msg
        assert not path.exists()
    else:  # a TensorFlow that no longer crashes: then the file must work
        assert np.isfinite(_run(art.path, _inputs(lm, 2, seed=2))).all()


def test_gru_unrolled_int8(models, gru_unrolled, kdir):
    lm = models["gru"]
    q = tfkq.TFLiteKerasQuantizer(tfk.TFLITE_KERAS_UNROLLED, "int8")
    art = q.quantize(lm, gru_unrolled, kdir / "gru.unrolled.int8.tflite", _inputs(lm, 32, seed=2))
    assert "WHILE" not in art.ops and art.quantized_fraction > 0.5
    x = _inputs(lm, 8, seed=4)
    ref = _torch(lm, x)
    out = _run(art.path, x)
    assert np.abs(out - ref).max() <= 0.1 * max(1.0, np.abs(ref).max())


def test_crash_and_timeout_in_child_are_one_line(models, kdir, monkeypatch):
    lm = models["lstm"]
    monkeypatch.setenv(tfk.FAULT_ENV, "segv")
    with pytest.raises(ExportError, match=r"crashed \(SIGSEGV\) during fp32 conversion$"):
        tfk.TFLITE_KERAS.export(lm, kdir / "crash.tflite")
    monkeypatch.setenv(tfk.FAULT_ENV, "hang")
    fmt = tfk.TFLiteKerasFormat("tflite-keras", unroll=False, timeout=3)
    with pytest.raises(ExportError, match="did not finish within 3 s"):
        fmt.export(lm, kdir / "hang.tflite")


def test_calibration_shape_checks(models, gru_unrolled, kdir):
    lm = models["gru"]
    q = tfkq.TFLiteKerasQuantizer(tfk.TFLITE_KERAS_UNROLLED, "int8")
    with pytest.raises(NotApplicable, match="fixed at 10"):
        q.quantize(lm, gru_unrolled, kdir / "x.tflite", _inputs(lm, 4, seed=0, seq=7))
    with pytest.raises(NotApplicable, match="sample-first"):
        q.quantize(lm, gru_unrolled, kdir / "x.tflite", np.zeros((4, SEQ), np.float32))


def test_not_a_sequence_model_is_refused(models, kdir):
    lm = models["lstm"]
    other = LoadedModel(lm.module, lm.spec, "torchscript", lm.path, lm.sha256, None)
    for fmt in (tfk.TFLITE_KERAS, tfk.TFLITE_KERAS_UNROLLED):
        with pytest.raises(ExportError) as e:
            fmt.export(other, kdir / "other.tflite")
        assert str(e.value) == ("tflite-keras rebuilds only edgernn SequenceModel checkpoints; "
                                "use tflite-litert for other models")
