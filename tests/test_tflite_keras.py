"""TFLite through a tf_keras rebuild: weight-transfer parity (LSTM, GRU, mixed and
bidirectional stacks, tokens, forecaster), the fused LSTM op and other sequence lengths,
statelessness (and why it needs reset_all_variables), the unrolled GRU, quantized variants,
calibration on every sample given and converter crashes in the child process. Models edgernn
did not write (tests/user_models.py: scripted, traced and pickled) are rebuilt from their
graphs and checked with LiteRT's interpreter directly; unsupported graphs are skips naming
the op and its line.

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

import edgernn.convert.formats.tflite_keras as tfk  # noqa: E402  (registers the two formats)
import edgernn.convert.quantize.tflite_keras as tfkq  # noqa: E402  (registers their quantizers)
from edgernn.convert.exporting import check_parity, export_model  # noqa: E402
from edgernn.convert.quantize.base import NotApplicable  # noqa: E402
from edgernn.errors import ExportError, Unsupported  # noqa: E402
from edgernn.model.loading import LoadedModel, load_model  # noqa: E402
from edgernn.model.spec import Axis, InputSpec  # noqa: E402
from edgernn.models.sequence import SequenceModel  # noqa: E402
from edgernn.probe import runtimes  # noqa: E402
from tests import user_models  # noqa: E402

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
    from edgernn.convert.formats.base import FORMATS
    from edgernn.convert.quantize.base import quantizers_for

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
        assert "\n" not in msg and "crashed with SIG" in msg and "tflite-keras-unrolled" in msg
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
    crash = r"^TFLite fp32 conversion crashed with SIGSEGV \(in its child process\)$"
    with pytest.raises(ExportError, match=crash):
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


def test_sequence_model_without_config_goes_through_the_fx_graph(models, kdir):
    """A SequenceModel handed over as a plain module (no config): rebuilt from its torch.fx
    graph, input standardisation (sub/div by buffers) included."""
    lm = models["lstm"]
    other = LoadedModel(lm.module, lm.spec, "pickle", lm.path, lm.sha256, None)
    art = tfk.TFLITE_KERAS.export(other, kdir / "other.tflite")
    assert any(n.startswith("rebuilt from the torch.fx graph") for n in art.notes)
    x = _inputs(lm, 6, seed=12)
    ref = _torch(lm, x)
    assert np.abs(_run(art.path, x) - ref).max() <= FP32_TOL * max(1.0, np.abs(ref).max())
    # bidirectional: SequenceModel slices the channels of both directions, which is not a chain
    bi = models["mixed"]
    with pytest.raises(Unsupported, match=r"^tflite-keras cannot rebuild a slice .* of the channel axis "
                                          r"at sequence\.py:\d+$"):
        tfk.build_plan(LoadedModel(bi.module, bi.spec, "pickle", bi.path, bi.sha256, None), False)


# ---------------------------------------------------------------- models edgernn did not write


def _line_of(marker: str) -> int:
    """Line number of ``marker`` in tests/user_models.py (read here, not from edgernn)."""
    lines = Path(user_models.__file__).read_text().splitlines()
    return next(i for i, text in enumerate(lines, 1) if marker in text)


def _litert(path: str, x: np.ndarray) -> np.ndarray:
    """One invoke of LiteRT's interpreter directly (not edgernn's runtime adapter)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=path, num_threads=1)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.resize_tensor_input(inp["index"], list(x.shape), strict=False)
    it.allocate_tensors()
    it.reset_all_variables()
    it.set_tensor(inp["index"], x.astype(inp["dtype"]))
    it.invoke()
    return it.get_tensor(out["index"]).copy()


