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
    assert art["status"] == "ok", art["error"]
    _, _, _, n_lstm, n_gru = corpus.CORPUS[name]
    ops = _main_ops(art["path"])
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" not in ops
    assert ops.count("WHILE") == n_lstm + n_gru
    assert len(ops) < 60, ops
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
    _, _, _, n_lstm, n_gru = corpus.CORPUS[name]
    fused = n_lstm if plugin == "tflite-fused" else 0
    assert ops.count("UNIDIRECTIONAL_SEQUENCE_LSTM") == fused
    assert ops.count("WHILE") == n_lstm + n_gru - fused
    ref = _torch(lm, x)
    got = _run(q["path"], x)
    assert np.max(np.abs(got - ref)) < 0.05 * max(1.0, float(np.max(np.abs(ref))))


def test_learned_initial_state_is_left_to_tflite_litert(tmp_path):
    """A layer that starts from a given state cannot be the fused op (its state is a
    variable): with nothing else to fuse, the variant is a skip naming why."""
    lm = LoadedModel(corpus.LearnedState().eval(),
                     InputSpec([Axis(1, "batch"), Axis(12, "seq"), Axis(8)], "float32", "classify"),
                     "pickle", Path("learned_state.pt"), "0" * 64)
    manifest = export_model(lm, tmp_path, ["tflite-fused"], [])
    art = manifest["artifacts"][0]
    assert art["status"] == "skipped"
    assert art["error"] == ("nothing to fuse: lstm: LSTM called with a given initial state "
                            "(unrolled by litert-torch) (tflite-litert makes this file)")


def test_final_cell_state_use_is_refused_in_one_line(tmp_path):
    class UsesCellState(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(4, 8, batch_first=True)

        def forward(self, x):
            _, (h, c) = self.lstm(x)
            return h[-1] + c[-1]

    lm = LoadedModel(UsesCellState().eval(),
                     InputSpec([Axis(1, "batch"), Axis(10, "seq"), Axis(4)], "float32", "classify"),
                     "pickle", Path("uses_c.pt"), "0" * 64)
    art = export_model(lm, tmp_path, ["tflite-fused"], [])["artifacts"][0]
    assert art["status"] == "skipped"
    assert art["error"] == ("the model uses an LSTM's final cell state c_n, which the fused "
                            "TFLite LSTM does not output")


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
