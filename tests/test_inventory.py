"""Target groups (devices:, hosts:, serials:, count:) expand into one device each, and
``targets check --all`` probes every device of the inventory in parallel. The SSH part runs
against the emulated arm64 Pi (scripts/emulated_pi.sh) with one sshd on two ports: two devices."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

import edgernn.runners.target
from edgernn.errors import EdgeRNNError, RunnerError
from edgernn.runners.inventory import devices, inventory, ray_resource
from edgernn.runners.target import load_target
from tests.conftest import cli

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "emulated_pi.sh"
PI_DIR = Path(os.environ.get("EDGERNN_PI_DIR", "/var/tmp/edgernn-pi"))
PORTS = (22022, 22023)
BASE = {"formats": ["onnx"], "runtimes": {"onnx": "onnxruntime"}}


@pytest.fixture(autouse=True)
def only_tmp_targets(monkeypatch, tmp_path):
    """The inventory is this test's directory only (not the bundled targets, not ~/.config)."""
    empty = tmp_path / "no-bundled"
    empty.mkdir()
    inv = tmp_path / "inv"
    inv.mkdir()
    monkeypatch.setattr(edgernn.runners.target, "REPO_TARGETS", empty)
    monkeypatch.setenv("EDGERNN_TARGETS", str(inv))
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return inv


def write(d: Path, fname: str, **doc) -> Path:
    p = d / f"{fname}.yaml"
    p.write_text(yaml.safe_dump({"name": fname, **BASE, **doc}))
    return p


# -- parsing ------------------------------------------------------------------------------------
def test_devices_list_applies_each_override(tmp_path):
    p = write(tmp_path, "pis", runner="ssh", user="pi", port=22, cpus=[3],
              devices=[{"id": "pi-a", "host": "10.0.0.3"},
                       {"host": "10.0.0.4", "port": 2222, "cpus": [1]}])
    got = [(d.id, d.target.name, d.target.device_id, dict(d.target.extra), d.target.cpus)
           for d in devices(load_target(str(p)))]
    assert got == [
        ("pi-a", "pis", "pi-a", {"user": "pi", "port": 22, "host": "10.0.0.3"}, [3]),
        ("pis@10.0.0.4:2222", "pis", "pis@10.0.0.4:2222",
         {"user": "pi", "port": 2222, "host": "10.0.0.4"}, [1]),
    ]


def test_hosts_and_serials_shorthands(tmp_path):
    p = write(tmp_path, "boards", runner="ssh", port=2200, hosts=["10.0.0.3", "10.0.0.4"])
    got = [(d.id, d.target.extra["host"], d.target.extra["port"]) for d in devices(load_target(str(p)))]
    assert got == [("boards@10.0.0.3:2200", "10.0.0.3", 2200), ("boards@10.0.0.4:2200", "10.0.0.4", 2200)]
    p = write(tmp_path, "phones", runner="adb", benchmark_model="bm", formats=["tflite"],
              runtimes={"tflite": "litert"}, serials=["emulator-5554", "R58M12ABCDE"])
    got = [(d.id, d.target.extra["serial"], d.target.extra["benchmark_model"])
           for d in devices(load_target(str(p)))]
    assert got == [("phones@emulator-5554", "emulator-5554", "bm"),
                   ("phones@R58M12ABCDE", "R58M12ABCDE", "bm")]


@pytest.mark.parametrize(("cpus", "want"), [
    ([4, 5, 6], [[4], [5], [6]]),     # enough ids: slot i pinned to cpus[i]
    ([0, 1], [[0, 1], [0, 1], [0, 1]]),  # fewer ids than slots: every slot shares them
    ([], [[], [], []]),
])
def test_local_count_makes_slots(tmp_path, cpus, want):
    p = write(tmp_path, "here", runner="local", count=3, cpus=cpus)
    got = [(d.id, d.target.cpus, d.target.name) for d in devices(load_target(str(p)))]
    assert got == [("here#0", want[0], "here"), ("here#1", want[1], "here"),
                   ("here#2", want[2], "here")]


def test_plain_target_is_one_device(tmp_path):
    ssh = write(tmp_path, "board", runner="ssh", host="pi.local")
    loc = write(tmp_path, "box", runner="local")
    tmpl = write(tmp_path, "tmpl", runner="ssh", setup="set host: to your board")
    assert [(d.id, d.target.device_id) for d in devices(load_target(str(ssh)))] == \
        [("board@pi.local:22", "board@pi.local:22")]
    assert [d.id for d in devices(load_target(str(loc)))] == ["box"]
    (d,) = devices(load_target(str(tmpl)))
    assert d.id == "tmpl" and d.target.unset == ["host"]


def test_group_target_itself_opens_no_runner(tmp_path):
    from edgernn.runners import get_runner

    p = write(tmp_path, "pair", runner="ssh", hosts=["10.0.0.3", "10.0.0.4"])
    with pytest.raises(RunnerError, match=r"group of 2 devices \(pair@10.0.0.3:22, pair@10.0.0.4:22\)"):
        get_runner(load_target(str(p)))


