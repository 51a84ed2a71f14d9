"""Plain ``edgernn bench model.pt --data eval.npz`` on a user's traced speaker encoder whose
first LSTM layer sees unnormalised features (``tests/corpus.speaker_data``): the input shape
comes from the data, all-int8 collapses, and without ``--max-drop`` the default 0.5 pp budget
makes edgernn build the mixed variant that keeps accuracy. Accuracy is recomputed here from
onnxruntime runs, not taken from the rows."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tests import corpus
from tests.conftest import cli

FAST = ["--runs", "10", "--min-seconds", "0", "--warmup", "2", "--trials", "1"]


@pytest.fixture(scope="session")
def encoder_bench(tmp_path_factory):
    work = tmp_path_factory.mktemp("int8-budget")
    x, y = corpus.speaker_data(600, frames=20, seed=0, offset=400.0)
    xe, ye = corpus.speaker_data(200, frames=20, seed=1, offset=400.0)
    model = corpus.train_speaker_encoder(x, y, hidden=24, epochs=8)
    traced = torch.jit.trace(model, (torch.from_numpy(xe[:1]),))
    torch.jit.save(traced, str(work / "encoder.pt"))  # no edgernn spec inside
    np.savez(work / "eval.npz", x=xe, y=ye)
    code, out, err = cli(["bench", work / "encoder.pt", "--data", work / "eval.npz", "--out",
                          work / "out", "--db", work / "store.sqlite", "--format", "onnx",
                          "--quantize", "dynamic", *FAST])
    assert code == 0, err
    rows = {r["variant"].split("/")[-1]: r for r in json.loads((work / "out" / "results.json").read_text())}
    with torch.no_grad():
        fp32_acc = float(np.mean(model(torch.from_numpy(xe)).argmax(1).numpy() == ye))
    return rows, work, xe, ye, fp32_acc


def _accuracy(path: str, x: np.ndarray, y: np.ndarray) -> float:
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    pred = [int(np.argmax(s.run(None, {name: x[i:i + 1]})[0])) for i in range(len(x))]
    return float(np.mean(np.asarray(pred) == y))


def test_shape_comes_from_the_data(encoder_bench):
    rows, *_ = encoder_bench
    assert rows["onnx-fp32"]["status"] == "ok"
    assert rows["torch-fp32"]["status"] == "ok"  # the baseline re-loads with the same shape


def test_all_int8_collapses_and_mixed_keeps_accuracy_without_max_drop(encoder_bench):
    rows, work, xe, ye, fp32_acc = encoder_bench
    assert fp32_acc >= 0.95
    out = work / "out" / "encoder"
    full = _accuracy(str(out / "encoder.onnx.int8-dynamic.onnx"), xe, ye)
    assert full < fp32_acc - 0.05  # the data really hurts all-int8 on this CPU
    mixed = rows["onnx-int8-mixed"]
    assert mixed["status"] == "ok", mixed.get("reason")
    acc = _accuracy(str(out / "encoder.onnx.int8-mixed.onnx"), xe, ye)
    assert acc >= fp32_acc - 0.005
    assert abs(mixed["value"] - acc) < 1e-9  # the row reports what the file does
    # the row names the layer kept float and the measured reason
    assert any(n.startswith("mixed precision for the accuracy budget 0.005: kept float") and "LSTM" in n
               for n in mixed["notes"])
