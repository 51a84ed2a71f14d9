"""tflite-fused and tflite-loop on a corpus of recurrent architectures nobody here wrote
(``tests/corpus.py``).

For each: the real export pipeline writes the files; the test then counts their ops with
LiteRT's own interpreter (not edgernn's flatbuffer reader), runs them directly
(reset_all_variables before each sequence, as an app must) and compares with PyTorch on data.
Every tflite-fused file must hold each LSTM as UNIDIRECTIONAL_SEQUENCE_LSTM and each GRU as a
WHILE loop; every tflite-loop file each LSTM and GRU as a WHILE loop; parity <= 1e-4. One
litert-torch conversion per model per session serves both forms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_quantizer")

from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from edgernn.convert.exporting import export_model  # noqa: E402
from edgernn.model.loading import LoadedModel, load_model  # noqa: E402
from edgernn.model.spec import Axis, InputSpec  # noqa: E402
from tests import corpus  # noqa: E402

FP32_TOL = 1e-4
QUANTIZED = {"speaker_encoder", "gru_classifier", "bi_tagger", "projection_lstm"}


def _build(name: str) -> tuple[LoadedModel, np.ndarray]:
    cls, shape, kind, _, _ = corpus.CORPUS[name]
    torch.manual_seed(len(name))
    module = cls().eval()
    rng = np.random.default_rng(3)
    if kind == "tokens":
        x = rng.integers(0, 500, size=(4, *shape)).astype(np.int64)
        axes = [Axis(1, "batch"), Axis(shape[0], "seq")]
        spec = InputSpec(axes, "int64", "classify", vocab_size=500)
    else:
        x = (rng.standard_normal((4, *shape)) * 2.0 + 0.5).astype(np.float32)
        if name == "length_masked":
            x[:, shape[0] // 2:] = 0.0  # padded tails
        axes = [Axis(1, "batch"), Axis(shape[0], "seq"), Axis(shape[1])]
        spec = InputSpec(axes, "float32", "classify")
    return LoadedModel(module, spec, "pickle", Path(f"{name}.pt"), "0" * 64), x


@pytest.fixture(scope="session")
def fused_corpus(tmp_path_factory):
    """name -> (model, data, {variant: artifact dict}); exported on first use."""
    made: dict[str, tuple] = {}

    def get(name: str):
        if name not in made:
            lm, x = _build(name)
            out = tmp_path_factory.mktemp(f"fused-{name}")
            modes = ["dynamic"] if name in QUANTIZED else []
            manifest = export_model(lm, out, ["tflite-fused", "tflite-loop"], modes)
            arts = {a["variant"]: {**a, "path": str(out / a["path"]) if a["path"] else ""}
                    for a in manifest["artifacts"]}
            made[name] = (lm, x, arts)
        return made[name]

    return get


def _run(path: str, x: np.ndarray) -> np.ndarray:
    """The file's first output on each sample, state reset before each (LiteRT directly)."""
    it = Interpreter(model_path=path, num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    outs = []
    for i in range(len(x)):
        it.reset_all_variables()
        it.set_tensor(inp["index"], x[i:i + 1].astype(inp["dtype"]))
        it.invoke()
        outs.append(it.get_tensor(out["index"]).copy())
    return np.concatenate(outs)


def _subgraphs(path: str) -> int:
    from ai_edge_litert import schema_py_generated as fb

    return fb.Model.GetRootAs(Path(path).read_bytes(), 0).SubgraphsLength()


def _main_ops(path: str) -> list[str]:
    """Op names of the main subgraph, as LiteRT's interpreter lists them."""
    it = Interpreter(model_path=path)
    return [d["op_name"] for d in it._get_ops_details()]


@torch.no_grad()
def _torch(lm: LoadedModel, x: np.ndarray) -> np.ndarray:
    out = lm.module(torch.from_numpy(x))
    return (out[0] if isinstance(out, tuple) else out).numpy()


@pytest.mark.parametrize("name", sorted(corpus.CORPUS))
def test_every_architecture_fuses_with_parity(fused_corpus, name):
    lm, x, arts = fused_corpus(name)
    art = arts["tflite-fused-fp32"]
    assert art["status"] == "ok", art["error"]
    _, _, _, n_lstm, n_gru = corpus.CORPUS[name]
    ops = _main_ops(art["path"])
    assert ops.count("UNIDIRECTIONAL_SEQUENCE_LSTM") == n_lstm
    assert ops.count("WHILE") == n_gru
    # nothing unrolled: the main graph is a few dozen ops, not one set per time step
    assert len(ops) < 40, ops
    got = _run(art["path"], x)
    ref = _torch(lm, x)
    assert got.shape == ref.shape
    assert np.max(np.abs(got - ref)) <= FP32_TOL * max(1.0, float(np.max(np.abs(ref))))


@pytest.mark.parametrize("name", sorted(corpus.CORPUS))
def test_every_architecture_as_loops_with_parity(fused_corpus, name):
    lm, x, arts = fused_corpus(name)
    art = arts["tflite-loop-fp32"]
    _, _, _, n_lstm, n_gru = corpus.CORPUS[name]
    if n_lstm == 0:  # nothing fused: tflite-fused made this very file, shown once
        assert (art["status"], art["error"]) == ("not applicable",
                                                 "the same file as tflite-fused-fp32")
        art = arts["tflite-fused-fp32"]
    assert art["status"] == "ok", art["error"]
    ops = _main_ops(art["path"])
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" not in ops
    assert ops.count("WHILE") == n_lstm + n_gru
    # not unrolled: that would be >= 2 sigmoids per step per layer in the main graph (a few
    # cells of the last steps may sit there, after the loop)
    steps = corpus.CORPUS[name][1][0]
    assert ops.count("LOGISTIC") < steps * (n_lstm + n_gru), ops
    got = _run(art["path"], x)
    ref = _torch(lm, x)
    assert np.max(np.abs(got - ref)) <= FP32_TOL * max(1.0, float(np.max(np.abs(ref))))


def test_state_is_reset_between_sequences_not_carried(fused_corpus):
    """Two different sequences, then the first again: the same answer both times (the fused
    LSTM's variables were reset), and a different one for the second sequence."""
    lm, x, arts = fused_corpus("speaker_encoder")
    got = _run(arts["tflite-fused-fp32"]["path"], np.concatenate([x[:1], x[1:2], x[:1]]))
    np.testing.assert_array_equal(got[0], got[2])
    assert np.max(np.abs(got[0] - got[1])) > 1e-3


@pytest.mark.parametrize("plugin", ["tflite-fused", "tflite-loop"])
@pytest.mark.parametrize("name", sorted(QUANTIZED))
def test_dynamic_int8_is_smaller_with_int8_recurrent_weights(fused_corpus, name, plugin):
    lm, x, arts = fused_corpus(name)
    _, _, _, n_lstm, n_gru = corpus.CORPUS[name]
    if plugin == "tflite-loop" and n_lstm == 0:  # the same files as tflite-fused's
        assert arts["tflite-loop-int8-dynamic"]["error"] == ("the same file as "
                                                             "tflite-fused-int8-dynamic")
        plugin = "tflite-fused"
    fp32, q = arts[f"{plugin}-fp32"], arts[f"{plugin}-int8-dynamic"]
    assert q["status"] == "ok", q["error"]
    # small models carry fixed overhead (names, zero states): 0.7, not the 0.25 of weights alone
    assert Path(q["path"]).stat().st_size < 0.7 * Path(fp32["path"]).stat().st_size
    # the recurrent ops read int8 weights: counted from LiteRT's tensor tables over every
    # subgraph (a loop's recurrent weight lives in its body)
    it = Interpreter(model_path=q["path"])
    it.allocate_tensors()
    dtypes = {d["name"]: d["dtype"] for g in range(_subgraphs(q["path"]))
              for d in it.get_tensor_details(g)}
    rec = [n for n in dtypes if n.startswith(("edgernn_lstm", "edgernn_gru"))
           and ("/w_" in n or n.endswith("_w"))]
    assert rec and all(dtypes[n] == np.int8 for n in rec)
    ops = _main_ops(q["path"])
    fused = n_lstm if plugin == "tflite-fused" else 0
    assert ops.count("UNIDIRECTIONAL_SEQUENCE_LSTM") == fused
    assert ops.count("WHILE") == n_lstm + n_gru - fused
    ref = _torch(lm, x)
    got = _run(q["path"], x)
    assert np.max(np.abs(got - ref)) < 0.05 * max(1.0, float(np.max(np.abs(ref))))


def test_learned_initial_state_is_a_loop_in_the_fused_file_with_its_reason(fused_corpus):
    """A layer that starts from a given state cannot be the fused op (its state is a
    variable): tflite-fused makes it a loop and says why (parity: the corpus tests)."""
    _, _, arts = fused_corpus("learned_state")
    notes = arts["tflite-fused-fp32"]["notes"]
    assert "lstm.l0 LSTM 16: TFLite cell ops, not the fused op (a given initial state)" in notes


def test_final_cell_state_read_makes_that_layer_a_loop(tmp_path):
    class UsesCellState(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(4, 8, batch_first=True)

        def forward(self, x):
            _, (h, c) = self.lstm(x)
            return h[-1] + c[-1]

    torch.manual_seed(1)
    lm = LoadedModel(UsesCellState().eval(),
                     InputSpec([Axis(1, "batch"), Axis(10, "seq"), Axis(4)], "float32", "classify"),
                     "pickle", Path("uses_c.pt"), "0" * 64)
    art = export_model(lm, tmp_path, ["tflite-fused"], [])["artifacts"][0]
    assert art["status"] == "ok", art["error"]
    assert ("lstm.l0 LSTM 8: TFLite cell ops, not the fused op (its final cell state is read)"
            in art["notes"])
    ops = _main_ops(str(tmp_path / art["path"]))
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" not in ops and ops.count("WHILE") == 1
    x = np.random.default_rng(4).standard_normal((3, 10, 4)).astype(np.float32)
    got = _run(str(tmp_path / art["path"]), x)
    np.testing.assert_allclose(got, _torch(lm, x), atol=FP32_TOL)


@pytest.mark.parametrize("plugin", ["tflite-fused", "tflite-loop"])
def test_scripted_step_model_is_cells_with_state_in_and_out(tmp_path, plugin):
    """A user's streaming step model (frame, h, c in; output, h', c' out; scripted): one
    step of cells, no loop and no unrolled decomposition; fed its own state back frame by
    frame it gives what torch gives over the whole sequence."""
    torch.manual_seed(5)
    step = corpus.StepLSTM().eval()
    torch.jit.script(step).save(str(tmp_path / "step.pt"))
    lm = load_model(tmp_path / "step.pt",
                    inputs=["x:batch=1,6", "h:1,batch=1,16:state", "c:1,batch=1,16:state"])
    art = export_model(lm, tmp_path / "out", [plugin], [])["artifacts"][0]
    assert art["status"] == "ok", art["error"]
    path = str(tmp_path / "out" / art["path"])
    ops = _main_ops(path)
    assert "WHILE" not in ops and "UNIDIRECTIONAL_SEQUENCE_LSTM" not in ops
    assert ops.count("FULLY_CONNECTED") == 3, ops  # input and recurrent projection, head
    it = Interpreter(model_path=path, num_threads=1)
    it.allocate_tensors()
    ins, outs = it.get_input_details(), it.get_output_details()
    assert [tuple(d["shape"]) for d in ins] == [(1, 6), (1, 1, 16), (1, 1, 16)]
    frames = np.random.default_rng(6).standard_normal((12, 1, 6)).astype(np.float32)
    h = c = np.zeros((1, 1, 16), np.float32)
    th, tc = torch.zeros(1, 1, 16), torch.zeros(1, 1, 16)
    for f in frames:
        for d, a in zip(ins, (f, h, c), strict=True):
            it.set_tensor(d["index"], a)
        it.invoke()
        y, h, c = (it.get_tensor(d["index"]).copy() for d in outs)
        with torch.no_grad():
            ty, th, tc = step(torch.from_numpy(f), th, tc)
        np.testing.assert_allclose(y, ty.numpy(), atol=FP32_TOL)
    np.testing.assert_allclose(h, th.numpy(), atol=FP32_TOL)
    np.testing.assert_allclose(c, tc.numpy(), atol=FP32_TOL)


def test_traced_torchscript_speaker_encoder_is_fused(tmp_path):
    """A traced archive (no Python class): the LSTM node is rewritten on its ExportedProgram."""
    lm, x = _build("speaker_encoder")
    traced = torch.jit.trace(lm.module, (torch.from_numpy(x[:1]),))
    torch.jit.save(traced, str(tmp_path / "enc.pt"))
    ts = load_model(tmp_path / "enc.pt", input_shape="batch=1,seq=24,40")
    art = export_model(ts, tmp_path / "out", ["tflite-fused"], [])["artifacts"][0]
    assert art["status"] == "ok", art["error"]
    assert _main_ops(str(tmp_path / "out" / art["path"])).count("UNIDIRECTIONAL_SEQUENCE_LSTM") == 3
    got = _run(str(tmp_path / "out" / art["path"]), x)
    np.testing.assert_allclose(got, _torch(lm, x), atol=FP32_TOL)