@pytest.mark.parametrize(("doc", "words"), [
    ({"runner": "ssh", "devices": [{"host": "a", "serial": "x"}]}, ["devices[0]", "'serial'"]),
    ({"runner": "ssh", "devices": [{"id": "x", "host": "a"}, {"id": "x", "host": "b"}]},
     ["same id 'x'"]),
    ({"runner": "ssh", "hosts": ["a", "a"]}, ["same id 'g@a:22'"]),
    ({"runner": "ssh", "devices": []}, ["'devices' is an empty list"]),
    ({"runner": "ssh", "hosts": []}, ["'hosts' is an empty list"]),
    ({"runner": "local", "count": 0}, ["'count' must be at least 1"]),
    ({"runner": "ssh", "host": "a", "count": 2}, ["'count'", "hosts: [...]"]),
    ({"runner": "adb", "benchmark_model": "bm", "count": 3}, ["'count'", "serials: [...]"]),
    ({"runner": "ssh", "hosts": ["a"], "devices": [{"host": "b"}]}, ["only one of", "devices", "hosts"]),
    ({"runner": "ssh", "host": "a", "hosts": ["b"]}, ["either 'host' or 'hosts'"]),
    ({"runner": "adb", "benchmark_model": "bm", "hosts": ["a"]}, ["'hosts' is for the ssh runner"]),
    ({"runner": "ssh", "devices": [{"id": "a", "host": "h"}, {"id": "b"}]}, ["device 'b' sets no 'host'"]),
    ({"runner": "ssh", "devices": [{"host": "h", "port": "22"}]}, ["devices[0].port must be an integer"]),
    ({"runner": "ssh", "devices": [{"id": "", "host": "h"}]}, ["devices[0].id must be a name"]),
    ({"runner": "ssh", "devices": ["h"]}, ["devices[0] must be a mapping"]),
    ({"runner": "local", "count": 2, "devices": [{"id": "a"}]}, ["either 'count' or 'devices'"]),
    ({"runner": "local", "devices": [{"cpus": [-1]}]}, ["devices[0].cpus must list CPU ids"]),
])
def test_group_errors_are_one_line_naming_the_file(tmp_path, doc, words):
    p = tmp_path / "g.yaml"
    p.write_text(yaml.safe_dump({"name": "g", **BASE, **doc}))
    with pytest.raises(EdgeRNNError) as e:
        devices(load_target(str(p)))
    msg = str(e.value)
    assert "\n" not in msg and str(p) in msg, msg
    for w in words:
        assert w in msg, msg


def test_ids_unique_across_the_inventory(only_tmp_targets):
    a = write(only_tmp_targets, "a", runner="ssh", devices=[{"id": "pi-1", "host": "h1"}])
    b = write(only_tmp_targets, "b", runner="ssh", devices=[{"id": "pi-1", "host": "h2"}])
    with pytest.raises(EdgeRNNError) as e:
        inventory()
    assert "'pi-1'" in str(e.value) and str(a) in str(e.value) and str(b) in str(e.value)
    b.write_text(b.read_text().replace("pi-1", "pi-2"))
    assert [d.id for e in inventory() for d in e.devices] == ["pi-1", "pi-2"]


def test_ray_resource_names():
    # hand-written: what Ray 2.60 accepts kept, ',' '_' '%' and non-ASCII escaped as %XX
    assert ray_resource("pi-a") == "device:pi-a"
    assert ray_resource("rpi@127.0.0.1:22022") == "device:rpi@127.0.0.1:22022"
    assert ray_resource("here#0") == "device:here#0"
    assert ray_resource("x_group_1") == "device:x%5Fgroup%5F1"
    assert ray_resource("a,b é") == "device:a%2Cb%20%C3%A9"
    assert ray_resource("a_") != ray_resource("a%5F")


def test_check_needs_a_name_or_all():
    code, _, err = cli(["targets", "check"])
    assert code == 1 and "NAME or --all" in err


