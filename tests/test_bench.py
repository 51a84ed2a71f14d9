"""bench end to end on the x86 target: real runs, metrics recomputed independently."""

from __future__ import annotations

import csv
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from edgernn.measure.bench import judge
from edgernn.model.loading import load_model
from edgernn.probe.metrics import agreement, compute_metrics
from tests.conftest import cli

FAST = ["--runs", "20", "--min-seconds", "0", "--warmup", "2"]
ROW_CONTRACT = {"variant", "format", "quantization", "runtime", "status", "size_bytes",
                "latency_ms", "metric", "value", "accuracy_drop", "agreement"}
LATENCY_CONTRACT = {"p50", "p90", "p99", "mean", "std", "first", "load"}


@pytest.fixture(scope="session")
def weather_bench(weather_models, workdir, capsys_session):
    out = workdir / "bench"
    code, stdout, stderr = capsys_session(
        ["bench", weather_models["lstm"], weather_models["gru"], "--data",
         weather_models["eval"], "--out", out, "--format", "onnx,tflite-litert", *FAST,
         "--trials", "1"])  # trials: test_truth; keras variants: test_sweep benches them all
    assert code == 0, stderr
    rows = json.loads((out / "results.json").read_text())
    return {"rows": {r["variant"]: r for r in rows}, "out": out, "stdout": stdout}


@pytest.fixture(scope="session")
def capsys_session():
    return cli


def test_every_variant_measured_for_lstm_and_gru(weather_bench):
    rows = weather_bench["rows"]
    for model in ("lstm", "gru"):
        for v in ("torch-fp32", "onnx-fp32", "onnx-int8-dynamic", "onnx-fp16",
                  "tflite-litert-fp32", "tflite-litert-int8-dynamic", "tflite-litert-fp16",
                  "tflite-litert-int8"):
            r = rows[f"{model}/{v}"]
            assert r["status"] == "ok", r
            assert set(r) >= ROW_CONTRACT and set(r["latency_ms"]) >= LATENCY_CONTRACT
            lat = r["latency_ms"]
            assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
            assert lat["count"] >= 20 and lat["load"] > 0 and lat["first"] > 0
            assert r["threads"] == 1 and r["runtime_version"]
            assert r["peak_mb"] is not None and r["device"]["machine"]
    assert "onnx-int8-dynamic" in weather_bench["stdout"]
    assert rows["lstm/onnx-int8"]["status"] == "skipped"  # said, not silently missing
    cal = rows["lstm/tflite-litert-int8"]["calibration"]
    assert "evenly spaced samples of the evaluation data" in cal  # and it says so
    assert any(cal in n for n in rows["lstm/tflite-litert-int8"]["notes"])


def test_sizes_are_real_file_sizes(weather_bench):
    out = weather_bench["out"]
    manifest = json.loads((out / "lstm" / "manifest.json").read_text())
    for a in manifest["artifacts"]:
        if a["status"] == "ok":
            row = weather_bench["rows"][f"lstm/{a['variant']}"]
            assert row["size_bytes"] == (out / "lstm" / a["path"]).stat().st_size


@torch.no_grad()
def test_accuracy_drop_is_computed_from_real_predictions(weather_bench, weather_models):
    rows = weather_bench["rows"]
    data = np.load(weather_models["eval"])
    x, y = data["x"], data["y"]
    lm = load_model(weather_models["lstm"])
    ref = lm.module(torch.from_numpy(x)).numpy()
    base = compute_metrics(ref, y, "classify")["accuracy"]
    assert rows["lstm/torch-fp32"]["value"] == pytest.approx(base)
    q = weather_bench["out"] / "lstm" / "lstm.onnx.int8-dynamic.onnx"
    sess = ort.InferenceSession(str(q))
    name = sess.get_inputs()[0].name
    # batch 1, as the bench evaluates (dynamic int8 activation scales depend on the batch)
    out = np.concatenate([sess.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])
    acc = compute_metrics(out, y, "classify")["accuracy"]
    row = rows["lstm/onnx-int8-dynamic"]
    assert row["value"] == pytest.approx(acc)
    assert row["accuracy_drop"] == pytest.approx(base - acc)
    assert row["agreement"] == pytest.approx(agreement(out, ref, "classify", y))
    assert row["parity_max_abs_diff"] == pytest.approx(float(np.abs(out - ref).max()), rel=1e-3)


def test_csv_has_one_line_per_row(weather_bench):
    with open(weather_bench["out"] / "results.csv") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == len(weather_bench["rows"])
    assert {ln["variant"] for ln in lines} == set(weather_bench["rows"])
    assert all(ln["latency_p50_ms"] for ln in lines if ln["status"] == "ok")
    assert all(ln["reason"] for ln in lines if ln["status"] != "ok")


def test_forecaster_bench_uses_mae(temps_model, tmp_path, capsys_session):
    code, _, err = capsys_session(["bench", temps_model["model"], "--data", temps_model["eval"],
                                   "--out", tmp_path, "--format", "onnx", "--quantize", "fp16",
                                   *FAST])
    assert code == 0, err
    rows = {r["variant"]: r for r in json.loads((tmp_path / "results.json").read_text())}
    base, half = rows["temps_gru/torch-fp32"], rows["temps_gru/onnx-fp16"]
    assert base["metric"] == "mae" and set(base["metrics"]) == {"mae", "rmse"}
    # independent: MAE of PyTorch and of the fp16 file run by onnxruntime directly, with numpy
    data = np.load(temps_model["eval"])
    x, y = data["x"], data["y"].astype(np.float64)
    with torch.no_grad():
        ref = load_model(temps_model["model"]).module(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(tmp_path / "temps_gru" / "temps_gru.onnx.fp16.onnx"))
    name = sess.get_inputs()[0].name
    out = np.concatenate([sess.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])
    mae_ref = float(np.mean(np.abs(ref.reshape(y.shape) - y)))
    mae_half = float(np.mean(np.abs(out.reshape(y.shape) - y)))
    assert base["value"] == pytest.approx(mae_ref, rel=1e-5)
    assert half["value"] == pytest.approx(mae_half, rel=1e-5)
    # drop for an error metric is the variant's MAE minus fp32's (positive = worse)
    assert half["accuracy_drop"] == pytest.approx(mae_half - mae_ref, abs=1e-6)
    assert base["metrics"]["rmse"] == pytest.approx(
        float(np.sqrt(np.mean((ref.reshape(y.shape) - y) ** 2))), rel=1e-5)


