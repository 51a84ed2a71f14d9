"""Numbers and exits a user can trust, on models edgernn did not write: timing trials, exit
codes, label checks, parity on real data over every output, the 120-column table."""

from __future__ import annotations

import io
import json
from statistics import median

import numpy as np
import onnxruntime as ort
import pytest
import torch
from rich.console import Console

from edgernn.convert.exporting import ParityError, compare_outputs
from edgernn.errors import EdgeRNNError
from edgernn.measure.trials import combine, spread
from edgernn.results.selection import Budget, select
from edgernn.results.table import bench_table
from tests.conftest import cli
from tests.user_models import BiLSTMConv, GRUClassifier

FAST = ["--runs", "12", "--min-seconds", "0", "--warmup", "1"]


@pytest.fixture(scope="module")
def user_gru(tmp_path_factory):
    """A scripted user GRU classifier (4 classes, no spec inside) and real-looking data."""
    d = tmp_path_factory.mktemp("truth")
    torch.manual_seed(0)
    path = d / "user_gru.pt"
    torch.jit.script(GRUClassifier(features=6, hidden=16, classes=4)).save(str(path))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 10, 6)).astype(np.float32)
    y = rng.integers(0, 4, size=30)
    np.savez(d / "eval.npz", x=x, y=y)
    return {"dir": d, "model": path, "eval": d / "eval.npz", "x": x,
            "shape": ["--input-shape", "batch=1,seq=10,6", "--task", "classify"]}


@pytest.fixture(scope="module")
def trial_bench(user_gru):
    out = user_gru["dir"] / "bench3"
    code, stdout, err = cli(["bench", user_gru["model"], "--data", user_gru["eval"], "--out", out,
                             "--format", "onnx", "--quantize", "fp16", "--trials", "3",
                             "--db", user_gru["dir"] / "t.db", *FAST, *user_gru["shape"]])
    assert code == 0, err
    return {"rows": json.loads((out / "results.json").read_text()), "stdout": stdout, "out": out}


def test_combine_takes_median_of_trial_medians():
    # the example: three launches of one file gave p50 0.69, 0.70 and 0.99 ms
    trials = [{"p50": p, "p90": p * 2, "p99": p * 3, "mean": p, "std": 0.01, "iqr": 0.02,
               "min": p / 2, "max": p * 4, "count": 100, "quantiles": [p] * 21}
              for p in (0.69, 0.70, 0.99)]
    lat = combine(trials)
    assert lat["p50"] == pytest.approx(0.70) and lat["p99"] == pytest.approx(2.10)
    assert lat["count"] == 300 and lat["min"] == pytest.approx(0.345)
    assert lat["max"] == pytest.approx(3.96) and lat["trials"] == 3
    assert lat["spread"] == pytest.approx((0.99 - 0.69) / 0.70)  # 43%: an unstable row
    assert spread([1.0]) == 0.0


def test_every_row_is_timed_in_three_trials(trial_bench):
    rows = {r["variant"]: r for r in trial_bench["rows"]}
    assert set(rows) == {"user_gru/torch-fp32", "user_gru/onnx-fp32", "user_gru/onnx-fp16"}
    for r in rows.values():
        lat = r["latency_ms"]
        assert lat["trials"] == 3 and len(lat["trial_p50"]) == 3, r["variant"]
        assert lat["p50"] == pytest.approx(median(lat["trial_p50"]))
        # 12 runs split over 3 trials: at least 4 timed calls in each
        assert lat["count"] >= 12
        assert not r.get("provisional") and not any(k.startswith("_") for k in r)
        s = (max(lat["trial_p50"]) - min(lat["trial_p50"])) / median(lat["trial_p50"])
        assert lat["spread"] == pytest.approx(s)
        assert r["unstable"] == (s > 0.20)


def test_second_bench_with_same_settings_reuses_complete_rows(user_gru, trial_bench):
    code, out, err = cli(["bench", user_gru["model"], "--data", user_gru["eval"], "--out",
                          trial_bench["out"], "--format", "onnx", "--quantize", "fp16",
                          "--trials", "3", "--db", user_gru["dir"] / "t.db", *FAST,
                          *user_gru["shape"]])
    assert code == 0, err
    assert "3 row(s) reused from the store" in out
    rows = json.loads((trial_bench["out"] / "results.json").read_text())
    first = {r["variant"]: r for r in trial_bench["rows"]}
    for r in rows:  # the original measurement, with its own timestamp
        assert r["reused"] and r["timestamp"] == first[r["variant"]]["timestamp"]
        assert r["latency_ms"]["p50"] == first[r["variant"]]["latency_ms"]["p50"]


