"""Targets by name, alias or path: the generic rpi template, the android-emulator file, errors."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import edgernn
from edgernn.errors import EdgeRNNError
from edgernn.runners.target import REPO_TARGETS, load_target, target_listing
from tests.conftest import cli

REPO = Path(__file__).resolve().parent.parent
BUNDLED = ["android", "android-emulator", "android-standin", "rpi", "rpi-emulated", "rpi4",
           "rpi5", "x86"]


class TinyLSTM(nn.Module):
    """A user's LSTM classifier: 3 features, 6 hidden units, 2 classes."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(3, 6, batch_first=True)
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("targets")
    torch.manual_seed(0)
    model = edgernn.save(TinyLSTM(), d / "tiny.pt", torch.randn(1, 5, 3), task="classify",
                         num_classes=2)
    rng = np.random.default_rng(0)
    data = d / "tiny.npz"
    np.savez(data, x=rng.standard_normal((8, 5, 3)).astype(np.float32),
             y=rng.integers(0, 2, 8).astype(np.int64))
    return {"model": model, "data": data, "dir": d}


@pytest.fixture(autouse=True)
def bundled_targets_only(monkeypatch, tmp_path):
    """Resolve names against the bundled targets/ only (not the user's or cwd's files)."""
    monkeypatch.delenv("EDGERNN_TARGETS", raising=False)
    (tmp_path / "home").mkdir()  # adb keeps its key in ~/.android
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def error_lines(err: str) -> list[str]:
    return [ln for ln in err.strip().splitlines() if ln.strip()]


@pytest.mark.parametrize("name", ["rpi", "Raspberry-Pi"])
def test_export_to_generic_rpi_needs_no_device(tiny, name):
    out = tiny["dir"] / f"export-{name}"
    code, _, err = cli(["export", tiny["model"], "--target", name, "--format", "onnx",
                        "--quantize", "none", "--out", out])
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["target"] == "rpi"
    assert [a["status"] for a in manifest["artifacts"]] == ["ok"]


# what users type -> the bundled file it must open (a hand-written table, not the code's)
ALIASES = {
    "pi": "rpi", "raspberrypi": "rpi", "raspberry-pi": "rpi", "Raspberry_Pi": "rpi",
    "RaspberryPi": "rpi", "raspberry pi": "rpi", "arm64": "rpi", "AARCH64": "rpi",
    "RPI": "rpi", "rpi3": "rpi", "pi4": "rpi4", "RPi4": "rpi4", "raspberry-pi-5": "rpi5",
    "phone": "android", "android-phone": "android", "Android_Phone": "android",
    "emulator": "android-emulator", "AVD": "android-emulator", "x86_64": "x86", "local": "x86",
    "X86": "x86",
}


@pytest.mark.parametrize("typed, stem", sorted(ALIASES.items()))
def test_aliases_resolve_to_the_right_file(typed, stem):
    t = load_target(typed)
    assert t.path == REPO_TARGETS / f"{stem}.yaml"
    assert t.name == stem  # the canonical name is what manifests and rows record


def test_listing_shows_every_target_with_its_aliases():
    labels = {p.stem: label for label, p in target_listing()}
    assert sorted(labels) == BUNDLED
    for typed, stem in ALIASES.items():
        declared = yaml.safe_load((REPO_TARGETS / f"{stem}.yaml").read_text())["aliases"]
        if typed in declared:
            assert typed in labels[stem], labels[stem]
    code, out, err = cli(["targets"])
    assert code == 0, err
    rpi_line = next(ln for ln in out.splitlines() if ln.startswith("rpi "))
    assert "raspberrypi" in rpi_line and "aarch64" in rpi_line, rpi_line


