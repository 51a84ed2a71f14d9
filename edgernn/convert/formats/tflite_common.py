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
from edgernn.isolation import die_with_parent, kill_group, parent_env, python_argv, signal_name

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
        env = {**os.environ, **_BASE_ENV, **settings.env, **parent_env()}
        # python -I: no cwd/PYTHONPATH imports; a source checkout's root is put on the path
        code = f"from {__name__} import _child_entry; _child_entry(sys.argv[1])"
        t0 = time.perf_counter()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [*python_argv(code=code), str(job_path)], stdin=subprocess.DEVNULL,
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

    die_with_parent()  # its own session: a killed edgernn must not leave it converting
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

    from edgernn.probe.runtimes import quiet_native_stderr

    with quiet_native_stderr():  # no "INFO: Created TensorFlow Lite XNNPACK delegate" line
        it = Interpreter(model_path=str(path))
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    return {
        "input_dtype": np.dtype(i["dtype"]).name, "input_shape": [int(d) for d in i["shape"]],
        "input_quantization": [float(i["quantization"][0]), int(i["quantization"][1])],
        "output_dtype": np.dtype(o["dtype"]).name, "output_shape": [int(d) for d in o["shape"]],
        "output_quantization": [float(o["quantization"][0]), int(o["quantization"][1])],
        "signatures": {k: v for k, v in it.get_signature_list().items()},
    }


_EXTERNAL_MIN = 1024  # like ai-edge-quantizer: buffers this large go after the flatbuffer


def _quant_key(q: Any) -> tuple[Any, ...] | None:
    """Quantization parameters by value (None: not quantized). Custom or blockwise details are
    not compared: they make the tensor unsharable (ValueError)."""
    if q is None:
        return None
    if q.details is not None:
        raise ValueError("quantization details")

    def arr(v: Any, dtype: Any) -> bytes | None:
        return None if v is None else np.asarray(v, dtype).tobytes()

    return (arr(q.scale, np.float64), arr(q.zeroPoint, np.int64), int(q.quantizedDimension),
            arr(q.min, np.float64), arr(q.max, np.float64), int(q.detailsType))


def _sharing_builder(size: int) -> Any:
    """A flatbuffers Builder that writes each distinct numeric vector once and points every
    table holding an equal one at it (FlatBuffers allow shared sub-objects, as flatc's shared
    strings do). Byte vectors (buffer data, custom options) are left alone: a runtime may key
    packed weights by their address."""
    import flatbuffers

    class Sharing(flatbuffers.Builder):
        def __init__(self, n: int):
            super().__init__(n)
            self._seen: dict[tuple[str, bytes], int] = {}

        def CreateNumpyVector(self, x: np.ndarray) -> int:  # noqa: N802 (flatbuffers' name)
            if x.dtype.itemsize == 1 or x.nbytes > 1 << 20:
                return super().CreateNumpyVector(x)
            key = (x.dtype.str, x.tobytes())
            if key not in self._seen:
                self._seen[key] = super().CreateNumpyVector(x)
            return self._seen[key]

    return Sharing(size)


def _pack(m: Any, size: int) -> bytes:
    builder = _sharing_builder(size)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _pack_external(m: Any, data: dict[int, np.ndarray], size: int) -> bytes | None:
    """The model with ``data`` (buffer index -> bytes) stored after the flatbuffer, each
    16-byte aligned at ``offset`` from the file's start, as ai-edge-quantizer writes files over
    256 kB. None if the flatbuffer's length moved between the two packings (it should not:
    ``offset``/``size`` are fixed-width fields present both times)."""
    for b in data:
        m.buffers[b].data, m.buffers[b].offset, m.buffers[b].size = None, 1, 1
    head = _pack(m, size)
    pos = (len(head) + 15) & ~15
    for b, d in data.items():
        m.buffers[b].offset, m.buffers[b].size = pos, len(d)
        pos = (pos + len(d) + 15) & ~15
    head2 = _pack(m, size)
    if len(head2) != len(head):
        return None
    out = bytearray(pos)
    out[:len(head2)] = head2
    for b, d in data.items():
        o = int(m.buffers[b].offset)
        out[o:o + len(d)] = d.tobytes()
    return bytes(out)


