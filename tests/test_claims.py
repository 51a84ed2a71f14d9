"""compare's claims table (LSTM vs GRU folk claims with verdicts over seeds) and the paired
significance tests behind accuracy differences. Expected values are computed here: parameter
counts by hand formula, accuracies by plain torch modules loaded from the saved checkpoints,
McNemar p-values by a hand binomial sum."""

from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import median

import numpy as np
import pytest
import torch

from tests.conftest import cli

HIDDEN = 8
T975_1 = 12.706205  # Student's t 0.975 quantile, 1 degree of freedom (tables)
SEEDS = [0, 1]
# timing-trial p50s (ms) the fake bench reports per contender and seed, for onnx-fp32; the
# int8 variant is 0.8x of them (and smaller), so it is each contender's best pick
LAT = {"lstm": {0: [1.00, 1.02, 1.01], 1: [1.03, 1.01, 1.02]},
       "gru": {0: [0.60, 0.62, 0.61], 1: [0.61, 0.63, 0.62]},
       "gru_lstm": {0: [1.5, 1.5, 1.5], 1: [1.5, 1.5, 1.5]}}
SIZE = {"lstm": (4000, 1500), "gru": (3000, 1200), "gru_lstm": (7000, 2700)}  # fp32, int8


def lstm_params(i: int, h: int) -> int:
    return 4 * (h * (i + h) + 2 * h)


def gru_params(i: int, h: int) -> int:
    return 3 * (h * (i + h) + 2 * h)


def fake_bench(models: list[Path], data: Path, work: Path) -> list[dict]:
    """Bench rows as the real bench shapes them, with known latencies and sizes."""
    rows = []
    for m in models:
        kind, _, seed = m.stem.partition("-seed")
        trials = LAT[kind][int(seed or 0)]
        base = {"model": m.stem, "model_sha256": m.stem, "data_sha256": "d", "metric": "accuracy",
                "status": "ok", "runtime": "fake", "emulated": False,
                "metrics": {"accuracy": 0.7}}
        rows.append({**base, "variant": f"{m.stem}/torch-fp32", "target": "host",
                     "latency_ms": {"p50": 2.0}, "size_bytes": 9000})
        for variant, scale, size in (("onnx-fp32", 1.0, SIZE[kind][0]),
                                     ("onnx-int8-dynamic", 0.8, SIZE[kind][1])):
            t = [v * scale for v in trials]
            rows.append({**base, "variant": f"{m.stem}/{variant}", "target": "x86",
                         "latency_ms": {"p50": median(t), "trial_p50": t, "trials": 3,
                                        "spread": (max(t) - min(t)) / median(t)},
                         "size_bytes": size})
    return rows


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from edgernn.study.compare import compare_payload, run_compare

    out = tmp_path_factory.mktemp("claims")
    results = run_compare(["weather"], out, hidden=HIDDEN, epochs=2, max_train=200,
                          seeds=len(SEEDS), seed=SEEDS[0], bench_fn=fake_bench,
                          names=("lstm", "gru", "gru+lstm"))
    payload = json.loads(json.dumps(compare_payload(results), default=str))
    return {"comp": results["weather"], "payload": payload, "out": out,
            "claims": {(c["key"], c["target"]): c for c in payload["claims"]}}


def checkpoints(out: Path) -> dict[tuple[str, int], Path]:
    d = out / "weather"
    return {(n, s): d / (f"{n}.pt" if s == SEEDS[0] else f"{n}-seed{s}.pt")
            for n in ("lstm", "gru", "gru_lstm") for s in SEEDS}


