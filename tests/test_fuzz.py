"""Property-based fuzzing of every input a user controls: model files, evaluation data, target
YAML and CLI arguments. Every case must end in success or ONE error line with a non-zero exit:
never a traceback, an internal error or a hang."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import sqlite3
import zipfile
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import click
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import cli, count

# cases per fuzz test: the quick tier's profile, or CI's (``EDGERNN_FUZZ=ci``, set by
# ./scripts/test.sh for the full suite): 4 x 2400 (model files, npz, target YAML, CLI) plus
# 2 x 300 (aliased YAML, stored rows: slower cases) = 10,200 per CI run; quick: 660
PROFILES = {"quick": 150, "ci": 2400}
PROFILE = os.environ.get("EDGERNN_FUZZ", "quick")
if PROFILE not in PROFILES:
    raise ValueError(f"EDGERNN_FUZZ={PROFILE!r}: choose one of {', '.join(PROFILES)}")
for _name, _n in PROFILES.items():
    settings.register_profile(
        f"edgernn-{_name}", max_examples=_n, deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.data_too_large, HealthCheck.filter_too_much])
FUZZ = settings(settings.get_profile(f"edgernn-{PROFILE}"))
LIGHT = settings(FUZZ, max_examples=max(30, FUZZ.max_examples // 8))  # the slower cases


@contextmanager
def time_limit(seconds: int):
    def boom(*_):
        raise TimeoutError(f"hung for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def click_rejects(args: list) -> click.UsageError | None:
    """Parse ``args`` with click alone, walking the command groups as click does, with no
    command body run: the usage error click itself raises, else None."""
    from edgernn.cli import cli as group

    cmd, name, rest, parent = group, "edgernn", [str(a) for a in args], None
    try:
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            while True:
                ctx = cmd.make_context(name, rest, parent=parent)
                if not isinstance(cmd, click.Group):
                    return None
                protected = (ctx._protected_args if hasattr(ctx, "_protected_args")
                             else ctx.protected_args)  # click < 8.2
                remaining = [*protected, *ctx.args]
                if not remaining:
                    if cmd.invoke_without_command:
                        return None
                    raise click.UsageError("Missing command.", ctx)
                name, cmd, rest = cmd.resolve_command(ctx, remaining)
                parent = ctx
    except click.exceptions.Exit:  # --help / --version: shown, exit 0
        return None
    except click.UsageError as e:
        return e
    except ValueError as e:  # click's Path type stats a NUL-byte path: edgernn's entry says so
        if "null byte" in str(e):
            return None
        raise


def assert_clean(args, kind: str) -> tuple[int, str, str]:
    """Success; exit 1 with exactly one ``edgernn: error:`` line; or, only for arguments
    click's own parser rejects, click's usage error (exit 2) with click's message."""
    with time_limit(60):
        code, out, err = cli(args)
    count(f"fuzz cases run ({kind})")
    assert "Traceback" not in err and "internal error" not in err, err
    rejected = click_rejects(args)
    if rejected is not None:
        assert code == 2, (args, code, err)
        if isinstance(rejected, click.exceptions.NoArgsIsHelpError):
            assert "Usage:" in err, err
        else:
            assert err.rstrip().endswith(f"Error: {rejected.format_message()}"), err
    elif code != 0:  # edgernn's own warnings (a skipped stored row) may come first
        lines = [ln for ln in err.strip().splitlines()
                 if ln.strip() and not ln.startswith("edgernn: warning: ")]
        assert code == 1, (args, code, err)
        assert len(lines) == 1 and lines[0].startswith("edgernn: error: "), err
    return code, out, err


