"""edgernn sweep on a real local Ray cluster (head + one worker process): two users' models x
every variant x this host and two emulated-Pi "devices" (two sshd ports on one emulated arm64
root: a STAND-IN for two boards), into a real PostgreSQL and into SQLite.

Exclusive device use is checked from the rows' own [start, end] stamps of every measurement;
the kill test SIGKILLs the Ray worker process that is measuring on a Pi device."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from edgernn.convert.quantize.base import NOT_RELEVANT
from tests.conftest import cli
from tests.step_models import StepGRU
from tests.user_models import ConvFrontLSTM, GRUClassifier

ray = pytest.importorskip("ray", reason="the lab extra (ray) is not installed")
psycopg = pytest.importorskip("psycopg", reason="the lab extra (psycopg) is not installed")

REPO = Path(__file__).resolve().parent.parent
PI_SCRIPT = REPO / "scripts" / "emulated_pi.sh"
PG_SCRIPT = REPO / "scripts" / "postgres.sh"
PI_DIR = Path(os.environ.get("EDGERNN_PI_DIR", "/var/tmp/edgernn-pi"))
PI_PORTS = (22022, 22023)
BENCH = {"runs": 20, "min_seconds": 0.05, "warmup": 2, "trials": 1, "threads": 1}
EDGERNN = [sys.executable, "-m", "edgernn.cli"]
RAY = str(Path(sys.executable).parent / "ray")  # the venv's ray CLI


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pi_pair() -> list[dict]:
    """The emulated Pi's sshd on two ports: two 'devices' (one emulated root behind both)."""
    ports = [a for p in PI_PORTS for a in ("--port", str(p))]
    for step in (["build"], ["start", *ports]):
        proc = subprocess.run([str(PI_SCRIPT), *step], capture_output=True, text=True)
        if proc.returncode == 77:
            pytest.skip(f"EMULATED PI UNAVAILABLE, sweep on devices untested: {proc.stderr.strip()}")
        assert proc.returncode == 0, proc.stderr[-2000:]
    spec = yaml.safe_load((PI_DIR / "state" / "rpi-emulated.yaml").read_text())
    yield [{"id": f"pi-{chr(97 + i)}", "port": p} for i, p in enumerate(PI_PORTS)], spec
    subprocess.run([str(PI_SCRIPT), "start"], capture_output=True)  # back to the one port


