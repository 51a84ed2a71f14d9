"""TFLite via litert-torch (no TensorFlow): any model torch.export can trace.

The converter unrolls LSTM/GRU into one set of ops per time step, so the file has a fixed
input shape (batch 1, the example sequence length). 64-bit tensors are downcast: int64 token
inputs become int32 (the host runtime adapter casts token ids to the file's dtype).

The conversion runs in a child process: the parent traces the model with ``torch.export``
(Python errors surface here with their message), saves the ExportedProgram, and the child
loads it and runs litert-torch's MLIR converter. A crash (segfault, abort) or hang in the
converter becomes a one-line ExportError naming the signal or the timeout. The quantizers in
``edgernn.quantize.tflite_litert`` reuse :func:`run_child` the same way.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
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
from pathlib import Path
from typing import Any

import numpy as np

from edgernn.artifact import Artifact
from edgernn.errors import ExportError
from edgernn.formats.base import register_format
from edgernn.isolation import kill_group, signal_name
from edgernn.loading import LoadedModel

INSTALL = "pip install 'edgernn[tflite]'"
TIMEOUT_ENV = "EDGERNN_LITERT_TIMEOUT"  # seconds per child (conversion or quantization)
DEFAULT_TIMEOUT = 900.0
# test hook: the child calls os.abort() ("abort"), raises SIGSEGV ("segv") or sleeps ("hang")
# before doing its job, so tests exercise the real subprocess path
FAULT_ENV = "EDGERNN_LITERT_FAULT"

# ops that mean the recurrence was NOT unrolled (a loop or a fused sequence kernel)
LOOP_OPS = {"WHILE", "UNIDIRECTIONAL_SEQUENCE_LSTM", "UNIDIRECTIONAL_SEQUENCE_RNN",
            "BIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_RNN"}

_CHILD_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "3", "ABSL_MIN_LOG_LEVEL": "3",
    "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1",
}


# --------------------------------------------------------------------------- flatbuffer facts


def _schema() -> Any:
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _read_model(path: str | Path) -> Any:
    schema = _schema()
    buf = Path(path).read_bytes()
    return schema.Model.GetRootAsModel(buf, 0), buf


def opcode_names(m: Any) -> list[str]:
    """Operator name of each entry of a flatbuffer Model's operator-code table."""
    schema = _schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(m.OperatorCodesLength()):
        oc = m.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        name = names.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM" and oc.CustomCode():
            name = f"CUSTOM:{oc.CustomCode().decode(errors='replace')}"
        codes.append(name)
    return codes


def op_census(path: str | Path) -> dict[str, int]:
    """Count of each builtin operator in a .tflite file (all subgraphs, before delegation)."""
    m, _ = _read_model(path)
    codes = opcode_names(m)
    counts: Counter[str] = Counter()
    for g in range(m.SubgraphsLength()):
        sg = m.Subgraphs(g)
        for o in range(sg.OperatorsLength()):
            counts[codes[sg.Operators(o).OpcodeIndex()]] += 1
    return dict(counts)


def weight_census(path: str | Path, min_elements: int = 16) -> dict[str, int]:
    """Elements of constant tensors (weights) by storage type, e.g. {"FLOAT32": n, "INT8": m}.

    Tensors smaller than ``min_elements`` (scales, shapes, scalars) are left out; a constant
    shared by several ops (an unrolled recurrence reuses its weights) is counted once.
    """
    schema = _schema()
    m, _ = _read_model(path)
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
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
            if buf.DataLength() == 0 and buf.Size() == 0:
                continue  # not a constant
            seen.add(b)
            n = int(np.prod(ten.ShapeAsNumpy())) if ten.ShapeLength() else 1
            if n < min_elements:
                continue
            out[type_names.get(ten.Type(), str(ten.Type()))] += n
    return dict(out)


def io_details(path: str | Path) -> dict[str, Any]:
    """dtype and shape of the first input and output (read with the LiteRT interpreter)."""
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


# --------------------------------------------------------------------------- child processes


