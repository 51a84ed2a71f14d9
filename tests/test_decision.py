"""The decision record: which rule decides, on constructed compare.json payloads (the
expected pick follows from the inputs by hand), and the CLI that rebuilds it."""

from __future__ import annotations

import json

from edgernn.study.decision import decision_markdown, recommend
from tests.conftest import cli

INFO = {"task": "classify", "metric": "accuracy", "seq_len": 14, "samples": [1000, 362],
        "long_reason": None}


def contenders(lstm: float, gru: float) -> list[dict]:
    return [{"dataset": "d", "contender": n, "seed": 0, "final": v, "best_variant": {
        "x86": {"variant": f"{n}/onnx-int8-dynamic", "latency_ms": 0.1, "size_bytes": 5000,
                "drop": 0.0}}} for n, v in (("lstm", lstm), ("gru", gru))]


def claim(key: str, holds, significant=None, target=None) -> dict:
    tests = [] if significant is None else [{"seed": 0, "significant": significant}]
    return {"dataset": "d", "key": key, "claim": key, "article": "a", "measured_text": "m",
            "verdict": {True: "holds", False: "does not hold", None: "inconclusive"}[holds],
            "holds": holds, "detail": f"{key} detail", "target": target, "paired_tests": tests}


def test_a_significant_accuracy_gap_decides():
    pick, why = recommend(INFO, contenders(0.80, 0.70),
                          [claim("final_gap", False, significant=True),
                           claim("best_latency", True, target="x86")])
    assert pick == "lstm" and why[0].startswith("accuracy decides")
    # an error metric: lower is better, so the GRU's lower MAE wins
    pick, _ = recommend({**INFO, "metric": "mae"}, contenders(3.0, 2.5),
                        [claim("long_gap", False, significant=True)])
    assert pick == "gru"


def test_latency_decides_when_accuracy_ties_then_size_then_parameters():
    tie = claim("final_gap", None, significant=False)
    pick, why = recommend(INFO, contenders(0.80, 0.79),
                          [tie, claim("best_latency", False, target="x86")])
    assert pick == "lstm" and "latency decides on x86" in why[1]
    pick, why = recommend(INFO, contenders(0.80, 0.79),
                          [tie, claim("best_latency", None, target="x86"),
                           claim("best_size", True, target="x86")])
    assert pick == "gru" and "size decides" in why[1]
    pick, why = recommend(INFO, contenders(0.80, 0.79), [tie, claim("parameters", True)])
    assert pick == "gru" and "smaller model" in why[1]
    # one seed of two not significant: the gap does not decide
    mixed = claim("final_gap", None)
    mixed["paired_tests"] = [{"seed": 0, "significant": True}, {"seed": 1, "significant": False}]
    pick, _ = recommend(INFO, contenders(0.80, 0.70), [mixed, claim("best_latency", True,
                                                                    target="x86")])
    assert pick == "gru"


def test_the_gaps_interval_over_seeds_and_samples_decides_when_present():
    """With an interval (compare since early stopping), it decides, not the per-seed tests:
    every seed significant but the interval straddling 0 (seeds disagree) does not decide;
    an interval wholly above 0 does even with no seed significant alone."""
    straddles = claim("final_gap", None, significant=True)
    straddles["interval"] = {"estimate": 0.01, "low": -0.02, "high": 0.04, "seeds": 5}
    pick, why = recommend(INFO, contenders(0.80, 0.79),
                          [straddles, claim("best_latency", True, target="x86")])
    assert pick == "gru" and why[0].startswith("accuracy does not decide")
    above = claim("final_gap", False, significant=False)
    above["interval"] = {"estimate": 0.03, "low": 0.01, "high": 0.05, "seeds": 5}
    pick, why = recommend(INFO, contenders(0.80, 0.77),
                          [above, claim("best_latency", True, target="x86")])
    assert pick == "lstm" and why[0].startswith("accuracy decides")


def test_early_stopping_budget_names_the_epochs_kept():
    payload = {"seeds": [0, 1], "settings": {"epochs": 60, "patience": 6},
               "datasets": {"d": INFO},
               "contenders": [{**c, "layers": f"{c['contender']}:64", "epochs_used": e}
                              for c, e in zip(contenders(0.8, 0.7) * 2, [12, 9, 20, 9],
                                              strict=True)],
               "claims": []}
    text = decision_markdown(payload)
    assert ("each trained until the validation metric stopped improving (patience 6, at most "
            "60 epochs; epochs kept: lstm 12-20, gru 9); gru:64, lstm:64") in text


def test_record_answers_the_five_questions(tmp_path):
    payload = {"seeds": [0, 1], "settings": {"hidden": 16, "epochs": 5, "targets": ["x86"],
                                             "budget": {"max_latency_ms": 1.0}},
               "datasets": {"d": {**INFO, "seq_len": 336, "long_reason": "multi-seasonal"}},
               "contenders": contenders(0.8, 0.7),
               "claims": [claim("final_gap", False, significant=True)]}
    text = decision_markdown(payload)
    for q in ("Resource limits", "Sequence length", "Problem complexity", "Dataset size",
              "Experiment budget"):
        assert f"| {q} |" in text
    assert "latency <= 1 ms" in text and "336 steps: long" in text
    assert "2 seed(s), each trained 5 epochs; hidden 16" in text
    assert "**Recommendation: LSTM.**" in text and "ship on x86: lstm/onnx-int8-dynamic" in text
    p = tmp_path / "compare.json"
    p.write_text(json.dumps(payload))
    code, _, err = cli(["decision", p])
    assert code == 0, err
    assert (tmp_path / "decision.md").read_text() == text
    (tmp_path / "bad.json").write_text('{"datasets": {"d": {}}}')
    code, _, err = cli(["decision", tmp_path / "bad.json"])
    assert code == 1 and "is not a compare.json" in err and len(err.strip().splitlines()) == 1
