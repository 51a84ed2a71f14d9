"""Results store (reuse, force, concurrency) and selection (Pareto, budgets, explanations)."""

from __future__ import annotations

import json
import multiprocessing as mp

import pytest

from edgernn.results.selection import Budget, dominates, pareto_front, select
from edgernn.results.store import Store
from tests.test_bench import FAST


def _row(variant, lat, size_kb, acc, status="ok", model="m", target="x86"):
    return {"model": model, "model_sha256": f"sha-{model}", "variant": f"{model}/{variant}",
            "target": target, "status": status, "runtime": "rt", "runtime_version": "1",
            "latency_ms": {"p50": lat, "p90": lat * 1.1}, "size_bytes": int(size_kb * 1000),
            "metric": "accuracy", "metrics": {"accuracy": acc, "macro_f1": acc - 0.1},
            "reason": None, "timestamp": "2026-01-01T00:00:00+00:00", "data_sha256": "d"}


ROWS = [
    _row("torch-fp32", 1.0, 300, 0.90),
    _row("onnx-fp32", 0.40, 290, 0.90),      # front: most accurate among fast ones
    _row("onnx-int8", 0.20, 80, 0.88),       # front: fastest and smallest
    _row("onnx-fp16", 0.41, 150, 0.90),      # front: smaller than fp32 at equal accuracy
    _row("tfl-bad", 0.10, 70, 0.50, status="accuracy collapsed"),
    _row("slow-big", 2.0, 400, 0.85),        # dominated by everything
]


def test_dominance_and_front_on_constructed_points():
    assert dominates((1, 1, 0), (2, 1, 0)) and not dominates((1, 1, 0), (1, 1, 0))
    sel = select(ROWS, Budget())
    assert {c.name for c in sel.pareto} == {"m/onnx-fp32", "m/onnx-int8", "m/onnx-fp16"}
    assert "m/slow-big" not in {c.name for c in pareto_front(sel.candidates)}
    assert sel.pick.name == "m/onnx-int8"
    assert ("m/tfl-bad", "status accuracy collapsed") in sel.excluded


def test_budgets_change_the_pick_and_are_explained():
    sel = select(ROWS, Budget(max_drop=0.005))
    assert sel.pick.name == "m/onnx-fp16"  # fp32 is within 5% latency but twice the size
    text = "\n".join(sel.explanation)
    assert "Over budget: m/onnx-int8: accuracy drop +0.02 > 0.005" in text
    assert "Runner-up: m/onnx-fp32" in text
    assert "Not a candidate: m/tfl-bad: status accuracy collapsed" in text
    sel = select(ROWS, Budget(max_latency_ms=0.3, max_drop=0.005))
    assert sel.pick is None and "Nothing meets the budget" in sel.explanation[0]


def test_prefer_size_and_metric_choice():
    assert select(ROWS, Budget(), prefer="size").pick.name == "m/onnx-int8"
    sel = select(ROWS, Budget(max_size_mb=0.2), metric="macro_f1", prefer="accuracy")
    assert sel.metric == "macro_f1" and sel.pick.name == "m/onnx-fp16"


def test_store_roundtrip_latest_and_export(tmp_path):
    st = Store(tmp_path / "r.db")
    for r in ROWS:
        st.add({**r, "requested_threads": 1, "settings_sha256": "s1"})
    newer = {**ROWS[1], "latency_ms": {"p50": 0.3, "p90": 0.33}, "requested_threads": 1,
             "settings_sha256": "s1"}
    st.add(newer)
    assert st.count() == len(ROWS) + 1
    latest = {r["variant"]: r for r in st.rows("x86")}
    assert latest["m/onnx-fp32"]["latency_ms"]["p50"] == 0.3
    assert len(st.rows(latest=False)) == len(ROWS) + 1
    hit = st.find("sha-m", "m/onnx-int8", "x86", "d", 1, "s1")
    assert hit["latency_ms"]["p50"] == 0.20
    assert st.find("sha-m", "m/tfl-bad", "x86", "d", 1, "s1")["status"] == "accuracy collapsed"
    # measured with other settings: not the same measurement, never reused
    assert st.find("sha-m", "m/onnx-int8", "x86", "d", 1, "s2") is None


def _bench_into(args):
    """Run one bench in a separate process, writing to a shared store."""
    import contextlib
    import io
    import sys

    from edgernn.cli import main

    sys.argv = ["edgernn", *args]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main()
        except SystemExit as e:
            return int(e.code or 0)
    return 0