def timeout_seconds() -> float:
    try:
        return float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT


def run_child(module: str, job: dict[str, Any], what: str, timeout: float | None = None) -> dict[str, Any]:
    """Run ``module._child_main(job)`` in a fresh Python process; return its result dict.

    ``job`` must be JSON-serialisable; large inputs travel as files named in it. Raises
    ExportError with one line when the child crashes (naming the signal), hangs past the
    timeout (the child's whole process group is killed) or reports an exception.
    """
    limit = timeout_seconds() if timeout is None else timeout
    with tempfile.TemporaryDirectory(prefix="edgernn-litert-") as tmp:
        job_path, result_path, log_path = (Path(tmp) / n for n in ("job.json", "result.json", "log.txt"))
        job_path.write_text(json.dumps({**job, "module": module, "result": str(result_path)}))
        code = f"import sys; from {__name__} import _child_entry; _child_entry(sys.argv[1])"
        env = {**os.environ, **_CHILD_ENV}
        root = Path(__file__).resolve().parents[2]  # so a source checkout imports in the child
        if root.name not in ("site-packages", "dist-packages"):
            env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
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
                raise ExportError(
                    f"{what} did not finish within {limit:.0f} s and was stopped "
                    f"(set {TIMEOUT_ENV} to allow longer)"
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
            raise ExportError(f"{what} crashed with {sig} (in its child process)")
        if result is None:
            raise ExportError(f"{what} failed (exit code {rc}): {_last_log_line(log_path)}")
        if result.get("error"):
            raise ExportError(f"{what} failed: {result['error']}")
        result["child_seconds"] = elapsed
        return result


def _last_log_line(log_path: Path) -> str:
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return "no output"
    noise = ("W0", "I0", "W1", "I1", "WARNING: All log", "Failed to load", "warnings.warn")
    useful = [x.strip() for x in lines if x.strip() and not x.startswith(noise)]
    return useful[-1][:300] if useful else "no output"


def _child_entry(job_path: str) -> None:
    """Entry point of a child: run the job, write result.json (or the error) and exit."""
    job = json.loads(Path(job_path).read_text())
    _maybe_fault()
    try:
        module = importlib.import_module(job["module"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = module._child_main(job)
    except Exception as e:  # reported to the parent as one line
        traceback.print_exc()
        result = {"error": _one_line(e)}
    Path(job["result"]).write_text(json.dumps(result))
    sys.stdout.flush()
    sys.stderr.flush()
    # skip interpreter teardown (jax/torch atexit hooks are slow and sometimes crash)
    os._exit(0)


def _maybe_fault() -> None:
    fault = os.environ.get(FAULT_ENV, "")
    if fault == "abort":
        os.abort()
    elif fault == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif fault == "hang":
        time.sleep(3600)
    elif fault == "exit":
        os._exit(3)


def _one_line(e: BaseException) -> str:
    lines = [x.strip() for x in str(e).strip().splitlines() if x.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"[:300]


_PACKING = {"pack_padded_sequence", "pad_packed_sequence", "pack_sequence", "PackedSequence"}


def _describe(e: BaseException) -> str:
    """One line for a torch.export failure, naming PackedSequence when that is the cause."""
    from torch.nn.utils.rnn import PackedSequence

    packed = "packed" in str(e).lower()
    tb = e.__traceback__
    while tb is not None and not packed:  # a frame that was handling a PackedSequence
        frame = tb.tb_frame
        packed = frame.f_code.co_name in _PACKING or any(
            isinstance(v, PackedSequence) for v in list(frame.f_locals.values()))
        tb = tb.tb_next
    if packed:
        return "PackedSequence is not supported; pass padded tensors to the RNN"
    return _one_line(e)


def _trace(module: Any, example: Any, scripted: bool) -> Any:
    """The module as an ExportedProgram (TorchScript through torch's TS2EPConverter)."""
    import torch

    if scripted:
        from torch._export.converter import TS2EPConverter

        return TS2EPConverter(module, (example,)).convert()
    return torch.export.export(module, (example,), strict=False)


def _child_main(job: dict[str, Any]) -> dict[str, Any]:
    """Child side of the conversion: ExportedProgram file -> .tflite."""
    import torch

    torch.set_num_threads(max(1, int(job.get("threads", 1))))
    import litert_torch

    ep = torch.export.load(job["program"])
    example = torch.from_numpy(np.load(job["example"]))
    t0 = time.perf_counter()
    edge = litert_torch.convert(ep.module(), (example,))
    seconds = time.perf_counter() - t0
    edge.export(job["out"])
    from importlib.metadata import version

    return {"convert_seconds": seconds, "litert_torch": version("litert-torch"),
            **io_details(job["out"])}


# --------------------------------------------------------------------------- the plug-in


def _missing(*modules: str) -> str | None:
    for name in modules:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except (ImportError, ValueError):
            return name
    return None


class TfliteLitertFormat:
    name = "tflite-litert"
    family = "tflite"
    suffix = ".tflite"
    runtime = "litert"

    def available(self) -> str | None:
        missing = _missing("litert_torch", "ai_edge_litert")
        if missing:
            dist = {"litert_torch": "litert-torch", "ai_edge_litert": "ai-edge-litert"}[missing]
            return f"{dist} is not installed ({INSTALL})"
        return None

    def export(self, model: LoadedModel, path: Path) -> Artifact:
        import torch

        spec = model.spec
        example = model.example_input(batch=1)
        shape = list(example.shape)
        seq = shape[spec.seq_axis] if spec.seq_axis is not None else None
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="edgernn-export-") as tmp:
            program, ex_file = Path(tmp) / "model.pt2", Path(tmp) / "example.npy"
            scripted = isinstance(model.module, torch.jit.ScriptModule)
            try:
                with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
                    warnings.simplefilter("ignore")
                    ep = _trace(model.module, example, scripted)
                    torch.export.save(ep, str(program))
            except Exception as e:
                if scripted:
                    raise ExportError(
                        f"litert-torch cannot take this TorchScript archive (TS2EPConverter: "
                        f"{_one_line(e)}); save the eager model with edgernn.save() instead"
                    ) from None
                raise ExportError(f"litert-torch needs torch.export, which failed: {_describe(e)}") from None
            np.save(ex_file, example.numpy())
            path.unlink(missing_ok=True)
            res = run_child(__name__, {
                "program": str(program), "example": str(ex_file), "out": str(path),
            }, "litert-torch conversion")
        if not path.exists():
            raise ExportError("litert-torch conversion wrote no file")
        ops = op_census(path)
        notes = []
        loops = sorted(LOOP_OPS & set(ops))
        if loops:
            notes.append(f"recurrence kept as {', '.join(loops)}; input shape fixed at {shape}")
        elif seq is None:
            notes.append(f"fixed input shape {shape}: other shapes need a re-export")
        else:
            notes.append(
                f"unrolled: the recurrence is {seq} copies of its step ops "
                f"({sum(ops.values())} ops); fixed input shape {shape} (batch 1, sequence length "
                f"{seq}): other lengths or batch sizes need a re-export"
            )
        if spec.dtype == "int64" and res.get("input_dtype") == "int32":
            notes.append("int64 token input became int32 (litert-torch downcasts 64-bit tensors); "
                         "feed int32 ids on the device")
        elif res.get("input_dtype") and res["input_dtype"] != spec.dtype:
            notes.append(f"input dtype {spec.dtype} became {res['input_dtype']}")
        if scripted:
            notes.append("TorchScript archive turned into an ExportedProgram with torch's "
                         "experimental TS2EPConverter; check parity")
        return Artifact(
            variant=f"{self.name}-fp32", format=self.family, quantization="fp32",
            runtime=self.runtime, path=str(path), export_seconds=time.perf_counter() - t0,
            accepts_other_seq_len=False, dynamic_batch=False, notes=notes, ops=ops,
            backend=f"litert-torch {res.get('litert_torch', '?')} (torch.export, unrolled)",
        )


register_format(TfliteLitertFormat())
