"""LSTM vs GRU vs GRU+LSTM on real data and on a user .npz: real training, real benches."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import cli


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    code, stdout, err = cli(["compare", "weather", "--hidden", "16", "--epochs", "2",
                             "--max-train", "300", "--format", "onnx", "--quantize", "dynamic",
                             "--out", out, "--runs", "20", "--min-seconds", "0"])
    assert code == 0, err
    return {"rows": json.loads((out / "compare.json").read_text()), "stdout": stdout}


def test_three_contenders_with_measured_training(compared):
    rows = {r["contender"]: r for r in compared["rows"]}
    assert set(rows) == {"lstm", "gru", "gru+lstm"}
    lstm, gru = rows["lstm"], rows["gru"]
    # GRU: 3 gate blocks vs LSTM's 4, so about 25% fewer parameters at one hidden size
    assert 0.70 < gru["parameters"] / lstm["parameters"] < 0.80
    assert rows["gru+lstm"]["layers"] == "gru:16,lstm:16"
    for r in rows.values():
        assert len(r["epoch_seconds"]) == 2 and all(s > 0 for s in r["epoch_seconds"])
        assert r["final"] == r["history"][-1]["accuracy"]
        assert r["epochs_to_target"] in (1, 2)  # the level is one every contender reached


def test_best_deployable_variant_per_target(compared):
    for r in compared["rows"]:
        best = r["best_variant"]["x86"]
        assert best["variant"].startswith(r["checkpoint"].split("/")[-1].removesuffix(".pt"))
        assert best["latency_ms"] > 0 and best["size_bytes"] > 0
    assert "best on x86" in compared["stdout"]


def test_user_npz_forecasting_data(tmp_path):
    t = np.arange(600, dtype=np.float32)
    series = np.sin(2 * np.pi * t / 24) + 0.5 * np.sin(2 * np.pi * t / 168)
    x = np.stack([series[i:i + 32] for i in range(500)])[..., None].astype(np.float32)
    y = np.array([series[i + 32] for i in range(500)], dtype=np.float32)
    p = tmp_path / "seasonal.npz"
    np.savez(p, x=x, y=y)
    code, _, err = cli(["compare", p, "--hidden", "8", "--epochs", "2", "--no-bench",
                        "--out", tmp_path / "o"])
    assert code == 0, err
    rows = json.loads((tmp_path / "o" / "compare.json").read_text())
    assert {r["metric"] for r in rows} == {"mae"}
    assert all(r["dataset"] == "seasonal" for r in rows)


def test_compare_rejects_unknown_data(capsys):
    from tests.conftest import run_cli

    code, _, err = run_cli(["compare", "nosuchdata"], capsys)
    assert code == 1 and "neither a bundled dataset" in err
