"""Issue 22: the verdict a bench ends with, select and report on a mixed store (step and
whole-sequence models, several evaluation files), the select filters and tables that fit."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from rich.console import Console

from edgernn.results.selection import Budget, select
from edgernn.results.store import Store
from edgernn.results.table import bench_table, manifest_table
from edgernn.results.verdict import verdict, verdict_block
from tests.conftest import cli

STEP_SIG = "x[batch=1,8] float32, h[1,batch=1,12] float32 (state) -> y[batch=1,3], h_out (state)"
WHOLE_SIG = "input[batch=1,seq=50,8] float32 -> output[batch=1,3] float32"


def bits(correct: list[bool]) -> dict:
    """A per-sample correctness record, packed by hand as the probe stores it."""
    raw = np.packbits(np.array(correct, dtype=np.uint8)).tobytes()
    return {"kind": "correct", "n": len(correct), "bits": base64.b64encode(raw).decode()}


def row(model, variant, lat, size_kb, correct, fmt="onnx", data="d1", sig=WHOLE_SIG,
        status="ok", target="x86", spread=0.0):
    acc = sum(correct) / len(correct) if correct else None
    return {"model": model, "model_sha256": f"sha-{model}", "variant": f"{model}/{variant}",
            "target": target, "status": status, "runtime": fmt + "rt", "runtime_version": "1",
            "format": fmt, "quantization": variant.split("-", 1)[-1],
            "latency_ms": None if lat is None else {"p50": lat, "p90": lat, "p99": lat * 1.2,
                                                    "spread": spread, "trials": 3},
            "size_bytes": int(size_kb * 1000), "metric": "accuracy",
            "metrics": {"accuracy": acc} if correct else None, "value": acc,
            "per_sample": bits(correct) if correct else None,
            "eval_samples": len(correct) if correct else None, "signature": sig,
            "data_sha256": data, "reason": None, "notes": [],
            "timestamp": "2026-01-01T00:00:00+00:00"}


RIGHT20 = [True] * 18 + [False] * 2


def mixed_rows() -> list[dict]:
    """A whole-sequence model (50-step calls, data d1) and a step model (one step per call,
    data d2): the step model is 'faster' and 'more accurate' only because it is another job."""
    return [
        row("whole", "torch-fp32", 0.90, 300, RIGHT20, fmt="torch"),
        row("whole", "onnx-fp32", 0.068, 290, RIGHT20),
        row("whole", "onnx-int8-dynamic", 0.050, 80, RIGHT20),
        row("step", "torch-fp32", 0.05, 30, [True] * 20, fmt="torch", data="d2", sig=STEP_SIG),
        row("step", "tflite-litert-fp32", 0.006, 32, [True] * 20, fmt="tflite", data="d2",
            sig=STEP_SIG),
    ]


def _store(tmp_path, rows) -> str:
    db = tmp_path / "r.db"
    st = Store(db)
    for r in rows:
        st.add({**r, "requested_threads": 1, "settings_sha256": "s"})
    return str(db)


def test_mixed_store_select_ranks_step_and_whole_models_apart(tmp_path):
    db = _store(tmp_path, mixed_rows())
    code, out, err = cli(["select", "--db", db, "--target", "x86", "--json", tmp_path / "s.json"])
    assert code == 0, err
    sel = json.loads((tmp_path / "s.json").read_text())
    # by hand: among whole-sequence files, onnx-int8-dynamic is fastest (0.050 vs 0.068 ms)
    # and as accurate (18/20 both); the step model's 0.006 ms per step is another group
    assert sel["pick"]["variant"] == "whole/onnx-int8-dynamic"
    picks = [g["pick"]["variant"] for g in sel["groups"]]
    assert picks == ["whole/onnx-int8-dynamic", "step/tflite-litert-fp32"]
    for g in sel["groups"]:  # no group holds both models
        assert len({c["variant"].split("/")[0] for c in g["candidates"]}) == 1
    assert "2 groups, ranked apart" in out
    # rows just benched carry per-sample records: nothing is "not tested"
    assert "Not tested" not in out


def test_mixed_report_plots_one_group_per_pareto_plot(tmp_path):
    from edgernn.results.report import build

    sels, figs = build(mixed_rows(), Budget())
    assert [f.name for f in figs if f.name.startswith("pareto")] == ["pareto-x86", "pareto-x86-2"]
    for sel in sels.values():
        assert len({c.row["model"] for c in sel.candidates}) == 1
        assert not any("Not tested" in line for line in sel.explanation)


def test_report_md_shows_no_size_for_skipped_rows(tmp_path):
    from edgernn.results.report import write_report

    rows = [*mixed_rows()[:3], row("whole", "onnx-int8", None, 0, [], status="skipped")]
    rows[-1].update(size_bytes=None, reason="not offered")
    page, md = write_report(rows, tmp_path, Budget())
    line = next(x for x in md.read_text().splitlines() if x.startswith("| whole/onnx-int8 |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[4] == "-"  # size kB: nothing measured, not 0.0
    text = md.read_text()  # the answer first
    assert text.index("## Verdict") < text.index("## Selection for")
    assert "whole on x86: ship onnx-int8-dynamic" in text
    html = page.read_text()  # the long lists folded
    assert html.index("id='verdict'") < html.index("Selection for")
    assert "<details><summary>" in html and "Not a candidate: whole/onnx-int8" in \
        html.split("<details>", 1)[1]


def test_closest_names_the_variant_nearest_the_budget():
    rows = [row("m", "torch-fp32", 0.901, 300, RIGHT20, fmt="torch"),
            row("m", "onnx-int8-dynamic", 0.090, 80, RIGHT20),  # listed first: the old pick
            row("m", "onnx-fp32", 0.068, 290, RIGHT20)]
    for formats in (None, ("torch", "onnx")):
        sel = select(rows, Budget(max_latency_ms=0.05), formats=formats)
        assert sel.pick is None
        # by hand: 0.068 ms is 36% over 0.05 ms, 0.090 ms 80%, 0.901 ms 1702%
        assert sel.explanation[1].startswith("Closest: m/onnx-fp32 fails latency p50 0.068 ms")


def test_failed_select_says_its_message_once(tmp_path):
    db = _store(tmp_path, mixed_rows()[:3])
    code, out, err = cli(["select", "--db", db, "--target", "x86", "--max-latency-ms", "0.01"])
    assert code == 1
    assert (out + err).count("Nothing meets the budget") == 1
    assert (out + err).count("Closest: whole/onnx-int8-dynamic") == 1


def test_select_format_filter_and_size_preference_count_only_files_to_ship(tmp_path):
    rows = [row("m", "torch-fp32", 0.9, 300, RIGHT20, fmt="torch"),
            row("m", "torch-int8-dynamic", 0.8, 50, RIGHT20, fmt="torch"),  # a state_dict
            row("m", "onnx-fp32", 0.07, 290, RIGHT20),
            row("m", "onnx-int8-dynamic", 0.06, 70, RIGHT20),
            row("m", "tflite-litert-fp32", 0.09, 300, RIGHT20, fmt="tflite"),
            row("m", "tflite-keras-int8-dynamic", 0.12, 60, RIGHT20, fmt="tflite")]
    # by hand: the smallest shippable file is tflite-keras-int8-dynamic (60 kB), not the
    # 50 kB PyTorch state_dict
    assert select(rows, Budget(), prefer="size").pick.name == "m/tflite-keras-int8-dynamic"
    assert select(rows, Budget(), prefer="size", formats=("torch",)).pick.name == \
        "m/torch-int8-dynamic"
    db = _store(tmp_path, rows)
    code, out, err = cli(["select", "--db", db, "--target", "x86", "--format", "tflite",
                          "--json", tmp_path / "s.json"])
    assert code == 0, err
    sel = json.loads((tmp_path / "s.json").read_text())
    assert sel["pick"]["variant"] == "m/tflite-litert-fp32"  # fastest TFLite file, 0.09 ms
    assert {c["variant"] for c in sel["candidates"]} == {"m/tflite-litert-fp32",
                                                        "m/tflite-keras-int8-dynamic"}
    code, _, err = cli(["select", "--db", db, "--target", "x86", "--format", "tflite-keras"])
    assert code == 0 and "Pick: m/tflite-keras-int8-dynamic" in _, err
    code, _, err = cli(["select", "--db", db, "--target", "x86", "--format", "coreml"])
    assert code == 1 and err.count("\n") == 1 and "no usable format coreml variant on x86" in err


def test_verdict_per_model_and_contenders_with_significance():
    # by hand, 20 samples: lstm's pick right on 15; gru's pick right on 18; the samples where
    # they differ: gru right and lstm wrong on 4, lstm right and gru wrong on 1
    lstm_c = [True] * 14 + [True] + [False] * 4 + [False]
    gru_c = [True] * 14 + [False] + [True] * 4 + [False]
    assert sum(lstm_c) == 15 and sum(gru_c) == 18
    rows = [row("lstm", "torch-fp32", 0.20, 280, lstm_c, fmt="torch"),
            row("lstm", "onnx-fp32", 0.080, 277, lstm_c),
            row("lstm", "tflite-litert-fp32", 0.140, 321, lstm_c, fmt="tflite"),
            row("gru", "torch-fp32", 0.37, 212, gru_c, fmt="torch"),
            row("gru", "onnx-fp32", 0.056, 209, gru_c),
            row("gru", "tflite-litert-fp32", 0.130, 260, gru_c, fmt="tflite")]
    v = verdict(rows)
    text = "\n".join(verdict_block(v))
    assert "lstm on x86: ship onnx-fp32 (0.08 ms, 277.0 kB, accuracy 0.75" in text
    assert "gru on x86: ship onnx-fp32 (0.056 ms, 209.0 kB, accuracy 0.9" in text
    # runner-up of the lstm: 0.140 / 0.080 = 1.75x the latency, 321 / 277 = 1.16x the size
    assert "runner-up: tflite-litert-fp32: 1.75x the latency, 1.16x the size" in text
    assert "rule: fastest of 2 without a significant accuracy loss" in text
    # exact McNemar on 4 vs 1 discordant pairs: 2 * (C(5,0) + C(5,1)) / 2^5 = 0.375
    (c,) = v.contests
    assert c["winner"] == "gru/onnx-fp32" and c["other"] == "lstm/onnx-fp32"
    assert c["test"]["p_value"] == pytest.approx(0.375)
    assert c["latency_ratio"] == pytest.approx(0.056 / 0.080)
    assert "gru vs lstm on x86: ship gru/onnx-fp32: 0.70x the latency of lstm's pick" in text
    assert "+15 points" in text and "p=0.38: not significant" in text
    assert len(verdict_block(v)) <= 12 and max(len(x) for x in verdict_block(v)) <= 120


def test_verdict_of_a_mixed_bench_says_its_groups():
    emulated = [dict(r, target="rpi-emulated", emulated=True) for r in mixed_rows()[:3]]
    text = "\n".join(verdict_block(verdict(emulated)))
    assert "whole on rpi-emulated: ship onnx-int8-dynamic (" in text and "EMULATED" in text
    text = "\n".join(verdict_block(verdict(mixed_rows())))
    assert "EMULATED" not in text
    assert "step: ship" not in text and "step on x86: ship tflite-litert-fp32 (0.006 ms per step" \
        in text
    assert "whole on x86: ship onnx-int8-dynamic" in text
    assert " vs " not in text  # one model per group: no contest across kinds


def _render(renderable, width=120) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None).print(renderable)
    return buf.getvalue()


def _noisy_rows() -> list[dict]:
    """Two models, long variant names, 30 distinct notes and one failed export."""
    rows = []
    for m in ("lstm", "gru"):
        rows.append(row(m, "torch-fp32", 0.2, 280, RIGHT20, fmt="torch"))
        for i, v in enumerate(["tflite-keras-unrolled-int8-dynamic", "tflite-litert-int8",
                               "onnx-int8-dynamic", "onnx-fp16"]):
            r = row(m, v, 0.05 + i / 100, 100 + i, RIGHT20, fmt=v.split("-")[0])
            r["agreement"] = 0.99
            r["accuracy_drop"] = 0.001 * i
            r["notes"] = [f"note {m} {i} {k} " + "long words " * 12 for k in range(4)]
            rows.append(r)
        failed = row(m, "tflite-keras-int8", None, 0, [], fmt="tflite", status="export failed")
        failed.update(size_bytes=None, reason="the calibrator crashed " * 8)
        rows.append(failed)
    for r in rows:
        r["notes"] = [*r["notes"], "the same note on every row"]
    return rows


def test_bench_table_fits_120_columns_and_legend_is_short():
    rows = _noisy_rows()
    out = _render(bench_table(rows, title="target x86", width=120))
    lines = out.rstrip("\n").splitlines()
    assert max(len(x) for x in lines) <= 120
    header = next(x for x in lines if "variant" in x and "status" in x)
    left_out = next((x for x in lines if x.startswith("columns left out")), "")
    for col in ("drop", "agree", "p99"):  # shown, or named as left out: never cut silently
        assert re.search(rf"\b{col}\b", header) or col in left_out, (col, header, left_out)
    assert out.count("export failed") == 2  # the status word whole, never "export fail"
    legend_lines = [x for x in lines if re.match(r"^(\[\d+\]|every row:|\d+ more note)", x)]
    assert len(legend_lines) <= 9
    assert sum(x.startswith("every row: the same note on every row") for x in lines) == 1
    # by hand: 1 failure reason (both failed rows) + 32 distinct notes + 1 on every row:
    # 8 lines shown and 1 counting the other 26
    assert legend_lines[-1].startswith("26 more note(s)")
    full = _render(bench_table(rows, title="target x86", width=120, notes=True))
    for r in rows:
        for n in r["notes"]:
            assert n.strip() in full.replace("\n", " ").replace("  ", " ") or n[:60] in full


def test_results_cli_marks_dropped_columns(tmp_path):
    rows = _noisy_rows()
    for r in rows:  # step rows benched with --step-ms add an rtf column
        r["rtf"], r["step_ms"] = 0.01, 10.0
        r["model"] = "speaker_encoder_" + r["model"]
        r["variant"] = "speaker_encoder_" + r["variant"]
        if "gru" in r["model"]:  # a regression output: a 'near fp32' column beside 'agree'
            r.update(task="forecast", agreement_tol=0.01)
        else:
            r["task"] = "classify"
    db = _store(tmp_path, rows)
    code, out, err = cli(["results", "--db", db])
    assert code == 0, err
    lines = out.splitlines()
    assert max(len(x) for x in lines) <= 120
    header = next(x for x in lines if "variant" in x and "status" in x)
    left_out = next(x for x in lines if x.startswith("columns left out"))
    names = ["model", "variant", "status", "size", "p50 ms", "p99", "rtf", "vs torch",
             "accuracy", "drop", "agree", "near fp32"]
    shown = [c for c in names if re.search(rf"(^|\s){c}(\s|$)", header)]
    gone = left_out.split(": ", 1)[1].split(" (")[0].split(", ")
    assert sorted(shown + gone) == sorted(names), (shown, gone)
    assert "drop" in shown and "speaker_encoder_lstm" in out  # names are never cut
    assert "…" not in out.split("every row")[0]


def test_export_table_fits_and_keeps_notes_out_of_the_rows():
    arts = [{"variant": f"tflite-keras-unrolled-int8-dynamic-{i}", "status": "ok",
             "path": f"/some/long/folder/name/for/exports/model.tflite-keras.{i}.tflite",
             "size_bytes": 12345, "parity_max_abs_diff": 1e-6, "accepts_other_seq_len": True,
             "notes": [f"a long converter note {i} " + "with many words " * 10, "shared note"]}
            for i in range(6)]
    arts.append({"variant": "tflite-keras-int8", "status": "export failed", "path": "",
                 "error": "TFLite full-int8 calibration crashed with SIGSEGV " * 4, "notes": []})
    out = _render(manifest_table({"model": {"name": "m"}, "target": "x86", "artifacts": arts}))
    lines = out.rstrip("\n").splitlines()
    assert max(len(x) for x in lines) <= 120
    body = [x for x in lines if x.lstrip().startswith("tflite-keras")]
    assert len(body) == 7  # one line per variant: notes do not wrap rows
    assert "export failed" in out and "files in /some/long/folder/name/for/exports" in out


def test_tflite_chatter_on_fd2_is_dropped_and_errors_kept():
    import subprocess
    import sys

    code = ("import os\nfrom edgernn.probe.runtimes import quiet_native_stderr\n"
            "with quiet_native_stderr():\n"
            "    os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n')\n"
            "    os.write(2, b'a real native error\\n')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "XNNPACK" not in res.stderr and "a real native error" in res.stderr


def test_pareto_plot_names_few_points_and_no_budget_legend_without_a_budget():
    from edgernn.results.report import LABELLED, legend_entries, pareto_plot, plot_labels

    # 17 variants: latency i/100 ms, sizes falling, accuracy falling with i (all on the front
    # except those both slower and larger than another)
    rows = [row("m", "torch-fp32", 1.0, 300, RIGHT20, fmt="torch")]
    for i in range(17):
        correct = [True] * (20 - i % 3) + [False] * (i % 3)
        rows.append(row("m", f"onnx-v{i:02d}", 0.01 * (i + 1), 100 + (i * 37) % 90, correct))
    sel = select(rows, Budget())
    assert len(sel.candidates) == 17
    named, numbered = plot_labels(sel)
    assert len(named) <= LABELLED and named[0] is sel.pick
    assert all(c in sel.pareto for c in named)
    assert len(named) + len(numbered) == 17 and not set(map(id, named)) & set(map(id, numbered))
    labels = [label for _, label in legend_entries(sel, Budget())]
    assert "over budget" not in labels
    over = select(rows, Budget(max_latency_ms=0.05))
    assert "over budget" in [label for _, label in legend_entries(over, Budget(max_latency_ms=0.05))]
    assert len(pareto_plot("x86", sel, budget=Budget()).png) > 10_000