@pytest.fixture(scope="module")
def good(weather_models, tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    return Good(model=weather_models["lstm"].read_bytes(), path=weather_models["lstm"],
                eval=weather_models["eval"], dir=d)


class Good(dict):
    """The fuzz tests' good files; shown by name only in a failing case's report (not 90 kB
    of model bytes)."""

    def __repr__(self) -> str:
        return f"good(model={self['path']}, eval={self['eval']})"


@FUZZ
@given(data=st.data())
def test_mutated_model_files(good, data):
    blob = bytearray(good["model"])
    how = data.draw(st.sampled_from(["truncate", "flip", "member", "random", "splice"]))
    if how == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    elif how == "flip":
        for _ in range(data.draw(st.integers(1, 30))):
            i = data.draw(st.integers(0, len(blob) - 1))
            blob[i] ^= 1 << data.draw(st.integers(0, 7))
    elif how == "member":
        src = zipfile.ZipFile(io.BytesIO(bytes(blob)))
        names = src.namelist()
        victim = data.draw(st.sampled_from(names))
        action = data.draw(st.sampled_from(["drop", "garbage", "rename", "empty"]))
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for n in names:
                content = src.read(n)
                if n == victim:
                    if action == "drop":
                        continue
                    if action == "garbage":
                        content = data.draw(st.binary(max_size=200))
                    if action == "rename":
                        n = n + ".renamed"
                    if action == "empty":
                        content = b""
                z.writestr(n, content)
        blob = bytearray(buf.getvalue())
    elif how == "random":
        blob = bytearray(data.draw(st.binary(max_size=4000)))
    else:
        at = data.draw(st.integers(0, len(blob)))
        blob[at:at] = data.draw(st.binary(min_size=1, max_size=64))
    p = good["dir"] / "fuzzed.pt"
    p.write_bytes(bytes(blob))
    assert_clean(["inspect", p], "model files")


ARRAYS = st.builds(
    lambda dtype, shape, fill: np.full(shape, fill).astype(dtype),
    st.sampled_from(["float32", "float64", "int64", "int8", "uint8", "bool", "complex64"]),
    st.lists(st.sampled_from([0, 1, 2, 4, 14, 30]), min_size=0, max_size=4).map(tuple),
    st.sampled_from([0, 1, -3, 7, 0.5, np.nan, np.inf, -np.inf, 1e30]),
)


@FUZZ
@given(arrays=st.dictionaries(st.sampled_from(["x", "y", "z", "meta", "X"]), ARRAYS,
                              max_size=4), real=st.booleans(), data=st.data())
def test_fuzzed_evaluation_data(good, arrays, real, data):
    ev = np.load(good["eval"])
    if real and data.draw(st.booleans()):
        arrays.setdefault("x", ev["x"][: data.draw(st.integers(0, 20))])
    if real:
        arrays.setdefault("y", ev["y"][: data.draw(st.integers(0, 20))])
    p = good["dir"] / "fuzzed.npz"
    if data.draw(st.integers(0, 9)) == 0:
        p.write_bytes(data.draw(st.binary(max_size=300)))
    else:
        np.savez(p, **arrays)
    assert_clean(["inspect", good["path"], "--data", p], "npz files")


YAML_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 100), st.text(max_size=12),
                        st.lists(st.sampled_from(["onnx", "tflite", "x", 3]), max_size=3),
                        st.dictionaries(st.sampled_from(["onnx", "tflite", "zz"]),
                                        st.sampled_from(["onnxruntime", "litert", "magic", 1])))


@FUZZ
@given(doc=st.dictionaries(
    st.sampled_from(["name", "runner", "formats", "runtimes", "threads", "cpus", "quantize",
                     "emulated", "host", "port", "python", "serial", "bogus"]),
    YAML_VALUES, max_size=9), raw=st.one_of(st.none(), st.text(max_size=80)),
    base=st.booleans())
def test_fuzzed_target_yaml(good, doc, raw, base):
    p = good["dir"] / "fuzzed.yaml"
    if raw is not None:
        p.write_text(raw)
    else:
        full = {"name": "t", "runner": "local", "formats": ["onnx"],
                "runtimes": {"onnx": "onnxruntime"}} if base else {}
        p.write_text(yaml.safe_dump({**full, **doc}))
    assert_clean(["targets", "show", p], "target yaml")


TOKENS = ["inspect", "export", "select", "results", "targets", "show", "datasets", "--target",
          "--format", "--quantize", "--max-latency-ms", "--max-size-mb", "--max-drop",
          "--input-shape", "--input-dtype", "--task", "--metric", "--prefer", "--latency-stat",
          "--json", "--data", "all", "none", "onnx", "tflite", "int8", "-1", "0", "1e9", "nan",
          "x86", "rpi4", "mars", "batch=1,seq=4,2", "seq=0", "", "'; rm -rf /", "$(id)",
          "/nonexistent/m.pt", "--trust-pickle", "--import", "os", "--help"]


WORDS = st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=8)), max_size=7)
# half the cases start with a real command, so they get past click into edgernn's own checks
COMMANDS = st.sampled_from([["inspect"], ["export"], ["select"], ["results"], ["datasets"],
                            ["targets"], ["targets", "show"]])


@FUZZ
@given(args=st.one_of(WORDS, st.builds(lambda c, rest: [*c, *rest], COMMANDS, WORDS)))
def test_fuzzed_cli_arguments(good, args, tmp_path_factory):
    db = good["dir"] / "empty.db"
    if args and args[0] in ("select", "results"):
        args = [*args, "--db", str(db)]
    if args and args[0] == "export":
        args = [a if a != "x86" else "mars" for a in args]  # never start a real export
    assert_clean(args, "cli arguments")