def hand_logits(ckpt: dict, layers: str, x: np.ndarray) -> np.ndarray:
    """Logits of a saved classifier with plain torch modules loaded from its state_dict."""
    sd = ckpt["state_dict"]
    h = (torch.from_numpy(x) - sd["x_mean"]) / sd["x_std"]
    for k, layer in enumerate(layers.split(",")):
        cell, hidden = layer.split(":")
        rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](h.shape[-1], int(hidden),
                                                                 batch_first=True)
        rnn.load_state_dict({n: sd[f"rnns.{k}.{n}"] for n, _ in rnn.named_parameters()})
        h = rnn(h)[0]
    return (h[:, -1] @ sd["head.weight"].T + sd["head.bias"]).detach().numpy()


def hand_mcnemar(b: int, c: int) -> float:
    """Two-sided exact binomial test of b successes in b + c trials at p = 1/2."""
    n = b + c
    k = min(b, c)
    tail = sum(math.factorial(n) // (math.factorial(i) * math.factorial(n - i))
               for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def test_parameter_claim_matches_hand_formula(run):
    ev = np.load(run["out"] / "weather" / "weather.eval.npz")
    feats, classes = ev["x"].shape[-1], int(ev["y"].max()) + 1
    head = HIDDEN * classes + classes
    lstm, gru = lstm_params(feats, HIDDEN) + head, gru_params(feats, HIDDEN) + head
    c = run["claims"][("parameters", None)]
    assert c["measured"] == pytest.approx(1 - gru / lstm)
    assert c["values"] == {"gru": [gru] * 2, "lstm": [lstm] * 2}
    # a count does not change with the seed: the GRU's fewer parameters are a sure thing
    assert c["holds"] is True
    assert c["interval"]["low"] == c["interval"]["high"] == lstm - gru
    assert c["article"] == "~25% fewer"


def test_training_claims_from_the_saved_histories(run):
    """Epoch time, epochs to a common level and the final gap, recomputed from what each
    checkpoint recorded and from its own predictions."""
    ckpts = {k: torch.load(p, weights_only=False) for k, p in checkpoints(run["out"]).items()}
    claims = run["claims"]
    # time per epoch: each seed's fastest epoch; seed k's LSTM and GRU paired, Student's t
    # interval (1 degree of freedom with 2 seeds: t = 12.7062) of the mean difference
    t = {n: [min(ckpts[n, s]["meta"]["epoch_seconds"]) for s in SEEDS] for n in ("lstm", "gru")}
    c = claims[("epoch_time", None)]
    d = np.array(t["lstm"]) - np.array(t["gru"])
    assert c["measured"] == pytest.approx(d.mean() / np.mean(t["lstm"]))
    half = T975_1 * d.std(ddof=1) / math.sqrt(2)
    assert c["interval"]["low"] == pytest.approx(d.mean() - half)
    assert c["interval"]["high"] == pytest.approx(d.mean() + half)
    lo, hi = d.mean() - half, d.mean() + half
    m = 0.05 * np.mean(t["lstm"])  # an advantage must exceed 5% of the LSTM's time to count
    assert c["holds"] == (True if lo > m else False if hi < m else None)
    # epochs to the level every contender of that seed reaches
    epochs = {"lstm": [], "gru": []}
    for s in SEEDS:
        hist = {n: [e["accuracy"] for e in ckpts[n, s]["meta"]["history"]]
                for n in ("lstm", "gru", "gru_lstm")}
        level = min(max(h) for h in hist.values())
        for n in epochs:
            epochs[n].append(next(i for i, a in enumerate(hist[n], 1) if a >= level))
    c = claims[("epochs_to_level", None)]
    assert c["values"] == {"gru": epochs["gru"], "lstm": epochs["lstm"]}
    assert c["measured"] == pytest.approx(1 - np.mean(epochs["gru"]) / np.mean(epochs["lstm"]))
    # final accuracy of every saved model, by hand; the gap and the paired test per seed
    ev = np.load(run["out"] / "weather" / "weather.eval.npz")
    x, y = ev["x"].astype(np.float32), ev["y"].astype(np.int64)
    right = {}
    with torch.no_grad():
        for (n, s), ck in ckpts.items():
            right[n, s] = hand_logits(ck, ck["meta"]["layers"], x).argmax(1) == y
    acc = {n: [float(right[n, s].mean()) for s in SEEDS] for n in ("lstm", "gru")}
    c = claims[("final_gap", None)]
    assert c["values"]["lstm"] == pytest.approx(acc["lstm"], abs=1e-12)
    assert c["values"]["gru"] == pytest.approx(acc["gru"], abs=1e-12)
    assert c["measured"] == pytest.approx(np.mean(acc["lstm"]) - np.mean(acc["gru"]), abs=1e-12)
    for s, test in zip(SEEDS, c["paired_tests"], strict=True):
        b = int(np.sum(right["lstm", s] & ~right["gru", s]))
        cc = int(np.sum(~right["lstm", s] & right["gru", s]))
        assert test["seed"] == s and test["n"] == len(y)
        assert test["difference"] == pytest.approx((b - cc) / len(y))
        assert test["p_value"] == pytest.approx(hand_mcnemar(b, cc), rel=1e-9)
        assert test["significant"] == (hand_mcnemar(b, cc) < 0.05)
    # the gap's interval: the seeds' t term and the samples' normal term in quadrature
    d = np.stack([right["lstm", s].astype(float) - right["gru", s] for s in SEEDS])
    seeds_term = T975_1 * d.mean(1).std(ddof=1) / math.sqrt(2)
    samples_term = 1.959964 * d.mean(0).std(ddof=1) / math.sqrt(len(y))
    half = math.sqrt(seeds_term ** 2 + samples_term ** 2)
    assert c["interval"]["low"] == pytest.approx(d.mean() - half, abs=1e-9)
    assert c["interval"]["high"] == pytest.approx(d.mean() + half, abs=1e-9)
    assert c["interval"]["seeds"] == 2 and c["interval"]["samples"] == len(y)
    # 14-day windows are neither long nor multi-seasonal: no LSTM-wins-on-long-data claim
    assert ("long_gap", None) not in claims


def test_bench_claims_from_the_rows(run):
    claims = run["claims"]
    # one latency per seed (the median of its 3 trials), paired by seed
    lat = {n: np.array([median(LAT[n][s]) for s in SEEDS]) for n in ("lstm", "gru")}
    c = claims[("onnx_fp32_latency", "x86")]
    assert c["measured"] == pytest.approx((lat["lstm"] - lat["gru"]).mean() / lat["lstm"].mean())
    assert c["interval"]["low"] == pytest.approx(0.40) == c["interval"]["high"]  # both seeds 0.40
    assert c["holds"] is True
    # the best deployable variant of each is the int8 file (20% faster at equal accuracy)
    for comp_c in run["comp"].contenders:
        assert comp_c.best["x86"]["variant"].endswith("/onnx-int8-dynamic")
    c = claims[("best_latency", "x86")]
    assert c["measured"] == pytest.approx((lat["lstm"] - lat["gru"]).mean() / lat["lstm"].mean())
    c = claims[("best_size", "x86")]
    assert c["measured"] == pytest.approx(1 - SIZE["gru"][1] / SIZE["lstm"][1])
    assert c["holds"] is True and "onnx-int8-dynamic" in c["detail"]


def test_payload_keeps_every_seed(run):
    rows = run["payload"]["contenders"]
    assert run["payload"]["seeds"] == SEEDS
    assert sorted((r["contender"], r["seed"]) for r in rows) == sorted(
        (n, s) for n in ("lstm", "gru", "gru+lstm") for s in SEEDS)
    for r in rows:  # the per-sample record's mean is the reported accuracy
        from edgernn.results.significance import record_values

        assert float(record_values(r["per_sample"]).mean()) == pytest.approx(r["final"])
    for c in run["payload"]["claims"]:
        assert set(c) >= {"claim", "article", "measured", "holds", "detail"}
        assert c["holds"] in (True, False, None)


def test_table_fits_120_columns(run):
    from rich.console import Console

    from edgernn.study.claims import claims_table

    con = Console(width=120, record=True, color_system=None)
    comp = run["comp"]
    con.print(claims_table(comp, comp.claims))
    text = con.export_text()
    assert max(len(line) for line in text.splitlines()) <= 120
    for word in ("parameters", "time per epoch", "epochs to level", "final metric gap",
                 "fp32 ONNX latency x86", "best variant size x86", "holds"):
        assert word in text


# --- the verdict rule on constructed contenders ------------------------------------------

def comparison(seconds: dict[str, list[float]], finals: dict[str, list[float]] | None = None,
               metric: str = "accuracy", seq_len: int = 10):
    from edgernn.study.records import Comparison, Contender

    seeds = list(range(len(seconds["lstm"])))
    finals = finals or {n: [0.5] * len(seeds) for n in seconds}
    params = {"lstm": 100, "gru": 75, "gru+lstm": 175}
    group = [Contender("d", n, "x", params[n], [seconds[n][s], seconds[n][s] + 1.0],
                       [{metric: finals[n][s]}] * 2, metric, Path(f"{n}{s}.pt"), seed=s)
             for n in seconds for s in seeds]
    return Comparison("d", "classify" if metric == "accuracy" else "forecast", metric, seq_len,
                      (100, 50), "sequences of 200 steps" if seq_len >= 100 else None, seeds,
                      group)


def claim(comp, key):
    from edgernn.study.claims import build_claims

    return next(c for c in build_claims(comp) if c.key == key)


@pytest.mark.parametrize("gru, holds", [
    ([0.9, 1.3, 1.0], None),     # differences 0.1, -0.1, 0.1: the interval straddles 0
    ([0.5, 0.72, 0.58], True),   # about 0.5 s faster in every seed: as claimed
    ([1.6, 1.75, 1.7], False),   # about 0.6 s slower in every seed: the opposite
])
def test_verdict_from_the_paired_seed_interval(gru, holds):
    lstm = [1.0, 1.2, 1.1]
    c = claim(comparison({"lstm": lstm, "gru": gru, "gru+lstm": [1.0] * 3}), "epoch_time")
    d = np.array(lstm) - np.array(gru)
    half = 4.302653 * d.std(ddof=1) / math.sqrt(3)  # Student's t, 2 degrees of freedom
    assert (c.interval.low, c.interval.high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert c.holds is holds
    assert c.measured == pytest.approx(d.mean() / np.mean(lstm))
    assert "95%" in c.measured_text or holds is None


@pytest.mark.parametrize("gru, holds", [
    ([0.99, 1.19, 1.09], False),  # 0.01 s (1%) faster in every seed: too small to count
    ([0.95, 1.2, 1.0], None),     # 0.05, 0, 0.1: the interval straddles the 5% margin
    ([0.9, 1.1, 1.0], True),      # 0.1 s (9%) faster in every seed
])
def test_an_advantage_must_exceed_five_percent_to_count(gru, holds):
    """Latencies, times and counts that differ by ~1% are equal for a user (select ties them
    within 5%): "GRU faster" then does not hold, however sure the 1% is."""
    lstm = [1.0, 1.2, 1.1]
    c = claim(comparison({"lstm": lstm, "gru": gru, "gru+lstm": [1.0] * 3}), "epoch_time")
    d = np.array(lstm) - np.array(gru)
    half = 4.302653 * d.std(ddof=1) / math.sqrt(3) if d.std() else 0.0
    m = 0.05 * np.mean(lstm)  # 0.055 s
    assert c.holds is (True if d.mean() - half > m else False if d.mean() + half < m else None)
    assert c.holds is holds
    if holds is False:
        assert "below 5%" in c.detail


def test_more_seeds_narrow_the_interval_a_range_would_widen():
    """Five seeds of the same spread give a narrower interval than two: the verdict rule
    gets more decisive with seeds (a min-max range only grows)."""
    rng = np.random.default_rng(0)
    lstm = list(1.0 + 0.05 * rng.standard_normal(5))
    gru = [v - 0.06 + 0.05 * e for v, e in zip(lstm, rng.standard_normal(5), strict=True)]
    two = claim(comparison({"lstm": lstm[:2], "gru": gru[:2], "gru+lstm": [1.0] * 2}),
                "epoch_time")
    five = claim(comparison({"lstm": lstm, "gru": gru, "gru+lstm": [1.0] * 5}), "epoch_time")
    assert five.interval.half_width < two.interval.half_width / 3


def test_one_seed_is_inconclusive_except_for_counts():
    comp = comparison({"lstm": [1.0], "gru": [0.1], "gru+lstm": [1.0]})
    assert claim(comp, "epoch_time").holds is None  # 10x faster, but no interval to judge
    assert "--seeds" in claim(comp, "epoch_time").detail
    assert claim(comp, "final_gap").holds is None
    # a parameter count does not depend on the seed: one seed settles it
    assert claim(comp, "parameters").holds is True
    assert claim(comp, "parameters").measured == pytest.approx(0.25)


@pytest.mark.parametrize("lstm, gru, holds", [
    ([0.800, 0.802, 0.801], [0.799, 0.801, 0.800], True),  # 0.1 point in every seed
    ([0.80, 0.81, 0.805], [0.70, 0.71, 0.70], False),       # 10 points apart in every seed
    ([0.80, 0.82, 0.81], [0.79, 0.80, 0.80], None),         # 1.3 points, +-1.4: either
])
def test_nearly_equal_verdict(lstm, gru, holds):
    comp = comparison({"lstm": [1] * 3, "gru": [1] * 3, "gru+lstm": [1] * 3},
                      {"lstm": lstm, "gru": gru, "gru+lstm": lstm})
    c = claim(comp, "final_gap")
    d = np.array(lstm) - np.array(gru)
    half = 4.302653 * d.std(ddof=1) / math.sqrt(3)
    assert (c.interval.low, c.interval.high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert c.holds is holds
    assert c.measured == pytest.approx(np.mean(lstm) - np.mean(gru))


def test_paired_samples_count_even_when_seeds_agree():
    """Both seeds give LSTM and GRU the same accuracy (no seed spread), but on different
    samples: 20 right only by the LSTM, 20 only by the GRU out of 100. The samples' term
    (+-12 points) makes "nearly equal" unproven, not proven."""
    from edgernn.results.significance import per_sample_record

    comp = comparison({"lstm": [1, 1], "gru": [1, 1], "gru+lstm": [1, 1]},
                      {"lstm": [0.6, 0.6], "gru": [0.6, 0.6], "gru+lstm": [0.6, 0.6]})
    y = np.zeros(100, np.int64)
    right = {"lstm": np.r_[np.ones(40), np.ones(20), np.zeros(20), np.zeros(20)].astype(bool),
             "gru": np.r_[np.ones(40), np.zeros(20), np.ones(20), np.zeros(20)].astype(bool)}
    for c in comp.contenders:
        ok = right.get(c.name, right["lstm"])
        c.per_sample = per_sample_record(np.stack([ok, ~ok], 1).astype(np.float32), y, "classify")
    c = claim(comp, "final_gap")
    d = right["lstm"].astype(float) - right["gru"]  # 20 of +1, 20 of -1, 60 of 0
    half = 1.959964 * math.sqrt(np.sum(d ** 2) / 99) / 10
    assert (c.interval.low, c.interval.high) == pytest.approx((-half, half), rel=1e-5)
    assert c.measured == 0 and c.holds is None
    assert [t["p_value"] for t in c.tests] == [1.0, 1.0]


def test_long_data_claim_uses_error():
    from edgernn.study.intervals import Interval, directional_verdict, within_verdict

    # error rates 0.10/0.11 (LSTM) vs 0.20/0.21 (GRU): the LSTM's error is lower
    comp = comparison({"lstm": [1, 1], "gru": [1, 1], "gru+lstm": [1, 1]},
                      {"lstm": [0.90, 0.89], "gru": [0.80, 0.79], "gru+lstm": [0.8, 0.8]},
                      seq_len=200)
    c = claim(comp, "long_gap")
    assert c.measured == pytest.approx(1 - 0.105 / 0.205)
    assert c.holds is True and "200 steps" in c.detail
    assert directional_verdict(Interval(0.1, -0.05, 0.25, 2)) is None
    assert directional_verdict(Interval(-0.2, -0.3, -0.1, 2)) is False
    # with a margin (the smallest advantage that counts): the interval is judged against it
    assert directional_verdict(Interval(0.02, 0.01, 0.03, 5), 0.05) is False
    assert directional_verdict(Interval(0.06, 0.04, 0.08, 5), 0.05) is None
    assert directional_verdict(Interval(0.1, 0.06, 0.14, 5), 0.05) is True
    assert directional_verdict(Interval(0.05, 0.05, 0.05, 0), 0.05) is False  # exact, not above
    assert within_verdict(Interval(0.0, -0.02, 0.005, 2), 0.01) is None
    assert within_verdict(Interval(0.0, -0.005, 0.005, 2), 0.01) is True


def test_long_user_data_gets_the_long_claim(tmp_path):
    """A user's .npz of 200-step windows counts as long: the claim is judged on its errors."""
    from edgernn.study.compare import run_compare

    rng = np.random.default_rng(0)
    t = np.arange(500, dtype=np.float32)
    series = np.sin(2 * np.pi * t / 24) + 0.3 * rng.standard_normal(500).astype(np.float32)
    x = np.stack([series[i:i + 200] for i in range(120)])[..., None].astype(np.float32)
    y = np.array([series[i + 200] for i in range(120)], dtype=np.float32)
    np.savez(tmp_path / "long.npz", x=x, y=y)
    comp = run_compare([str(tmp_path / "long.npz")], tmp_path / "o", hidden=4, epochs=1,
                       seeds=2)["long"]
    c = claim(comp, "long_gap")
    mae = {n: [torch.load(tmp_path / "o" / "long" / f, weights_only=False)["meta"]["history"][-1]
               ["mae"] for f in (f"{n}.pt", f"{n}-seed1.pt")] for n in ("lstm", "gru")}
    assert c.values == {"lstm": mae["lstm"], "gru": mae["gru"]}
    assert c.measured == pytest.approx(1 - np.mean(mae["lstm"]) / np.mean(mae["gru"]), rel=1e-5)
    # judged over both seeds and the 24 held-out windows, paired
    assert [t["seed"] for t in c.tests] == [0, 1]
    assert (c.interval.seeds, c.interval.samples) == (2, 24) and "2 seeds x 24" in c.detail


@pytest.mark.parametrize("name, why", [
    ("weather", None), ("motions", None),  # 14 and 100 steps: not "hundreds of steps"
    ("appliances", "sequences of 1460 steps"),
    ("demand", "sequences of 336 steps and multi-seasonal demand data"),
])
def test_which_bundled_data_count_as_long_or_multi_seasonal(name, why):
    from edgernn.data.datasets import load_dataset
    from edgernn.study.compare import long_reason

    assert long_reason(load_dataset(name)) == why


# --- paired significance tests ------------------------------------------------------------

@pytest.mark.parametrize("b, c, p", [
    (1, 6, 2 * (1 + 7) / 2**7),          # 7 discordant pairs, 1 one way: 0.125
    (0, 5, 2 / 2**5),                    # all five the same way: 0.0625
    (4, 4, 1.0),                         # balanced
    (0, 0, 1.0),                         # no discordant pair: no evidence
    (2, 10, 2 * (1 + 12 + 66) / 2**12),  # 0.0386: significant at 5%
])
def test_mcnemar_exact_p_by_hand(b, c, p):
    from edgernn.results.significance import mcnemar_exact, paired_correct

    assert mcnemar_exact(b, c) == pytest.approx(p, rel=1e-12)
    assert mcnemar_exact(b, c) == pytest.approx(hand_mcnemar(b, c), rel=1e-12)
    # the same table from per-sample correctness: 20 both right, b only A, c only B, 3 none
    a_ok = np.array([1] * 20 + [1] * b + [0] * c + [0] * 3, bool)
    b_ok = np.array([1] * 20 + [0] * b + [1] * c + [0] * 3, bool)
    t = paired_correct(a_ok, b_ok)
    n = 23 + b + c
    assert t.p_value == pytest.approx(p, rel=1e-12) and t.significant == (p < 0.05)
    assert t.difference == pytest.approx((b - c) / n)
    se = math.sqrt(b + c - (b - c) ** 2 / n) / n  # Wald interval of a paired difference
    assert t.low == pytest.approx((b - c) / n - 1.959964 * se, abs=1e-6)
    assert t.high == pytest.approx((b - c) / n + 1.959964 * se, abs=1e-6)


def test_mcnemar_large_table_does_not_overflow():
    from edgernn.results.significance import mcnemar_exact

    assert mcnemar_exact(600, 600) == pytest.approx(1.0)
    assert 0 < mcnemar_exact(500, 700) < 1e-6


def test_paired_bootstrap_interval():
    from edgernn.results.significance import paired_errors

    rng = np.random.default_rng(1)
    base = rng.gamma(2.0, 1.0, 400)
    noise = rng.normal(0.1, 0.5, 400)
    t = paired_errors(base + noise, base)
    d = noise.mean()
    se = noise.std(ddof=1) / math.sqrt(400)
    assert t.difference == pytest.approx(d)
    # the percentile interval of the paired mean is close to the normal one here
    assert t.low == pytest.approx(d - 1.96 * se, abs=0.25 * 1.96 * se)
    assert t.high == pytest.approx(d + 1.96 * se, abs=0.25 * 1.96 * se)
    assert t.significant == (d - 1.96 * se > 0)
    same = paired_errors(base, base)
    assert same.difference == 0 and not same.significant
    shifted = paired_errors(base + 0.01, base)  # every sample worse: significant however small
    assert shifted.significant and shifted.low == pytest.approx(0.01)
    assert shifted.p_value == pytest.approx(1 / 2000)  # no resample crosses 0: the floor


def test_per_sample_record_round_trip():
    from edgernn.probe.metrics import compute_metrics
    from edgernn.results.significance import per_sample_record, record_values

    rng = np.random.default_rng(0)
    logits, y = rng.normal(size=(13, 3)).astype(np.float32), rng.integers(0, 3, 13)
    r = per_sample_record(logits, y, "classify")
    v = record_values(json.loads(json.dumps(r)))
    assert v.dtype == bool and len(v) == 13
    assert np.array_equal(v, logits.argmax(1) == y)
    assert v.mean() == pytest.approx(compute_metrics(logits, y, "classify")["accuracy"])
    out, yy = rng.normal(size=(9, 4)).astype(np.float32), rng.normal(size=(9, 4)).astype(np.float32)
    e = record_values(per_sample_record(out, yy, "forecast"))
    assert np.allclose(e, np.abs(out - yy).mean(1), atol=1e-6)
    assert e.mean() == pytest.approx(compute_metrics(out, yy, "forecast")["mae"], rel=1e-6)


def rows_with_records(correct: dict[str, np.ndarray], latency: dict[str, float]) -> list[dict]:
    from edgernn.results.significance import per_sample_record

    rows = []
    y = np.zeros(len(next(iter(correct.values()))), np.int64)
    for name, ok in correct.items():
        logits = np.stack([ok.astype(np.float32), (~ok).astype(np.float32)], 1)  # right -> 0
        acc = float(ok.mean())
        rows.append({"model": "m", "model_sha256": "m", "data_sha256": "d", "target": "x86",
                     "variant": f"m/{name}", "status": "ok", "metric": "accuracy",
                     "metrics": {"accuracy": acc}, "value": acc, "runtime": "fake",
                     "latency_ms": {"p50": latency[name]}, "size_bytes": 1000,
                     "eval_samples": len(ok),
                     "per_sample": per_sample_record(logits, y, "classify")})
    rows.append({**rows[0], "variant": "m/torch-fp32", "target": "host"})
    return rows


def test_significant_losses_on_paired_rows():
    from edgernn.results.significance import significant_losses

    rng = np.random.default_rng(0)
    best = rng.random(400) < 0.8
    tie = best.copy()
    tie[np.flatnonzero(best)[:3]] = False  # 3 fewer right: 0.75 points, not significant
    worse = best.copy()
    worse[np.flatnonzero(best)[:40]] = False  # 40 fewer right, none gained: McNemar p ~ 2e-12
    rows = rows_with_records({"fp32": best, "int8": tie, "int8-bad": worse},
                             {"fp32": 1.0, "int8": 0.9, "int8-bad": 0.5})
    out, lines = significant_losses([r for r in rows if r["target"] == "x86"], "accuracy")
    assert set(out) == {"m/int8-bad"}
    assert "McNemar" in out["m/int8-bad"] and "m/fp32" in out["m/int8-bad"]
    assert "1 tie" in lines[0]
    # without per-sample records: the wider unpaired interval from the sample count
    for r in rows:
        r.pop("per_sample")
    out, _ = significant_losses([r for r in rows if r["target"] == "x86"], "accuracy")
    assert set(out) == {"m/int8-bad"} and "unpaired" in out["m/int8-bad"]


# --- wiring the lead makes in select.py and cli.py ----------------------------------------

def test_select_without_budget_keeps_a_significantly_better_variant():
    """No --max-drop: the faster variant 10 points less accurate (significant) is not picked;
    the one inside the interval ties and may win on latency; the explanation says which rule
    decided."""
    from edgernn.results.selection import Budget, select

    rng = np.random.default_rng(0)
    best = rng.random(400) < 0.8
    worse = best.copy()
    worse[np.flatnonzero(best)[:40]] = False
    rows = rows_with_records({"fp32": best, "int8-bad": worse}, {"fp32": 1.0, "int8-bad": 0.5})
    sel = select(rows, Budget(), target="x86")
    assert sel.pick is not None and sel.pick.name == "m/fp32"
    assert any("accuracy rule" in line for line in sel.explanation)
    tie = best.copy()
    tie[np.flatnonzero(best)[:3]] = False
    rows = rows_with_records({"fp32": best, "int8": tie}, {"fp32": 1.0, "int8": 0.5})
    sel = select(rows, Budget(), target="x86")
    assert sel.pick.name == "m/int8"  # 0.75 points inside the interval: a tie, faster wins
    # with an explicit budget the user's --max-drop rules, as before
    rows = rows_with_records({"fp32": best, "int8-bad": worse}, {"fp32": 1.0, "int8-bad": 0.5})
    assert select(rows, Budget(max_drop=0.2), target="x86").pick.name == "m/int8-bad"


def test_cli_compare_seeds_writes_claims(tmp_path):
    code, stdout, err = cli(["compare", "weather", "--hidden", "4", "--epochs", "1",
                             "--max-train", "100", "--seeds", "2", "--no-bench",
                             "--contenders", "lstm,gru,gru+lstm",
                             "--out", tmp_path])
    assert code == 0, err
    payload = json.loads((tmp_path / "compare.json").read_text())
    assert payload["seeds"] == [0, 1] and len(payload["contenders"]) == 6
    keys = {c["key"] for c in payload["claims"]}
    assert {"parameters", "epoch_time", "epochs_to_level", "final_gap"} <= keys
    assert "folk claims" in stdout