def test_select_treats_differences_inside_the_trial_spread_as_ties():
    def row(name, p50, kb, spread):
        return {"model": "m", "model_sha256": "s", "variant": f"m/{name}", "target": "x86",
                "status": "ok", "runtime": "rt", "latency_ms": {"p50": p50, "spread": spread},
                "size_bytes": kb * 1000, "metric": "accuracy",
                "metrics": {"accuracy": 0.9}, "data_sha256": "d"}

    base = row("torch-fp32", 5.0, 900, 0.0)
    # 1.00 vs 1.15 ms: 15% apart, outside the 5% tie but inside a 30% trial spread
    noisy = [base, row("big", 1.00, 500, 0.30), row("small", 1.15, 100, 0.30)]
    steady = [base, row("big", 1.00, 500, 0.01), row("small", 1.15, 100, 0.01)]
    assert select(noisy, Budget()).pick.name == "m/small"  # a tie: the smaller one wins
    assert select(steady, Budget()).pick.name == "m/big"  # really faster
    # a noisy row let into the tie by its own spread must not beat a faster, smaller row that
    # the fastest's 5% leaves out: the pick is never dominated (by hand: q is faster and smaller
    # than p, and as accurate)
    mixed = [base, row("f", 1.00, 500, 0.0), row("q", 1.10, 50, 0.0), row("p", 1.20, 60, 0.30)]
    assert select(mixed, Budget()).pick.name == "m/q"


def test_table_fits_120_columns(trial_bench):
    rows = [{**r, "reason": None, "notes": []} for r in trial_bench["rows"]]
    long = dict(rows[1], variant="user_gru/tflite-keras-unrolled-int8-dynamic",
                status="accuracy collapsed")
    buf = io.StringIO()
    Console(file=buf, width=120, color_system=None).print(
        bench_table([*rows, long], title="target x86"))
    lines = buf.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 120
    assert "tflite-keras-unrolled-int8-dynamic" in buf.getvalue()  # not cut to fit
    assert "…" not in buf.getvalue()
    # sizes in decimal kB, as select and report use: the file's bytes / 1000
    fp16 = next(r for r in rows if r["variant"].endswith("onnx-fp16"))
    size = (trial_bench["out"] / "user_gru" / "user_gru.onnx.fp16.onnx").stat().st_size
    assert fp16["size_bytes"] == size
    assert f"{size / 1000:.1f} kB" in buf.getvalue()


def test_labels_outside_the_models_classes_are_refused(user_gru):
    bad = user_gru["dir"] / "bad_labels.npz"
    np.savez(bad, x=user_gru["x"], y=np.full(len(user_gru["x"]), 99))
    code, _, err = cli(["bench", user_gru["model"], "--data", bad, "--out",
                        user_gru["dir"] / "badb", "--format", "onnx", "--quantize", "none",
                        *FAST, *user_gru["shape"]])
    assert code == 1
    assert "class ids in [99, 99] but the model scores 4 classes" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_none_may_appear_in_a_quantize_list(user_gru, tmp_path):
    code, _, err = cli(["export", user_gru["model"], "--format", "onnx", "--quantize",
                        "none,fp16", "--out", tmp_path, *user_gru["shape"]])
    assert code == 0, err
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert {a["variant"] for a in manifest["artifacts"]} == {"onnx-fp32", "onnx-fp16"}


def test_export_exits_1_when_no_variant_is_ok(tmp_path):
    from tests.user_models import StftLSTM

    path = tmp_path / "stft.pt"
    torch.save(StftLSTM(), path)
    code, _, err = cli(["export", path, "--format", "tflite-keras", "--quantize", "none",
                        "--out", tmp_path / "o", "--trust-pickle", "--import",
                        "tests.user_models", "--input-shape", "batch=1,seq=32,1"])
    assert code == 1
    assert "export: no variant is ok (0 failed, 1 skipped)" in err


def test_strict_fails_when_any_variant_failed(user_gru, tmp_path):
    # onnx runs; the tflite file needs tflite_runtime, which this host does not have. The
    # tflite-keras file exists only if the ONNX export (first) left the ScriptModule intact
    target = tmp_path / "half.yaml"
    target.write_text("name: half\nrunner: local\nformats: [onnx, tflite-keras]\n"
                      "runtimes: {onnx: onnxruntime, tflite: tflite_runtime}\nquantize: []\n")
    pytest.importorskip("tensorflow")
    with pytest.raises(ImportError):
        import tflite_runtime  # noqa: F401
    args = ["bench", user_gru["model"], "--data", user_gru["eval"], "--target", target,
            "--out", tmp_path, "--db", tmp_path / "s.db", "--trials", "1", *FAST,
            *user_gru["shape"]]
    code, _, err = cli(args)
    rows = {r["variant"]: r["status"] for r in json.loads((tmp_path / "results.json").read_text())}
    assert rows["user_gru/onnx-fp32"] == "ok"
    assert rows["user_gru/tflite-keras-fp32"] == "run failed"
    assert code == 0 and "1 of 2 variants not ok" in err
    code, _, err = cli([*args, "--strict"])
    assert code == 1 and "--strict makes that an error" in err


