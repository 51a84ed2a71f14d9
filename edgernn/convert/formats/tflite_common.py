"""What both TFLite backends share: converter child processes and reading ``.tflite`` files.

Converters and quantizers run in a fresh Python (:func:`run_child`): TensorFlow's calibrator
segfaults on WHILE-loop models and MLIR passes can hang, and a dead child becomes a one-line
ExportError naming the signal or the timeout. File facts (:func:`op_census`,
:func:`weight_census`, :func:`io_details`) are read from the flatbuffer with LiteRT's schema.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgernn.errors import ExportError
from edgernn.isolation import kill_group, signal_name

# --------------------------------------------------------------------------- child processes


@dataclass(frozen=True)
class ChildSettings:
    """How one backend runs its children: timeout (and the variable overriding it), the test
    hook that makes a child crash or hang, and extra environment."""

    timeout_env: str
    default_timeout: float
    fault_env: str  # tests only: "abort", "segv", "hang" or "exit" before the child works
    env: dict[str, str] = field(default_factory=dict)

    def timeout(self) -> float:
        try:
            return float(os.environ.get(self.timeout_env, self.default_timeout))
        except ValueError:
            return self.default_timeout


class ChildCrashed(ExportError):
    """The child died from a signal; ``sig`` names it (e.g. ``SIGSEGV``)."""

    def __init__(self, message: str, sig: str):
        super().__init__(message)
        self.sig = sig


class ChildTimedOut(ExportError):
    """The child did not finish in time and was killed with its process group."""


class ChildFailed(ExportError):
    """The child reported an error; ``kind`` is what the child said it was (or None)."""

    def __init__(self, message: str, kind: str | None = None, result: dict[str, Any] | None = None):
        super().__init__(message)
        self.kind = kind
        self.result = result or {}


_BASE_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "3", "ABSL_MIN_LOG_LEVEL": "3",
             "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1"}


def run_child(module: str, job: dict[str, Any], what: str, settings: ChildSettings,
              arrays: dict[str, dict[str, np.ndarray]] | None = None,
              timeout: float | None = None) -> dict[str, Any]:
    """Run ``module._child_main(job)`` in a fresh Python; return its result dict.

    ``job`` must be JSON-serialisable; ``arrays`` are saved as ``<name>.npz`` next to it and
    their paths passed as ``job["files"][name]``. A child that returns ``{"error": ...}``
    (optionally ``"error_kind"``) raises ChildFailed; a signal ChildCrashed; a hang past the
    timeout ChildTimedOut (the child's whole process group is killed). ``child_seconds`` is
    added to the result.
    """
    limit = settings.timeout() if timeout is None else timeout
    with tempfile.TemporaryDirectory(prefix="edgernn-tflite-") as tmp:
        d = Path(tmp)
        files = {}
        for name, arrs in (arrays or {}).items():
            files[name] = str(d / f"{name}.npz")
            np.savez(files[name], **arrs)
        job_path, result_path, log_path = d / "job.json", d / "result.json", d / "log.txt"
        job_path.write_text(json.dumps({**job, "module": module, "result": str(result_path),
                                        "files": files, "fault_env": settings.fault_env}))
        env = {**os.environ, **_BASE_ENV, **settings.env}
        root = Path(__file__).resolve().parents[3]  # so a source checkout imports in the child
        if root.name not in ("site-packages", "dist-packages"):
            env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
        code = f"import sys; from {__name__} import _child_entry; _child_entry(sys.argv[1])"
        t0 = time.perf_counter()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", code, str(job_path)], stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=os.name == "posix",
            )
            try:
                rc = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                kill_group(proc)
                raise ChildTimedOut(
                    f"{what} did not finish within {limit:.0f} s and was stopped "
                    f"(set {settings.timeout_env} to allow longer)"
                ) from None
            except BaseException:  # e.g. KeyboardInterrupt: do not leave the child running
                kill_group(proc)
                raise
        elapsed = time.perf_counter() - t0
        result: dict[str, Any] | None = None
        if result_path.exists():
            with contextlib.suppress(ValueError):
                result = json.loads(result_path.read_text())
        if rc < 0:
            sig = signal_name(rc)
            raise ChildCrashed(f"{what} crashed with {sig} (in its child process)", sig)
        if result is None:
            raise ExportError(f"{what} failed (exit code {rc}): {last_log_line(log_path)}")
        if result.get("error"):
            raise ChildFailed(f"{what} failed: {result['error']}", result.get("error_kind"), result)
        result["child_seconds"] = elapsed
        return result


_NOISE = ("W0", "I0", "E0", "W1", "I1", "WARNING:", "INFO:", "Failed to load", "warnings.warn",
          "Fatal Python error", "Thread 0x", "Current thread", "  File ", "Extension modules")


def last_log_line(log_path: Path) -> str:
    """The last line of a child's log that is not logging noise or a traceback frame."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return "no output"
    useful = [x.strip() for x in lines if x.strip() and not x.startswith(_NOISE)]
    return useful[-1][:300] if useful else "no output"


def one_line(e: BaseException) -> str:
    lines = [x.strip() for x in str(e).strip().splitlines() if x.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"[:300]


def _child_entry(job_path: str) -> None:
    """Entry point of a child: run the job, write result.json (or the error) and exit."""
    import faulthandler

    faulthandler.enable()  # a crash leaves its Python stack in the log
    job = json.loads(Path(job_path).read_text())
    _maybe_fault(os.environ.get(job.get("fault_env") or "", ""))
    try:
        module = importlib.import_module(job["module"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = module._child_main(job)
    except Exception as e:  # reported to the parent as one line
        traceback.print_exc()
        result = {"error": one_line(e)}
    Path(job["result"]).write_text(json.dumps(result))
    sys.stdout.flush()
    sys.stderr.flush()
    # skip interpreter teardown (TensorFlow/jax/torch atexit hooks are slow and sometimes crash)
    os._exit(0)


def _maybe_fault(fault: str) -> None:
    if fault == "abort":
        os.abort()
    elif fault == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif fault == "hang":
        time.sleep(3600)
    elif fault == "exit":
        os._exit(3)


# --------------------------------------------------------------------------- .tflite files


def schema() -> Any:
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def read_model(path: str | Path | bytes) -> Any:
    """The flatbuffer Model of a .tflite file (path or bytes)."""
    buf = path if isinstance(path, (bytes, bytearray)) else Path(path).read_bytes()
    return schema().Model.GetRootAs(buf, 0)


def opcode_names(m: Any) -> list[str]:
    """Operator name of each entry of a Model's operator-code table (``CUSTOM:<name>`` for
    custom ops)."""
    names = {v: k for k, v in vars(schema().BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(m.OperatorCodesLength()):
        oc = m.OperatorCodes(i)
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        name = names.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM" and oc.CustomCode():
            name = f"CUSTOM:{oc.CustomCode().decode(errors='replace')}"
        codes.append(name)
    return codes


def op_census(path: str | Path) -> dict[str, int]:
    """Count of each operator in a .tflite file over all subgraphs (WHILE bodies included),
    before delegation; {} when LiteRT's schema is not installed."""
    try:
        m = read_model(path)
    except ImportError:
        return {}
    codes = opcode_names(m)
    counts: Counter[str] = Counter()
    for g in range(m.SubgraphsLength()):
        sg = m.Subgraphs(g)
        for o in range(sg.OperatorsLength()):
            counts[codes[sg.Operators(o).OpcodeIndex()]] += 1
    return dict(counts)


def weight_census(path: str | Path | bytes, min_elements: int = 16) -> dict[str, int]:
    """Elements of constant tensors (weights) by storage type, e.g. {"FLOAT32": n, "INT8": m}.

    Tensors smaller than ``min_elements`` (scales, shapes, scalars) are left out; a buffer
    shared by several tensors (an unrolled recurrence reuses its weights) is counted once.
    {} when LiteRT's schema is not installed."""
    try:
        m = read_model(path)
    except ImportError:
        return {}
    type_names = {v: k for k, v in vars(schema().TensorType).items() if not k.startswith("_")}
    seen: set[int] = set()
    out: Counter[str] = Counter()
    for g in range(m.SubgraphsLength()):
        sg = m.Subgraphs(g)
        for t in range(sg.TensorsLength()):
            ten = sg.Tensors(t)
            b = ten.Buffer()
            if b <= 0 or b in seen or b >= m.BuffersLength():
                continue
            buf = m.Buffers(b)
            if buf.DataLength() == 0 and int(buf.Size()) == 0 and int(buf.Offset()) == 0:
                continue  # not a constant
            seen.add(b)
            n = int(np.prod(ten.ShapeAsNumpy())) if ten.ShapeLength() else 1
            if n >= min_elements:
                out[type_names.get(ten.Type(), str(ten.Type()))] += n
    return dict(out)


def fraction_of(path: str | Path | bytes, *kinds: str) -> float:
    """Share of weight elements stored as one of ``kinds`` (e.g. "INT8")."""
    w = weight_census(path)
    total = sum(w.values())
    return sum(w.get(k, 0) for k in kinds) / total if total else 0.0


def io_details(path: str | Path) -> dict[str, Any]:
    """dtype, shape and quantization of the first input and output (LiteRT interpreter)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    return {
        "input_dtype": np.dtype(i["dtype"]).name, "input_shape": [int(d) for d in i["shape"]],
        "input_quantization": [float(i["quantization"][0]), int(i["quantization"][1])],
        "output_dtype": np.dtype(o["dtype"]).name, "output_shape": [int(d) for d in o["shape"]],
        "output_quantization": [float(o["quantization"][0]), int(o["quantization"][1])],
        "signatures": {k: v for k, v in it.get_signature_list().items()},
    }
