"""The hostile corpus (issue 23): inputs an attacker or a broken tool would hand edgernn, each
with its expected outcome asserted. A refusal is exit 1 and ONE stderr line ``edgernn: error:``
naming the problem (never a traceback, an internal error, a raw terminal escape or a hang);
click's own refusals of an option value are exit 2. Cases run the real CLI in-process.

Every case is a row of ``CASES``: (name, setup, arguments, exit code, message fragment).
``setup(hostile, d)`` writes the hostile file(s) into the case's folder ``d`` and returns the
placeholders its arguments use (``{f}``, ...); ``{model}``, ``{data}``, ``{db}`` and ``{d}``
are always there."""

from __future__ import annotations

import copy
import io
import json
import math
import sqlite3
import time
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.conftest import cli, count

BOUND_S = 30  # no case may take longer (the slowest, a sweep refused before Ray, takes ~3 s)
CFG = {"arch": "sequence", "input": {"kind": "features", "features": 4},
       "layers": [{"cell": "lstm", "hidden": 8, "num_layers": 1, "bidirectional": False}],
       "task": "classify", "num_classes": 2, "horizon": None}
ESC = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred"  # OSC title, clear screen, colour


@dataclass
class Lab:
    """A small random-weight checkpoint, its evaluation data and a store with good rows."""

    root: Path
    model: Path
    data: Path
    ckpt: dict[str, Any]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Lab:
    from edgernn.model.checkpoint import save_checkpoint
    from edgernn.model.spec import Axis, InputSpec
    from edgernn.models.build import build_model

    root = tmp_path_factory.mktemp("hostile")
    torch.manual_seed(0)
    module = build_model(copy.deepcopy(CFG))
    spec = InputSpec([Axis(1, "batch"), Axis(14, "seq"), Axis(4)], task="classify",
                     num_classes=2)
    model = save_checkpoint(root / "m.pt", CFG, module.state_dict(), spec)
    rng = np.random.default_rng(0)
    np.savez(root / "eval.npz", x=rng.normal(size=(40, 14, 4)).astype(np.float32),
             y=rng.integers(0, 2, 40))
    return Lab(root, model, root / "eval.npz", torch.load(model, weights_only=True))


# -- builders of hostile files ------------------------------------------------------------------
def checkpoint(edit: Callable[[dict], Any]) -> Callable[[Lab, Path], dict[str, Path]]:
    """A checkpoint whose dict ``edit`` changed (the good weights, a hostile config)."""
    def setup(hostile: Lab, d: Path) -> dict[str, Path]:
        ck = copy.deepcopy(hostile.ckpt)
        edit(ck)
        torch.save(ck, d / "f.pt")
        return {"f": d / "f.pt"}
    return setup


def layer(**kw: Any) -> Callable[[dict], None]:
    return lambda ck: ck["config"]["layers"][0].update(kw)


def config(**kw: Any) -> Callable[[dict], None]:
    return lambda ck: ck["config"].update(kw)


def spec_axes(axes: Any) -> Callable[[dict], None]:
    return lambda ck: ck["input_spec"].update(axes=axes)


def text(name: str, body: str | bytes) -> Callable[[Lab, Path], dict[str, Path]]:
    def setup(hostile: Lab, d: Path) -> dict[str, Path]:
        p = d / name
        p.write_bytes(body if isinstance(body, bytes) else body.encode())
        return {"f": p}
    return setup


TARGET = "name: t\nrunner: local\nformats: [onnx]\nruntimes: {onnx: onnxruntime}\n"
SSH = "name: s\nrunner: ssh\nformats: [onnx]\nruntimes: {onnx: onnxruntime}\n"


def target(extra: str, base: str = TARGET) -> Callable[[Lab, Path], dict[str, Path]]:
    return text("t.yaml", base + extra)


def laughs(levels: int = 9) -> str:
    """A billion-laughs document: 9 aliases per level, ``levels`` levels (9^10 nodes)."""
    lines = ["  a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels + 1):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"  {cur}: &{cur} [{', '.join(['*' + prev] * 9)}]")
    return "\n".join(lines) + "\n"


def npz(**arrays: Any) -> Callable[[Lab, Path], dict[str, Path]]:
    def setup(hostile: Lab, d: Path) -> dict[str, Path]:
        got = {k: (v(hostile) if callable(v) else v) for k, v in arrays.items()}
        np.savez(d / "f.npz", **got)
        return {"f": d / "f.npz"}
    return setup


def lying_header(hostile: Lab, d: Path) -> dict[str, Path]:
    """An npz whose x header declares 10^9 samples (224 GB) over 64 bytes of data."""
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        head, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 14, 4)})
    y = io.BytesIO()
    np.save(y, np.zeros(40, np.int64))
    with zipfile.ZipFile(d / "f.npz", "w") as z:
        z.writestr("x.npy", head.getvalue() + b"\0" * 64)
        z.writestr("y.npy", y.getvalue())
    return {"f": d / "f.npz"}