def _interpreter_ops(path: str) -> list[str]:
    """Operators LiteRT's interpreter itself reports for the file (no delegate)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=path,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    return [o["op_name"] for o in it._get_ops_details()]


def _save_and_load(module: torch.nn.Module, how: str, path: Path, example: torch.Tensor, **load_kw):
    """Save ``module`` as a user would (scripted, traced or pickled) and load it with edgernn."""
    if how == "script":
        torch.jit.save(torch.jit.script(module), str(path))
    elif how == "trace":
        torch.jit.save(torch.jit.trace(module, (example,)), str(path))
    else:
        torch.save(module, path)
        load_kw = {"trust_pickle": True, "imports": ("tests.user_models",), **load_kw}
    return load_model(path, **load_kw)


def _conv_bn_lstm() -> torch.nn.Module:
    torch.manual_seed(1)
    m = user_models.ConvBnLSTM(hidden=32).eval()  # 32x32 gate matrices: big enough for int8
    with torch.no_grad():  # statistics as after training, so the folded BatchNorm matters
        m.bn.running_mean.uniform_(-0.5, 0.5)
        m.bn.running_var.uniform_(0.5, 2.0)
        m.bn.weight.uniform_(0.5, 1.5)
        m.bn.bias.uniform_(-0.3, 0.3)
    return m


FOREIGN = {  # case: (model factory, how it is saved, load_model options, example input)
    "conv_lstm_scripted": (_conv_bn_lstm, "script", {"input_shape": "batch=1,seq=12,4"},
                           lambda: torch.randn(1, 12, 4)),
    "token_bilstm_traced": (lambda: user_models.TokenBiLSTM().eval(), "trace",
                            {"input_shape": "batch=1,seq=10", "input_dtype": "int64"},
                            lambda: torch.randint(0, 30, (1, 10))),
    "seqfirst_gru_pickled": (lambda: user_models.SeqFirstGRU().eval(), "pickle",
                             {"input_shape": "seq=10,batch=1,3"}, lambda: torch.randn(10, 1, 3)),
}


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """Each user model saved, loaded and exported through edgernn's real export path once."""
    cache: dict[str, tuple] = {}

    def get(case: str, formats: tuple[str, ...] = ("tflite-keras",)):
        if case not in cache:
            make, how, load_kw, example = FOREIGN[case]
            torch.manual_seed(0)
            module = make()
            d = tmp_path_factory.mktemp(case)
            lm = _save_and_load(module, how, d / f"{case}.pt", example(), **load_kw)
            main = case == "conv_lstm_scripted"
            fmts = ["tflite-keras", "tflite-keras-unrolled"] if main else ["tflite-keras"]
            manifest = export_model(lm, d, fmts, ["dynamic"] if main else [])
            rows = {a["variant"]: {**a, "path": str(d / a["path"]) if a["path"] else ""}
                    for a in manifest["artifacts"]}
            cache[case] = (module, lm, rows)
        return cache[case]

    return get


def test_scripted_conv_lstm_is_fused_with_dynamic_sequence(foreign):
    """Done-when of issue 11: a scripted (not traced) Conv1d + LSTM user model gives a fused,
    variable-length tflite-keras file with parity <= 1e-4."""
    module, lm, rows = foreign("conv_lstm_scripted")
    assert isinstance(lm.module, torch.jit.ScriptModule)
    row = rows["tflite-keras-fp32"]
    assert row["status"] == "ok", row["error"]
    assert row["parity_ok"] is True and row["accepts_other_seq_len"] is True
    assert _interpreter_ops(row["path"]).count("UNIDIRECTIONAL_SEQUENCE_LSTM") == 1
    assert any(n.startswith("rebuilt from the TorchScript graph") for n in row["notes"])
    rng = np.random.default_rng(3)
    for seq in (12, 29, 5):  # the example length and two others, straight through LiteRT
        x = rng.standard_normal((1, seq, 4)).astype(np.float32)
        with torch.no_grad():
            ref = module(torch.from_numpy(x)).numpy()
        out = _litert(row["path"], x)
        assert out.shape == ref.shape
        assert np.abs(out - ref).max() <= 1e-4, (seq, np.abs(out - ref).max())


