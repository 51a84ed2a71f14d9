"""Issue 22: what the user gave is used. ``NAME:1x6`` shapes, the right hint for a model with
several inputs, shapes from ``--data`` for files without a spec (export, inspect), step data
for ``export --data``, one-hot labels read as classes, and bench reusing an export folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgernn.data.onehot import is_one_hot
from edgernn.model.spec import parse_input, parse_shape
from tests.conftest import cli
from tests.step_models import StepGRU

FAST = ["--trials", "1", "--runs", "5", "--min-seconds", "0", "--warmup", "1"]


class TinyGRU(nn.Module):
    """A user's whole-sequence classifier: [B, 12, 6] -> 3 logits."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(6, 8, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gru(x)[0][:, -1])


def _scripted(path: Path, module: nn.Module) -> Path:
    torch.jit.save(torch.jit.script(module.eval()), str(path))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A spec-less TorchScript classifier, its data with class ids and its logits."""
    d = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    m = TinyGRU().eval()
    p = _scripted(d / "tiny.pt", m)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 12, 6)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    np.savez(d / "eval.npz", x=x, y=y)
    with torch.no_grad():
        logits = m(torch.from_numpy(x)).numpy()
    return {"dir": d, "model": p, "data": d / "eval.npz", "x": x, "y": y, "logits": logits}


def test_times_shape_syntax_is_the_comma_syntax():
    assert [a.size for a in parse_input("x:1x6").axes] == [1, 6]
    assert [(a.name, a.size) for a in parse_shape("batch=1x576", 1)] == [("batch", 1),
                                                                         (None, 576)]
    assert [a.size for a in parse_input("h:1x1x24:state").axes] == [1, 1, 24]
    assert parse_input("h:1x1x24:state").role == "state"


def test_step_model_without_spec_gets_the_input_hint_and_takes_1x_shapes(tmp_path):
    p = _scripted(tmp_path / "gru_step.pt", StepGRU())
    code, _, err = cli(["inspect", p])
    assert code == 1 and err.count("\n") == 1
    assert "--input x:SHAPE --input h:SHAPE" in err and "--input-shape" not in err
    code, out, err = cli(["inspect", p, "--input", "x:1x10", "--input", "h:1x1x24"])
    assert code == 0, err
    assert "input x[1,10] float32" in out and "state: h_out feeds h" not in err


def test_export_data_takes_step_data_as_bench_does(tmp_path):
    p = _scripted(tmp_path / "gru_step.pt", StepGRU())
    data = tmp_path / "steps.npz"
    rng = np.random.default_rng(1)
    np.savez(data, x=rng.standard_normal((4, 6, 10)).astype(np.float32),
             y=rng.integers(0, 3, (4, 6)))
    code, _, err = cli(["export", p, "--input", "x:batch=1,10", "--input", "h:1,batch=1,24",
                        "--data", data, "--format", "onnx", "--quantize", "none",
                        "--out", tmp_path / "x"])
    assert code == 0, err
    man = json.loads((tmp_path / "x" / "manifest.json").read_text())
    fp32 = next(a for a in man["artifacts"] if a["variant"] == "onnx-fp32")
    # parity was checked on the data's samples, stepped through the sequence
    assert any(c.get("data") == "chained steps (evaluation samples)" and c["sequences"] == 4
               for c in fp32["parity"]), fp32["parity"]


def test_spec_less_file_exports_and_inspects_with_only_data(tiny, tmp_path):
    code, out, err = cli(["inspect", tiny["model"], "--data", tiny["data"]])
    assert code == 0, err
    assert "task: classify (from the data" in out and "task: ?" not in out
    code, out, err = cli(["export", tiny["model"], "--data", tiny["data"], "--format", "onnx",
                          "--quantize", "none", "--out", tmp_path / "x"])
    assert code == 0, err
    man = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert man["model"]["input_spec"]["shape"] == "batch=1,seq=12,6"
    assert max(len(x) for x in out.splitlines()) <= 120  # the export table, piped


def test_one_hot_labels_are_read_as_classes(tiny, tmp_path):
    onehot = np.eye(3, dtype=np.float32)[tiny["y"]]
    assert is_one_hot(onehot) and not is_one_hot(onehot * 0.5)
    assert not is_one_hot(np.ones((4, 3), np.float32))  # rows summing to 3: not one-hot
    data = tmp_path / "onehot.npz"
    np.savez(data, x=tiny["x"], y=onehot)
    code, out, err = cli(["bench", tiny["model"], "--data", data, "--format", "onnx",
                          "--quantize", "none", "--out", tmp_path / "b", *FAST])
    assert code == 0, err
    rows = {r["variant"].split("/")[1]: r
            for r in json.loads((tmp_path / "b" / "results.json").read_text())}
    # by hand: the model's argmax against the labels the one-hot rows encode
    want = float(np.mean(tiny["logits"].argmax(1) == tiny["y"]))
    for v in ("torch-fp32", "onnx-fp32"):
        assert rows[v]["metric"] == "accuracy" and rows[v]["value"] == pytest.approx(want)
        assert any("one-hot" in n for n in rows[v]["notes"])
    assert "one-hot" in out
    # a file that says it forecasts keeps its values
    np.savez(data, x=tiny["x"], y=onehot, meta=np.array(json.dumps({"task": "forecast"})))
    code, out, err = cli(["inspect", tiny["model"], "--data", data])
    assert "one-hot" not in out


def test_bench_after_export_to_the_same_folder_converts_nothing(tiny, tmp_path):
    out_dir = tmp_path / "same"
    code, _, err = cli(["export", tiny["model"], "--data", tiny["data"], "--format", "onnx",
                        "--quantize", "dynamic", "--out", out_dir])
    assert code == 0, err
    made = {p.name: p.stat().st_mtime_ns for p in out_dir.glob("*.onnx")}
    assert {"tiny.onnx.fp32.onnx", "tiny.onnx.int8-dynamic.onnx"} <= set(made)
    code, out, err = cli(["bench", tiny["model"], "--data", tiny["data"], "--format", "onnx",
                          "--quantize", "dynamic", "--out", out_dir, *FAST])
    assert code == 0, err
    assert {p.name: p.stat().st_mtime_ns for p in out_dir.glob("*.onnx")} == made
    assert not list(out_dir.rglob("tiny/*.onnx"))  # nothing converted into bench's own folder
    rows = {r["variant"].split("/")[1]: r
            for r in json.loads((out_dir / "results.json").read_text())}
    assert rows["onnx-fp32"]["status"] == "ok"
    assert rows["onnx-fp32"]["size_bytes"] == (out_dir / "tiny.onnx.fp32.onnx").stat().st_size
    assert "export taken from" in out