def deflate_bomb(name: str, member: str, mb: int = 80) -> Callable[[Lab, Path], dict[str, Path]]:
    """A zip with a member of ``mb`` MB of zeros deflated to ~1/1000 (a zip bomb), beside the
    real members of the hostile's model (``.pt``) or a valid npz."""
    def setup(hostile: Lab, d: Path) -> dict[str, Path]:
        p = d / name
        with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
            if name.endswith(".pt"):
                with zipfile.ZipFile(hostile.model) as src:
                    for n in src.namelist():
                        z.writestr(n, src.read(n))
            else:
                for k, v in np.load(hostile.data).items():
                    b = io.BytesIO()
                    np.save(b, v)
                    z.writestr(f"{k}.npy" if k != "x" else "x0.npy", b.getvalue())
            with z.open(member, "w", force_zip64=True) as f:
                head = io.BytesIO()
                np.lib.format.write_array_header_1_0(
                    head, {"descr": "<f4", "fortran_order": False, "shape": (mb * 2**18,)})
                f.write(head.getvalue())
                for _ in range(mb):
                    f.write(bytes(2**20))
        return {"f": p}
    return setup


def bad_member_name(hostile: Lab, d: Path) -> dict[str, Path]:
    """The model's zip with its last member name flagged UTF-8 but not UTF-8 (fuzzing found
    zipfile raising UnicodeDecodeError on it)."""
    b = bytearray(hostile.model.read_bytes())
    i = b.rfind(b"PK\x01\x02")  # the last central directory entry
    b[i + 9] |= 0x08  # general purpose flag bit 11: the name is UTF-8
    b[i + 46:i + 48] = b"\xecA"
    (d / "f.pt").write_bytes(bytes(b))
    return {"f": d / "f.pt"}


def torchscript_extra(extra: bytes) -> Callable[[Lab, Path], dict[str, Path]]:
    """A benign scripted module whose edgernn_spec.json holds ``extra``."""
    def setup(hostile: Lab, d: Path) -> dict[str, Path]:
        m = torch.jit.script(torch.nn.GRU(4, 8, batch_first=True))
        torch.jit.save(m, str(d / "f.pt"), _extra_files={"edgernn_spec.json": extra})
        return {"f": d / "f.pt"}
    return setup


def sweep(extra: str) -> Callable[[Lab, Path], dict[str, Path]]:
    def setup(hostile: Lab, d: Path) -> dict[str, Path]:
        p = d / "sweep.yaml"
        p.write_text(f"models: [{hostile.model}]\ndata: {hostile.data}\ntargets: [x86]\n{extra}")
        return {"f": p}
    return setup


def csv_file(body: bytes) -> Callable[[Lab, Path], dict[str, Path]]:
    return text("f.csv", body)


def copy_of_model(hostile: Lab, d: Path) -> dict[str, Path]:
    p = d / "victim.pt"
    p.write_bytes(hostile.model.read_bytes())
    return {"f": p}


def _row(variant: str, model: str = "m", target: str = "x86", lat: float = 0.5,
         size: int = 100_000, acc: float = 0.9, **over: Any) -> dict[str, Any]:
    row = {"model": model, "model_sha256": f"sha-{model}", "variant": f"{model}/{variant}",
           "format": "onnx", "quantization": "fp32", "target": target, "status": "ok",
           "runtime": "onnxruntime", "runtime_version": "1", "size_bytes": size,
           "latency_ms": {"p50": lat, "p90": lat, "p99": lat, "count": 100}, "metric": "accuracy",
           "value": acc, "metrics": {"accuracy": acc}, "accuracy_drop": 0.0, "reason": None,
           "notes": [], "timestamp": "2026-01-01T00:00:00+00:00", "data_sha256": "d",
           "eval_samples": 40}
    row.update(over)
    return row


def store_with_bad_rows(hostile: Lab, d: Path) -> dict[str, Path]:
    """A store of good rows, one hostile name, and five malformed rows written around
    ``Store.add``: not JSON, a JSON list, NaN latency, negative size, infinite value, latency
    without p50, a number as model."""
    from edgernn.results.store import Store

    db = d / "bad.db"
    with Store(db) as s:
        s.add(_row("torch-fp32", lat=1.0, size=300_000))
        s.add(_row("onnx-fp32", lat=0.4))
        s.add(_row("onnx-int8", lat=0.2, size=30_000, acc=0.89, accuracy_drop=0.01))
        s.add(_row("onnx-fp32", model=ESC))
        s.add(_row("nan", latency_ms={"p50": math.nan, "p90": 1, "p99": 1}))
        s.add(_row("negative", size=-5))
        s.add(_row("inf", value=math.inf))
        s.add(_row("no-p50", latency_ms={"": 0}))
    con = sqlite3.connect(db)
    for bad in ("not json {", "[1, 2]", json.dumps({**_row("x"), "model": 7})):
        con.execute("INSERT INTO rows (model_sha256, model, variant, target, data_sha256, status,"
                    " timestamp, row_json) VALUES ('s', 'm', 'm/x', 'x86', 'd', 'ok', 't', ?)",
                    (bad,))
    con.commit()
    con.close()
    return {"f": db}


