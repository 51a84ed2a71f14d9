"""LSTM vs GRU vs GRU+LSTM on real data and on a user .npz: real training, real benches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import cli


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    code, stdout, err = cli(["compare", "weather", "--hidden", "16", "--epochs", "2",
                             "--max-train", "300", "--format", "onnx", "--quantize", "dynamic",
                             "--out", out, "--runs", "20", "--min-seconds", "0", "--trials", "1"])
    assert code == 0, err
    return {"rows": json.loads((out / "compare.json").read_text())["contenders"],
            "stdout": stdout, "out": out}


def lstm_params(i: int, h: int) -> int:
    """nn.LSTM(i, h): 4 gates, each W_ih (h x i), W_hh (h x h) and two biases (h)."""
    return 4 * (h * (i + h) + 2 * h)


def gru_params(i: int, h: int) -> int:
    """nn.GRU(i, h): 3 gates, same pieces as an LSTM gate."""
    return 3 * (h * (i + h) + 2 * h)


def test_hand_parameter_formulas_match_plain_torch():
    def numel(m):
        return sum(p.numel() for p in m.parameters())

    for i, h in ((4, 16), (16, 16), (3, 7)):
        assert lstm_params(i, h) == numel(torch.nn.LSTM(i, h, batch_first=True))
        assert gru_params(i, h) == numel(torch.nn.GRU(i, h, batch_first=True))


def hand_forward(ckpt: dict, layers: str, x: np.ndarray) -> np.ndarray:
    """The saved model's logits computed with plain torch modules loaded from its state_dict."""
    sd = ckpt["state_dict"]
    h = (torch.from_numpy(x) - sd["x_mean"]) / sd["x_std"]
    for k, layer in enumerate(layers.split(",")):
        cell, hidden = layer.split(":")
        rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](h.shape[-1], int(hidden),
                                                                 batch_first=True)
        rnn.load_state_dict({n: sd[f"rnns.{k}.{n}"] for n, _ in rnn.named_parameters()})
        h = rnn(h)[0]
    return (h[:, -1] @ sd["head.weight"].T + sd["head.bias"]).detach().numpy()


def test_contenders_with_measured_training(compared):
    rows = {r["contender"]: r for r in compared["rows"]}
    assert set(rows) == {"lstm", "gru", "gru+lstm", "ensemble"}  # encdec: forecasting only
    assert rows["ensemble"]["layers"] == "lstm:16+gru:16"
    assert rows["gru+lstm"]["layers"] == "gru:16,lstm:16"
    ev = np.load(Path(rows["lstm"]["checkpoint"]).parent / "weather.eval.npz")
    x, y = ev["x"].astype(np.float32), ev["y"].astype(np.int64)
    feats, classes, h = x.shape[-1], int(y.max()) + 1, 16
    head = h * classes + classes
    assert rows["lstm"]["parameters"] == lstm_params(feats, h) + head
    assert rows["gru"]["parameters"] == gru_params(feats, h) + head
    assert rows["gru+lstm"]["parameters"] == gru_params(feats, h) + lstm_params(h, h) + head
    # the ensemble is both models, each with its own head
    assert rows["ensemble"]["parameters"] == lstm_params(feats, h) + gru_params(feats, h) + 2 * head
    for r in rows.values():
        assert len(r["epoch_seconds"]) == 2 and all(s > 0 for s in r["epoch_seconds"])
        if r["contender"] == "ensemble":  # its forward is checked by hand in test_hybrids
            continue
        # the final accuracy is that of the saved model on the held-out data, recomputed here
        ckpt = torch.load(r["checkpoint"], weights_only=True)
        with torch.no_grad():
            acc = float(np.mean(hand_forward(ckpt, r["layers"], x).argmax(1) == y))
        assert r["final"] == pytest.approx(acc, abs=1e-9)
    # the level (the one LSTM and GRU both reach: hybrids do not move it) and epochs-to-level,
    # from each contender's stored history by hand
    level = min(max(e["accuracy"] for e in rows[n]["history"]) for n in ("lstm", "gru"))
    for r in rows.values():
        assert r["target_level"] == level
        hits = [n for n, e in enumerate(r["history"], 1) if e["accuracy"] >= level]
        assert r["epochs_to_target"] == (hits[0] if hits else None)


def contender(name: str, metric: str, values: list[float]):
    from edgernn.study.records import Contender

    return Contender("d", name, "lstm:8", 1, [1.0] * len(values),
                     [{metric: v} for v in values], metric, Path(f"{name}.pt"))


@pytest.mark.parametrize("metric, histories, level, epochs, final", [
    # higher is better: bests 0.90, 0.80, 0.85 -> every contender reached 0.80
    ("accuracy", {"a": [0.5, 0.81, 0.9], "b": [0.6, 0.65, 0.8], "c": [0.8, 0.85, 0.82]},
     0.8, {"a": 2, "b": 3, "c": 1}, {"a": 0.9, "b": 0.8, "c": 0.82}),
    # lower is better: bests 1.5, 1.8, 1.2 -> every contender reached 1.8
    ("mae", {"a": [3.0, 2.0, 1.5], "b": [2.5, 1.8, 1.85], "c": [1.7, 1.2, 1.3]},
     1.8, {"a": 3, "b": 2, "c": 1}, {"a": 1.5, "b": 1.85, "c": 1.3}),
])
def test_level_and_epochs_to_it_on_a_known_history(metric, histories, level, epochs, final):
    from edgernn.study.records import target_level

    group = [contender(n, metric, v) for n, v in histories.items()]
    assert target_level(group) == level
    for c in group:
        d = c.to_dict(level)
        assert d["epochs_to_target"] == epochs[c.name], c.name
        assert d["final"] == final[c.name], c.name
    assert contender("slow", metric, histories["b"][:1]).epochs_to(level) is None


def test_best_deployable_variant_per_target(compared):
    for r in compared["rows"]:
        best = r["best_variant"]["x86"]
        assert best["variant"].startswith(r["checkpoint"].split("/")[-1].removesuffix(".pt"))
        assert best["latency_ms"] > 0 and best["size_bytes"] > 0
    assert "best on x86" in compared["stdout"]
    # the ensemble's deployed file runs both models: one LSTM and one GRU node in one graph
    from tests.onnx_count import op_types

    (f,) = compared["out"].rglob("ensemble.onnx.fp32.onnx")
    ops = op_types(f)
    assert ops.count("LSTM") == 1 and ops.count("GRU") == 1


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
    rows = json.loads((tmp_path / "o" / "compare.json").read_text())["contenders"]
    assert {r["metric"] for r in rows} == {"mae"}
    # forecasting adds the GRU-encoder / LSTM-decoder; every contender writes a checkpoint
    assert {r["contender"]: r["layers"] for r in rows}["encdec"] == "gru:8/lstm:8"
    assert {r["contender"] for r in rows} == {"lstm", "gru", "gru+lstm", "ensemble", "encdec"}
    assert all(Path(r["checkpoint"]).is_file() for r in rows)
    record = (tmp_path / "o" / "decision.md").read_text()
    assert "## seasonal" in record and "Recommendation:" in record
    assert all(r["dataset"] == "seasonal" for r in rows)


def test_compare_rejects_unknown_data(capsys):
    from tests.conftest import run_cli

    code, _, err = run_cli(["compare", "nosuchdata"], capsys)
    assert code == 1 and "neither a bundled dataset" in err