# -- two emulated Pis (one sshd, two ports) -------------------------------------------------------
@pytest.fixture(scope="module")
def pi2() -> dict:
    started_here = subprocess.run([str(SCRIPT), "status"], capture_output=True).returncode != 0
    ports = [a for p in PORTS for a in ("--port", str(p))]
    for step in (["build"], ["start", *ports]):
        proc = subprocess.run([str(SCRIPT), *step], capture_output=True, text=True)
        if proc.returncode == 77:
            pytest.skip(f"EMULATED PI UNAVAILABLE, inventory over SSH untested: {proc.stderr.strip()}")
        assert proc.returncode == 0, proc.stderr[-2000:]
    spec = yaml.safe_load((PI_DIR / "state" / "rpi-emulated.yaml").read_text())
    yield {k: v for k, v in spec.items() if k not in ("name", "description", "port")}
    if started_here:
        subprocess.run([str(SCRIPT), "stop"], capture_output=True)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ports_are_two_reachable_devices(pi2, tmp_path):
    from edgernn.runners.ssh import SshRunner

    p = tmp_path / "pair.yaml"
    p.write_text(yaml.safe_dump({**pi2, "name": "pair", "devices": [{"port": q} for q in PORTS]}))
    seen = []
    for d in devices(load_target(str(p))):
        r = SshRunner(d.target)  # strict known_hosts: the script must list a key per port
        try:
            peer_port = r.client.get_transport().getpeername()[1]
            seen.append((d.id, peer_port, r.facts()["machine"]))
        finally:
            r.close()
    assert seen == [(f"pair@127.0.0.1:{q}", q, "aarch64") for q in PORTS]


def test_check_all_is_parallel_and_names_the_failed_device(pi2, only_tmp_targets, tmp_path):
    dead = closed_port()
    (only_tmp_targets / "pis.yaml").write_text(yaml.safe_dump({
        **pi2, "name": "pis", "devices": [{"id": "pi-a", "port": PORTS[0]},
                                          {"id": "pi-b", "port": PORTS[1]},
                                          {"id": "pi-dead", "port": dead}]}))
    write(only_tmp_targets, "template", runner="ssh", setup="set host: to your board")
    out_json = tmp_path / "check.json"
    code, out, err = cli(["targets", "check", "--all", "--json", out_json])
    assert code == 1, out + err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "1 of 3 devices failed" in lines[0] and "pi-dead" in lines[0], lines[0]
    assert f"cannot reach root@127.0.0.1:{dead}" in lines[0], lines[0]
    rows = {r["device"] or r["target"]: r for r in json.loads(out_json.read_text())["devices"]}
    assert set(rows) == {"pi-a", "pi-b", "pi-dead", "template"}
    assert rows["template"]["status"].startswith("no device: set host:") and not rows["template"]["failed"]
    assert rows["pi-dead"]["status"].startswith("unreachable:") and rows["pi-dead"]["failed"]
    a, b = rows["pi-a"], rows["pi-b"]
    for r in (a, b):
        assert (r["status"], r["arch"], r["failed"]) == ("ok", "aarch64", False), r
        assert r["runtimes"]["onnxruntime"], r
    # each check takes seconds under qemu: run one after the other they would not overlap
    overlap = min(a["end"], b["end"]) - max(a["start"], b["start"])
    assert overlap > 0.5 * min(a["end"] - a["start"], b["end"] - b["start"]), (a, b)
    assert max(len(ln) for ln in out.splitlines()) <= 120, out


def test_adb_devices_behind_one_server_all_get_their_own_answer(only_tmp_targets, tmp_path):
    """Four phones behind one (private, not yet running) adb server: each runner would start
    the server; started at once, all but one failed with 'could not be started'."""
    import shutil

    if shutil.which("adb") is None:
        pytest.skip("adb is not installed")
    port = closed_port()
    serials = ["s1", "s2", "s3", "s4"]
    write(only_tmp_targets, "phones", runner="adb", benchmark_model="bm", formats=["tflite"],
          runtimes={"tflite": "litert"}, adb_server=f"127.0.0.1:{port}", serials=serials)
    out_json = tmp_path / "check.json"
    try:
        code, out, err = cli(["targets", "check", "--all", "--json", out_json])
    finally:
        subprocess.run(["adb", "-P", str(port), "kill-server"], capture_output=True, timeout=30)
    assert code == 1 and "4 of 4 devices failed" in err, out + err
    rows = json.loads(out_json.read_text())["devices"]
    assert [(r["device"], r["status"].split(";")[0]) for r in rows] == [
        (f"phones@{s}", f"unreachable: Android device {s} not found (adb devices lists: none)")
        for s in serials]


def test_groups_share_an_export_unless_their_int8_arithmetic_differs(tmp_path):
    """An x86 group whose CPU saturates 8-bit int8 products gets files with 7-bit weights, so it
    cannot share a sweep's export directory with a group that takes 8-bit ones."""
    from edgernn.lab.sweep_file import ModelEntry
    from edgernn.lab.tasks import export_key

    (tmp_path / "m.pt").write_bytes(b"model")
    (tmp_path / "d.npz").write_bytes(b"data")
    keys = {}
    for name, sat in (("a", False), ("b", False), ("c", True)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({
            "name": name, "runner": "local", "formats": ["onnx"],
            "runtimes": {"onnx": "onnxruntime"}, "quantize": ["dynamic"],
            "int8_saturates": sat}))
        t = load_target(str(tmp_path / f"{name}.yaml"))
        assert t.seven_bit_weights() is sat
        keys[name] = export_key(ModelEntry(tmp_path / "m.pt"), tmp_path / "d.npz", t, {})
    assert keys["a"] == keys["b"] != keys["c"]
