"""benchmarks/claims.py renders the committed LSTM-vs-GRU study into README.md and
docs/benchmarks.md: a hand-made payload gives the cells and counts worked out by hand here,
and the pages' generated sections are what the committed claims.json renders to now. No
training: rendering only."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("claims_bench", ROOT / "benchmarks" / "claims.py")
claims = importlib.util.module_from_spec(spec)
spec.loader.exec_module(claims)

FIG = {"kws": ("GRU 96.2% vs LSTM 96.8% accuracy", "GRU 95.0% vs LSTM 95.5% accuracy"),
       "sentiment": ("F1 GRU 0.91 vs LSTM 0.92", "F1 GRU 0.88 vs LSTM 0.90")}


def _claim(ds: str, key: str, measured: float | None, text: str, holds: bool | None,
           article: str = "~25% fewer", values: dict | None = None) -> dict:
    fig = FIG.get(ds, (None, None)) if key == "final_gap" else (None, None)
    return {"dataset": ds, "key": key, "claim": key, "target": None, "article": article,
            "article_figure": fig[0], "measured_figure": fig[1], "measured": measured,
            "measured_text": text, "holds": holds,
            "verdict": {True: "holds", False: "does not hold", None: "inconclusive"}[holds],
            "detail": "", "interval": None, "values": values or {}}


def _contender(ds: str, name: str, seed: int, used: int, run: int, final: float) -> dict:
    return {"dataset": ds, "contender": name, "seed": seed, "layers": f"{name}:64",
            "parameters": 100 if name == "lstm" else 75, "final": final, "final_metrics": {},
            "epochs_used": used, "epochs_run": run, "best_variant": {}}


def payload() -> dict:
    """Three tasks: kws (accuracy), sentiment (macro F1) and demand (MAE, long data)."""
    c = [
        # parameters: holds on all three; 24.0%, 3.0%, 19.0% fewer -> 3-24% fewer
        _claim("kws", "parameters", 0.24, "24.0% fewer", True),
        _claim("sentiment", "parameters", 0.03, "3.0% fewer", True),
        _claim("demand", "parameters", 0.19, "19.0% fewer", True),
        # epoch time: 60% slower (no), 10% slower (?), 5% faster (?)
        _claim("kws", "epoch_time", -0.6, "60.0% slower (95%: 70% slower to 50% slower)", False,
               "20-30% faster"),
        _claim("sentiment", "epoch_time", -0.1, "10.0% slower (95%: 40% slower to 20% faster)",
               None, "20-30% faster"),
        _claim("demand", "epoch_time", 0.05, "5.0% faster (95%: 30% slower to 40% faster)",
               None, "20-30% faster"),
        # final gap: 0.5 points (kws, ?), 2 F1 points (sentiment, ?), MAE 10 of 200 = 5% (?)
        _claim("kws", "final_gap", 0.005, "+0.50 points [-0.20, +1.20] (LSTM better)", None,
               "within 1 point"),
        _claim("sentiment", "final_gap", 0.02, "+2.00 points [+1.50, +2.50] (LSTM better)",
               False, "within 1 point"),
        _claim("demand", "final_gap", -10.0, "-10 (-5.0%) [-30, +10] (GRU better)", None,
               "within 1 point", {"lstm": [190.0, 210.0], "gru": [200.0, 220.0]}),
        # long data: demand only, 5% higher error, inconclusive
        _claim("demand", "long_gap", -0.05, "5.0% higher error (95%: 15% higher error to 5% "
               "lower error)", None, "~8% lower error"),
    ]
    cont = [_contender("kws", "lstm", s, 10 + s, 16 + s, 0.95 + s / 100) for s in (0, 1)]
    cont += [_contender("kws", "gru", s, 8, 14, 0.95) for s in (0, 1)]
    cont += [_contender(ds, n, s, 5, 11, 0.5) for ds in ("sentiment", "demand")
             for n in ("lstm", "gru") for s in (0, 1)]
    return {"seeds": [0, 1],
            "settings": {"hidden": None, "epochs": 60, "patience": 6, "targets": ["x86"],
                         "command": "edgernn compare kws sentiment demand --seeds 2",
                         "wall_seconds": 5400.0, "date": "2026-12-08",
                         "conditions": {"cpu": "AMD EPYC", "cores": 2, "train_threads": 1,
                                        "jobs": 2, "torch": "2.13.0+cpu",
                                        "onnxruntime": "1.32.0", "os": "Debian"}},
            "datasets": {"kws": {"task": "classify", "metric": "accuracy", "seq_len": 49,
                                 "samples": [2000, 500], "long_reason": None},
                         "sentiment": {"task": "classify", "metric": "macro_f1", "seq_len": 64,
                                       "samples": [3000, 1000], "long_reason": None},
                         "demand": {"task": "forecast", "metric": "mae", "seq_len": 336,
                                    "samples": [800, 200],
                                    "long_reason": "multi-seasonal data"}},
            "contenders": cont, "claims": c}


DECISION = """# LSTM or GRU: decision record

## kws

**Recommendation: LSTM.**

## sentiment

**Recommendation: GRU.**

## demand