@pytest.fixture(scope="module")
def postgres():
    proc = subprocess.run([str(PG_SCRIPT), "start"], capture_output=True, text=True)
    if proc.returncode == 3:
        pytest.skip(f"POSTGRESQL UNAVAILABLE: {proc.stdout.strip()} {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    url = subprocess.run([str(PG_SCRIPT), "url"], capture_output=True, text=True,
                         check=True).stdout.strip()
    dbname = f"sweep_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {dbname}")
        c.execute(f"CREATE DATABASE {dbname}")
    yield url.rsplit("/", 1)[0] + "/" + dbname
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, pi_pair) -> dict:
    """Two users' models (plain torch: a scripted Conv1d+LSTM and a traced GRU), their data,
    a target group of two emulated Pis and a one-device x86 group, and the sweep file."""
    d = tmp_path_factory.mktemp("lab")
    torch.manual_seed(0)
    torch.jit.script(ConvFrontLSTM(features=4, channels=8, hidden=16, classes=3)).save(
        str(d / "conv_lstm.pt"))
    gru = GRUClassifier(features=4, hidden=16, classes=3).eval()
    torch.jit.trace(gru, torch.zeros(1, 10, 4)).save(str(d / "gru_cls.pt"))
    rng = np.random.default_rng(0)
    np.savez(d / "eval.npz", x=rng.normal(size=(24, 10, 4)).astype(np.float32),
             y=rng.integers(0, 3, size=24))
    devices, spec = pi_pair
    tdir = d / "targets"
    tdir.mkdir()
    group = {k: v for k, v in spec.items() if k not in ("port", "aliases")}
    group.update(name="pi-lab", devices=devices)
    (tdir / "pi-lab.yaml").write_text(yaml.safe_dump(group))
    # int8_saturates: false (an x86 box with VNNI, like the Pis' ARM cores): both groups ask for
    # the same files and share one export, whatever this host's CPU (a group that needs 7-bit
    # int8 weights gets its own export: test_inventory checks the key)
    (tdir / "x86-lab.yaml").write_text(yaml.safe_dump({
        "name": "x86-lab", "runner": "local", "formats": ["onnx", "tflite"],
        "runtimes": {"onnx": "onnxruntime", "tflite": "litert"},
        "quantize": ["dynamic", "fp16", "int8"], "threads": 1, "int8_saturates": False}))
    shape = {"input_shape": "batch=1,seq=10,4", "task": "classify"}
    sweep = {"models": [{"path": "conv_lstm.pt", **shape}, {"path": "gru_cls.pt", **shape}],
             "data": "eval.npz", "targets": ["x86-lab", "pi-lab"], "bench": BENCH,
             # one TFLite route (the fused Keras one) of the four: what is tested here is the
             # sweep's scheduling, not the formats, and each route costs a TF conversion per model
             "formats": ["onnx", "tflite-keras"],
             "artifacts": "artifacts"}
    (d / "sweep.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
    env = {**os.environ, "EDGERNN_TARGETS": str(tdir), "PYTHONUNBUFFERED": "1"}
    return {"dir": d, "sweep": d / "sweep.yaml", "env": env, "devices": [x["id"] for x in devices]}


@pytest.fixture(scope="module")
def cluster(lab) -> str:
    """A real local Ray cluster: a head and one worker node, separate processes; the head
    declares the devices as custom resources of capacity 1."""
    from edgernn.runners.inventory import ray_resource

    port = free_port()
    res = {ray_resource(i): 1 for i in (*lab["devices"], "x86-lab")}
    common = ["--num-cpus", "1", "--disable-usage-stats", "--object-store-memory", str(2**28)]
    env = cluster_env(lab)
    subprocess.run([RAY, "stop", "--force"], capture_output=True, env=env)
    head = subprocess.run([RAY, "start", "--head", "--port", str(port), "--include-dashboard",
                           "false", "--resources", json.dumps(res), *common],
                          capture_output=True, text=True, env=env)
    assert head.returncode == 0, head.stderr[-2000:]
    worker = subprocess.run([RAY, "start", "--address", f"127.0.0.1:{port}", *common],
                            capture_output=True, text=True, env=env)
    assert worker.returncode == 0, worker.stderr[-2000:]
    yield f"127.0.0.1:{port}"
    subprocess.run([RAY, "stop", "--force"], capture_output=True, env=env)


def cluster_env(lab: dict) -> dict:
    """The cluster's head, worker node and the sweep's driver share the session's Ray token
    (conftest: ``testbeds.ray_token``, never ~/.ray)."""
    assert lab["env"].get("RAY_AUTH_TOKEN_PATH"), "conftest sets the session's Ray token"
    return lab["env"]


def pg_rows(url: str) -> list[dict]:
    """Every stored row, read with psycopg directly ([] before the sweep made the table)."""
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as c:
        try:
            found = c.execute("SELECT id, row_json FROM rows ORDER BY id").fetchall()
        except psycopg.errors.UndefinedTable:
            return []
        return [dict(json.loads(js), _id=i) for i, js in found]


def sqlite_rows(path: Path) -> list[dict]:
    """Every stored row, read with sqlite3 directly ([] before the sweep made the table)."""
    if not path.exists():
        return []
    with sqlite3.connect(path, timeout=30) as c:  # wait out the sweep's writes, not []
        try:
            found = c.execute("SELECT id, row_json FROM rows ORDER BY id").fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" not in str(e):
                raise
            return []
        return [dict(json.loads(js), _id=i) for i, js in found]


def assert_one_task_per_device(rows: list[dict]) -> dict[str, int]:
    """No two measurements on one device overlap in time (from the rows' own stamps);
    returns how many measurements each device made."""
    uses: dict[str, list[tuple[datetime, datetime, str]]] = {}
    for r in rows:
        if r.get("device_id") == "host":  # this host's PyTorch rows: not a leased device
            continue
        for a, b in r.get("device_use") or []:
            uses.setdefault(r["device_id"], []).append(
                (datetime.fromisoformat(a), datetime.fromisoformat(b), r["variant"]))
    for dev, spans in uses.items():
        spans.sort()
        for (_a0, a1, va), (b0, _b1, vb) in zip(spans, spans[1:], strict=False):
            assert b0 >= a1, f"{dev} ran {vb} from {b0} while {va} ran until {a1}"
    return {d: len(s) for d, s in uses.items()}


def expected_variants(lab_dir: Path) -> set[tuple[str, str]]:
    """(model/variant, target) every device group must have, from the export manifests."""
    want = set()
    for man in (lab_dir / "artifacts").glob("*/*/manifest.json"):
        m = json.loads(man.read_text())
        name = man.parent.name
        for a in m["artifacts"]:
            if a.get("status") != NOT_RELEVANT:
                want |= {(f"{name}/{a['variant']}", t) for t in ("x86-lab", "pi-lab")}
    return want


def test_sweep_on_a_ray_cluster_into_postgres_survives_a_killed_worker(lab, cluster, postgres):
    cmd = [*EDGERNN, "sweep", str(lab["sweep"]), "--address", cluster, "--db", postgres]
    proc = subprocess.Popen(cmd, env=cluster_env(lab), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # wait for a measurement on a Pi device, then SIGKILL the Ray worker process running it
    killed, deadline = None, time.monotonic() + 900
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        busy = [r for r in pg_rows(postgres) if r.get("device_id") in lab["devices"]]
        if len(busy) >= 2:  # some Pi rows are finished: kill the next measurement midway
            pids = subprocess.run(["pgrep", "-f", "ray::edgernn_measure"], capture_output=True,
                                  text=True).stdout.split()
            if pids:
                before = {r["_id"]: r for r in pg_rows(postgres)}
                os.kill(int(pids[0]), signal.SIGKILL)
                killed = int(pids[0])
                break
        time.sleep(0.5)
    out, err = proc.communicate(timeout=1800)
    assert killed is not None, f"no measuring worker was found to kill: {err[-2000:]}"
    assert proc.returncode == 1, (out[-3000:], err[-3000:])
    assert "task(s) failed" in err and "run the same command again" in err
    after = pg_rows(postgres)
    kept = {r["_id"]: r for r in after}
    for rid, r in before.items():  # no finished row was lost or changed by the kill
        if r["status"] == "ok":
            assert rid in kept and kept[rid]["status"] == "ok"
    crashed = [r for r in after if r["status"] == "run failed" and "Worker" in (r.get("reason") or "")]
    assert len(crashed) == 1, [(r["variant"], r["reason"]) for r in after if r["status"] != "ok"]

    # the re-run measures only what is missing
    n_before = len(after)
    rerun = subprocess.run(cmd, env=cluster_env(lab), capture_output=True, text=True,
                           timeout=1800)
    assert rerun.returncode == 0, (rerun.stdout[-3000:], rerun.stderr[-3000:])
    final = pg_rows(postgres)
    new = final[n_before:]
    assert {(r["variant"], r["target"]) for r in new if r["status"] == "ok"} >= {
        (crashed[0]["variant"], crashed[0]["target"])}
    remeasured_ok = [r for r in new if r.get("device_use")]
    assert len(remeasured_ok) == 1, [r["variant"] for r in remeasured_ok]

    done = {(r["variant"], r["target"]) for r in final
            if r["status"] in ("ok", "accuracy collapsed", "skipped", "export failed")}
    missing = expected_variants(lab["dir"]) - done
    assert not missing, sorted(missing)
    per_device = assert_one_task_per_device(final)
    assert set(lab["devices"]) <= set(per_device), per_device  # both boards got work
    assert min(per_device[d] for d in lab["devices"]) >= 3, per_device
    arm = {r["device"]["machine"] for r in final
           if r.get("device_id") in lab["devices"] and r.get("device")}
    assert arm == {"aarch64"}, arm  # the Pi rows ran in the emulated arm64 root


def test_sweep_into_sqlite_with_ray_started_here_stops_on_ctrl_c_and_resumes(lab, tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("EDGERNN_TARGETS", lab["env"]["EDGERNN_TARGETS"])
    db = tmp_path / "lab.db"
    cmd = [*EDGERNN, "sweep", str(lab["sweep"]), "--db", str(db), "--cpus", "2",
           "--out", str(tmp_path / "cut")]
    proc = subprocess.Popen(cmd, env=lab["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 900
    while proc.poll() is None and time.monotonic() < deadline:
        if sum(1 for r in sqlite_rows(db) if r.get("device_use")) >= 5:
            break
        time.sleep(0.25)
    assert proc.poll() is None, "the sweep finished before it could be interrupted"
    before = {r["_id"]: r["status"] for r in sqlite_rows(db)}
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out[-2000:], err[-2000:])
    assert "interrupted; finished rows were kept" in err
    after = {r["_id"]: r["status"] for r in sqlite_rows(db)}
    assert all(after.get(i) == st for i, st in before.items())  # nothing finished was lost
    assert len(after) < len(expected_variants(lab["dir"])) + 4  # it did stop early
    # the rows the driver had received are in results.json too, each one a stored row
    cut = json.loads((tmp_path / "cut" / "results.json").read_text())
    stored = {(r["variant"], r.get("device_id"), r["timestamp"]) for r in sqlite_rows(db)}
    got = [(r["variant"], r.get("device_id"), r["timestamp"]) for r in cut
           if r.get("device_use")]
    assert got and set(got) <= stored, (got, stored)

    code, out, err = cli(["sweep", lab["sweep"], "--db", db, "--cpus", "2"])
    assert code == 0, err[-3000:]
    rows = sqlite_rows(db)
    done = {(r["variant"], r["target"]) for r in rows
            if r["status"] in ("ok", "accuracy collapsed", "skipped", "export failed")}
    assert not expected_variants(lab["dir"]) - done
    per_device = assert_one_task_per_device(rows)
    assert set(lab["devices"]) <= set(per_device)
    # each variant measured once on its group, but for the ones the Ctrl-C cut short
    measured = [(r["variant"], r["target"]) for r in rows if r.get("device_use")
                and r["status"] == "ok" and r["device_id"] != "host"]
    assert len(measured) == len(set(measured)), sorted(measured)
    # this host's rows say it was busy with the sweep's other work; the Pis' do not
    for r in rows:
        if r.get("device_use") and r["status"] == "ok":
            shared = any("also ran the sweep's other tasks" in n for n in r["notes"])
            assert shared == (r["device_id"] == "x86-lab"), (r["variant"], r["device_id"])

    # everything is stored now: a third run hands each (model, group) its stored variants in
    # ONE task per device instead of one per variant, and stores nothing new
    code, out, err = cli(["sweep", lab["sweep"], "--db", db, "--cpus", "2"])
    assert code == 0, err[-3000:]
    assert len(sqlite_rows(db)) == len(rows)
    per_variant = re.findall(r"^\[\d+/\d+\] (?!\(conversions\))\S+: [^:]+/\S+: ", err, re.M)
    assert not per_variant, per_variant[:5]
    batches = re.findall(r"^\[\d+/\d+\] (\S+): (\w+): (\d+) stored variants: (\d+) reused, "
                         r"0 measured again", err, re.M)
    assert len(batches) == 4, err[-3000:]  # 2 models x 2 groups
    listed = {(r["variant"], r["target"]) for r in rows
              if r["variant"].split("/")[1] not in ("torch-fp32", "torch-int8-dynamic")}
    assert sum(int(n) for *_, n in batches) == len(listed)
    assert all(a == b for *_, a, b in batches)


def test_a_dead_board_leaves_the_rotation_and_the_other_measures_its_variants(lab, tmp_path,
                                                                             monkeypatch):
    """One board of a group is down (nothing listens on its port): its measurements fail, the
    sweep asks it for its facts, retires it, and the live board measures every variant. The
    second model is a user's streaming step model (frame and state in, logits and new state
    out, scripted), read with the sweep file's ``inputs``."""
    torch.manual_seed(3)
    step = StepGRU(features=4, hidden=16).eval()
    torch.jit.script(step).save(str(tmp_path / "gru_step.pt"))
    spec = yaml.safe_load((lab["dir"] / "targets" / "pi-lab.yaml").read_text())
    spec.update(name="pi-half", devices=[{"id": "pi-live", "port": PI_PORTS[0]},
                                         {"id": "pi-dead", "port": free_port()}])
    tdir = tmp_path / "targets"
    tdir.mkdir()
    (tdir / "pi-half.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("EDGERNN_TARGETS", str(tdir))
    sweep = tmp_path / "half.yaml"
    sweep.write_text(yaml.safe_dump({
        "models": [{"path": str(lab["dir"] / "gru_cls.pt"), "input_shape": "batch=1,seq=10,4",
                    "task": "classify"},
                   {"path": str(tmp_path / "gru_step.pt"), "task": "classify",
                    "inputs": ["x:batch=1,4", "h:1,batch=1,16"]}],
        "data": str(lab["dir"] / "eval.npz"), "targets": ["pi-half"], "formats": ["onnx"],
        "quantize": ["dynamic", "fp16"], "bench": BENCH, "artifacts": str(tmp_path / "art")}))
    db = tmp_path / "half.db"
    code, out, err = cli(["sweep", sweep, "--db", db, "--cpus", "2"])
    assert code == 0, err[-3000:]
    assert "device pi-dead left the rotation" in out
    rows = sqlite_rows(db)
    dead = [r for r in rows if r.get("device_id") == "pi-dead"]
    assert dead and all(r["status"] == "run failed" for r in dead), dead
    want = set()
    for name in ("gru_cls", "gru_step"):
        man = json.loads(next((tmp_path / "art").glob(f"*/{name}/manifest.json")).read_text())
        want |= {f"{name}/{a['variant']}" for a in man["artifacts"]
                 if a["status"] == "ok"}  # onnx fp32, int8-dynamic, (int8-scan,) fp16
    live_ok = {r["variant"] for r in rows if r.get("device_id") == "pi-live" and r["status"] == "ok"}
    assert {"gru_cls/onnx-fp32", "gru_step/onnx-fp32"} <= want <= live_ok, (want, live_ok)
    # the step model chained frame by frame on the (emulated) board scores what torch does
    ev = np.load(lab["dir"] / "eval.npz")
    with torch.no_grad():
        hits = []
        for seq, label in zip(ev["x"], ev["y"], strict=True):
            h = torch.zeros(1, 1, 16)
            for frame in seq:
                logits, h = step(torch.from_numpy(frame[None]), h)
            hits.append(int(logits.argmax()) == int(label))
    on_board = next(r for r in rows if r["variant"] == "gru_step/onnx-fp32"
                    and r.get("device_id") == "pi-live" and r["status"] == "ok")
    assert on_board["metric"] == "accuracy"
    assert on_board["value"] == pytest.approx(np.mean(hits)), on_board["metrics"]
    assert {r["variant"] for r in dead} <= live_ok  # what failed on the dead board was redone
