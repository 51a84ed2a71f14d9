"""bench -> select -> report on the bundled data; the HTML is opened in a real headless
Chromium (Debian chromium + chromium-driver via selenium) and must render the plots and pick."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgernn.results.selection import dominates
from edgernn.results.store import Store
from tests.conftest import cli
from tests.test_bench import FAST


@pytest.fixture(scope="module")
def benched(weather_models, tmp_path_factory, capsys_module):
    d = tmp_path_factory.mktemp("report")
    db = d / "r.db"
    code, _, err = capsys_module(["bench", weather_models["lstm"], weather_models["gru"],
                                  "--data", weather_models["eval"], "--out", d / "b",
                                  "--db", db, "--format", "onnx", *FAST])
    assert code == 0, err
    return {"dir": d, "db": db}


@pytest.fixture(scope="module")
def capsys_module():
    return cli


def test_pick_is_verified_against_the_stored_rows(benched, capsys_module):
    d, db = benched["dir"], benched["db"]
    code, out, err = capsys_module(["select", "--db", db, "--target", "x86", "--max-drop",
                                    "0.02", "--json", d / "sel.json"])
    assert code == 0, err
    sel = json.loads((d / "sel.json").read_text())
    rows = [r for r in Store(db).rows() if r["target"] == "x86" and r["status"] == "ok"]
    by = {r["variant"]: r for r in rows}
    best = max(r["value"] for r in rows if r["variant"].endswith("/torch-fp32"))
    pts = {v: (r["latency_ms"]["p50"], r["size_bytes"] / 1e6, best - r["value"])
           for v, r in by.items()}
    feasible = {v: p for v, p in pts.items() if p[2] <= 0.02}
    pick = sel["pick"]["variant"]
    assert pick in feasible
    assert not any(dominates(p, pts[pick]) for p in pts.values())  # Pareto-optimal
    fast = min(feasible, key=lambda v: feasible[v][0])
    spread = {v: (max(by[v]["latency_ms"]["trial_p50"]) - min(by[v]["latency_ms"]["trial_p50"]))
              / sorted(by[v]["latency_ms"]["trial_p50"])[1] for v in feasible}  # 3 trials
    # ties: within 5% of the fastest, or within either row's trial spread; and anything at least
    # as fast as such a tie
    ties = {v for v, p in feasible.items()
            if p[0] <= feasible[fast][0] * (1 + max(0.05, spread[fast], spread[v])) + 1e-12}
    slowest = max(feasible[v][0] for v in ties)
    ties |= {v for v, p in feasible.items() if p[0] <= slowest}
    assert pick in ties
    # nothing inside the ties is smaller than the pick
    assert not any(feasible[v][1] < pts[pick][1] for v in ties)
    assert {c["variant"] for c in sel["pareto"]} == {
        v for v, p in pts.items() if not any(dominates(q, p) for q in pts.values())}


def test_report_renders_in_headless_chromium(benched, capsys_module):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("HEADLESS CHROMIUM MISSING (apt-get install chromium chromium-driver): "
                    "report not checked in a browser")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    d, db = benched["dir"], benched["db"]
    record = "# LSTM or GRU: decision record\n\n## weather\n\n**Recommendation: GRU.**\n"
    (d / "decision.md").write_text(record)
    code, out, err = capsys_module(["report", "--db", db, "--out", d / "rep",
                                    "--decision", d / "decision.md"])
    assert code == 0, err
    page = d / "rep" / "report.html"
    md = (d / "rep" / "report.md").read_text()
    assert "![Pareto plot, x86](pareto-x86.png)" in md
    assert "### weather" in md and md.index("Recommendation: GRU") < md.index("## Selection")
    assert (d / "rep" / "pareto-x86.png").stat().st_size > 10_000
    code, out, _ = capsys_module(["select", "--db", db, "--target", "x86", "--json", d / "s.json"])
    pick = json.loads((d / "s.json").read_text())["pick"]["variant"]

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", f"--user-data-dir={d / 'chrome-profile'}"):
        opts.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver), options=opts)
    try:
        browser.get(Path(page).as_uri())
        plots = browser.execute_script(
            "return [...document.querySelectorAll('img.plot')].map(i => "
            "[i.id, i.complete, i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width])")
        ids = {p[0] for p in plots}
        assert "pareto-x86" in ids and "latency-x86" in ids
        for pid, complete, w, h, shown in plots:
            assert complete and w > 400 and h > 200 and shown > 100, (pid, w, h, shown)
        box = browser.find_element("id", "pick-x86")
        assert box.get_attribute("data-pick") == pick
        assert f"Pick: {pick}" in box.text and box.is_displayed()
        assert browser.execute_script("return document.querySelectorAll('tr').length") > 8
        shown = browser.find_element("id", "decision")
        assert shown.is_displayed() and "Recommendation: GRU." in shown.text
    finally:
        browser.quit()