# -- YAML built to abuse aliases: repeated sub-documents dump as anchors and aliases ------------
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**6), st.text(max_size=6),
                    st.sampled_from([".nan", ".inf", "\x1b[2J", "../..", "$(id)"]))
NESTED = st.recursive(
    SCALARS,
    lambda kids: st.one_of(
        st.builds(lambda x, n: [x] * n, kids, st.integers(1, 12)),  # one object, n aliases
        st.lists(kids, max_size=4),
        st.dictionaries(st.text(max_size=5), kids, max_size=4)),
    max_leaves=12)
TARGET_KEYS = ["name", "runner", "formats", "runtimes", "options", "timeout_s", "threads",
               "quantize", "aliases", "host", "hosts", "devices", "count", "cpus"]


@LIGHT
@given(doc=st.dictionaries(st.sampled_from(TARGET_KEYS), NESTED, max_size=6),
       base=st.booleans(), ssh=st.booleans())
def test_fuzzed_yaml_with_aliases(good, doc, base, ssh):
    """Target files whose values are nested, aliased (anchors reused up to 12 times per
    level), out of range or hostile; read through the YAML limits and the target schema."""
    full = ({"name": "t", "runner": "ssh" if ssh else "local", "formats": ["onnx"],
             "runtimes": {"onnx": "onnxruntime"}} if base else {})
    p = good["dir"] / "aliased.yaml"
    p.write_text(yaml.safe_dump({**full, **doc}, allow_unicode=False))
    assert_clean(["targets", "show", p], "aliased yaml")


ROW = {"model": "m", "model_sha256": "s", "variant": "m/onnx-fp32", "format": "onnx",
       "quantization": "fp32", "target": "x86", "status": "ok", "runtime": "onnxruntime",
       "size_bytes": 1000, "latency_ms": {"p50": 0.5, "p90": 0.6, "p99": 0.7}, "metric": "accuracy",
       "value": 0.9, "metrics": {"accuracy": 0.9}, "accuracy_drop": 0.0, "notes": [],
       "timestamp": "2026-01-01T00:00:00+00:00", "data_sha256": "d"}
KEY = {"variant", "target", "model_sha256", "data_sha256"}  # the hostile row keeps its own key
HOSTILE_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10**9, 10**9), st.text(max_size=8),
    st.sampled_from([float("nan"), float("inf"), -1.0, -0.0, 1e308, "\x1b]0;x\x07"]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(),
                                                         max_size=2))


@pytest.fixture(scope="module")
def rows_template(good) -> Path:
    """A store holding two good rows, copied for each case (quicker than making one)."""
    from edgernn.results.store import Store

    db = good["dir"] / "template.db"
    with Store(db) as s:
        s.add({**ROW, "variant": "m/torch-fp32", "latency_ms": {"p50": 1.0, "p90": 1, "p99": 1}})
        s.add(ROW)
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every row in the main file
    con.close()
    return db


@LIGHT
@given(changes=st.dictionaries(st.sampled_from(sorted(set(ROW) - KEY)), HOSTILE_VALUES,
                               max_size=4),
       raw=st.one_of(st.none(), st.text(max_size=40)), command=st.sampled_from(
           [["results"], ["select", "--target", "x86"], ["results", "--all"]]))
def test_fuzzed_stored_rows(good, rows_template, changes, raw, command):
    """Good stored rows beside one whose fields were replaced by hostile values (or whose
    row_json is arbitrary text): results/select skip what is malformed and show the rest."""
    db = good["dir"] / "rows.db"
    for stale in (db, db.with_name("rows.db-wal"), db.with_name("rows.db-shm")):
        stale.unlink(missing_ok=True)
    shutil.copy(rows_template, db)
    bad = raw if raw is not None else json.dumps({**ROW, "variant": "m/hostile", **changes})
    con = sqlite3.connect(db)
    con.execute("INSERT INTO rows (model_sha256, model, variant, target, data_sha256, status, "
                "timestamp, row_json) VALUES ('s', 'm', 'm/hostile', 'x86', 'd', 'ok', 't', ?)",
                (bad,))
    con.commit()
    con.close()
    code, out, err = assert_clean([*command, "--db", db], "stored rows")
    assert code == 0, err  # the good rows are always there to show and pick from
    assert ("PICK" if command[0] == "select" else "onnx-fp32") in out, out
