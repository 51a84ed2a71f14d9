"""Metrics, degradation sign, agreement and latency statistics on hand-checked inputs."""

import numpy as np
import pytest

from edgernn.probe.metrics import agreement, compute_metrics, degradation, macro_f1
from edgernn.probe.timing import summarize, time_calls


def test_classification_metrics_match_hand_computation():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    y = np.array([0, 1, 0, 0])
    m = compute_metrics(logits, y, "classify")
    assert m["accuracy"] == pytest.approx(0.75)
    # class 0: tp=2 fp=0 fn=1 -> f1=0.8; class 1: tp=1 fp=1 fn=0 -> f1=2/3
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert macro_f1(np.array([1, 1]), np.array([1, 1])) == 1.0


def test_forecast_metrics_and_drop_sign():
    out = np.array([[1.0, 2.0], [3.0, 5.0]])
    y = np.array([[1.0, 2.0], [3.0, 3.0]])
    m = compute_metrics(out, y, "forecast")
    assert m["mae"] == pytest.approx(0.5)
    assert m["rmse"] == pytest.approx(1.0)
    # positive means worse for both kinds of metric
    assert degradation(0.9, 0.8, "accuracy") == pytest.approx(0.1)
    assert degradation(1.0, 1.5, "mae") == pytest.approx(0.5)
    assert degradation(1.0, 0.5, "rmse") == pytest.approx(-0.5)


def test_agreement():
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    out = np.array([[1.0, 0.0], [1.0, 0.0], [0.9, 0.1]])
    assert agreement(out, ref, "classify", np.array([0, 1, 0])) == pytest.approx(2 / 3)
    y = np.linspace(0, 100, 10)
    ref_f = y.reshape(-1, 1)
    out_f = ref_f + np.array([0.0] * 9 + [5.0]).reshape(-1, 1)
    assert agreement(out_f, ref_f, "forecast", y) == pytest.approx(0.9)


def test_summarize_percentiles():
    s = summarize(list(range(1, 101)))
    assert s["p50"] == pytest.approx(50.5)
    assert s["p90"] == pytest.approx(90.1)
    assert s["count"] == 100
    assert s["min"] == 1 and s["max"] == 100


def test_time_calls_respects_run_bounds():
    calls = []
    samples = time_calls(lambda: calls.append(1), warmup=5, min_runs=30, max_runs=40,
                         min_seconds=0.0)
    assert len(samples) == 30
    assert len(calls) == 35
    samples = time_calls(lambda: None, warmup=0, min_runs=1, max_runs=50, min_seconds=10.0)
    assert len(samples) == 50


def test_the_probe_process_does_not_load_torch():
    """Each local measurement starts a fresh probe; torch in it cost ~2 s per variant and put
    ~190 MB of torch into the peak RSS reported for an ONNX or LiteRT variant."""
    import subprocess
    import sys

    code = ("import sys; from edgernn.probe.main import main; main(['--facts']); "
            "print('torch loaded' if 'torch' in sys.modules else 'no torch')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "no torch"
