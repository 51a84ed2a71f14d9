# ruff: noqa: E501  (literal benchmark_model output lines are long)
"""The adb runner (Android target).

(a) The benchmark_model output parser on literal samples of every output form.
(b)/(c) End to end through the REAL adb client and server (Debian adb 29) against STAND-IN
devices: a small adb-protocol daemon under the arm64 Python of the emulated Debian root
(scripts/android_standin.sh), running a STAND-IN benchmark_model on the real LiteRT interpreter
under qemu-user. The device states (unauthorized, offline) are real adb states produced through
the protocol, not stubs. Timings under emulation are not phone latency: these tests check
correctness, not speed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

import edgernn.runners.adb  # noqa: F401  (registers the "adb" runner until the package imports it)
from edgernn.errors import RunnerError
from edgernn.runners.adb import AdbRunner, elf_abi, parse_devices
from edgernn.runners.benchmark_output import (
    BenchmarkOutputError,
    failure_reason,
    parse_benchmark_output,
)
from edgernn.runners.target import parse_target
from tests.conftest import cli as _cli

REPO = Path(__file__).resolve().parent.parent
PI_SCRIPT = REPO / "scripts" / "emulated_pi.sh"
STANDIN = REPO / "scripts" / "android_standin.sh"
BENCH_BINARY = REPO / "scripts" / "android_standin" / "benchmark_model"
ANDROID_DIR = Path(os.environ.get("EDGERNN_ANDROID_DIR", "/var/tmp/edgernn-android"))
DEVICE_TMP = ANDROID_DIR / "root" / "data" / "local" / "tmp"
FAST = ["--runs", "10", "--min-seconds", "0", "--warmup", "2"]

# ---------------------------------------------------------------------------------------------
# (a) parser: literal samples of the real tool's output forms
# ---------------------------------------------------------------------------------------------

NEW_FORM = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [4]
INFO: Graph: [/data/local/tmp/model.tflite]
INFO: Report the peak memory footprint: [1]
INFO: #threads used for CPU inference: [4]
INFO: Use xnnpack: [1]
INFO: Loaded model /data/local/tmp/model.tflite
INFO: Initialized TensorFlow Lite runtime.
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: XNNPACK delegate created.
INFO: Explicitly applied XNNPACK delegate, and the model graph will be completely executed by the delegate.
INFO: The input model file size (MB): 2.2
INFO: Initialized session in 12.3ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=51 first=10234 curr=9876 min=9800 max=10500 avg=10100 std=130 p5=9810 median=10050 p95=10400

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=100 first=9900 curr=9876 min=9700 max=10600 avg=9950 std=120 p5=9750 median=9930 p95=10300

INFO: Inference timings in us: Init: 12300, First inference: 10234, Warmup (avg): 10100, Inference (avg): 9950
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=3.1 overall=5.2
INFO: Overall peak memory footprint (MB) via periodic monitoring: 7.4
INFO: Memory status at the end of exeution:
INFO: - VmRSS              : 10 MB
"""

OLD_FORM = """\
STARTING!
Min num runs: [50]
Min runs duration (seconds): [1]
Num threads: [1]
Graph: [/data/local/tmp/model.tflite]
Use gpu: [0]
Loaded model /data/local/tmp/model.tflite
The input model file size (MB): 0.547
Initialized session in 1.23457e+03ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=3 first=3612004 curr=3498000 min=3498000 max=3612004 avg=3.53901e+06 std=52061

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=3510000 curr=3512390 min=3490000 max=3620000 avg=3.51239e+06 std=21000

Inference timings in us: Init: 1.23457e+06, First inference: 3612004, Warmup (avg): 3.53901e+06, Inference (avg): 3.51239e+06
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Memory footprint delta from the start of the tool (MB): init=2.89844 overall=3.83594
"""


