"""Faults during a bench: crashes, Ctrl-C, SSH drops mid-transfer and mid-run, a full disk on
the device. Each must keep finished rows (JSON + store), mark the partial row failed with the
reason, remove remote temporary files, and let a re-run resume instead of starting over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from edgernn.results.store import Store
from tests.conftest import cli, count
from tests.faultproxy import FaultProxy

FAST = ["--runs", "10", "--min-seconds", "0", "--warmup", "1"]
REPO = Path(__file__).resolve().parent.parent


def wait_for_process(pattern: str, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run(["pgrep", "-f", pattern], capture_output=True).returncode == 0:
            return True
        time.sleep(0.3)
    return False


def rows_of(path: Path) -> dict[str, dict]:
    return {r["variant"]: r for r in json.loads(path.read_text())}


def test_local_runtime_segfault_is_a_failed_row_and_rerun_resumes(weather_models, tmp_path):
    db = tmp_path / "r.db"
    args = ["bench", weather_models["gru"], "--data", weather_models["eval"], "--out", tmp_path,
            "--db", db, "--format", "onnx", "--quantize", "fp16", "--runs", "10", "--warmup", "1"]
    result = {}
    th = threading.Thread(target=lambda: result.update(run=cli([*args, "--min-seconds", "5"])))
    th.start()
    # once the baseline row is written, the next probe to start is onnx-fp32's: crash it
    results = tmp_path / "results.json"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not (
            results.exists() and json.loads(results.read_text() or "[]")):
        time.sleep(0.2)
    assert wait_for_process("edgernn.probe .*job.json")
    subprocess.run(["pkill", "-SEGV", "-f", "edgernn.probe .*job.json"])
    count("faults injected (local segfault)")
    th.join(600)
    rows = rows_of(tmp_path / "results.json")
    crashed = [r for r in rows.values() if r["status"] == "run failed"]
    assert [r["variant"] for r in crashed] == ["gru/onnx-fp32"]
    assert "runtime crashed (SIGSEGV)" in crashed[0]["reason"]
    assert rows["gru/torch-fp32"]["status"] == rows["gru/onnx-fp16"]["status"] == "ok"
    kept = [r for r in rows.values() if r["status"] in ("ok", "skipped")]
    count("rows kept after faults", len(kept))
    n = Store(db).count()
    code, out, err = cli([*args, "--min-seconds", "5"])  # the same settings: rows are reusable
    assert code == 0, err
    assert f"{len(kept)} row(s) reused from the store" in out
    assert Store(db).count() == n + len(crashed)  # only the crashed ones were measured again


def test_ctrl_c_keeps_rows_marks_partial_and_resumes(weather_models, tmp_path):
    db = tmp_path / "r.db"
    args = [sys.executable, "-c", "from edgernn.cli import main; main()", "bench",
            str(weather_models["lstm"]), "--data", str(weather_models["eval"]), "--out",
            str(tmp_path), "--db", str(db), "--format", "onnx", "--quantize", "dynamic,fp16",
            "--runs", "10", "--warmup", "1"]
    # a shell that runs the suite in the background ignores SIGINT, and children inherit
    # that: give the bench the default disposition, as in a terminal
    proc = subprocess.Popen([*args, "--min-seconds", "4"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    results = tmp_path / "results.json"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # wait until two rows are finished
        if results.exists() and len(json.loads(results.read_text())) >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    count("faults injected (Ctrl-C)")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted; finished rows were kept" in err and "Traceback" not in err
    rows = rows_of(results)
    done = [r for r in rows.values() if r["status"] == "ok"]
    partial = [r for r in rows.values() if r["status"] == "run failed"]
    assert len(done) >= 2
    # each measurement takes >= 4/3 s and the bench was past two rows: one was mid-run
    assert [r["reason"] for r in partial] == ["interrupted (Ctrl-C) while measuring"]
    for r in done:  # their later timing trials never ran, and the row says so
        assert r["latency_ms"]["trials"] == 1
        assert any("interrupted after 1 of 3 trials" in n for n in r["notes"]), r["notes"]
    stored = {r["variant"]: r for r in Store(db).rows()}
    assert {r["variant"] for r in [*done, *partial]} <= set(stored)
    assert all(stored[r["variant"]]["latency_ms"]["trials"] == 1 for r in done)
    count("rows kept after faults", len(done))
    # a re-run with the same settings measures what is incomplete (every row here) ...
    out = subprocess.run([*args, "--min-seconds", "4"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "reused" not in out.stdout
    assert {r["status"] for r in rows_of(results).values()} == {"ok"}
    # ... and a third run finds every row complete in the store
    out = subprocess.run([*args, "--min-seconds", "4"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"{len(rows_of(results))} row(s) reused from the store" in out.stdout


# -- faults over SSH (the emulated Pi stand-in) ------------------------------------------------
from tests.test_ssh_runner import leftover_dirs, pi  # noqa: E402,F401  (fixture)


def proxied_target(pi, tmp_path: Path, proxy: FaultProxy, **changes) -> Path:  # noqa: F811
    spec = dict(pi["spec"])
    kh = tmp_path / "known_hosts_proxy"
    line = Path(spec["known_hosts"]).read_text().splitlines()[0]
    kh.write_text(line.replace(f"[127.0.0.1]:{spec['port']}", f"[127.0.0.1]:{proxy.port}") + "\n")
    spec.update(name="pi-proxied", port=proxy.port, known_hosts=str(kh), **changes)
    p = tmp_path / "proxied.yaml"
    p.write_text(yaml.safe_dump(spec))
    return p


@pytest.fixture
def proxy(pi):  # noqa: F811
    p = FaultProxy(pi["spec"]["port"])
    yield p
    p.close()


def test_ssh_drop_mid_run_fails_that_row_then_reconnects(pi, proxy, weather_models, tmp_path):  # noqa: F811
    before = leftover_dirs(pi)
    t = proxied_target(pi, tmp_path, proxy)
    result = {}
    th = threading.Thread(target=lambda: result.update(run=cli(
        ["bench", weather_models["gru"], "--data", weather_models["eval"], "--target", t,
         "--format", "onnx", "--quantize", "fp16", "--out", tmp_path, "--runs", "10",
         "--warmup", "1", "--min-seconds", "8"])))
    th.start()
    assert wait_for_process("bin/python3 /tmp/edgernn-[^ ]*/probe.zip")
    time.sleep(1)
    proxy.cut_now()
    count("faults injected (ssh drop mid-run)")
    th.join(600)
    code, _, err = result["run"]
    assert code == 0, err
    rows = rows_of(tmp_path / "results.json")
    first, second = rows["gru/onnx-fp32"], rows["gru/onnx-fp16"]
    assert first["status"] == "run failed" and "lost" in first["reason"]
    assert second["status"] == "ok"  # the runner reconnected for the next variant
    count("rows kept after faults", 2)
    time.sleep(1)
    assert leftover_dirs(pi) == before  # the dropped session's dir was removed too


def test_ssh_drop_mid_transfer(pi, proxy, tmp_path):  # noqa: F811
    import torch

    import edgernn
    from edgernn.data.datasets import load_dataset
    from edgernn.models.layers import parse_layers
    from edgernn.models.sequence import SequenceModel
    from edgernn.study.training import model_config

    before = leftover_dirs(pi)
    ds = load_dataset("weather")
    model = SequenceModel(model_config(ds, parse_layers("lstm:192")))  # a ~1 MB ONNX file
    m = edgernn.save(model, tmp_path / "big.pt", torch.zeros(1, 14, 4))
    import numpy as np

    ev = tmp_path / "ev.npz"
    np.savez(ev, x=ds.x_test[:20], y=ds.y_test[:20])
    t = proxied_target(pi, tmp_path, proxy)
    proxy.sent_up = 0
    proxy.cut_after = 400_000  # after the probe (~20 KB), inside the ~1 MB artifact upload
    code, _, err = cli(["bench", m, "--data", ev, "--target", t, "--format", "onnx",
                        "--quantize", "fp16", "--out", tmp_path, *FAST])
    count("faults injected (ssh drop mid-transfer)")
    assert code == 0, err
    rows = rows_of(tmp_path / "results.json")
    assert rows["big/onnx-fp32"]["status"] == "run failed"
    assert "lost while uploading big.onnx.fp32.onnx" in rows["big/onnx-fp32"]["reason"]
    assert rows["big/onnx-fp16"]["status"] == "ok"
    assert proxy.cuts >= 1
    count("rows kept after faults", 2)
    assert leftover_dirs(pi) == before


def test_device_disk_full(pi, weather_models, tmp_path):  # noqa: F811
    small = pi["root"] / "tmp" / "edgernn-small-disk"
    small.mkdir(exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(small)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs (not root?): disk-full fault untested")
    try:
        spec = {**pi["spec"], "name": "pi-small-disk", "remote_tmp": "/tmp/edgernn-small-disk"}
        t = tmp_path / "small.yaml"
        t.write_text(yaml.safe_dump(spec))
        code, _, err = cli(["bench", weather_models["lstm"], "--data", weather_models["eval"],
                            "--target", t, "--format", "onnx", "--quantize", "fp16",
                            "--out", tmp_path, *FAST])
        count("faults injected (device disk full)")
        rows = rows_of(tmp_path / "results.json")
        assert rows["lstm/torch-fp32"]["status"] == "ok"
        failed = [r for r in rows.values() if r["status"] == "run failed"]
        # the only device variants could not be uploaded: each row says why, and a bench
        # in which no variant is ok exits 1 with one line
        assert [r["variant"] for r in failed] == ["lstm/onnx-fp32", "lstm/onnx-fp16"]
        assert all("the device's disk is full" in r["reason"] for r in failed), failed
        assert code == 1 and "bench: no variant is ok (2 failed" in err
        assert len(err.strip().splitlines()) == 1
        assert list(small.iterdir()) == []  # nothing left behind
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)