def stored_escape_target(hostile: Lab, d: Path) -> dict[str, Path]:
    from edgernn.results.store import Store

    db = d / "names.db"
    with Store(db) as s:
        for v, lat in (("torch-fp32", 1.0), ("onnx-fp32", 0.5)):
            s.add(_row(v, model=ESC, target="../../evil" + ESC, lat=lat))
    return {"f": db}


def good_store(hostile: Lab, d: Path) -> dict[str, Path]:
    from edgernn.results.store import Store

    with Store(d / "good.db") as s:
        s.add(_row("torch-fp32", lat=1.0, size=300_000))
        s.add(_row("onnx-fp32", lat=0.4))
    return {"f": d / "good.db"}


def stranger_beside_a_store(hostile: Lab, d: Path) -> dict[str, Path]:
    (d / "notes.txt").write_text("my notes, not rows")
    return {**good_store(hostile, d), "stranger": d / "notes.txt"}


def none(hostile: Lab, d: Path) -> dict[str, Path]:
    return {}


# (name, setup, arguments, expected exit code, fragment of the refusal line (or of stdout))
CASES: list[tuple[str, Callable, list[str], int, str]] = [
    # model files: configs out of bounds are refused before anything is built
    ("num_layers 100000", checkpoint(layer(num_layers=100000)), ["inspect", "{f}"], 1,
     "num_layers is 100,000; it must be between 1 and 64"),
    ("hidden 10**6", checkpoint(layer(hidden=10**6)), ["inspect", "{f}"], 1,
     "hidden is 1,000,000; it must be between 1 and 16,384"),
    ("layers []", checkpoint(config(layers=[])), ["inspect", "{f}"], 1,
     "'layers' must be a non-empty list"),
    ("layers not a list", checkpoint(config(layers="lstm")), ["inspect", "{f}"], 1,
     "'layers' must be a non-empty list"),
    ("cell rnn", checkpoint(layer(cell="rnn")), ["inspect", "{f}"], 1, "cell lstm or gru"),
    ("hidden as text", checkpoint(layer(hidden="64")), ["inspect", "{f}"], 1,
     "hidden must be an integer, got '64'"),
    ("hidden 0", checkpoint(layer(hidden=0)), ["inspect", "{f}"], 1, "hidden is 0"),
    ("bidirectional yes", checkpoint(layer(bidirectional="yes")), ["inspect", "{f}"], 1,
     "bidirectional must be true or false"),
    ("10^9 parameters", checkpoint(layer(hidden=16384, num_layers=64)), ["inspect", "{f}"], 1,
     "more than 2,000,000,000 parameters"),
    ("65 layers", checkpoint(lambda ck: ck["config"].update(layers=ck["config"]["layers"] * 65)),
     ["inspect", "{f}"], 1, "number of layers is 65"),
    ("num_classes 0", checkpoint(config(num_classes=0)), ["inspect", "{f}"], 1,
     "num_classes is 0"),
    ("features -1", checkpoint(config(input={"kind": "features", "features": -1})),
     ["inspect", "{f}"], 1, "features is -1"),
    ("vocab 10^9", checkpoint(config(input={"kind": "tokens", "vocab_size": 10**9,
                                            "embed_dim": 8})), ["inspect", "{f}"], 1,
     "vocab_size is 1,000,000,000"),
    ("unknown arch", checkpoint(config(arch="transformer")), ["inspect", "{f}"], 1,
     "unknown arch 'transformer'"),
    ("task none", checkpoint(config(task=None)), ["inspect", "{f}"], 1,
     "task must be classify or forecast"),
    ("ensemble of 100", checkpoint(config(arch="ensemble", members=[CFG] * 100)),
     ["inspect", "{f}"], 1, "ensemble members is 100"),
    ("nested ensemble", checkpoint(config(arch="ensemble", members=[
        {"arch": "ensemble", "members": [CFG]}])), ["inspect", "{f}"], 1,
     "members cannot be ensembles"),
    ("config a list", checkpoint(config(input=[1, 2])), ["inspect", "{f}"], 1,
     "'input' must be a mapping"),
    ("spec of 10^9 steps", checkpoint(spec_axes([{"size": 1, "name": "batch"},
                                                 {"size": 10**9, "name": "seq"},
                                                 {"size": 4, "name": None}])),
     ["inspect", "{f}"], 1, "values per example"),
    ("spec axes ints", checkpoint(spec_axes([1, 14, 4])), ["inspect", "{f}"], 1,
     "input spec in the model file is malformed"),
    ("model zip bomb", deflate_bomb("f.pt", "m/data/99"), ["inspect", "{f}"], 1,
     "a zip bomb"),
    ("empty model", text("f.pt", b""), ["inspect", "{f}"], 1, "is empty"),
    ("zip name not UTF-8", bad_member_name, ["inspect", "{f}"], 1,
     "is truncated or corrupt (not a readable zip archive: 'utf-8' codec can't decode"),
    ("text model", text("f.pt", "hello"), ["inspect", "{f}"], 1, "not a PyTorch model file"),
    ("spec extra is a pickle", torchscript_extra(b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00."),
     ["inspect", "{f}", "--trust-model"], 1, "edgernn_spec.json is not UTF-8 JSON"),
    ("spec extra is a list", torchscript_extra(b"[1, 2]"), ["inspect", "{f}", "--trust-model"], 1,
     "is not a JSON object (got list)"),
    ("spec extra wrong types", torchscript_extra(b'{"input_spec": "abc"}'),
     ["inspect", "{f}", "--trust-model"], 1, "'input_spec' must be an object, got str"),
    # evaluation data and calibration data
    ("zero-length sequence", npz(x=np.zeros((5, 0, 4), np.float32), y=np.zeros(5, np.int64)),
     ["inspect", "{model}", "--data", "{f}"], 1, "zero-length axis"),
    ("zero features", npz(x=np.zeros((5, 14, 0), np.float32), y=np.zeros(5, np.int64)),
     ["inspect", "{model}", "--data", "{f}"], 1, "zero-length axis"),
    ("10^9-sample header", lying_header, ["inspect", "{model}", "--data", "{f}"], 1,
     "declares shape [1000000000, 14, 4] float32"),
    ("10^9-sample calib", lying_header,
     ["export", "{model}", "--format", "onnx", "--quantize", "int8", "--calib", "{f}", "--out",
      "{d}/exp"], 1, "declares shape [1000000000, 14, 4] float32"),
    ("npz zip bomb", deflate_bomb("f.npz", "x.npy"), ["inspect", "{model}", "--data", "{f}"], 1,
     "a zip bomb"),
    ("object y", npz(x=lambda hostile: np.load(hostile.data)["x"],
                     y=np.array([{"a": 1}] * 40, dtype=object)),
     ["inspect", "{model}", "--data", "{f}"], 1, "not a readable .npz"),
    ("complex x", npz(x=np.zeros((5, 14, 4), np.complex64), y=np.zeros(5, np.int64)),
     ["inspect", "{model}", "--data", "{f}"], 1, "must be numeric"),
    # target files: YAML limits and a schema of types and values
    ("billion laughs", target("options:\n" + laughs()), ["targets", "show", "{f}"], 1,
     "an alias bomb"),
    ("recursive alias", target("options: &x\n  self: *x\n"), ["targets", "show", "{f}"], 1,
     "recursive alias *x"),
    ("binary yaml", text("t.yaml", bytes(range(256)) * 4), ["targets", "show", "{f}"], 1,
     "is not UTF-8 text"),
    ("nested 1000 deep", target("options: " + "[" * 1000 + "]" * 1000 + "\n"),
     ["targets", "show", "{f}"], 1, "nested deeper than 64 levels"),
    ("2 MB yaml", target("description: '" + "a" * 2_000_000 + "'\n"), ["targets", "show", "{f}"],
     1, "a settings file may have at most 1,000,000"),
    ("formats of junk", text("t.yaml", "name: t\nrunner: local\nformats: [1, null, {a: b}]\n"
                                       "runtimes: {onnx: onnxruntime}\n"),
     ["targets", "check", "{f}"], 1, "'formats' must be a list of names, got 1 in it"),
    ("formats empty", text("t.yaml", "name: t\nrunner: local\nformats: []\n"
                                     "runtimes: {onnx: onnxruntime}\n"),
     ["targets", "show", "{f}"], 1, "'formats' is empty"),
    ("quantize of numbers", target("quantize: [3]\n"), ["targets", "show", "{f}"], 1,
     "'quantize' must be a list of names, got 3"),
    ("runtime a number", text("t.yaml", "name: t\nrunner: local\nformats: [onnx]\n"
                                        "runtimes: {onnx: 5}\n"),
     ["targets", "show", "{f}"], 1, "must map format names to runtime names"),
    ("timeout nan", target("timeout_s: .nan\n"), ["targets", "show", "{f}"], 1,
     "'timeout_s' must be a finite number, got nan"),
    ("timeout inf", target("timeout_s: .inf\n"), ["targets", "show", "{f}"], 1,
     "'timeout_s' must be a finite number, got inf"),
    ("timeout negative", target("timeout_s: -5\n"), ["targets", "show", "{f}"], 1,
     "'timeout_s' is -5; it must be at least 0.001"),
    ("threads 100000", target("threads: 100000\n"), ["targets", "show", "{f}"], 1,
     "'threads' is 100000; it must be at most 1024"),
    ("name ../", text("t.yaml", TARGET.replace("name: t", "name: ../../evil")),
     ["targets", "show", "{f}"], 1, "'name' '../../evil' must be"),
    ("name with escapes", text("t.yaml", TARGET.replace("name: t", 'name: "\\e[2J\\e]0;x\\a"')),
     ["targets", "show", "{f}"], 1, "'name' '\\x1b[2J\\x1b]0;x\\x07' must be"),
    ("ssh host $()", target("host: '$(touch pwned)'\n", SSH), ["targets", "check", "{f}"], 1,
     "'$(touch pwned)' is not a host name"),
    ("ssh host a..b", target("host: 'a..b'\n", SSH), ["targets", "check", "{f}"], 1,
     "'a..b' is not a host name"),
    ("ssh host 64-char label", target(f"host: {'a' * 64}.lan\n", SSH),
     ["targets", "check", "{f}"], 1, "is not a host name"),
    ("ssh port 70000", target("host: pi\nport: 70000\n", SSH), ["targets", "show", "{f}"], 1,
     "port 70000 is not 1..65535"),
    ("ssh hosts backticks", target("hosts: [pi, '`id`']\n", SSH), ["targets", "show", "{f}"], 1,
     "'`id`' is not a host name"),
    ("ssh device host", target("devices: [{id: a, host: 'x;rm -rf /'}]\n", SSH),
     ["targets", "show", "{f}"], 1, "devices[0].host: 'x;rm -rf /' is not a host name"),
    # sweep files
    ("sweep memory 1000 GB", sweep("convert_memory_gb: 1000\n"),
     ["sweep", "{f}", "--db", "{d}/s.db"], 1, "'convert_memory_gb' is 1000 but this machine has"),
    ("sweep memory nan", sweep("convert_memory_gb: .nan\n"), ["sweep", "{f}", "--db", "{d}/s.db"],
     1, "'convert_memory_gb' must be a finite number"),
    ("sweep runs -1", sweep("bench: {runs: -1}\n"), ["sweep", "{f}", "--db", "{d}/s.db"], 1,
     "bench.runs is -1; it must be at least 1"),
    ("sweep trials inf", sweep("bench: {min_seconds: .inf}\n"),
     ["sweep", "{f}", "--db", "{d}/s.db"], 1, "bench.min_seconds must be a finite number"),
    ("sweep alias bomb", sweep("bench:\n" + laughs()), ["sweep", "{f}", "--db", "{d}/s.db"], 1,
     "an alias bomb"),
    # every float option finite (click refuses it: exit 2)
    ("select --max-drop nan", none, ["select", "--max-drop", "nan", "--db", "{db}"], 2,
     "'nan' is not a finite number"),
    ("select --max-latency-ms inf", none, ["select", "--max-latency-ms", "inf", "--db", "{db}"],
     2, "'inf' is not a finite number"),
    ("report --max-drop -nan", none, ["report", "--max-drop", "-nan", "--db", "{db}"], 2,
     "'-nan' is not a finite number"),
    ("bench --min-seconds nan", none, ["bench", "{model}", "--data", "{data}", "--min-seconds",
                                       "nan"], 2, "'nan' is not a finite number"),
    ("bench --collapse inf", none, ["bench", "{model}", "--data", "{data}", "--collapse", "inf"],
     2, "'inf' is not a finite number"),
    ("compare --max-drop nan", none, ["compare", "weather", "--max-drop", "nan"], 2,
     "'nan' is not a finite number"),
    # outputs never overwrite an input
    ("bench --json onto the model", copy_of_model,
     ["bench", "{f}", "--data", "{data}", "--json", "{f}", "--db", "{d}/b.db"], 1,
     "is also an input of this command"),
    ("bench --csv onto the data", none,
     ["bench", "{model}", "--data", "{data}", "--csv", "{data}", "--db", "{d}/b.db"], 1,
     "is also an input of this command"),
    ("bench --json onto a stranger", text("notes.json", '{"mine": true}'),
     ["bench", "{model}", "--data", "{data}", "--json", "{f}", "--db", "{d}/b.db"], 1,
     "exists and is not a rows file edgernn wrote"),
    ("results --json onto a stranger", stranger_beside_a_store,
     ["results", "--db", "{f}", "--json", "{stranger}"], 1, "is not a rows file edgernn wrote"),
    ("results --csv onto a stranger", stranger_beside_a_store,
     ["results", "--db", "{f}", "--csv", "{stranger}"], 1, "is not a rows file edgernn wrote"),
    ("results --json unwritable", good_store,
     ["results", "--db", "{f}", "--json", "/proc/edgernn/rows.json"], 1, "cannot write"),
    ("decision --out onto its input", text("c.json", '{"datasets": {}}'),
     ["decision", "{f}", "--out", "{f}"], 1, "is also an input of this command"),
    ("decision --out unwritable", text("c.json", '{"datasets": {}}'),
     ["decision", "{f}", "--out", "/proc/edgernn/decision.md"], 1, "cannot write"),
    ("report --out unwritable", good_store, ["report", "--db", "{f}", "--out", "/proc/edgernn/r"],
     1, "No such file or directory: /proc/edgernn; check the path, its permissions"),
    ("export --out under a file", none,
     ["export", "{model}", "--format", "onnx", "--quantize", "none", "--out", "{data}/x"], 1,
     "Not a directory"),
    # decision records that are not one
    ("decision of a list", text("c.json", "[1, 2, 3]"), ["decision", "{f}"], 1,
     "holds a JSON list, not an object"),
    ("decision 100000 deep", text("c.json", "[" * 100000 + "]" * 100000), ["decision", "{f}"], 1,
     "nested 100,000 levels deep"),
    ("decision binary", text("c.json", b"\xff\xfe\x00\x01" * 100), ["decision", "{f}"], 1,
     "is not UTF-8 text"),
    ("decision datasets a list", text("c.json", '{"datasets": [1]}'), ["decision", "{f}"], 1,
     "not an object with 'datasets'"),
    ("decision of junk entries", text("c.json", '{"datasets": {"a": 5}}'), ["decision", "{f}"],
     1, "is not a compare.json written by edgernn compare"),
    # CSVs for train --data
    ("latin-1 csv", csv_file("text,label\ncaf\xe9,0\nol\xe9,1\n".encode("latin-1")),
     ["train", "--data", "{f}", "--out", "{d}/t.pt"], 1, "is not UTF-8 text (byte 14 is b'\\xe9')"),
    ("csv with NUL is text", csv_file(b"text,label\nab\x00c,0\nd,1\n"),
     ["train", "--data", "{f}", "--out", "{d}/t.pt", "--epochs", "1", "--vocab-size", "16"], 0,
     "TOO FEW to judge the model"),
    ("csv 300000-char field", csv_file(b"text,label\n" + b"a" * 300_000 + b",0\nb,1\n"),
     ["train", "--data", "{f}", "--out", "{d}/t.pt"], 1, "field larger than field limit"),
    ("csv binary", csv_file(bytes(range(1, 256)) * 20),
     ["train", "--data", "{f}", "--out", "{d}/t.pt"], 1, "is not UTF-8 text"),
    # stored rows: the malformed ones are skipped with a warning, the rest shown
    ("results skips bad rows", store_with_bad_rows, ["results", "--db", "{f}"], 0,
     "onnx-int8"),
    ("select skips bad rows", store_with_bad_rows,
     ["select", "--db", "{f}", "--target", "x86", "--max-drop", "0.05"], 0, "PICK"),
    ("report skips bad rows", store_with_bad_rows, ["report", "--db", "{f}", "--out", "{d}/r"],
     0, "report.html"),
    # names are data
    ("escapes in stored names", stored_escape_target, ["results", "--db", "{f}"], 0,
     "\\x1b]0;pwned\\x07\\x1b[2J"),
    ("escapes in a description", target('description: "\\e[2J\\e]0;x\\a"\n'),
     ["targets", "show", "{f}"], 0, "description: \\x1b[2J\\x1b]0;x\\x07"),
    ("escapes and ../ in report", stored_escape_target,
     ["report", "--db", "{f}", "--out", "{d}/r"], 0, "report.md"),
]


@pytest.mark.parametrize("name, setup, args, code, fragment", CASES, ids=[c[0] for c in CASES])
def test_hostile_input(name, setup, args, code, fragment, hostile, tmp_path, isolated_store):
    files = {"model": hostile.model, "data": hostile.data, "db": tmp_path / "empty.db", "d": tmp_path,
             **setup(hostile, tmp_path)}
    argv = [a.format(**files) for a in args]
    marker = Path.cwd() / "pwned"
    t0 = time.monotonic()
    got, out, err = cli(argv)
    took = time.monotonic() - t0
    count("hostile corpus cases run")
    assert took < BOUND_S, f"{name} took {took:.1f} s"
    assert "Traceback" not in err and "internal error" not in err, err
    assert "\x1b" not in out + err, "a raw terminal escape reached the terminal"
    assert not marker.exists()
    assert got == code, (got, out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if code == 1:
        assert len(lines) == 1 and lines[0].startswith("edgernn: error: "), err
        assert fragment in lines[0], lines[0]
    elif code == 2:
        assert lines[-1].startswith("Error: ") and fragment in lines[-1], err
    else:
        assert fragment in out, out


def test_corpus_is_large_enough():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)


# -- outcomes the table cannot say in one fragment ------------------------------------------------
def test_malformed_rows_are_named_once_and_the_rest_counted(hostile, tmp_path):
    db = store_with_bad_rows(hostile, tmp_path)["f"]
    code, out, err = cli(["results", "--db", db, "--all"])
    assert code == 0
    assert err.count("edgernn: warning: skipped 7 malformed row(s)") == 1, err
    for why in ("id 5: latency_ms.p50 is nan, not a finite number",
                "id 6: size_bytes is negative (-5)", "id 7: value is inf, not a finite number"):
        assert why in err  # the first three named, then "..."
    from edgernn.results.store import Store

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        rows = Store(db).rows(latest=False)
    assert len(rows) == 4 and len(seen) == 1  # 3 good rows and the escaped name


def test_report_names_stay_inside_the_folder_and_escaped(hostile, tmp_path):
    db = stored_escape_target(hostile, tmp_path)["f"]
    code, _, err = cli(["report", "--db", db, "--out", tmp_path / "r"])
    assert code == 0, err
    made = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    assert all(str(p).startswith("r/") or p.name.startswith("names.db") for p in made), made
    for page in ("report.md", "report.html"):
        body = (tmp_path / "r" / page).read_text()
        assert "\x1b" not in body and "\x07" not in body
        assert "\\x1b]0;pwned\\x07" in body
    assert not list(tmp_path.parent.glob("evil*"))


def test_bench_json_onto_the_model_leaves_it_intact(hostile, tmp_path):
    victim = copy_of_model(hostile, tmp_path)["f"]
    before = victim.read_bytes()
    code, _, err = cli(["bench", victim, "--data", hostile.data, "--json", victim,
                        "--db", tmp_path / "b.db"])
    assert code == 1 and victim.read_bytes() == before


def test_two_row_csv_accuracy_is_flagged_with_its_count(tmp_path):
    p = tmp_path / "two.csv"
    p.write_text("text,label\nhello world,0\ngoodbye world,1\n")
    code, out, err = cli(["train", "--data", p, "--out", tmp_path / "t.pt", "--epochs", "1",
                          "--vocab-size", "16"])
    assert code == 0, err
    assert "held-out n=1: accuracy " in out
    assert "only 1 held-out sample, TOO FEW to judge the model (< 30)" in out


# -- the entry point itself ------------------------------------------------------------------------
def _failing_command(monkeypatch, exc: BaseException, warn: bool = False) -> None:
    from edgernn.runners import target as target_mod

    def boom(*a, **k):
        if warn:
            warnings.warn("a library's UserWarning", UserWarning, stacklevel=1)
        raise exc

    monkeypatch.setattr(target_mod, "load_target", boom)


@pytest.mark.parametrize("exc, expected", [
    (MemoryError(), "edgernn: error: out of memory (MemoryError); use smaller inputs"),
    (RuntimeError(""), "edgernn: internal error: RuntimeError: RuntimeError (set EDGERNN_DEBUG"),
    (ValueError("\n\n"), "edgernn: internal error: ValueError: ValueError (set EDGERNN_DEBUG"),
    (KeyError(), "edgernn: internal error: KeyError: KeyError (set EDGERNN_DEBUG"),
], ids=["MemoryError()", "empty RuntimeError", "blank lines", "KeyError()"])
def test_catch_all_survives_empty_messages(monkeypatch, exc, expected):
    _failing_command(monkeypatch, exc)
    code, _, err = cli(["targets", "show", "x86"])
    assert code == 1
    assert err.strip().startswith(expected), err
    assert len(err.strip().splitlines()) == 1


def test_library_warning_never_precedes_the_refusal(monkeypatch):
    from edgernn.errors import EdgeRNNError

    _failing_command(monkeypatch, EdgeRNNError("the refusal"), warn=True)
    code, _, err = cli(["targets", "show", "x86"])
    assert code == 1 and err.strip() == "edgernn: error: the refusal"


def test_control_characters_in_a_refusal_are_escaped(monkeypatch):
    from edgernn.errors import EdgeRNNError

    _failing_command(monkeypatch, EdgeRNNError(f"model {ESC} is bad"))
    code, _, err = cli(["targets", "show", "x86"])
    assert code == 1 and "\x1b" not in err and "\\x1b[2J" in err


# -- the pieces, directly ------------------------------------------------------------------------
def test_names_shown_and_file_part():
    from edgernn.names import file_part, shown

    assert shown("a\x1b[2Jb\x07\u202e") == "a\\x1b[2Jb\\x07\\u202e"
    assert shown("plain name-1.pt") == "plain name-1.pt" and shown(3) == 3
    assert file_part("../../evil\x1b") == "_.._evil_"
    assert file_part("...") == "_" and file_part("pareto-x86") == "pareto-x86"


def test_manifest_files_are_trusted_only_inside_and_matching(tmp_path):
    from edgernn.convert.artifact import Artifact
    from edgernn.hashing import sha256_file
    from edgernn.measure.plan import untrusted_files

    work = tmp_path / "export"
    work.mkdir()
    mine, other = work / "a.onnx", tmp_path / "other.onnx"
    mine.write_bytes(b"model bytes")
    other.write_bytes(b"another model")

    def art(p: Path, size: int | None = None, sha: str | None = None) -> Artifact:
        return Artifact("onnx-fp32", "onnx", "fp32", "onnxruntime", path=str(p),
                        size_bytes=p.stat().st_size if size is None else size,
                        sha256=sha or sha256_file(p))

    assert untrusted_files(work, [art(mine)]) is None
    assert "is not inside" in untrusted_files(work, [art(other)])
    assert "is not inside" in untrusted_files(work, [art(work / ".." / "other.onnx")])
    assert "has 11 bytes, not 12" in untrusted_files(work, [art(mine, size=12)])
    assert "does not match its sha256" in untrusted_files(work, [art(mine, sha="0" * 64)])


def test_nonfinite_outputs_fail_the_row():
    from edgernn.measure.rows import fail_nonfinite

    row = {"status": "ok", "value": 0.605, "metric": "accuracy", "parity_max_abs_diff": 0.0,
           "metrics": {"accuracy": 0.605}, "agreement": 1.0}
    fail_nonfinite(row, {"nonfinite_outputs": 724})
    assert row["status"] == "run failed" and row["value"] is None
    assert row["reason"].startswith("non-finite output: 724 output value(s) are NaN or Inf")
    row = {"status": "ok", "value": 0.5, "metric": "mae", "parity_max_abs_diff": math.nan}
    fail_nonfinite(row, {})
    assert row["status"] == "run failed" and "metrics are NaN or Inf" in row["reason"]
    row = {"status": "ok", "value": 0.5, "metric": "mae", "parity_max_abs_diff": 0.1}
    fail_nonfinite(row, {"nonfinite_outputs": 0})
    assert row["status"] == "ok"


def test_yaml_limits_count_expansion_not_text():
    from edgernn.limits import MAX_YAML_NODES, _expanded_nodes, _Loader

    small = yaml_node("a: &a [1, 2]\nb: [*a, *a, *a]\n")
    # root, keys a and b, list a with its 2 items, list b with 3 copies of list a
    assert _expanded_nodes(small) == 1 + 2 + (1 + 2) + (1 + 3 * (1 + 2))
    with pytest.raises(Exception, match="an alias bomb"):
        import yaml

        yaml.load("x:\n" + laughs(5), Loader=_Loader)  # noqa: S506
    assert MAX_YAML_NODES < 9 ** 6


def yaml_node(text: str) -> Any:
    import yaml

    return yaml.compose(text, Loader=yaml.SafeLoader)


def test_nan_weights_bench_fails_and_is_never_picked(hostile, tmp_path):
    """NaN weights: every row ``run failed: non-finite output``; select picks nothing."""
    ck = copy.deepcopy(hostile.ckpt)
    ck["state_dict"]["head.weight"][:] = float("nan")
    torch.save(ck, tmp_path / "nan.pt")
    db = tmp_path / "nan.db"
    code, out, err = cli(["bench", tmp_path / "nan.pt", "--data", hostile.data, "--format", "onnx",
                          "--quantize", "none", "--trials", "1", "--runs", "5", "--min-seconds",
                          "0", "--warmup", "1", "--out", tmp_path / "b", "--db", db])
    assert code == 1 and "no variant is ok" in err
    rows = json.loads((tmp_path / "b" / "results.json").read_text())
    assert {r["status"] for r in rows} == {"run failed"}
    assert all(r["reason"].startswith("non-finite output: ") for r in rows)
    code, out, err = cli(["select", "--db", db, "--target", "x86"])
    assert code == 1 and "PICK" not in out