def test_token_model_bench(tokens_model, tmp_path, capsys_session):
    code, _, err = capsys_session(["bench", tokens_model["model"], "--data",
                                   tokens_model["eval"], "--out", tmp_path, "--format", "onnx",
                                   *FAST])
    assert code == 0, err
    rows = json.loads((tmp_path / "results.json").read_text())
    assert {r["status"] for r in rows if r["quantization"] != "int8"} == {"ok"}
    by = {r["variant"].split("/")[1]: r for r in rows}
    # onnxruntime has no int8 GRU: edgernn stores its weights int8 (int8-dynamic) or computes it
    # in int8 through a Scan (int8-scan); the notes say which
    assert any("1 GRU: weights stored int8" in n and "computes in fp32" in n
               for n in by["onnx-int8-dynamic"]["notes"])
    assert any("GRU, 1 LSTM: input projection" in n for n in by["onnx-int8-scan"]["notes"])
    assert by["onnx-int8-scan"]["status"] == "ok"
    # the token model is an edgernn checkpoint (eager): PyTorch's own int8 is a peer row
    assert by["torch-int8-dynamic"]["status"] == "ok" and by["torch-int8-dynamic"]["target"] == "x86"


def test_missing_runtime_is_a_failed_row_and_others_are_kept(weather_models, tmp_path,
                                                              capsys_session):
    target = tmp_path / "norumtime.yaml"
    target.write_text("name: broken\nrunner: local\nformats: [onnx]\n"
                      "runtimes: {onnx: tflite_runtime}\nquantize: []\n")
    code, _, err = capsys_session(["bench", weather_models["gru"], "--data",
                                   weather_models["eval"], "--target", target, "--out", tmp_path,
                                   *FAST])
    rows = {r["variant"]: r for r in json.loads((tmp_path / "results.json").read_text())}
    assert rows["gru/torch-fp32"]["status"] == "ok"
    assert rows["gru/onnx-fp32"]["status"] == "run failed"
    assert "tflite_runtime" in rows["gru/onnx-fp32"]["reason"]
    # the only variant failed: that is an error exit, not a success with a red row
    assert code == 1 and "no variant is ok (1 failed" in err


def test_rows_survive_a_later_failure(weather_models, tmp_path, capsys_session):
    bad = tmp_path / "zz_broken.pt"
    bad.write_bytes(b"not a model")
    code, _, err = capsys_session(["bench", weather_models["gru"], bad, "--data",
                                   weather_models["eval"], "--out", tmp_path, "--format", "onnx",
                                   "--quantize", "none", *FAST])
    assert code == 1
    assert "zz_broken.pt is not a PyTorch model file" in err
    assert "Traceback" not in err
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [r["variant"] for r in rows] == ["gru/torch-fp32", "gru/onnx-fp32"]
    # the model before the broken one still got all its timing trials (default 3)
    for r in rows:
        assert r["latency_ms"]["trials"] == 3 and not r.get("provisional"), r["variant"]
        assert not any("interrupted" in n for n in r.get("notes", [])), r["notes"]


def test_timing_trials_alternate_between_models(weather_models, tmp_path, capsys_session):
    """Trials 2..N run round-robin over the variants of every model benched together: a slow
    spell of the machine then hits one trial of several models, not all trials of one."""
    code, _, err = capsys_session(["bench", weather_models["lstm"], weather_models["gru"],
                                   "--data", weather_models["eval"], "--out", tmp_path,
                                   "--format", "onnx", "--quantize", "none", "--trials", "3",
                                   "--db", tmp_path / "own.db", *FAST])  # nothing reused
    assert code == 0, err
    rows = {r["variant"]: r for r in json.loads((tmp_path / "results.json").read_text())}
    assert not any(r.get("reused") for r in rows.values())
    lstm, gru = (sorted(rows[f"{m}/onnx-fp32"]["device_use"]) for m in ("lstm", "gru"))
    assert len(lstm) == len(gru) == 3
    # trial 1 of each model in turn, then trial 2 of each, then trial 3 of each
    order = sorted([(start, "lstm") for start, _ in lstm] + [(start, "gru") for start, _ in gru])
    assert [name for _, name in order] == ["lstm", "gru"] * 3


def test_judge_marks_collapse_only_beyond_threshold():
    base = {"value": 0.90}
    ok = {"status": "ok", "metric": "accuracy", "value": 0.85}
    judge(ok, base, 0.10)
    assert ok["status"] == "ok" and ok["accuracy_drop"] == pytest.approx(0.05)
    bad = {"status": "ok", "metric": "accuracy", "value": 0.52}
    judge(bad, base, 0.10)
    assert bad["status"] == "accuracy collapsed" and "worse by 42%" in bad["reason"]
    err = {"status": "ok", "metric": "mae", "value": 2.0}
    judge(err, {"value": 1.0}, 0.10)
    assert err["status"] == "accuracy collapsed" and err["accuracy_drop"] == pytest.approx(1.0)