def test_parity_covers_every_output_on_real_samples(tmp_path):
    """A two-output user model: the manifest's parity on the evaluation samples equals the max
    difference over BOTH outputs, computed here with onnxruntime called directly."""
    torch.manual_seed(0)
    model = BiLSTMConv(features=4, hidden=8).eval()
    path = tmp_path / "two_out.pt"
    torch.jit.script(model).save(str(path))
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 10, 4)).astype(np.float32)
    np.savez(tmp_path / "eval.npz", x=x, y=rng.integers(0, 3, size=12))
    code, _, err = cli(["bench", path, "--data", tmp_path / "eval.npz", "--out", tmp_path / "o",
                        "--format", "onnx", "--quantize", "none", "--trials", "1",
                        "--db", tmp_path / "p.db", *FAST, "--input-shape", "batch=1,seq=10,4",
                        "--task", "classify"])
    assert code == 0, err
    manifest = json.loads((tmp_path / "o" / "two_out" / "manifest.json").read_text())
    fp32 = next(a for a in manifest["artifacts"] if a["variant"] == "onnx-fp32")
    real = next(p for p in fp32["parity"] if p.get("data") == "evaluation samples")
    assert real["samples"] == 8
    sess = ort.InferenceSession(str(tmp_path / "o" / "two_out" / fp32["path"]))
    name = sess.get_inputs()[0].name
    worst = 0.0
    with torch.no_grad():
        for i in range(8):
            ref = [t.numpy() for t in model(torch.from_numpy(x[i:i + 1]))]
            got = sess.run(None, {name: x[i:i + 1]})
            assert len(got) == 2 and [g.shape for g in got] == [r.shape for r in ref]
            worst = max(worst, *(float(np.abs(g - r).max()) for g, r in zip(got, ref, strict=True)))
    assert real["max_abs_diff"] == pytest.approx(worst, rel=1e-3, abs=1e-9)


def test_shape_mismatch_is_a_failure_naming_both_shapes():
    ref = [np.zeros((1, 3), np.float32), np.zeros((1, 2, 8), np.float32)]
    with pytest.raises(ParityError, match=r"output 1 has shape \[2, 8\] in the artifact but "
                                          r"\[1, 2, 8\] in PyTorch"):
        compare_outputs(ref, [np.zeros((1, 3)), np.zeros((2, 8))])  # same size, other shape
    with pytest.raises(ParityError, match="returns 1 output"):
        compare_outputs(ref, [np.zeros((1, 3))])
    assert issubclass(ParityError, EdgeRNNError)


def test_unnamed_batch_axis_is_not_claimed_or_checked_at_batch_2(user_gru, tmp_path):
    code, _, err = cli(["export", user_gru["model"], "--format", "onnx", "--quantize", "none",
                        "--out", tmp_path, "--input-shape", "1,seq=10,6", "--task", "classify"])
    assert code == 0, err
    fp32 = json.loads((tmp_path / "manifest.json").read_text())["artifacts"][0]
    assert fp32["dynamic_batch"] is False
    assert {c.get("batch") for c in fp32["parity"]} == {1}
    sess = ort.InferenceSession(str(tmp_path / fp32["path"]))
    assert sess.get_inputs()[0].shape[0] == 1  # the file is fixed at batch 1, as recorded


def test_export_with_data_checks_parity_on_its_samples(user_gru, tmp_path):
    code, _, err = cli(["export", user_gru["model"], "--format", "onnx", "--quantize", "none",
                        "--data", user_gru["eval"], "--out", tmp_path, *user_gru["shape"]])
    assert code == 0, err
    fp32 = json.loads((tmp_path / "manifest.json").read_text())["artifacts"][0]
    real = next(p for p in fp32["parity"] if p.get("data") == "evaluation samples")
    sess = ort.InferenceSession(str(tmp_path / fp32["path"]))
    model = torch.jit.load(str(user_gru["model"]))
    x = user_gru["x"]
    with torch.no_grad():
        worst = max(float(np.abs(sess.run(None, {"input": x[i:i + 1]})[0]
                                 - model(torch.from_numpy(x[i:i + 1])).numpy()).max())
                    for i in range(8))
    assert real["samples"] == 8
    assert real["max_abs_diff"] == pytest.approx(worst, rel=1e-3, abs=1e-9)