def test_parse_new_form_with_percentiles_and_memory():
    p = parse_benchmark_output(NEW_FORM)
    assert p.init_ms == pytest.approx(12.3) and p.first_ms == pytest.approx(10.234)
    assert p.warmup.phase == "warmup" and p.warmup.count == 51
    assert p.timed.phase == "timed" and p.timed.count == 100
    assert p.warmup_avg_ms == pytest.approx(10.1) and p.inference_avg_ms == pytest.approx(9.95)
    assert p.model_size_mb == 2.2
    assert (p.memory_init_mb, p.memory_overall_mb, p.peak_memory_mb) == (3.1, 5.2, 7.4)
    assert any("Explicitly applied XNNPACK" in x for x in p.delegate_lines)
    res = p.to_result()
    lat = res["latency_ms"]
    assert lat["p50"] == pytest.approx(9.93) and lat["p50_source"] == "median"  # median, not avg
    assert lat["mean"] == pytest.approx(9.95) and lat["std"] == pytest.approx(0.12)
    assert (lat["min"], lat["max"], lat["count"]) == (9.7, 10.6, 100)
    assert lat["p5"] == pytest.approx(9.75) and lat["p95"] == pytest.approx(10.3)
    assert lat["p90"] is None and lat["p99"] is None and lat["iqr"] is None
    assert res["load_ms"] == pytest.approx(12.3) and res["first_ms"] == pytest.approx(10.234)
    assert res["peak_rss_mb"] == 7.4 and res["peak_delta_mb"] == 5.2
    assert "median" in res["latency_note"]


def test_parse_old_form_scientific_notation_no_percentiles_no_peak_line():
    p = parse_benchmark_output(OLD_FORM)
    assert p.timed.avg == pytest.approx(3.51239e6) and p.timed.median is None
    assert p.warmup.avg == pytest.approx(3.53901e6)
    assert p.init_ms == pytest.approx(1234.57)  # "Initialized session in 1.23457e+03ms."
    assert p.inference_avg_ms == pytest.approx(3512.39)
    assert p.peak_memory_mb is None and p.memory_overall_mb == pytest.approx(3.83594)
    res = p.to_result()
    assert res["latency_ms"]["p50"] == pytest.approx(3512.39)  # the mean: no median printed
    assert res["latency_ms"]["p50_source"] == "mean" and "MEAN" in res["latency_note"]
    assert "p5" not in res["latency_ms"]
    assert "peak_rss_mb" not in res and res["peak_delta_mb"] == pytest.approx(3.83594)


def test_parse_without_memory_lines_and_without_timings_line():
    text = "\n".join(x for x in OLD_FORM.splitlines()
                     if "Memory footprint" not in x and "Inference timings" not in x)
    p = parse_benchmark_output(text)
    res = p.to_result()
    assert "peak_rss_mb" not in res and "peak_delta_mb" not in res
    assert p.init_ms == pytest.approx(1234.57)
    assert p.first_ms == pytest.approx(3612.004)  # the warm-up line's first= is the first run


def test_parse_all_same_line_and_older_wordings():
    text = """Initialized session in 0.5ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=1 curr=15

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 curr=12(all same)

Peak memory footprint (MB): init=0 overall=1.5e+00
"""
    p = parse_benchmark_output(text)
    assert p.timed.all_same and p.timed.count == 50 and p.timed.avg == 12
    lat = p.latency_ms()
    assert lat["p50"] == 0.012 and lat["std"] == 0.0 and lat["p50_source"] == "all same"
    assert p.first_ms == 0.015 and p.memory_overall_mb == 1.5


def test_parse_tf1_average_timings_line():
    text = """Initialized session in 38.467ms.
count=5 first=90000 curr=83000 min=80000 max=90000 avg=83235 std=3000
count=50 first=80000 curr=79000 min=78000 max=82000 avg=79760.9 std=900
Average inference timings in us: Warmup: 83235, Init: 38467, no stats: 79760.9
"""
    p = parse_benchmark_output(text)
    assert p.timed.avg == 79760.9 and p.warmup.avg == 83235
    assert p.inference_avg_ms == pytest.approx(79.7609) and p.first_ms == 90.0


