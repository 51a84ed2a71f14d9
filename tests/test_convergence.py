"""compare trains until the validation metric stops improving (issue: training that converges)
and judges claims with intervals that narrow with seeds. Expected values come from the
stored histories, plain torch forwards of the saved weights, and t-table constants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

# Student's t 0.975 quantiles from printed tables (independent of edgernn's own table)
T_TABLE = {1: 12.706205, 2: 4.302653, 4: 2.776445, 9: 2.262157, 29: 2.045230, 60: 2.000298,
           120: 1.979930}


@pytest.mark.parametrize("df, t", sorted(T_TABLE.items()))
def test_t_quantiles_match_the_tables(df, t):
    from edgernn.study.intervals import t975

    assert t975(df) == pytest.approx(t, abs=1e-3)


def test_paired_seeds_interval_by_hand():
    from edgernn.study.intervals import paired_seeds

    gru, lstm = [1.0, 1.4, 1.1, 1.3, 1.2], [1.5, 1.6, 1.7, 1.4, 1.9]
    d = np.array(lstm) - np.array(gru)  # 0.5, 0.2, 0.6, 0.1, 0.7
    iv = paired_seeds(gru, lstm)
    half = T_TABLE[4] * d.std(ddof=1) / math.sqrt(5)
    assert (iv.estimate, iv.low, iv.high) == pytest.approx((0.42, 0.42 - half, 0.42 + half))
    assert paired_seeds([1.0], [2.0]) is None


def test_seeds_and_samples_interval_by_hand():
    """Three seeds x 6 samples of 0/1 correctness: the seeds' t term and the samples'
    normal term, combined in quadrature."""
    from edgernn.study.intervals import paired_seeds_and_samples

    a = [np.array([1, 1, 0, 1, 0, 1]), np.array([1, 1, 1, 1, 0, 0]), np.array([1, 0, 1, 1, 1, 1])]
    b = [np.array([1, 0, 0, 1, 0, 0]), np.array([1, 1, 1, 0, 0, 0]), np.array([0, 0, 1, 1, 1, 1])]
    iv = paired_seeds_and_samples(list(zip(a, b, strict=True)))
    # by hand: per-seed accuracy gaps 2/6, 1/6, 1/6
    seed_gaps = np.array([2, 1, 1]) / 6
    seeds_term = T_TABLE[2] * seed_gaps.std(ddof=1) / math.sqrt(3)
    # per-sample gap averaged over seeds: (1+0+1)/3 for sample 0, ...
    per_sample = np.array([1, 1, 0, 1, 0, 1]) / 3
    samples_term = 1.959964 * per_sample.std(ddof=1) / math.sqrt(6)
    half = math.hypot(seeds_term, samples_term)
    assert iv.estimate == pytest.approx(4 / 18)
    assert (iv.low, iv.high) == pytest.approx((4 / 18 - half, 4 / 18 + half))
    assert (iv.seeds, iv.samples) == (3, 6)


def test_validation_split_is_stratified_and_disjoint():
    from edgernn.study.training import validation_split

    y = np.repeat(np.arange(3), [40, 20, 1])  # class 2 has one sample: training keeps it
    x = np.arange(len(y), dtype=np.float32)[:, None]
    xf, yf, xv, yv = validation_split(x, y, "classify", 0.25)
    assert sorted(np.bincount(yv, minlength=3)) == [0, 5, 10]
    assert np.bincount(yv, minlength=3).tolist() == [10, 5, 0]
    assert set(xf[:, 0]).isdisjoint(xv[:, 0]) and len(xf) + len(xv) == len(x)
    # forecasting keeps time order: the last quarter validates
    xf, yf, xv, yv = validation_split(x, y.astype(np.float32), "forecast", 0.25)
    assert xv[:, 0].tolist() == list(range(46, 61))


def test_validation_split_by_group_holds_out_whole_groups():
    """With groups (speakers), no group is on both sides, validation reaches the share with
    whole groups (the last one added crossed it), and the same call gives the same split."""
    from edgernn.study.training import validation_split

    sizes = [5, 9, 3, 12, 7, 4, 10, 6]  # 56 samples in 8 groups
    groups = np.repeat([f"g{i}" for i in range(8)], sizes)
    x = np.arange(len(groups), dtype=np.float32)[:, None]
    y = np.arange(len(groups)) % 3
    xf, yf, xv, yv = validation_split(x, y, "classify", 0.25, groups)
    val_groups = set(groups[xv[:, 0].astype(int)])
    fit_groups = set(groups[xf[:, 0].astype(int)])
    assert val_groups and fit_groups and val_groups.isdisjoint(fit_groups)
    assert len(xf) + len(xv) == 56 and len(xv) >= 0.25 * 56
    # no more groups than needed: without one of them (the last added) it was short
    assert any(len(xv) - sizes[int(g[1:])] < 0.25 * 56 for g in val_groups)
    again = validation_split(x, y, "classify", 0.25, groups)
    assert np.array_equal(again[2], xv)


@pytest.fixture(scope="module")
def stopped():
    """An LSTM on the vowels data with a 40-epoch cap and patience 2: it stops early."""
    from edgernn.data.datasets import load_dataset
    from edgernn.models.layers import parse_layers
    from edgernn.study.training import EarlyStop, train_epochs

    ds = load_dataset("vowels")
    results = list(train_epochs(ds, parse_layers("lstm:16"), epochs=40, seed=0, lr=0.01,
                                early_stop=EarlyStop(patience=2, val_share=0.2)))
    return ds, results


def test_training_stops_when_validation_stops_improving(stopped):
    _, results = stopped
    res = results[-1]
    hist = res.history
    assert len(results) == len(hist) < 40  # one yield per epoch; stopped before the cap
    # the best epoch by hand: highest validation accuracy, ties broken by lower validation loss
    keys = [(h["val_accuracy"], -h["val_loss"]) for h in hist]
    best = max(range(len(keys)), key=lambda i: (keys[i], -i)) + 1
    assert res.best_epoch == best
    # no better epoch in the 2 after it, and it stopped right then
    assert len(hist) == best + 2


def test_the_best_epochs_weights_are_kept(stopped):
    """The returned model is the best epoch's: its held-out accuracy, computed with a plain
    nn.LSTM loaded from its weights, is that epoch's recorded accuracy, not the last's."""
    ds, results = stopped
    res = results[-1]
    sd = res.model.state_dict()
    rnn = torch.nn.LSTM(ds.x_test.shape[-1], 16, batch_first=True)
    rnn.load_state_dict({n: sd[f"rnns.0.{n}"] for n, _ in rnn.named_parameters()})
    with torch.no_grad():
        h = rnn((torch.from_numpy(ds.x_test) - sd["x_mean"]) / sd["x_std"])[0][:, -1]
        acc = float(((h @ sd["head.weight"].T + sd["head.bias"]).argmax(1).numpy()
                     == ds.y_test).mean())
    assert acc == pytest.approx(res.history[res.best_epoch - 1]["accuracy"])
    assert res.final["accuracy"] == pytest.approx(acc)


def test_lstm_forget_gate_starts_open():
    from edgernn.models.build import build_model
    from edgernn.study.training import unit_forget_bias

    m = build_model({"arch": "sequence", "input": {"kind": "features", "features": 3},
                     "layers": [{"cell": "lstm", "hidden": 5}], "task": "classify",
                     "num_classes": 2, "horizon": None})
    unit_forget_bias(m)
    lstm = m.rnns[0]
    total = (lstm.bias_ih_l0 + lstm.bias_hh_l0).detach().numpy()
    assert total[5:10].tolist() == [1.0] * 5  # PyTorch's gate order: input, forget, cell, output


def test_compare_reports_epochs_used_and_stops_each_contender(tmp_path):
    """compare with early stopping on 2 processes: every contender of every seed has its own
    stopping epoch, recorded, and its final metric is its best epoch's."""
    import json

    from tests.conftest import cli

    code, _, err = cli(["compare", "vowels", "--hidden", "8", "--epochs", "30", "--patience", "2",
                        "--seeds", "2", "--jobs", "2", "--contenders", "lstm,gru", "--no-bench",
                        "--out", tmp_path])
    assert code == 0, err
    payload = json.loads((tmp_path / "compare.json").read_text())
    assert payload["settings"]["patience"] == 2 and payload["settings"]["jobs"] == 2
    assert payload["settings"]["conditions"]["cores"] >= 1
    for c in payload["contenders"]:
        hist = c["history"]
        assert c["epochs_run"] == len(hist) and c["epochs_used"] <= len(hist)
        assert len(hist) == 30 or len(hist) == c["epochs_used"] + 2
        assert c["final"] == hist[c["epochs_used"] - 1]["accuracy"]
    decision = (tmp_path / "decision.md").read_text()
    assert "until the validation metric stopped improving (patience 2" in decision


