"""Inference runtimes behind one small interface; each imports its library lazily.

A runtime turns a model file into a ``Session``: ``run(x)`` maps one numpy input to the first
output, ``call([x, state, ...])`` maps every input (in the model's order) to every output.
Add a runtime by decorating a loader with ``@runtime("name", "module", ...)``, naming the
modules it imports; ``runtime_modules``/``runtime_package`` answer from that registration.

Stdlib only at import time (numpy is imported where a session is built): the probe's
``--facts`` reads the registry on a device that may lack numpy.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


@dataclass
class Session:
    run: Callable[[np.ndarray], np.ndarray]  # the first output (what metrics judge)
    runtime: str
    version: str
    dynamic_batch: bool = True
    details: dict[str, Any] | None = None
    run_all: Callable[[np.ndarray], list[np.ndarray]] | None = None  # every output, in order
    call: Callable[[list[np.ndarray]], list[np.ndarray]] | None = None  # every input -> outputs

    def outputs(self, x: np.ndarray | list[np.ndarray]) -> list[np.ndarray]:
        """Every output of one call, in the model's order; ``x`` one input or all of them."""
        if isinstance(x, list):
            if self.call is None:
                raise RuntimeError(f"runtime {self.runtime} takes one input here, got {len(x)}")
            return self.call(x)
        return self.run_all(x) if self.run_all else [self.run(x)]


@dataclass(frozen=True)
class RuntimeInfo:
    """What a registered runtime needs."""

    name: str
    modules: tuple[str, ...]  # imported by its loader; the first one's package is the runtime's
    host_only: bool = False  # its loader imports edgernn itself: it runs on this host only
    report_version: bool = True  # facts list its package's version (importing it is cheap)

    @property
    def package(self) -> str:
        """The top-level package whose version the runtime reports ("ai_edge_litert")."""
        return self.modules[0].split(".")[0]


_LOADERS: dict[str, Callable[..., Session]] = {}
_RUNTIMES: dict[str, RuntimeInfo] = {}


def runtime(name: str, module: str, *more: str, host_only: bool = False,
            report_version: bool = True):
    """Register a loader for runtime ``name``, which needs the importable ``module`` (and
    ``more`` modules); ``host_only``: it cannot run on a device; ``report_version=False``:
    device facts do not import its package to read the version."""

    def deco(fn: Callable[..., Session]) -> Callable[..., Session]:
        _LOADERS[name] = fn
        _RUNTIMES[name] = RuntimeInfo(name, (module, *more), host_only, report_version)
        return fn

    return deco


def runtime_modules(name: str) -> tuple[str, ...]:
    """The modules runtime ``name`` imports (``(name,)`` for a name no runtime registers)."""
    info = _RUNTIMES.get(name)
    return info.modules if info else (name,)


def runtime_package(name: str) -> str:
    """The top-level package behind runtime ``name`` ("litert" -> "ai_edge_litert"): the key
    of its version in facts' ``runtimes`` and of its pip name in ``PIP_NAMES``."""
    return runtime_modules(name)[0].split(".")[0]


def host_only(name: str) -> bool:
    """Whether runtime ``name`` runs on this host only (never on a device)."""
    info = _RUNTIMES.get(name)
    return bool(info and info.host_only)


def reported_packages(host: bool = False) -> tuple[str, ...]:
    """The packages whose versions facts report: numpy, then the runtimes' packages (on this
    host also those of host-only runtimes, last)."""
    infos = [i for i in _RUNTIMES.values() if i.report_version]
    pkgs = ["numpy", *(i.package for i in infos if not i.host_only)]
    if host:
        pkgs += [i.package for i in infos if i.host_only]
    return tuple(dict.fromkeys(pkgs))


def preimport(name: str) -> None:
    """Import a runtime's library (so a memory baseline taken after it excludes the library)."""
    if name in _RUNTIMES:
        for module in _RUNTIMES[name].modules:
            __import__(module)


def available() -> list[str]:
    return sorted(_LOADERS)


PIP_NAMES = {"onnxruntime": "onnxruntime", "ai_edge_litert": "ai-edge-litert",
             "tflite_runtime": "tflite-runtime", "tensorflow": "tensorflow", "torch": "torch"}