def test_op_profiling_count_lines_are_not_run_statistics():
    text = NEW_FORM + """\
INFO: Profiling Info for Benchmark Initialization:
INFO: ============================== Run Order ==============================
INFO: Timings (microseconds): count=1 curr=5000
INFO: Memory (bytes): count=0
INFO: count=999 first=1 curr=1 min=1 max=2 avg=1.5 std=0
"""
    p = parse_benchmark_output(text)
    assert p.timed.count == 100 and p.timed.median == 9930


@pytest.mark.parametrize("text, words", [
    ("", "lacks the timed-run statistics line"),
    ("Initialized session in 1ms.\nsegmentation fault\n", "lacks the timed-run statistics line"),
    ("Initialized session in 1ms.\nRunning benchmark for at least 1 iterations and at least 0.5 "
     "seconds but terminate if exceeding 150 seconds.\ncount=5 first=1 curr=1 min=1 max=2 avg=1.2 "
     "std=0\n", "only one 'count=' line (the warm-up)"),
    ("count=5 first=1 curr=1 min=1 max=2 avg=1.2 std=0\ncount=50 first=1 curr=1 min=1 max=2 "
     "avg=1.2 std=0\n", "'Initialized session in ...ms.'"),
    ("Initialized session in 1ms.\ncount=5 first=1 curr=1\ncount=50 first=1 curr=1 min=1\n",
     "garbled statistics line (no avg=)"),
])
def test_garbled_or_incomplete_output_names_the_missing_line(text, words):
    with pytest.raises(BenchmarkOutputError) as e:
        parse_benchmark_output(text)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_failure_reason_is_the_tools_own_line():
    gpu = ("INFO: Loaded model m.tflite\nINFO: Created TensorFlow Lite delegate for GPU.\n"
           "ERROR: Failed to apply GPU delegate.\nERROR: Benchmarking failed.\n")
    assert failure_reason(gpu) == "Failed to apply GPU delegate."
    mmap = "STARTING!\nCould not open 'x.tflite'.\nFailed to mmap model x.tflite\nBenchmarking failed.\n"
    assert failure_reason(mmap) == "Failed to mmap model x.tflite"
    assert failure_reason("ERROR: Benchmarking failed.\n") == "Benchmarking failed."
    assert failure_reason("all good\n") is None


def test_parse_adb_devices_output():
    text = ("* daemon not running; starting now at tcp:5037\n* daemon started successfully\n"
            "List of devices attached\nR58M12ABCDE\tdevice\n127.0.0.1:5555\toffline\n"
            "emulator-5554\tunauthorized\n0123456789\tno permissions (user in plugdev group; are "
            "your udev rules wrong?); see [http://developer.android.com/tools/device.html]\n\n")
    devs = parse_devices(text)
    assert devs[:3] == [("R58M12ABCDE", "device"), ("127.0.0.1:5555", "offline"),
                        ("emulator-5554", "unauthorized")]
    assert devs[3][1].startswith("no permissions")
    assert parse_devices("List of devices attached\n\n") == []


def test_elf_abi_of_host_binary_and_script():
    true = Path(shutil.which("true") or "/bin/true")
    assert elf_abi(true) in ("x86_64", "arm64-v8a")
    assert elf_abi(BENCH_BINARY) is None  # the stand-in launcher is a shell script


# ---------------------------------------------------------------------------------------------
# (b), (c) end to end through the real adb against stand-in devices
# ---------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _adb(port: int, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["adb", "-P", str(port), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "ADB_MDNS": "0"})