def test_rerun_reuses_store_and_force_remeasures(weather_models, tmp_path, capsys):
    from tests.conftest import run_cli

    db = tmp_path / "r.db"
    args = ["bench", weather_models["gru"], "--data", weather_models["eval"], "--out",
            tmp_path / "o", "--db", db, "--format", "onnx", "--quantize", "fp16", *FAST]
    assert run_cli(args, capsys)[0] == 0
    n = Store(db).count()
    assert n == 3  # torch, onnx fp32, onnx fp16
    code, out, _ = run_cli(args, capsys)
    assert code == 0 and "3 row(s) reused from the store" in out
    assert Store(db).count() == n
    rows = json.loads((tmp_path / "o" / "results.json").read_text())
    assert all(r.get("reused") for r in rows)
    assert run_cli([*args, "--force"], capsys)[0] == 0
    assert Store(db).count() == 2 * n
    # a row made by another runtime version is not reused: the device's runtime changed
    st = Store(db)
    st.db.execute("UPDATE rows SET row_json = json_set(row_json, '$.runtime_version', '0.0.1') "
                  "WHERE variant = 'gru/onnx-fp32'")
    code, out, _ = run_cli(args, capsys)
    assert code == 0 and "2 row(s) reused from the store" in out
    assert Store(db).count() == 2 * n + 1
    # another --runs changes the numbers: every row is measured again, none reused
    other = [a if a != "20" else "21" for a in args]
    code, out, _ = run_cli(other, capsys)
    assert code == 0 and "reused" not in out
    assert Store(db).count() == 3 * n + 1
    rows = json.loads((tmp_path / "o" / "results.json").read_text())
    assert not any(r.get("reused") for r in rows)
    assert all(r["latency_ms"]["count"] >= 21 for r in rows)


def test_new_calibration_file_requantizes(tmp_path, capsys):
    """A bench re-run with another --calib must re-quantize, not reuse the old int8 file."""
    import numpy as np
    import torch

    from edgernn.model.checkpoint import save
    from tests.conftest import run_cli

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8 * 3, 2))
    path = tmp_path / "lin.pt"
    save(model, path, example_input=torch.zeros(1, 8, 3), task="classify")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8, 3)).astype(np.float32)
    np.savez(tmp_path / "eval.npz", x=x, y=(x.sum(axis=(1, 2)) > 0).astype(np.int64))
    np.savez(tmp_path / "cal_a.npz", x=x[:20])  # x only: calibration needs no labels
    np.savez(tmp_path / "cal_b.npz", x=x[20:] * 50)  # another range: other int8 scales
    db = tmp_path / "c.db"
    args = ["bench", path, "--data", tmp_path / "eval.npz", "--out", tmp_path / "o", "--db", db,
            "--format", "tflite-litert", "--quantize", "int8", *FAST]
    shas = []
    for cal in ("cal_a", "cal_b"):
        code, out, err = run_cli([*args, "--calib", tmp_path / f"{cal}.npz"], capsys)
        assert code == 0, err
        art = next(a for a in json.loads((tmp_path / "o" / "lin" / "manifest.json").read_text())[
            "artifacts"] if a["quantization"] == "int8")
        assert f"{cal}.npz" in art["calibration"] and "20 of 20 samples" in art["calibration"]
        shas.append(art["sha256"])
        rows = json.loads((tmp_path / "o" / "results.json").read_text())
        assert not any(r.get("reused") for r in rows if r["quantization"] == "int8")
    assert shas[0] != shas[1]  # re-quantized with the new data


def test_two_benches_at_once_lose_no_rows(weather_models, tmp_path):
    db = str(tmp_path / "shared.db")
    jobs = []
    for name in ("lstm", "gru"):
        jobs.append(["bench", str(weather_models[name]), "--data", str(weather_models["eval"]),
                     "--out", str(tmp_path / name), "--db", db, "--format", "onnx",
                     "--quantize", "dynamic,fp16", *FAST])
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        codes = pool.map(_bench_into, jobs)
    assert codes == [0, 0]
    rows = Store(db).rows()
    # per model: torch-fp32, torch-int8-dynamic, onnx-fp32, onnx-int8-dynamic, onnx-int8-scan,
    # onnx-int8-weight-only, onnx-fp16 (no Conv: no int8-dynamic-fp32conv row; all-int8 within
    # the default accuracy budget: no int8-mixed row)
    assert len(rows) == 14
    assert {r["model"] for r in rows} == {"lstm", "gru"}


def test_select_cli_exit_codes(weather_models, tmp_path, capsys):
    from tests.conftest import run_cli

    db = tmp_path / "s.db"
    assert run_cli(["bench", weather_models["lstm"], "--data", weather_models["eval"], "--out",
                    tmp_path / "o", "--db", db, "--format", "onnx", *FAST], capsys)[0] == 0
    code, out, _ = run_cli(["select", "--db", db, "--json", tmp_path / "sel.json"], capsys)
    assert code == 0 and "PICK" in out and "Pick: lstm/" in out
    sel = json.loads((tmp_path / "sel.json").read_text())
    rows = {r["variant"]: r for r in Store(db).rows()}
    picked = rows[sel["pick"]["variant"]]
    assert sel["pick"]["latency_ms"] == pytest.approx(picked["latency_ms"]["p50"])
    code, _, err = run_cli(["select", "--db", db, "--max-size-mb", "0.000001"], capsys)
    assert code == 1 and "Nothing meets the budget" in err and "Traceback" not in err