def load(name: str, path: str, threads: int = 1, **options: Any) -> Session:
    if name not in _LOADERS:
        raise ValueError(f"unknown runtime {name!r}; known: {', '.join(available())}")
    try:
        preimport(name)
    except ImportError as e:
        top = runtime_package(name)
        raise RuntimeError(f"runtime {name} is not installed here ({e}); install it with: "
                           f"pip install {PIP_NAMES.get(top, top)}") from None
    return _LOADERS[name](path, threads, **options)


from .versions import version_of  # noqa: E402,F401  (re-exported)


@runtime("onnxruntime", "onnxruntime")
def _onnxruntime(path: str, threads: int, **_: Any) -> Session:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    inp = sess.get_inputs()[0]
    name = inp.name
    dyn = not isinstance(inp.shape[0], int)

    def run(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {name: x})[0]

    def run_all(x: np.ndarray) -> list[np.ndarray]:
        return list(sess.run(None, {name: x}))

    def call(xs: list[np.ndarray]) -> list[np.ndarray]:
        return list(sess.run(None, dict(zip(names, xs, strict=True))))

    return Session(run, "onnxruntime", ort.__version__, dyn, {"input": name, "inputs": names},
                   run_all, call)


@runtime("torch", "torch", host_only=True)
def _torch(path: str, threads: int, **options: Any) -> Session:
    """PyTorch eager (host only: loads through edgernn.model.eager, which this probe may import)."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    # the one import from the probe up into edgernn: host only (see edgernn/__init__.py)
    from edgernn.model.eager import load_eager

    lm = load_eager(path, **options)
    module = lm.module
    dtype = getattr(torch, lm.spec.dtype)
    dtypes = [getattr(torch, t.dtype) for t in lm.sig.inputs]

    @torch.inference_mode()
    def call(xs: list[np.ndarray]) -> list[np.ndarray]:
        return lm.outputs([torch.from_numpy(np.asarray(a)).to(d)
                           for a, d in zip(xs, dtypes, strict=True)])

    def run_all(x: np.ndarray) -> list[np.ndarray]:
        return call([x])

    @torch.inference_mode()
    def run(x: np.ndarray) -> np.ndarray:  # the timed call: the module directly
        out = module(torch.from_numpy(x).to(dtype))
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.numpy()

    return Session(run, "torch", torch.__version__, True, {"kind": lm.kind}, run_all, call)


def pin_threads(threads: int) -> None:
    """Set the thread-count environment before any runtime is imported."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))


NATIVE_CHATTER = ("INFO: Created TensorFlow Lite XNNPACK delegate",)


@contextlib.contextmanager
def quiet_native_stderr(drop: tuple[str, ...] = NATIVE_CHATTER):
    """Hold what native code writes to file descriptor 2 (TFLite's C++ runtime prints "INFO:
    Created TensorFlow Lite XNNPACK delegate for CPU." when an interpreter is made) and pass
    on every line except ``drop``'s, so the terminal shows errors but not that chatter."""
    import sys
    import tempfile

    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 to guard
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as held:
        sys.stderr.flush()
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [x for x in held.read().decode(errors="replace").splitlines(keepends=True)
                    if not x.startswith(drop)]
            if kept:
                sys.stderr.write("".join(kept))