def test_scripted_conv_lstm_unrolled_has_dynamic_batch(foreign):
    module, _, rows = foreign("conv_lstm_scripted")
    row = rows["tflite-keras-unrolled-fp32"]
    assert row["status"] == "ok", row["error"]
    ops = _interpreter_ops(row["path"])
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" not in ops and "WHILE" not in ops
    assert row["dynamic_batch"] is True and row["accepts_other_seq_len"] is False
    x = np.random.default_rng(4).standard_normal((3, 12, 4)).astype(np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    assert np.abs(_litert(row["path"], x) - ref).max() <= 1e-4


def test_scripted_conv_lstm_dynamic_int8_keeps_the_fused_lstm(foreign):
    module, _, rows = foreign("conv_lstm_scripted")
    row = rows["tflite-keras-int8-dynamic"]
    assert row["status"] == "ok", row["error"]
    assert _interpreter_ops(row["path"]).count("UNIDIRECTIONAL_SEQUENCE_LSTM") == 1
    from ai_edge_litert.interpreter import Interpreter

    tensors = Interpreter(model_path=row["path"]).get_tensor_details()
    # the LSTM's four recurrent gate matrices (hidden 32 x 32) are stored as int8
    assert sum(1 for t in tensors if t["dtype"] == np.int8 and tuple(t["shape"]) == (32, 32)) == 4
    x = np.random.default_rng(8).standard_normal((1, 20, 4)).astype(np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    assert np.abs(_litert(row["path"], x) - ref).max() <= 0.05 * max(1.0, np.abs(ref).max())


def test_traced_token_bilstm(foreign):
    """A traced archive: embedding, 2-layer bidirectional LSTM, torch.cat of both final states."""
    module, _, rows = foreign("token_bilstm_traced")
    row = rows["tflite-keras-fp32"]
    assert row["status"] == "ok", row["error"]
    assert _interpreter_ops(row["path"]).count("UNIDIRECTIONAL_SEQUENCE_LSTM") == 4  # 2 layers x 2 dirs
    rng = np.random.default_rng(5)
    for seq in (10, 23):
        x = rng.integers(0, 30, size=(1, seq))
        with torch.no_grad():
            ref = module(torch.from_numpy(x)).numpy()
        assert np.abs(_litert(row["path"], x.astype(np.int32)) - ref).max() <= 1e-4


def test_pickled_seq_first_gru_through_torch_fx(foreign):
    """An eager (trusted pickle) GRU model whose input is [seq, batch, features]."""
    module, lm, rows = foreign("seqfirst_gru_pickled")
    assert lm.kind == "pickle"
    row = rows["tflite-keras-fp32"]
    assert row["status"] == "ok", row["error"]
    assert row["ops"].get("WHILE") == 2 and row["accepts_other_seq_len"] is True
    assert any(n.startswith("rebuilt from the torch.fx graph") for n in row["notes"])
    rng = np.random.default_rng(6)
    for seq in (10, 17):
        x = rng.standard_normal((seq, 1, 3)).astype(np.float32)
        with torch.no_grad():
            ref = module(torch.from_numpy(x)).numpy()
        assert np.abs(_litert(row["path"], x) - ref).max() <= 1e-4


@pytest.mark.parametrize("how", ["pickle", "script"])
def test_unsupported_op_is_a_skipped_row_naming_it(tmp_path, how):
    module = user_models.StftLSTM().eval()
    lm = _save_and_load(module, how, tmp_path / "stft.pt", torch.randn(1, 32, 1),
                        input_shape="batch=1,seq=32,1")
    manifest = export_model(lm, tmp_path, ["tflite-keras"], ["dynamic"])
    (row,) = manifest["artifacts"]
    assert row["status"] == "skipped" and row["variant"] == "tflite-keras-fp32"
    assert row["error"] == f"tflite-keras cannot rebuild torch.stft at user_models.py:{_line_of('STFT-LINE')}"
    assert not list(tmp_path.glob("*.tflite"))


@pytest.mark.parametrize("how", ["pickle", "script", "trace"])
def test_not_a_chain_is_refused_with_its_line(tmp_path, how):
    lm = _save_and_load(user_models.ResidualLSTM().eval(), how, tmp_path / "res.pt", torch.randn(1, 6, 3),
                        input_shape="batch=1,seq=6,3")
    with pytest.raises(Unsupported) as e:
        tfk.build_plan(lm, unroll=False)
    assert str(e.value) == ("tflite-keras cannot rebuild an addition of two tensors (a branch) at "
                            f"user_models.py:{_line_of('RESIDUAL-LINE')}")


@pytest.mark.parametrize("model,shape,match", [
    (user_models.BiLSTMConv, "batch=1,seq=6,4", r"a model with 2 outputs"),
    (user_models.LoopRNN, "batch=1,seq=6,8", r"prim::Loop at user_models\.py:\d+$"),
])
def test_other_unsupported_graphs(tmp_path, model, shape, match):
    lm = _save_and_load(model().eval(), "script", tmp_path / "m.pt", None, input_shape=shape)
    with pytest.raises(Unsupported, match=match):
        tfk.build_plan(lm, unroll=False)


def test_int8_calibrates_on_every_sample_given(models, fused, kdir):
    """300 calibration samples, the last 44 eight times wider: the file's input quantization
    must cover them (a backend that kept only the first 256 would not), and the note says 300."""
    lm = models["lstm"]
    rng = np.random.default_rng(9)
    cal = rng.uniform(-1, 1, size=(300, SEQ, FEATURES)).astype(np.float32)
    cal[256:] *= 8.0
    q = tfkq.TFLiteKerasQuantizer(tfk.TFLITE_KERAS, "int8")
    art = q.quantize(lm, fused["lstm"], kdir / "lstm.int8.cal300.tflite", cal)
    assert any(n.startswith("calibrated on 300 samples;") for n in art.notes), art.notes
    from ai_edge_litert import schema_py_generated as fb

    m = fb.Model.GetRootAs(Path(art.path).read_bytes(), 0)
    sg = m.Subgraphs(0)
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    first = sg.Operators(0)
    code = m.OperatorCodes(first.OpcodeIndex())
    assert names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())] == "QUANTIZE"
    scale = float(sg.Tensors(first.Outputs(0)).Quantization().ScaleAsNumpy()[0])
    lo, hi = float(cal.min()), float(cal.max())
    assert scale >= 0.9 * (hi - lo) / 255, (scale, lo, hi)


class _DataDependent(torch.nn.Module):
    """Python control flow on a tensor value: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.GRU(3, 8, batch_first=True)
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.abs().max() > 1e6:
            x = x / 1e6
        return self.head(self.rnn(x)[0][:, -1])


def test_eager_model_fx_cannot_trace_falls_back_to_jit_trace_and_says_so():
    spec = InputSpec([Axis(1, "batch"), Axis(SEQ, "seq"), Axis(3)])
    lm = LoadedModel(_DataDependent().eval(), spec, "pickle", Path("dd.pt"), "0" * 64)
    plan, _ = tfk.build_plan(lm, unroll=False)
    assert plan.source.startswith("a torch.jit.trace graph")
    assert [s.op for s in plan.steps] == ["rnn", "dense"]
    assert any(n.startswith("torch.fx could not trace the model") for n in tfk.describe_plan(plan))
