"""Android runner: TFLite's ``benchmark_model`` on a phone (or emulator) over the adb CLI.

Latency and memory come from ``benchmark_model`` run ON THE DEVICE (pushed with the model into
a fresh ``<remote_dir>/edgernn-<random>`` directory that is removed afterwards). Accuracy,
parity and agreement are computed ON THIS HOST with the identical ``.tflite`` file and the CPU
LiteRT runtime (``python -m edgernn.probe``, as the local runner does); the result says so in
``accuracy_source``. ``evaluate()`` is the seam for a later device-side evaluation.

One ``measure()`` call measures ONE delegate: ``job["delegate"]`` (one of cpu, xnnpack, gpu,
nnapi), else the first of the target's ``delegates``; a caller that wants every delegate
iterates ``runner.delegates``. A delegate the device rejects becomes a RunnerError carrying the
tool's own reason line ("Failed to apply GPU delegate.").

The device is reached through an ``AdbClient`` (``edgernn.runners.adb_client``: the real
``adb`` client driven through argument lists, quoting, timeouts, exit codes with and without
``shell_v2``); this module decides what to run and reads the results.

Target keys (runner: adb): ``benchmark_model`` (required: host path of the binary for the
device's ABI; relative paths are relative to the target file), ``serial``, ``adb``,
``adb_server`` (host:port, default 127.0.0.1:5037), ``connect`` (host:port to ``adb connect``
first), ``delegates`` (default [xnnpack]), ``taskset`` (hex CPU mask, e.g. "f0" for the big
cores of a 4+4 SoC), ``remote_dir`` (default /data/local/tmp), ``adb_timeout_s`` (per short adb
call, default 60; the benchmark run itself uses the target's ``timeout_s``).

Mapping of the bench settings: warmup -> ``--warmup_runs``, min_runs -> ``--num_runs``,
min_seconds -> ``--min_secs``, threads -> ``--num_threads``; ``max_runs`` has no
benchmark_model flag (the tool stops at ``--max_secs``, 150 s by default).
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shlex
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from edgernn.errors import RunnerError
from edgernn.hashing import sha256_file
from edgernn.isolation import shell_signal
from edgernn.runners.adb_client import DEFAULT_SERVER, NO_STATUS, AdbClient, last_line, parse_devices
from edgernn.runners.base import Runner, register_runner
from edgernn.runners.benchmark_output import (
    BenchmarkOutputError,
    failure_reason,
    parse_benchmark_output,
)

__all__ = ["DELEGATES", "AdbClient", "AdbRunner", "elf_abi", "parse_devices", "tflite_inputs"]

DELEGATES = ("cpu", "xnnpack", "gpu", "nnapi")
# ELF e_machine -> Android ABI
ELF_ABI = {183: "arm64-v8a", 40: "armeabi-v7a", 62: "x86_64", 3: "x86", 243: "riscv64"}
PROPS = ("ro.product.manufacturer", "ro.product.model", "ro.product.device",
         "ro.board.platform", "ro.hardware", "ro.soc.manufacturer", "ro.soc.model",
         "ro.product.cpu.abi", "ro.product.cpu.abilist", "ro.build.version.release",
         "ro.build.version.sdk", "ro.build.fingerprint")
SYSTEM = {"uname_m": "uname -m", "nproc": "nproc 2>/dev/null || grep -c ^processor /proc/cpuinfo",
          "meminfo": "grep MemTotal /proc/meminfo"}  # read with the properties


def elf_abi(path: Path) -> str | None:
    """The Android ABI an ELF file is built for; None when it is not ELF (e.g. a script)."""
    with open(path, "rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    return ELF_ABI.get(machine, f"ELF machine {machine}")


@register_runner("adb")
class AdbRunner(Runner):
    REQUIRED = ("benchmark_model",)
    SCHEMA: dict[str, Any] = {
        "serial": str, "adb": str, "adb_server": str, "connect": str, "benchmark_model": str,
        "delegates": list, "taskset": str, "remote_dir": str, "adb_timeout_s": (int, float),
    }
    ACCURACY = "host"  # where evaluate() computes metrics; "device" is not implemented yet
    GROUP_SHORTHAND = ("serials", "serial")

    @classmethod
    def device_id(cls, name: str, extra: dict[str, Any], index: int | None = None) -> str:
        """``<name>@<serial>`` (or ``@<connect>``) when the target names its device."""
        if extra.get("serial") or extra.get("connect"):
            return f"{name}@{extra.get('serial') or extra.get('connect')}"
        return super().device_id(name, extra, index)

    @classmethod
    def open_lock_key(cls, extra: dict[str, Any]) -> Hashable | None:
        """Devices behind one adb server are opened one at a time: each runner starts the
        server when none answers, and two ``adb start-server`` at once make one of them fail."""
        return ("adb", str(extra.get("adb_server", DEFAULT_SERVER)))

    @staticmethod
    def sub_variants(target: Any) -> list[str]:
        """One measurement per delegate: bench names them ``<variant>@<delegate>``."""
        return [str(d).lower() for d in target.extra.get("delegates", ["xnnpack"])]

    def __init__(self, target: Any):
        self.target = target
        x = target.extra
        self.call_timeout = float(x.get("adb_timeout_s", 60))
        self.remote_dir = str(x.get("remote_dir", "/data/local/tmp")).rstrip("/") or "/"
        self.taskset = x.get("taskset")
        if self.taskset is not None and not re.fullmatch(r"(0x)?[0-9a-fA-F]+", self.taskset):
            raise RunnerError(f"target {target.name}: taskset must be a hex CPU mask like 'f0', "
                              f"got {self.taskset!r}")
        self.delegates = [str(d).lower() for d in x.get("delegates", ["xnnpack"])]
        bad = [d for d in self.delegates if d not in DELEGATES]
        if bad or not self.delegates:
            raise RunnerError(f"target {target.name}: unknown delegate(s) {', '.join(bad) or '(none)'}"
                              f"; known: {', '.join(DELEGATES)}")
        self.client = AdbClient(x.get("adb", "adb"), x.get("adb_server", DEFAULT_SERVER),
                                self.call_timeout, owner=f"target {target.name}")
        self._local = None
        self._accuracy_cache: dict[tuple, dict[str, Any]] = {}
        self.client.attach(x.get("serial"), x.get("connect"))
        self.device = self.device_facts()
        self.binary = self._binary_path(x["benchmark_model"])  # after the device: a missing
        self.binary_sha = sha256_file(self.binary)              # device is the first thing to fix
        self.binary_abi = elf_abi(self.binary)
        self.check_abi()

    # -- setup -------------------------------------------------------------------------
    def _binary_path(self, value: str) -> Path:
        p = Path(value).expanduser()
        if not p.is_absolute() and self.target.path is not None:
            p = Path(self.target.path).parent / p
        if not p.is_file():
            raise RunnerError(
                f"benchmark_model binary {p} not found: set benchmark_model: in the target file "
                "to the host path of TFLite's benchmark_model built for the device's ABI (e.g. "
                "android_aarch64_benchmark_model from the TFLite nightly builds)")
        return p

    @property
    def serial(self) -> str:
        """The attached device's serial."""
        return self.client.serial

    @property
    def shell_v2(self) -> bool:
        """Whether ``adb shell`` returns the remote exit code on this device."""
        return self.client.shell_v2

    # -- facts -------------------------------------------------------------------------
    def device_facts(self) -> dict[str, Any]:
        p = self.client.getprops(PROPS, SYSTEM)
        soc = " ".join(v for v in (p.get("ro.soc.manufacturer"), p.get("ro.soc.model")) if v)
        maker, model = p.get("ro.product.manufacturer", ""), p.get("ro.product.model", "")
        if maker and not model.lower().startswith(maker.lower()):
            model = f"{maker} {model}".strip()
        facts: dict[str, Any] = {
            "system": "Android", "machine": p.get("uname_m") or p.get("ro.product.cpu.abi"),
            "abi": p.get("ro.product.cpu.abi"), "abilist": p.get("ro.product.cpu.abilist"),
            "cpu_model": soc or p.get("ro.board.platform") or p.get("ro.hardware") or "?",
            "board": model or "?", "platform": p.get("ro.board.platform"),
            "os": f"Android {p.get('ro.build.version.release', '?')} "
                  f"(SDK {p.get('ro.build.version.sdk', '?')})",
            "sdk": int(p["ro.build.version.sdk"]) if p.get("ro.build.version.sdk", "").isdigit()
            else None,
            "fingerprint": p.get("ro.build.fingerprint"), "serial": self.serial,
            "hostname": p.get("ro.product.device") or self.serial,
        }
        if p.get("nproc", "").isdigit():
            facts["cpu_count"] = int(p["nproc"])
        m = re.search(r"(\d+)\s*kB", p.get("meminfo", ""))
        if m:
            facts["memory_mb"] = round(int(m.group(1)) / 1024)
        return facts

    def check_abi(self) -> None:
        if self.binary_abi is None:
            return  # not ELF (a wrapper script): nothing to check
        abis = [a for a in (self.device.get("abilist") or self.device.get("abi") or "").split(",") if a]
        if abis and self.binary_abi not in abis:
            raise RunnerError(
                f"benchmark_model {self.binary} is built for {self.binary_abi} but device "
                f"{self.serial} runs {', '.join(abis)}: use the build for {abis[0]}")

    def thermal(self) -> dict[str, Any]:
        """Best effort: CPU thermal zone 0 and Android's thermal status (0 = none)."""
        code, out, _ = self.client.shell_script(
            "cat /sys/class/thermal/thermal_zone0/temp 2>/dev/null; "
            "dumpsys thermalservice 2>/dev/null | grep -m1 'Thermal Status'; true",
            what="thermal state")
        state: dict[str, Any] = {}
        for line in out.splitlines():
            line = line.strip()
            if re.fullmatch(r"-?\d+", line):
                v = int(line)
                state["temp_c"] = v / 1000 if abs(v) > 200 else float(v)
            m = re.search(r"Thermal Status:\s*(\d+)", line)
            if m:
                state["thermal_status"] = int(m.group(1))
        return state

    def facts(self) -> dict[str, Any]:
        from edgernn.probe.runtimes import runtime_package, version_of

        f = {k: v for k, v in self.device.items() if v is not None}
        f["benchmark_model"] = (f"{self.binary} ({self.binary_abi or 'not ELF: a script'}, "
                                f"sha256 {self.binary_sha[:12]})")
        f["delegates"] = ", ".join(self.delegates)
        f["accuracy"] = "computed on this host (CPU LiteRT, same .tflite file)"
        litert = runtime_package("litert")  # the host runtime of evaluate()
        f["runtimes"] = {litert: version_of(litert), "numpy": version_of("numpy")}
        f["thermal"] = self.thermal()
        return f

    # -- accuracy (the seam for a later device-side evaluation) --------------------------
    def evaluate(self, job: dict[str, Any], files: dict[str, Path]) -> dict[str, Any]:
        """Metrics, parity and agreement of the artifact on the evaluation data. Today: on this
        host with the same file and the CPU runtime named by the job (cached per file)."""
        if self.ACCURACY != "host":
            raise RunnerError("device-side evaluation is not implemented for the adb runner")
        from edgernn.runners.local import LocalRunner

        art, data = Path(files[job["path"]]), Path(files[job["data"]])
        key = (str(art.resolve()), art.stat().st_mtime_ns, art.stat().st_size,
               str(data.resolve()), data.stat().st_mtime_ns, job.get("runtime"), job.get("task"),
               job.get("batch_axis"), job.get("eval_batch"), job.get("output"),
               bool(job.get("return_outputs")))
        if key not in self._accuracy_cache:
            if self._local is None:
                self._local = LocalRunner(self.target)
            host_job = {k: v for k, v in job.items() if k != "delegate"}
            host_job.update(warmup=0, min_runs=1, max_runs=1, min_seconds=0.0, cpus=[])
            try:
                res = self._local.measure(host_job, files)
            except RunnerError as e:
                raise RunnerError(f"host accuracy check failed: {e}") from None
            out = {k: res[k] for k in ("metrics", "parity_max_abs_diff", "agreement",
                                       "agreement_tol", "per_sample", "outputs",
                                       "eval_samples", "eval_seconds") if k in res}
            out["accuracy_source"] = (f"host {res.get('runtime')} {res.get('runtime_version')} "
                                      "(CPU), same file")
            self._accuracy_cache[key] = out
        return dict(self._accuracy_cache[key])

    # -- runner interface --------------------------------------------------------------
    def benchmark_command(self, run_dir: str, job: dict[str, Any], delegate: str) -> list[str]:
        words = ["taskset", self.taskset] if self.taskset else []
        words += [
            f"{run_dir}/benchmark_model", f"--graph={run_dir}/model.tflite",
            f"--num_threads={int(job.get('threads', 1))}",
            f"--num_runs={int(job.get('min_runs', 100))}",
            f"--warmup_runs={int(job.get('warmup', 20))}",
            f"--min_secs={float(job.get('min_seconds', 1.0)):g}",
            f"--use_xnnpack={'true' if delegate == 'xnnpack' else 'false'}",
            f"--use_gpu={'true' if delegate == 'gpu' else 'false'}",
            f"--use_nnapi={'true' if delegate == 'nnapi' else 'false'}",
            "--report_peak_memory_footprint=true",
        ]
        layers = job.get("input_layers")
        if layers:  # a model with several inputs (a step model's state): name every one
            words += [f"--input_layer={','.join(n for n, _ in layers)}",
                      f"--input_layer_shape={':'.join(','.join(map(str, s)) for _, s in layers)}"]
        return words

    def measure(self, job: dict[str, Any], files: dict[str, Path]) -> dict[str, Any]:
        delegate = str(job.get("delegate") or self.delegates[0]).lower()
        if delegate not in DELEGATES:
            raise RunnerError(f"unknown delegate {delegate!r}; known: {', '.join(DELEGATES)}")
        artifact = Path(files[job["path"]])
        accuracy = self.evaluate(job, files)
        self.client.check_state(self.serial)
        thermal_before = self.thermal()
        run_dir = f"{self.remote_dir}/edgernn-{secrets.token_hex(6)}"
        q = shlex.quote
        code, out, err = self.client.shell_script(f"mkdir -p {q(self.remote_dir)} && mkdir {q(run_dir)}",
                                           what="mkdir")
        if code != 0:
            raise RunnerError(f"cannot create {run_dir} on {self.serial}: {last_line(err + out)}")
        try:
            self.client.push(artifact, f"{run_dir}/model.tflite")
            self.client.push(self.binary, f"{run_dir}/benchmark_model")
            code, out, err = self.client.shell(["chmod", "755", f"{run_dir}/benchmark_model"], what="chmod")
            if code != 0:
                raise RunnerError(f"chmod of benchmark_model on {self.serial} failed: "
                                  f"{last_line(err + out)}")
            if len((job.get("plan") or {}).get("inputs") or []) > 1 and "input_layers" not in job:
                job = {**job, "input_layers": tflite_inputs(artifact)}
            cmd = self.benchmark_command(run_dir, job, delegate)
            try:
                code, out, err = self.client.shell(cmd, timeout=self.target.timeout_s,
                                            what=f"benchmark_model ({delegate})")
            except RunnerError as e:
                if "timed out" in str(e):  # the adb client is gone; stop the remote tool too
                    self._kill_remote(run_dir)
                raise
            text = f"{out}\n{err}"
            if code != 0:
                raise RunnerError(self._failure(code, text, delegate))
            try:
                parsed = parse_benchmark_output(text)
            except BenchmarkOutputError as e:
                raise RunnerError(f"cannot read benchmark_model's output ({delegate}): {e}") from None
            if delegate in ("gpu", "nnapi") and not any(
                    delegate.lower() in line.lower() for line in parsed.delegate_lines):
                raise RunnerError(
                    f"benchmark_model printed no sign that the {delegate.upper()} delegate was "
                    f"applied (it may have run on the CPU): {last_line(err or out)}")
        finally:
            self._remove(run_dir)
        thermal_after = self.thermal()
        res = parsed.to_result()
        notes = list(parsed.notes)
        if parsed.unconsumed_flags:
            notes.append(f"this benchmark_model build ignored: {parsed.unconsumed_flags}")
        if (job.get("plan") or {}).get("feed"):
            notes.append("benchmark_model times one step call on random inputs, the state "
                         "included (it does not feed the state back); per-step accuracy comes "
                         "from the host run that chains the state")
        if "peak_rss_mb" not in res and "peak_delta_mb" not in res:
            notes.append("benchmark_model printed no memory footprint line")
        res.update(
            ok=True, runtime=f"benchmark_model+{delegate}",
            runtime_version=f"sha256:{self.binary_sha[:12]}", delegate=delegate,
            threads=int(job.get("threads", 1)), device=dict(self.device),
            thermal_before=thermal_before, thermal_after=thermal_after,
            throttled=(thermal_after.get("thermal_status", 0) > 0
                       if "thermal_status" in thermal_after else None),
            latency_source=f"benchmark_model on {self.serial} ({delegate}"
                           f"{', taskset ' + self.taskset if self.taskset else ''})",
            accuracy_source=accuracy.pop("accuracy_source"), notes=notes, **accuracy,
        )
        return res

    def _failure(self, code: int, text: str, delegate: str) -> str:
        if shell_signal(code):
            return f"benchmark_model ({delegate}) crashed on {self.serial} ({shell_signal(code)})"
        if code == NO_STATUS:
            return f"benchmark_model ({delegate}) on {self.serial}: the remote shell died (no exit status)"
        reason = failure_reason(text) or last_line(text)
        return f"benchmark_model ({delegate}) failed on {self.serial} (exit code {code}): {reason}"

    def _kill_remote(self, run_dir: str) -> None:
        # the run dir is in the tool's command line (--graph=RUN_DIR/model.tflite)
        with contextlib.suppress(RunnerError):
            self.client.shell(["pkill", "-f", run_dir], timeout=15, what="pkill")

    def _remove(self, run_dir: str) -> None:
        # only this run's directory: its name is edgernn-<random> under remote_dir
        assert re.fullmatch(r"edgernn-[0-9a-f]{12}", run_dir.rsplit("/", 1)[-1]), run_dir
        with contextlib.suppress(RunnerError):
            self.client.shell(["rm", "-rf", "--", run_dir], what="rm")

    def close(self) -> None:
        if self._local is not None:
            self._local.close()
            self._local = None


def tflite_inputs(path: Path) -> list[tuple[str, list[int]]]:
    """The file's input tensors (name, shape) in the interpreter's order, which is the order
    benchmark_model's ``--input_layer`` lists them in (read with the host LiteRT)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise RunnerError("reading the input names of a multi-input .tflite needs ai-edge-litert "
                          "on this host (pip install ai-edge-litert)") from None
    return [(str(d["name"]), [int(v) for v in d["shape"]])
            for d in Interpreter(model_path=str(path)).get_input_details()]