@pytest.fixture(scope="module")
def android(tmp_path_factory):
    """Stand-in devices on a private adb server; skip loudly when the host cannot provide them."""
    if shutil.which("adb") is None:
        pytest.skip("ANDROID STAND-IN UNAVAILABLE, adb runner untested end to end: adb is not "
                    "installed (apt-get install adb)")
    proc = subprocess.run([str(PI_SCRIPT), "build"], capture_output=True, text=True, timeout=1800)
    if proc.returncode == 77:
        pytest.skip(f"ANDROID STAND-IN UNAVAILABLE (emulated arm64 root): {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    server = _free_port()
    env = {**os.environ, "ANDROID_ADB_SERVER_PORT": str(server)}
    ports = {name: _free_port() for name in ("offline", "main", "old", "unauth")}
    options = {"main": ["--form", "new"], "old": ["--form", "old", "--no-shell-v2"],
               "unauth": ["--auth", "never"],
               # adb connect waits 10 s for a device that never answers: connect in the background
               "offline": ["--state", "offline", "--no-connect"]}
    started = []
    offline_connect = None
    assert _adb(server, "start-server").returncode == 0
    try:
        for name, port in ports.items():
            t0 = time.monotonic()
            proc = subprocess.run([str(STANDIN), "start", "--port", str(port), *options[name]],
                                  capture_output=True, text=True, env=env, timeout=180)
            if proc.returncode == 77:
                pytest.skip(f"ANDROID STAND-IN UNAVAILABLE: {proc.stderr.strip()}")
            assert proc.returncode == 0, proc.stderr[-2000:]
            started.append(port)
            print(f"stand-in {name} on {port}: {time.monotonic() - t0:.1f} s: {proc.stdout.strip()}")
            if name == "offline":
                offline_connect = subprocess.Popen(
                    ["adb", "-P", str(server), "connect", f"127.0.0.1:{port}"], text=True,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                    env={**os.environ, "ADB_MDNS": "0"})
        out, _ = offline_connect.communicate(timeout=60)
        assert "failed to connect" in out, out
        states = dict(parse_devices(_adb(server, "devices").stdout))
        assert states == {f"127.0.0.1:{ports['main']}": "device",
                          f"127.0.0.1:{ports['old']}": "device",
                          f"127.0.0.1:{ports['unauth']}": "unauthorized",
                          f"127.0.0.1:{ports['offline']}": "offline"}, states
        other_server = _free_port()  # nothing runs there: the runner must start it
        yield {"server": server, "ports": ports, "other_server": other_server,
               "tmp": tmp_path_factory.mktemp("android")}
        _adb(other_server, "kill-server")
    finally:
        for port in started:
            subprocess.run([str(STANDIN), "stop", "--port", str(port)], capture_output=True,
                           env=env, timeout=180)
        _adb(server, "kill-server")


def write_target(android, name: str, **keys) -> Path:
    spec = {"name": name, "description": "STAND-IN Android device (not a phone)", "runner": "adb",
            "adb_server": f"127.0.0.1:{android['server']}",
            "serial": f"127.0.0.1:{android['ports']['main']}",
            "benchmark_model": str(BENCH_BINARY), "delegates": ["xnnpack"],
            "formats": ["tflite"], "runtimes": {"tflite": "litert"}, "quantize": ["dynamic"],
            "threads": 1, "emulated": True}
    spec.update(keys)
    spec = {k: v for k, v in spec.items() if v is not None}
    p = android["tmp"] / f"{name}.yaml"
    p.write_text(yaml.safe_dump(spec))
    return p


def runner_for(android, name: str, **keys) -> AdbRunner:
    p = write_target(android, name, **keys)
    return AdbRunner(parse_target(yaml.safe_load(p.read_text()), p))


def run_dirs() -> list[str]:
    return sorted(p.name for p in DEVICE_TMP.glob("edgernn-*"))


def bench(android, weather_models, target: Path, out: Path, model: str = "lstm"):
    t0 = time.monotonic()
    code, stdout, err = _cli(["bench", weather_models[model], "--data", weather_models["eval"],
                              "--target", target, "--format", "tflite-litert", "--quantize",
                              "none", "--out", out, "--wide", *FAST])
    rows = {}
    if (out / "results.json").exists():
        rows = {r["variant"]: r for r in json.loads((out / "results.json").read_text())}
    print(f"bench {target.name}: {time.monotonic() - t0:.1f} s")
    return code, stdout, err, rows


@pytest.fixture(scope="module")
def bench_out(android, tmp_path_factory):
    return tmp_path_factory.mktemp("adb-bench")  # shared: the tflite export is reused


def test_bench_on_standin_device_new_form(android, weather_models, bench_out):
    before = run_dirs()
    target = write_target(android, "android-standin")
    code, stdout, err, rows = bench(android, weather_models, target, bench_out)
    assert code == 0, err
    r = rows["lstm/tflite-litert-fp32@xnnpack"]  # one row per delegate
    assert r["status"] == "ok", r
    assert r["delegate"] == "xnnpack" and "host" in r["accuracy_source"]
    assert r["runtime"] == "benchmark_model+xnnpack" and r["runtime_version"].startswith("sha256:")
    dev = r["device"]
    assert dev["machine"] == "aarch64" and dev["abi"] == "arm64-v8a" and dev["system"] == "Android"
    assert dev["board"] == "edgernn stand-in (qemu arm64)" and dev["os"] == "Android 14 (SDK 34)"
    lat = r["latency_ms"]
    assert lat["count"] >= 10 and lat["p50_source"] == "median"  # new form prints median=
    assert 0 < lat["min"] <= lat["p50"] <= lat["max"] and lat["p5"] is not None
    assert lat["load"] > 0 and lat["first"] > 0
    assert r["peak_rss_mb"] > 0 and r["peak_mb"] is not None
    assert r["emulated"] is True and "(emulated)" in stdout
    # accuracy: host LiteRT on the same file agrees with the PyTorch baseline
    assert r["value"] == pytest.approx(rows["lstm/torch-fp32"]["value"], abs=0.02)
    assert r["parity_max_abs_diff"] < 1e-4 and r["agreement"] > 0.99
    assert run_dirs() == before  # the run directory is removed


def test_bench_old_form_without_shell_v2_and_taskset(android, weather_models, bench_out):
    """Older output form (no prefixes, no median, no peak line) over adb shell v1, where the
    exit code is read from an echoed marker; pinned with taskset."""
    target = write_target(android, "android-standin-old",
                          serial=f"127.0.0.1:{android['ports']['old']}", taskset="1",
                          delegates=["cpu"])
    code, _, err, rows = bench(android, weather_models, target, bench_out)
    assert code == 0, err
    r = rows["lstm/tflite-litert-fp32@cpu"]
    assert r["status"] == "ok", r
    assert r["runtime"] == "benchmark_model+cpu"
    assert r["latency_ms"]["p50_source"] == "mean" and r["latency_ms"]["p50"] > 0
    assert r["peak_rss_mb"] is None and r["peak_mb"] is not None  # delta line only


def test_measure_reports_sources_and_one_delegate_per_call(android, weather_models, bench_out):
    art = bench_out / "lstm" / "lstm.tflite-litert.fp32.tflite"
    assert art.exists(), sorted(p.name for p in (bench_out / "lstm").iterdir())
    data = bench_out / "lstm" / "probe-data.npz"
    runner = runner_for(android, "android-measure", delegates=["xnnpack", "cpu"])
    try:
        assert runner.delegates == ["xnnpack", "cpu"] and runner.shell_v2
        job = {"threads": 1, "warmup": 1, "min_runs": 5, "max_runs": 5, "min_seconds": 0,
               "eval_batch": 1, "data": "data", "runtime": "litert", "path": "artifact",
               "task": "classify", "batch_axis": 0}
        files = {"data": data, "artifact": art}
        results = {d: runner.measure({**job, "delegate": d}, files) for d in runner.delegates}
    finally:
        runner.close()
    for d, res in results.items():
        assert res["ok"] and res["delegate"] == d and res["runtime"] == f"benchmark_model+{d}"
        assert res["accuracy_source"].startswith("host litert") and "same file" in res["accuracy_source"]
        assert res["latency_source"].startswith("benchmark_model on 127.0.0.1:")
        assert res["latency_ms"]["count"] >= 5
    # accuracy is computed once per file on the host, identical for every delegate
    assert results["cpu"]["metrics"] == results["xnnpack"]["metrics"]


def test_rejected_gpu_delegate_is_a_failed_row_with_the_tools_reason(android, weather_models,
                                                                     bench_out):
    before = run_dirs()
    target = write_target(android, "android-standin-gpu", delegates=["gpu"])
    code, _, err, rows = bench(android, weather_models, target, bench_out)
    r = rows["lstm/tflite-litert-fp32@gpu"]
    assert r["status"] == "run failed"
    assert "Failed to apply GPU delegate." in r["reason"] and "(gpu)" in r["reason"]
    assert "exit code 1" in r["reason"]
    assert rows["lstm/torch-fp32"]["status"] == "ok"
    assert run_dirs() == before


def test_missing_benchmark_binary_is_one_line(android, weather_models, bench_out, tmp_path):
    target = write_target(android, "android-nobinary", benchmark_model=str(tmp_path / "nope"))
    code, _, err, rows = bench(android, weather_models, target, bench_out)
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "benchmark_model binary" in err and "not found" in err
    assert [v for v in rows] == ["lstm/torch-fp32"]  # the rows so far are kept


def test_wrong_abi_binary_is_refused(android):
    with pytest.raises(RunnerError) as e:
        runner_for(android, "android-x86bin", benchmark_model=shutil.which("true"))
    assert "is built for x86_64" in str(e.value) and "arm64-v8a" in str(e.value)


def test_unauthorized_offline_not_found_and_several_devices(android):
    ports = android["ports"]
    with pytest.raises(RunnerError) as e:
        runner_for(android, "a-unauth", serial=f"127.0.0.1:{ports['unauth']}")
    assert "is unauthorized" in str(e.value) and "RSA key prompt" in str(e.value)
    with pytest.raises(RunnerError) as e:
        runner_for(android, "a-offline", serial=f"127.0.0.1:{ports['offline']}")
    assert "is offline" in str(e.value)
    with pytest.raises(RunnerError) as e:
        runner_for(android, "a-missing", serial="127.0.0.1:1")
    assert "127.0.0.1:1 not found" in str(e.value) and "unauthorized" in str(e.value)
    with pytest.raises(RunnerError) as e:
        runner_for(android, "a-several", serial=None)
    msg = str(e.value)
    assert "4 Android devices attached" in msg and "set serial:" in msg
    assert all(f"127.0.0.1:{p}" in msg for p in ports.values())
    assert "\n" not in msg


def test_server_started_no_device_then_connect(android):
    """A server that is not running is started; with no device the error says so; the connect:
    key then attaches the stand-in and it is picked without a serial."""
    other = android["other_server"]
    with pytest.raises(RunnerError) as e:
        runner_for(android, "a-none", serial=None, adb_server=f"127.0.0.1:{other}")
    assert "no Android device attached" in str(e.value)
    assert _adb(other, "devices").returncode == 0  # the runner started this server
    runner = runner_for(android, "a-connect", serial=None, adb_server=f"127.0.0.1:{other}",
                        connect=f"127.0.0.1:{android['ports']['main']}")
    try:
        assert runner.serial == f"127.0.0.1:{android['ports']['main']}"
        facts = runner.facts()
        assert facts["machine"] == "aarch64" and facts["runtimes"]["ai_edge_litert"]
    finally:
        runner.close()
    with pytest.raises(RunnerError) as e:
        runner_for(android, "a-connect-unauth", serial=None, adb_server=f"127.0.0.1:{other}",
                   connect=f"127.0.0.1:{android['ports']['unauth']}")
    assert "failed to authenticate" in str(e.value)


def test_targets_check_reports_the_device(android, capsys):
    from tests.conftest import run_cli

    code, out, err = run_cli(["targets", "check", write_target(android, "android-check")], capsys)
    assert code == 0, err
    assert "Android 14 (SDK 34)" in out and "aarch64" in out and "benchmark_model" in out


def test_quotes_spaces_and_shell_syntax_in_remote_dir(android, weather_models, bench_out):
    weird = "/data/local/tmp/edgernn q'uote $(touch /tmp/pwned) ; x"
    pwned = ANDROID_DIR / "root" / "tmp" / "pwned"
    pwned.unlink(missing_ok=True)
    art = bench_out / "lstm" / "lstm.tflite-litert.fp32.tflite"
    runner = runner_for(android, "android-weird", remote_dir=weird)
    try:
        res = runner.measure({"threads": 1, "warmup": 1, "min_runs": 3, "min_seconds": 0,
                              "data": "data", "runtime": "litert", "path": "artifact",
                              "task": "classify", "batch_axis": 0},
                             {"data": bench_out / "lstm" / "probe-data.npz", "artifact": art})
    finally:
        runner.close()
    assert res["ok"] and res["latency_ms"]["count"] >= 3
    assert not pwned.exists()
    local = ANDROID_DIR / "root" / weird.lstrip("/")
    try:
        assert local.is_dir() and list(local.iterdir()) == []  # created; the run dir is gone
    finally:  # the path has a '/' inside "$(touch /tmp/pwned)": remove from its top directory
        shutil.rmtree(DEVICE_TMP / weird.split("/")[4], ignore_errors=True)


def test_timeout_kills_the_remote_tool_and_removes_the_run_dir(android, bench_out):
    before = run_dirs()
    art = bench_out / "lstm" / "lstm.tflite-litert.fp32.tflite"
    runner = runner_for(android, "android-timeout", timeout_s=8)
    try:
        t0 = time.monotonic()
        with pytest.raises(RunnerError) as e:
            runner.measure({"threads": 1, "warmup": 1, "min_runs": 3, "min_seconds": 300,
                            "data": "data", "runtime": "litert", "path": "artifact",
                            "task": "classify", "batch_axis": 0},
                           {"data": bench_out / "lstm" / "probe-data.npz", "artifact": art})
        assert time.monotonic() - t0 < 60
    finally:
        runner.close()
    assert "timed out after 8 s" in str(e.value)
    assert run_dirs() == before
    time.sleep(1)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "--min_secs=300" not in ps  # the remote benchmark_model was stopped


def test_one_row_per_delegate_in_bench(android, weather_models, bench_out):
    target = write_target(android, "android-standin-two", delegates=["xnnpack", "cpu"])
    code, _, err, rows = bench(android, weather_models, target, bench_out)
    assert code == 0, err
    a, b = rows["lstm/tflite-litert-fp32@xnnpack"], rows["lstm/tflite-litert-fp32@cpu"]
    assert a["status"] == b["status"] == "ok"
    assert a["runtime"] != b["runtime"] and a["value"] == b["value"]  # same file, host accuracy


def test_step_model_on_standin_device_names_every_input(android, step_kws, tmp_path):
    """benchmark_model gets --input_layer/--input_layer_shape for the step model's two inputs;
    the stand-in checks them against the file as the real tool does."""
    from edgernn.runners.adb import tflite_inputs
    from tests.step_models import KWS_ARGS

    target = write_target(android, "android-step")
    out = tmp_path / "b"
    code, stdout, err = _cli(["bench", step_kws["model"], *KWS_ARGS, "--data", step_kws["eval"],
                              "--target", target, "--format", "tflite-litert", "--quantize",
                              "none", "--step-ms", "36", "--out", out, *FAST])
    assert code == 0, err
    rows = {r["variant"]: r for r in json.loads((out / "results.json").read_text())}
    r = rows["kws_step/tflite-litert-fp32@xnnpack"]
    assert r["status"] == "ok", r
    assert r["rtf"] == pytest.approx(r["latency_ms"]["p50"] / 36)
    assert not any("ignored" in n for n in r["notes"]), r["notes"]
    assert any("does not feed the state back" in n for n in r["notes"])
    # a wrong name is refused by the tool, and the row says why in the tool's words
    art = out / "kws_step" / "kws_step.tflite-litert.fp32.tflite"
    names = [n for n, _ in tflite_inputs(art)]
    assert len(names) == 2
    from edgernn.model.loading import load_model
    from edgernn.model.signature import plan_of

    plan = plan_of(load_model(step_kws["model"], inputs=KWS_ARGS[1::2]).sig.to_dict())
    runner = runner_for(android, "android-step-bad")
    job = {"path": "artifact", "data": "data", "runtime": "litert", "task": "classify",
           "threads": 1, "min_runs": 2, "warmup": 1, "min_seconds": 0, "plan": plan,
           "threshold": 0.5, "input_layers": [("nope", [1, 576]), (names[1], [2, 1, 128])]}
    with pytest.raises(RunnerError, match="Tensor # 0 is named .* but flags call it nope"):
        runner.measure(job, {"artifact": art, "data": out / "kws_step" / "probe-data.npz"})
    runner.close()


def test_step_enhancer_mask_per_frame_on_standin_device(android, tmp_path):
    """Issue 26: a streaming GRU enhancer (mask per frame) on the Android stand-in with
    y [N, T, F]: per-step accuracy (host LiteRT, same file) equal to LiteRT chained here, fp32
    drop 0, the user's metric judged from the outputs sent back, rtf from the device."""
    import numpy as np
    import torch
    from ai_edge_litert.interpreter import Interpreter

    from tests.frame_models import HIDDEN, STEP_ARGS, StepEnhancer, scripted, spectra

    torch.manual_seed(0)
    path = scripted(tmp_path / "enh_step.pt", StepEnhancer())
    d = spectra()
    np.savez(tmp_path / "frames.npz", **d)
    fn = tmp_path / "metric.py"
    fn.write_text("import numpy as np\n\ndef worst(y_true, y_pred):\n"
                  "    return float(np.max(np.abs(y_true - y_pred)))\n")
    target = write_target(android, "android-enh")
    out = tmp_path / "b"
    code, stdout, err = _cli(["bench", path, *STEP_ARGS, "--data", tmp_path / "frames.npz",
                              "--target", target, "--format", "tflite-litert", "--quantize",
                              "none", "--metric-fn", f"{fn}:worst", "--lower-is-better",
                              "--step-ms", "10", "--out", out, *FAST])
    assert code == 0, err
    rows = {r["variant"].split("/")[1]: r for r in json.loads((out / "results.json").read_text())}
    r = rows["tflite-litert-fp32@xnnpack"]
    assert r["status"] == "ok", r
    assert r["metric"] == "worst" and r["higher_is_better"] is False
    assert r["rtf"] == pytest.approx(r["latency_ms"]["p50"] / 10)
    runner = Interpreter(model_path=str(out / "enh_step" / "enh_step.tflite-litert.fp32.tflite")
                         ).get_signature_runner()
    masks = []
    for seq in d["x"]:
        h = np.zeros((1, 1, HIDDEN), np.float32)
        per = []
        for frame in seq:
            res = runner(args_0=frame[None], args_1=h)
            m, h = res["output_0"], res["output_1"]
            per.append(m[0])
        masks.append(per)
    masks = np.asarray(masks, np.float64)
    assert r["metrics"]["mae"] == pytest.approx(float(np.mean(np.abs(masks - d["y"]))), rel=1e-4)
    assert r["value"] == pytest.approx(float(np.max(np.abs(masks - d["y"]))), rel=1e-4)
    assert abs(r["accuracy_drop"]) < 1e-4  # fp32 drop 0