def test_learning_rate_halves_on_each_epoch_without_improvement(stopped):
    """Patience 2: the rate halves after every epoch that is not a new best (patience // 2 = 1
    epoch without improvement), and stays after a new best."""
    _, results = stopped
    hist = results[-1].history
    best = None
    for e in range(len(hist) - 1):
        key = (hist[e]["val_accuracy"], -hist[e]["val_loss"])
        improved = best is None or key > best
        best = key if improved else best
        expect = hist[e]["lr"] if improved else hist[e]["lr"] / 2
        assert hist[e + 1]["lr"] == pytest.approx(expect), e
    assert hist[0]["lr"] == 0.01


@pytest.mark.slow
def test_dataset_seeds_train_more_and_bench_seeds_bench_fewer(tmp_path):
    """--dataset-seeds weather=3 trains weather 3 times (vowels twice, --seeds 2);
    --bench-seeds 1 benches only seed 0's models: the training claims rest on every seed,
    the latency claims on the benched one."""
    import json
    import sqlite3

    from tests.conftest import cli

    code, _, err = cli(["compare", "vowels", "weather", "--hidden", "4", "--epochs", "2",
                        "--patience", "0", "--seeds", "2", "--dataset-seeds", "weather=3",
                        "--bench-seeds", "1", "--contenders", "lstm,gru", "--format", "onnx",
                        "--quantize", "none", "--runs", "3", "--min-seconds", "0",
                        "--trials", "1", "--out", tmp_path, "--db", tmp_path / "s.sqlite"])
    assert code == 0, err
    payload = json.loads((tmp_path / "compare.json").read_text())
    ds = payload["datasets"]
    assert (ds["weather"]["seeds"], ds["weather"]["bench_seeds"]) == ([0, 1, 2], [0])
    assert (ds["vowels"]["seeds"], ds["vowels"]["bench_seeds"]) == ([0, 1], [0])
    seeds = sorted((c["dataset"], c["seed"], c["contender"]) for c in payload["contenders"])
    assert seeds == sorted((d, s, n) for d, k in (("vowels", 2), ("weather", 3))
                           for s in range(k) for n in ("lstm", "gru"))
    for c in payload["contenders"]:
        assert bool(c["best_variant"]) == (c["seed"] == 0), (c["dataset"], c["seed"])
    claim = {(c["dataset"], c["key"]): c for c in payload["claims"]}
    assert len(claim["weather", "epochs_to_level"]["values"]["gru"]) == 3
    assert len(claim["weather", "onnx_fp32_latency"]["values"]["gru"]) == 1
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        variants = [v for (v,) in db.execute("select variant from rows")]
    # seed 0 only (lstm.pt, gru.pt; seed k's files are lstm-seedk.pt), on each dataset
    assert {v.split("/")[0] for v in variants} == {"lstm", "gru"}
    assert sorted(v.split("/")[1] for v in variants) == ["onnx-fp32"] * 4 + ["torch-fp32"] * 4


def test_dataset_seeds_refuses_a_bad_item_in_one_line(tmp_path):
    from tests.conftest import cli

    for item, words in (("weather", "expected NAME=N"), ("weather=0", "expected NAME=N"),
                        ("weather=\u00b2", "expected NAME=N"),  # a digit int() cannot read
                        ("kws=3", "not among the datasets compared")):
        code, out, err = cli(["compare", "weather", "--dataset-seeds", item, "--no-bench",
                              "--epochs", "1", "--out", tmp_path])
        assert code == 1 and words in err and len(err.strip().splitlines()) == 1, (item, err)
