"""Every user mistake ends in one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import run_cli


def _assert_one_line_error(code: int, err: str, needle: str) -> None:
    assert code != 0
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, weather_models):
    d = tmp_path_factory.mktemp("bad")
    files = {}
    files["random"] = d / "random.pt"
    files["random"].write_bytes(bytes(range(256)) * 8)
    files["truncated"] = d / "trunc.pt"
    data = weather_models["lstm"].read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 3])
    ev = np.load(weather_models["eval"])
    x, y = ev["x"], ev["y"]
    files["wrong_features"] = d / "wf.npz"
    np.savez(files["wrong_features"], x=x[:, :, :3], y=y)
    files["wrong_dtype"] = d / "wd.npz"
    np.savez(files["wrong_dtype"], x=x.astype(np.int64), y=y)
    files["no_y"] = d / "noy.npz"
    np.savez(files["no_y"], x=x)
    files["nan"] = d / "nan.npz"
    xn = x.copy()
    xn[0, 0, 0] = np.nan
    np.savez(files["nan"], x=xn, y=y)
    files["mismatch"] = d / "mm.npz"
    np.savez(files["mismatch"], x=x, y=y[:-1])
    files["not_npz"] = d / "text.npz"
    files["not_npz"].write_text("hello")
    files["target_missing_key"] = d / "t1.yaml"
    files["target_missing_key"].write_text("name: t\nrunner: local\nformats: [onnx]\n")
    files["target_bad_type"] = d / "t2.yaml"
    files["target_bad_type"].write_text(
        "name: t\nrunner: local\nformats: [onnx]\nruntimes: {onnx: onnxruntime}\nthreads: two\n")
    files["target_bad_runner"] = d / "t3.yaml"
    files["target_bad_runner"].write_text(
        "name: t\nrunner: telepathy\nformats: [onnx]\nruntimes: {onnx: onnxruntime}\n")
    files["target_bad_runtime"] = d / "t4.yaml"
    files["target_bad_runtime"].write_text(
        "name: t\nrunner: local\nformats: [onnx]\nruntimes: {onnx: magic}\n")
    files["target_not_yaml"] = d / "t5.yaml"
    files["target_not_yaml"].write_text("name: [unclosed\n")
    return files


CASES = [
    ("missing model", lambda f, m: ["export", "/nonexistent/model.pt"], "does not exist"),
    ("random bytes", lambda f, m: ["export", f["random"]], "not a PyTorch model file"),
    ("truncated", lambda f, m: ["export", f["truncated"]], "truncated or corrupt"),
    ("unknown target", lambda f, m: ["export", m["lstm"], "--target", "mars"],
     "unknown target 'mars'"),
    ("unknown format", lambda f, m: ["export", m["lstm"], "--format", "coreml"],
     "unknown format 'coreml'"),
    ("unknown quantization", lambda f, m: ["export", m["lstm"], "--quantize", "int3"],
     "unknown quantization int3"),
    ("bad input shape", lambda f, m: ["export", m["lstm"], "--input-shape", "batch=x,4"],
     "is not a positive size"),
    ("wrong feature count", lambda f, m: ["bench", m["lstm"], "--data", f["wrong_features"]],
     "has 3 along axis 2 but the model expects 4"),
    ("wrong dtype", lambda f, m: ["bench", m["lstm"], "--data", f["wrong_dtype"]],
     "model takes float features"),
    ("missing y", lambda f, m: ["bench", m["lstm"], "--data", f["no_y"]], "missing array(s) y"),
    ("NaN in x", lambda f, m: ["bench", m["lstm"], "--data", f["nan"]], "contains NaN or Inf"),
    ("x/y mismatch", lambda f, m: ["bench", m["lstm"], "--data", f["mismatch"]],
     "but 'y' has"),
    ("data not npz", lambda f, m: ["bench", m["lstm"], "--data", f["not_npz"]],
     "not a readable .npz"),
    ("target missing key", lambda f, m: ["export", m["lstm"], "--target",
                                         f["target_missing_key"]], "lacks the required key"),
    ("target bad type", lambda f, m: ["export", m["lstm"], "--target", f["target_bad_type"]],
     "'threads' must be an integer, got 'two'"),
    ("target bad runner", lambda f, m: ["export", m["lstm"], "--target",
                                        f["target_bad_runner"]], "unknown runner 'telepathy'"),
    ("target bad runtime", lambda f, m: ["export", m["lstm"], "--target",
                                         f["target_bad_runtime"]], "unknown runtime 'magic'"),
    ("target not yaml", lambda f, m: ["export", m["lstm"], "--target", f["target_not_yaml"]],
     "is not valid YAML"),
    ("bad layers", lambda f, m: ["train", "--layers", "lstm:64,transformer:8", "--out",
                                 "/tmp/x.pt"], "'transformer:8' is not a layer"),
    ("unknown dataset", lambda f, m: ["train", "--dataset", "imagenet", "--out", "/tmp/x.pt"],
     "unknown dataset 'imagenet'"),
]


@pytest.mark.parametrize("name, args, needle", CASES, ids=[c[0] for c in CASES])
def test_one_line_error(name, args, needle, bad_files, weather_models, capsys):
    code, _, err = run_cli(args(bad_files, weather_models), capsys)
    _assert_one_line_error(code, err, needle)


def test_token_ids_out_of_vocabulary(tokens_model, tmp_path, capsys):
    ev = np.load(tokens_model["eval"])
    p = tmp_path / "oov.npz"
    np.savez(p, x=ev["x"] + 1000, y=ev["y"])
    code, _, err = run_cli(["bench", tokens_model["model"], "--data", p], capsys)
    _assert_one_line_error(code, err, "vocabulary has 64 ids")


def test_refused_pickle_through_the_real_executable(tmp_path):
    """The installed console script, in a fresh process: one line, exit 1, no traceback."""
    import torch

    from tests.user_models import SeqFirstGRU

    p = tmp_path / "whole.pt"
    torch.save(SeqFirstGRU(), p)
    exe = [sys.executable, "-c", "from edgernn.cli import main; main()"]
    proc = subprocess.run([*exe, "export", str(p)], capture_output=True, text=True)
    _assert_one_line_error(proc.returncode, proc.stderr, "--trust-pickle")
    proc = subprocess.run([*exe, "bench", str(p)], capture_output=True, text=True)
    assert proc.returncode == 2 and "Missing option '--data'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_long_path_cuts_the_middle_of_the_line_not_its_advice(tmp_path, capsys):
    """A refusal naming a 400-character path keeps the start of the line and its end (what
    went wrong and what to do), with `` ... `` where the middle was."""
    deep = tmp_path.joinpath(*["d" * 60] * 6)
    deep.mkdir(parents=True)
    bad = deep / "model.pt"
    bad.write_text("hello")
    code, _, err = run_cli(["inspect", str(bad)], capsys)
    _assert_one_line_error(code, err, "edgernn: error:")
    line = err.strip()
    assert line.endswith("it starts with bytes b'hell')"), line
    assert " ... " in line and "is not a PyTorch model file" in line
    assert line.startswith(f"edgernn: error: {str(bad)[:100]}")
    assert len(line) <= len("edgernn: error: ") + 400


def test_clip_middle_by_hand():
    from edgernn.cli.entry import clip_middle

    assert clip_middle("abc", 10) == "abc"
    text = "0123456789" * 3  # 30 characters into 15: (15 - 5) * 3 // 5 = 6 first, 4 last
    assert clip_middle(text, 15) == "012345 ... 6789"


def _float_options():
    """(command path, option name) for every float-typed option of every edgernn command."""
    import click

    from edgernn.cli import cli as root

    found = []

    def walk(cmd, path):
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
            return
        for p in cmd.params:
            if isinstance(p, click.Option) and isinstance(p.type, click.types.FloatParamType):
                found.append((tuple(path), p.opts[0]))

    walk(root, [])
    return found


def test_every_float_option_refuses_nan_and_inf():
    """No float option takes nan or inf (nan passes every range check: --max-drop nan would
    lift the accuracy guard). Found by walking the real command tree; each is parsed by click
    with the value alone, so the refusal is the option type's."""
    import click

    from edgernn.cli import cli as root

    options = _float_options()
    assert len(options) >= 15  # max-drop, max-latency-ms, min-seconds, step-ms, lr, ...
    for path, opt in options:
        cmd = root
        for name in path:
            cmd = cmd.commands[name]
        param = next(p for p in cmd.params if opt in p.opts)
        for bad in ("nan", "inf", "-inf", "NaN"):
            with pytest.raises(click.BadParameter, match="not a finite number|not in the range"):
                param.type.convert(bad, param, None)
        lo = param.type.min if param.type.min is not None else 0.0
        hi = param.type.max if param.type.max is not None else lo + 2.0
        assert param.type.convert(str((lo + hi) / 2), param, None) == (lo + hi) / 2  # still parses