def test_a_target_file_name_beats_an_alias_and_earlier_dirs_win(tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    local = {"runner": "local", "formats": ["onnx"], "runtimes": {"onnx": "onnxruntime"}}
    (mine / "pi.yaml").write_text(yaml.safe_dump({"name": "my-pi", **local}))
    (mine / "lab.yaml").write_text(yaml.safe_dump({"name": "lab", "aliases": ["phone"],
                                                   **local}))
    monkeypatch.setenv("EDGERNN_TARGETS", str(mine))
    assert load_target("pi").path == mine / "pi.yaml"
    assert load_target("phone").path == mine / "lab.yaml"
    assert load_target("raspberrypi").path == REPO_TARGETS / "rpi.yaml"


@pytest.mark.parametrize("typed, suggestion", [("andriod", "android"), ("rpi-emulatd", "rpi-emulated"),
                                               ("mars", None)])
def test_unknown_target_is_one_line_with_names_and_closest(tiny, typed, suggestion):
    code, out, err = cli(["export", tiny["model"], "--target", typed, "--format", "onnx",
                          "--out", tiny["dir"] / "never"])
    assert code == 1, out + err
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert f"unknown target '{typed}'" in lines[0]
    for name in BUNDLED:
        assert name in lines[0]
    if suggestion:
        assert f"did you mean {suggestion}?" in lines[0]
    else:
        assert "did you mean" not in lines[0]
    assert not (tiny["dir"] / "never").exists()


def test_check_generic_rpi_says_how_to_point_it_at_a_board():
    code, out, err = cli(["targets", "check", "rpi"])
    assert code == 1, out + err
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert "host" in lines[0] and "rpi4" in lines[0] and "copy" in lines[0], lines[0]


def test_bench_on_generic_rpi_fails_with_the_setup_line(tiny):
    code, out, err = cli(["bench", tiny["model"], "--target", "pi", "--data", tiny["data"],
                          "--format", "onnx", "--quantize", "none", "--runs", "1",
                          "--min-seconds", "0", "--warmup", "0", "--out", tiny["dir"] / "b"])
    assert code == 1, out + err
    lines = error_lines(err)
    assert lines[-1].startswith("edgernn: error:") and "host" in lines[-1], err
    assert sum("error" in ln for ln in lines) == 1, err


def test_a_template_without_setup_still_needs_its_runner_keys(tmp_path):
    p = tmp_path / "board.yaml"
    p.write_text(yaml.safe_dump({"name": "board", "runner": "ssh", "formats": ["onnx"],
                                 "runtimes": {"onnx": "onnxruntime"}}))
    with pytest.raises(EdgeRNNError, match="needs the key 'host'"):
        load_target(str(p))


def test_android_emulator_target_file():
    t = load_target("android-emulator")
    assert t.runner == "adb" and t.emulated is True
    assert t.extra["serial"] == "emulator-5554"
    script = REPO / "scripts" / "start_android_emulator.sh"
    assert script.is_file() and script.stat().st_mode & stat.S_IXUSR
    assert "start_android_emulator.sh" in t.path.read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def own_adb_server():
    """A port no adb server listens on; the server the runner starts there is killed after
    (only that one: other workers' servers use other ports)."""
    adb = shutil.which("adb")
    if adb is None:
        pytest.skip("needs the real adb client (apt-get install adb)")
    port = _free_port()
    yield adb, port
    subprocess.run([adb, "-P", str(port), "kill-server"], capture_output=True, timeout=30,
                   env={**os.environ, "ADB_MDNS": "0"})


def test_android_emulator_check_without_an_emulator(own_adb_server, tmp_path):
    _, port = own_adb_server
    doc = yaml.safe_load((REPO_TARGETS / "android-emulator.yaml").read_text())
    binary = tmp_path / "benchmark_model"  # a host file; the device check comes first
    binary.write_text("#!/bin/sh\n")
    doc.update(adb_server=f"127.0.0.1:{port}", benchmark_model=str(binary))
    p = tmp_path / "android-emulator.yaml"
    p.write_text(yaml.safe_dump(doc))
    code, out, err = cli(["targets", "check", p])
    assert code == 1, out + err
    lines = error_lines(err)
    assert len(lines) == 1, err
    line = lines[0]
    assert "emulator-5554" in line and "attached" in line, line
    assert "scripts/start_android_emulator.sh" in line, line