**Recommendation: GRU.**
"""


def _rows(text: str) -> dict[str, list[str]]:
    """Markdown table rows by their first cell."""
    return {cells[0]: cells[1:] for line in text.splitlines() if line.startswith("| ")
            for cells in [[c.strip() for c in line.strip("|").split("|")]]}


def test_readme_rows_ranges_and_counts():
    text = claims.readme_section(payload())
    rows = _rows(text)
    assert rows["parameters"] == ["~25% fewer", "3-24% fewer", "3 of 3", "0 of 3", "0 of 3"]
    assert rows["time per epoch"] == ["20-30% faster", "60% slower to 5% faster", "0 of 3",
                                      "1 of 3", "2 of 3"]
    # points for accuracy / F1 (0.5 and 2.0), share of the LSTM's error for MAE (10 / 200)
    assert rows["final metric gap"] == ["within 1 point",
                                        "0.5-2.0 points (2 tasks); 5% of the error (1 task)",
                                        "0 of 3", "1 of 3", "2 of 3"]
    assert rows["LSTM error on long data"] == ["~8% lower error", "5% higher error", "0 of 1",
                                               "0 of 1", "1 of 1"]
    assert all(len(line) <= 120 for line in text.splitlines())
    assert len(text.splitlines()) <= 20
    flat = " ".join(text.split())
    assert ("Keyword spotting (`kws`): the article's GRU 96.2% vs LSTM 96.8% accuracy, measured "
            "GRU 95.0% vs LSTM 95.5% accuracy (within 1 point: inconclusive)") in flat
    assert ("Sentiment (`sentiment`): the article's F1 GRU 0.91 vs LSTM 0.92, measured F1 GRU "
            "0.88 vs LSTM 0.90 (within 1 point: does not hold)") in flat
    # 5 of the 10 verdicts are inconclusive (2 epoch time, 2 final gap, 1 long); 5400 s
    assert "50% of the 10 verdicts inconclusive" in flat
    assert "wall time 1 h 30 min; 2 seeds" in flat
    assert ("AMD EPYC, 2 cores; training 1 thread x 2 processes; torch 2.13.0+cpu, "
            "onnxruntime 1.32.0") in flat
    assert "(docs/benchmarks.md#lstm-vs-gru-the-folk-claims-on-every-bundled-task)" in flat


def test_docs_table_cells_picks_and_epochs():
    text = claims.docs_section(payload(), claims.picks(DECISION))
    assert "edgernn compare kws sentiment demand --seeds 2" in text
    assert "wall time 1 h 30 min" in text
    rows = _rows(text)
    header = rows["dataset (steps)"]
    assert header[0] == "parameters: ~25% fewer" and header[-1] == "pick"
    assert rows["kws (49)"] == ["holds 24.0% fewer", "no 60.0% slower",
                                "? +0.50 points (LSTM better)", "-", "LSTM"]
    assert rows["sentiment (64)"] == ["holds 3.0% fewer", "? 10.0% slower",
                                      "no +2.00 points (LSTM better)", "-", "GRU"]
    assert rows["demand (336, long)"] == ["holds 19.0% fewer", "? 5.0% faster",
                                          "? -10 (-5.0%) (GRU better)", "? 5.0% higher error",
                                          "GRU"]
    per = [line for line in text.splitlines() if line.startswith("| kws |")]
    assert per == ["| kws | accuracy | 2000 / 500 | lstm | lstm:64 | 100 | 10-11 | 16-17 | 0.955 |",
                   "| kws | accuracy | 2000 / 500 | gru | gru:64 | 75 | 8 | 14 | 0.95 |"]


def test_pages_spliced_once_and_replaced_after():
    readme = ("# x\n\n## What the demo prints\n\n<!-- demo:start -->\nT\n<!-- demo:end -->\n\n"
              "## The commands people use\n\ntext\n")
    first = claims.splice_readme(readme, "A\n")
    assert first.index("<!-- demo:end -->") < first.index(claims.README_HEADING) \
        < first.index("## The commands people use")
    assert claims.between(first) == "A\n"
    again = claims.splice_readme(first, "B\n")
    assert claims.between(again) == "B\n" and again.count(claims.README_HEADING) == 1
    docs = f"# B\n\n{claims.DOCS_HEADING}\nold prose 20.5 min\n\n## Next\nkept\n"
    out = claims.splice_docs(docs, "C\n")
    assert "old prose" not in out and "## Next\nkept\n" in out
    assert claims.between(out) == "C\n" and claims.splice_docs(out, "D\n").count("D\n") == 1


def test_render_writes_both_pages(tmp_path):
    res = tmp_path / "claims.json"
    res.write_text(json.dumps(payload()))
    (tmp_path / "decision.md").write_text(DECISION)
    readme, docs = tmp_path / "README.md", tmp_path / "benchmarks.md"
    readme.write_text("<!-- demo:end -->\n\n## Next\n")
    docs.write_text(f"{claims.DOCS_HEADING}\nold\n")
    r, d = claims.render(res, readme, docs)
    assert claims.between(readme.read_text()) == r
    assert claims.between(docs.read_text()) == d and "| LSTM |" in d


def test_pages_show_what_the_committed_results_render_to():
    if not claims.RESULTS.exists():
        pytest.skip("benchmarks/results/claims.json is not committed yet (python "
                    "benchmarks/claims.py makes it; then --render-only writes the pages)")
    r, d = claims.render(claims.RESULTS, None, None)
    assert claims.between((ROOT / "README.md").read_text()) == r, \
        "README.md is stale: python benchmarks/claims.py --render-only"
    assert claims.between((ROOT / "docs" / "benchmarks.md").read_text()) == d, \
        "docs/benchmarks.md is stale: python benchmarks/claims.py --render-only"


def test_links_survive_wrapping_in_the_committed_readme_section():
    """Wrapping never breaks a link's target (a hyphenated anchor split across lines is a
    dead link): every ``](target)`` in the README section rendered from the committed results
    is one unbroken token."""
    import re

    text = claims.readme_section(json.loads(claims.RESULTS.read_text()))
    targets = re.findall(r"\]\(([^)]*)\)", text)
    assert targets and all(not re.search(r"\s", t) for t in targets), targets