def share_identical_buffers(blob: bytes) -> tuple[bytes, int]:
    """Make constant tensors with byte-identical data, the same type and shape and the same
    quantization parameters (scale, zero point, quantized dimension) share one buffer, and
    store equal numeric vectors of the flatbuffer (quantization scales and zero points,
    shapes) once.

    ai-edge-quantizer gives every tensor it quantizes its own buffer: tensors that shared one
    buffer in the float file each get their own quantized copy. And where litert-torch unrolled
    an LSTM/GRU, full-integer quantization gives every time step its own int32 bias with one
    scale and one int64 zero point per output channel: the zero-point tables (all zeros) are
    then most of the file. Merged buffers are left empty (indices stay valid). Variable tensors,
    tensors without data, sparse or externally stored tensors and buffers named by metadata are
    never merged. Buffers stored after the flatbuffer (``offset``/``size``, how ai-edge-quantizer
    writes files over 256 kB) are written back that way, 16-byte aligned.

    Returns the file and the number of buffers merged away; ``blob`` itself when nothing
    changed or the rewrite would not be smaller. Outputs are bit-identical: no value changes.
    """
    import hashlib

    fb = schema()
    m = fb.ModelT.InitFromPackedBuf(bytearray(blob), 0)
    buffers = m.buffers or []

    def data(b: Any) -> np.ndarray | None:
        if b.offset is not None and int(b.offset) > 1:
            return np.frombuffer(blob, np.uint8, int(b.size), int(b.offset))
        return None if b.data is None or len(b.data) == 0 else np.asarray(b.data, np.uint8)

    pinned = {int(md.buffer) for md in m.metadata or []}
    used_before: set[int] = set()
    canon: dict[tuple[Any, ...], list[int]] = {}  # key -> buffers holding that content
    digests: dict[int, tuple[int, bytes] | None] = {}
    for sg in m.subgraphs or []:
        for t in sg.tensors or []:
            b = int(t.buffer)
            used_before.add(b)
            if (b <= 0 or b >= len(buffers) or b in pinned or t.isVariable or t.sparsity is not None
                    or getattr(t, "externalBuffer", 0)):
                continue
            if b not in digests:
                d = data(buffers[b])
                digests[b] = None if d is None else (len(d), hashlib.sha256(d.tobytes()).digest())
            if digests[b] is None:
                continue
            try:
                q = _quant_key(t.quantization)
            except ValueError:
                continue
            shape = tuple(int(s) for s in (t.shape if t.shape is not None else []))
            same = canon.setdefault((int(t.type), shape, q, digests[b]), [])
            hit = next((c for c in same if c == b or np.array_equal(data(buffers[c]),
                                                                    data(buffers[b]))), None)
            if hit is None:
                same.append(b)
            else:
                t.buffer = hit
    used_after = {int(t.buffer) for sg in m.subgraphs or [] for t in sg.tensors or []}
    dropped = [b for b in used_before - used_after if 0 < b < len(buffers) and b not in pinned]
    for b in dropped:
        buffers[b] = fb.BufferT()
    if any(b.offset is not None and int(b.offset) > 1 for b in buffers):
        moved = {i: d for i, b in enumerate(buffers) if i not in pinned
                 for d in [data(b)] if d is not None and len(d) >= _EXTERNAL_MIN}
        new = _pack_external(m, moved, len(blob) + 4096)
        if new is None:
            return blob, 0
    else:
        new = _pack(m, len(blob) + 4096)
    if len(new) >= len(blob):
        return blob, 0
    return new, len(dropped)
