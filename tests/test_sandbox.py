"""Issue 23: a model file that is a program (TorchScript) runs in the sandbox from the CLI; its
writes outside the sandbox never happen, a call that never returns ends in one line, and no
child edgernn starts imports from the working directory."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from edgernn.model import sandbox
from tests import hostile_models as hostile
from tests.conftest import run_cli

pytestmark = pytest.mark.skipif(sandbox.unavailable() is not None,
                                reason=f"no sandbox here: {sandbox.unavailable()}")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("hostile")
    m = d / "markers"
    m.mkdir()
    r = np.random.default_rng(0)
    np.savez(d / "eval.npz", x=r.standard_normal((12, 10, 4)).astype("float32"),
             y=r.integers(0, 3, 12))
    return {"benign": hostile.benign(d / "benign.pt"),
            "forward": hostile.writes_in_forward(d / "forward.pt", m / "forward.marker"),
            "setstate": hostile.writes_on_load(d / "setstate.pt", m / "setstate.marker"),
            "hang": hostile.never_returns(d / "hang.pt"),
            "eval": d / "eval.npz", "markers": m}


def _args(command: str, model: Path, files: dict[str, Path], out: Path) -> list:
    if command == "inspect":
        return ["inspect", model]
    if command == "export":
        return ["export", model, "--format", "onnx", "--quantize", "none", "--out", out]
    return ["bench", model, "--data", files["eval"], "--format", "onnx", "--quantize", "none",
            "--trials", "1", "--out", out, "--db", out / "r.db", "--min-seconds", "0.05",
            "--runs", "5", "--warmup", "1"]


def _one_line(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("command", ["inspect", "export", "bench"])
@pytest.mark.parametrize("payload", ["forward", "setstate"])
def test_a_model_file_cannot_write_outside_the_sandbox(files, tmp_path, capsys, command, payload):
    marker = files["markers"] / f"{payload}.marker"
    marker.unlink(missing_ok=True)
    code, out, err = run_cli(_args(command, files[payload], files, tmp_path / "out"), capsys)
    assert not marker.exists(), f"{payload} payload wrote {marker} during {command}"
    assert code == 1
    line = _one_line(err)
    when = "calling the model" if payload == "forward" else "loading it"
    assert f"{when} tried to write a file" in line and str(marker) in line, line
    assert "sandbox blocks" in line and "--trust-model" in line, line
    assert not list((tmp_path / "out").glob("*.onnx")) if (tmp_path / "out").exists() else True


def test_trust_model_runs_in_process_as_before(files, tmp_path, capsys, monkeypatch):
    """--trust-model: no sandbox worker is started, and the (benign) model works; the same
    hostile file then really does write (so the tests above would catch a sandbox that is off)."""
    def no_worker(*_a, **_k):
        raise AssertionError("a sandbox worker was started despite --trust-model")

    monkeypatch.setattr(sandbox, "Worker", no_worker)
    code, out, _ = run_cli(["inspect", "--trust-model", files["benign"]], capsys)
    assert code == 0 and "torchscript" in out and "GRU hidden 8" in out
    code, out, _ = run_cli(["export", files["benign"], "--trust-model", "--format", "onnx",
                            "--quantize", "none", "--out", tmp_path / "e"], capsys)
    assert code == 0, out
    assert (tmp_path / "e" / "benign.onnx.fp32.onnx").is_file()
    marker = files["markers"] / "setstate.marker"
    marker.unlink(missing_ok=True)
    run_cli(["inspect", "--trust-model", files["setstate"]], capsys)
    assert marker.exists()  # what the sandbox prevents, shown happening without it
    marker.unlink()


def test_sandboxed_inspect_and_export_of_a_benign_model(files, tmp_path, capsys):
    t0 = time.perf_counter()
    code, out, err = run_cli(["inspect", files["benign"]], capsys)
    assert code == 0, err
    assert "torchscript" in out and "parameters: 363" in out and "rnn: GRU hidden 8 x1" in out
    assert time.perf_counter() - t0 < 30
    code, out, err = run_cli(["export", files["benign"], "--format", "onnx", "--quantize",
                              "none", "--data", files["eval"], "--out", tmp_path / "e"], capsys)
    assert code == 0, err
    manifest = json.loads((tmp_path / "e" / "manifest.json").read_text())
    fp32 = next(a for a in manifest["artifacts"] if a["variant"] == "onnx-fp32")
    assert fp32["status"] == "ok" and (tmp_path / "e" / fp32["path"]).is_file()
    assert manifest["model"]["kind"] == "torchscript"
    assert manifest["model"]["sha256"] == sandbox_sha(files["benign"])
    assert not sandbox._LIVE  # the command's worker was stopped when it ended


def sandbox_sha(p: Path) -> str:
    from edgernn.hashing import sha256_file

    return sha256_file(p)


@pytest.mark.slow  # a whole bench (export, fp32 PyTorch in the sandboxed probe, onnxruntime)
def test_sandboxed_bench_of_a_benign_model(files, tmp_path, capsys):
    code, out, err = run_cli(_args("bench", files["benign"], files, tmp_path / "b"), capsys)
    assert code == 0, err
    rows = json.loads((tmp_path / "b" / "results.json").read_text())
    rows = rows if isinstance(rows, list) else rows["rows"]
    status = {r["variant"].split("/")[1]: r["status"] for r in rows}
    assert status["torch-fp32"] == "ok" and status["onnx-fp32"] == "ok", status
    assert list((tmp_path / "b" / "benign").glob("reference-*.npy"))  # came back as data


def test_a_call_that_never_returns_ends_in_one_line(files, capsys):
    t0 = time.perf_counter()
    code, _, err = run_cli(["inspect", files["hang"], "--call-timeout", "2"], capsys)
    took = time.perf_counter() - t0
    assert code == 1
    line = _one_line(err)
    assert "did not return within 2 s" in line and "--call-timeout" in line, line
    assert took < 2 + 15, took  # the bound plus the worker's start (torch import)
    assert not sandbox._LIVE


def test_without_a_sandbox_a_program_is_refused_unless_trusted(files, capsys, monkeypatch,
                                                                weather_models):
    monkeypatch.setattr(sandbox, "_STATUS", ["bwrap cannot create namespaces here: test"])
    code, _, err = run_cli(["inspect", files["benign"]], capsys)
    line = _one_line(err)
    assert code == 1 and "cannot sandbox the model file (bwrap cannot create namespaces" in line
    assert "--trust-model" in line
    code, out, _ = run_cli(["inspect", files["benign"], "--trust-model"], capsys)
    assert code == 0 and "torchscript" in out
    # an edgernn checkpoint is data (weights-only load): no sandbox needed
    code, out, _ = run_cli(["inspect", weather_models["lstm"]], capsys)
    assert code == 0 and "checkpoint" in out


def test_the_torch_probe_of_a_program_runs_confined(files, tmp_path):
    """The local runner's PyTorch probe loads and calls the user's file: in the sandbox it
    cannot write (the bench's worker is bypassed here: the probe is tested alone)."""
    from edgernn.errors import RunnerError
    from edgernn.runners.local import LocalRunner, runs_a_program
    from edgernn.runners.target import load_target

    marker = files["markers"] / "forward.marker"
    marker.unlink(missing_ok=True)
    data = tmp_path / "data.npz"
    x = np.load(files["eval"])["x"]
    np.savez(data, x=x, y=np.zeros(len(x), dtype=np.int64))
    job = {"threads": 1, "cpus": [], "warmup": 1, "min_runs": 2, "max_runs": 5,
           "min_seconds": 0.01, "eval_batch": 1, "data": "data", "step_ms": None,
           "runtime": "torch", "path": "model", "task": "classify", "batch_axis": 0,
           "threshold": 0.0, "options": {"trust_pickle": False, "imports": []},
           "save_outputs": str(tmp_path / "ref.npy")}
    runner = LocalRunner(load_target("x86"))
    sandbox.configure(sandbox=True)
    try:
        assert runs_a_program({**job, "path": str(files["forward"])})
        with pytest.raises(RunnerError, match="Read-only file system"):
            runner.measure(job, {"data": data, "model": files["forward"]})
        assert not marker.exists()
        result = runner.measure(job, {"data": data, "model": files["benign"]})
        assert result["ok"] and (tmp_path / "ref.npy").is_file()  # outputs came back
    finally:
        sandbox.reset()
        runner.close()


SHADOW = """import pathlib
pathlib.Path({marker!r}).write_text("ran")
raise ImportError("shadowing module ran")
"""


@pytest.fixture
def shadowed_cwd(tmp_path, monkeypatch) -> Path:
    """A working directory whose onnxruntime.py / onnx.py write a marker when imported."""
    import onnx  # noqa: F401  (this process imports them as it always does, not from the cwd)
    import onnxruntime  # noqa: F401

    marker = tmp_path / "shadow.marker"
    d = tmp_path / "cwd"
    d.mkdir()
    for name in ("onnxruntime", "onnx", "numpy", "torch"):
        (d / f"{name}.py").write_text(SHADOW.format(marker=str(marker)))
    monkeypatch.chdir(d)
    monkeypatch.setenv("PYTHONPATH", str(d))
    return marker


def test_children_never_import_from_the_working_directory(shadowed_cwd, tmp_path):
    """Every child edgernn starts runs ``python -I`` (the probe, the fp16 session check, the
    TFLite converter child): a file in the current directory is never imported."""
    import subprocess

    from edgernn.convert.quantize.onnx_fp16 import opens_in_a_child
    from edgernn.isolation import python_argv

    r = subprocess.run([*python_argv(code="import onnxruntime, sys; print(onnxruntime.__file__)")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "site-packages" in r.stdout, r.stderr
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(Exception, match="cannot open the fp16 file"):
        opens_in_a_child(bad)
    assert not shadowed_cwd.exists()


def test_bench_does_not_run_onnxruntime_py_from_the_working_directory(shadowed_cwd, files,
                                                                     tmp_path, capsys):
    code, _, err = run_cli(["bench", files["benign"], "--data", files["eval"], "--format",
                            "onnx", "--quantize", "none", "--trials", "1", "--runs", "5",
                            "--warmup", "1", "--min-seconds", "0.05", "--out", tmp_path / "b",
                            "--db", tmp_path / "r.db"], capsys)
    assert not shadowed_cwd.exists(), "a child imported a module from the working directory"
    assert code == 0, err