def _tflite_session(interpreter_cls: Any, path: str, threads: int, name: str, version: str) -> Session:
    """A TFLite interpreter as a stateless Session.

    Every call resets variable tensors first: the fused LSTM keeps its state in variable
    tensors between invokes, so without the reset the same input gives different outputs.
    Float inputs/outputs are (de)quantized when a file has integer I/O; int64 token ids are
    cast to the file's input dtype (litert-torch turns int64 inputs into int32).
    """
    import numpy as np

    with quiet_native_stderr():
        interp = interpreter_cls(model_path=path, num_threads=threads)
        interp.allocate_tensors()
    ins = _tflite_io_order(interp, "inputs")
    inp = ins[0]
    outs = _tflite_io_order(interp, "outputs")
    out = outs[0]
    sig = inp.get("shape_signature")
    dynamic_batch = sig is not None and len(sig) > 0 and int(sig[0]) == -1
    state = {"shape": tuple(int(d) for d in inp["shape"])}
    in_dtype = np.dtype(inp["dtype"])
    in_scale, in_zero = inp.get("quantization", (0.0, 0))

    def dequant(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
        scale, zero = detail.get("quantization", (0.0, 0))
        if y.dtype.kind in "iu" and scale:
            return (y.astype(np.float32) - zero) * scale
        return y

    def run_all(x: np.ndarray) -> list[np.ndarray]:
        run(x)
        return [dequant(interp.get_tensor(d["index"]).copy(), d) for d in outs]

    def run(x: np.ndarray) -> np.ndarray:
        if in_dtype.kind in "iu" and x.dtype.kind == "f" and in_scale:
            info = np.iinfo(in_dtype)
            x = np.clip(np.round(x / in_scale + in_zero), info.min, info.max)
        x = np.ascontiguousarray(x, dtype=in_dtype)
        if x.shape != state["shape"]:
            interp.resize_tensor_input(inp["index"], list(x.shape), strict=False)
            interp.allocate_tensors()
            state["shape"] = x.shape
        interp.reset_all_variables()
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        return dequant(interp.get_tensor(out["index"]).copy(), out)

    def call(xs: list[np.ndarray]) -> list[np.ndarray]:
        """Every input in the model's order (external state: no variable tensors to reset)."""
        if len(xs) != len(ins):
            raise ValueError(f"the file takes {len(ins)} input(s), got {len(xs)}")
        for d, x in zip(ins, xs, strict=True):
            dt, (scale, zero) = np.dtype(d["dtype"]), d.get("quantization", (0.0, 0))
            if dt.kind in "iu" and x.dtype.kind == "f" and scale:
                x = np.clip(np.round(x / scale + zero), np.iinfo(dt).min, np.iinfo(dt).max)
            interp.set_tensor(d["index"], np.ascontiguousarray(x, dtype=dt))
        interp.invoke()
        return [dequant(interp.get_tensor(d["index"]).copy(), d) for d in outs]

    details = {"input_dtype": str(in_dtype), "input_shape": list(state["shape"])}
    return Session(run, name, version, dynamic_batch, details, run_all,
                   call if len(ins) > 1 else (lambda xs: run_all(xs[0])))


def _tflite_io_order(interp: Any, kind: str) -> list[dict[str, Any]]:
    """Input or output details in the model's order: a file with one signature names them
    with an index (args_0, args_1 / output_0, output_1, ...); the tensor-index order of
    get_input_details / get_output_details may differ."""
    details = interp.get_input_details() if kind == "inputs" else interp.get_output_details()
    try:
        sigs = interp._get_full_signature_list()
    except Exception:
        return details
    if not sigs or len(sigs) != 1:
        return details
    named = next(iter(sigs.values())).get(kind) or {}
    by_index = {d["index"]: d for d in details}
    if len(named) != len(details) or set(named.values()) != set(by_index):
        return details

    def key(name: str) -> tuple[int, str]:
        tail = name.rsplit("_", 1)[-1]
        return (int(tail) if tail.isdigit() else 0, name)

    return [by_index[named[n]] for n in sorted(named, key=key)]


@runtime("litert", "ai_edge_litert.interpreter")
def _litert(path: str, threads: int, **_: Any) -> Session:
    import ai_edge_litert
    from ai_edge_litert import interpreter

    return _tflite_session(interpreter.Interpreter, path, threads, "litert",
                           getattr(ai_edge_litert, "__version__", "unknown"))


@runtime("tflite_runtime", "tflite_runtime.interpreter")
def _tflite_runtime(path: str, threads: int, **_: Any) -> Session:
    import tflite_runtime
    from tflite_runtime import interpreter

    return _tflite_session(interpreter.Interpreter, path, threads, "tflite_runtime",
                           getattr(tflite_runtime, "__version__", "unknown"))


# report_version=False: facts never listed TensorFlow (importing it takes seconds)
@runtime("tf.lite", "tensorflow", report_version=False)
def _tf_lite(path: str, threads: int, **_: Any) -> Session:
    import tensorflow as tf

    return _tflite_session(tf.lite.Interpreter, path, threads, "tf.lite", tf.__version__)
