"""TFLite by rebuilding an edgernn SequenceModel in tf_keras with the trained weights.

``tflite-keras``: every LSTM becomes the fused ``UNIDIRECTIONAL_SEQUENCE_LSTM`` op and every
GRU a ``WHILE`` loop (TFLite has no fused GRU); the sequence axis stays dynamic, the batch is
fixed (the converter fuses the LSTM and lowers the GRU loop only with a static batch).
``tflite-keras-unrolled``: every recurrent layer is unrolled over the example's sequence
length (``unroll=True``): no loop and no state variables, a dynamic batch, a fixed length.

Weight transfer: PyTorch LSTM gates i,f,g,o are Keras i,f,c,o (kernels transposed, the two
biases summed); PyTorch GRU is Keras ``GRU(reset_after=True)`` with gates r,z,n reordered to
z,r,h and the two biases kept apart. Input standardisation (x_mean/x_std) is folded into the
first recurrent layer's input kernel and bias, forecast de-standardisation (y_std/y_mean) into
the head, so the file adds no ops for them. Token ids are int32 in the file (the PyTorch
model takes int64; the converter accepts both, int32 is what TFLite kernels and
microcontroller runtimes expect).

The TensorFlow converter runs in a subprocess (``python -c`` calling ``_worker_entry`` here):
its int8 calibrator segfaults on WHILE-loop models, and a dead subprocess becomes an
ExportError naming the signal. TensorFlow is therefore never imported in the calling process.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgernn.artifact import Artifact
from edgernn.errors import ExportError
from edgernn.formats.base import register_format
from edgernn.isolation import kill_group, signal_name
from edgernn.loading import LoadedModel

INSTALL = "pip install 'edgernn[tflite-keras]'"
NOT_SEQUENCE_MODEL = (
    "tflite-keras rebuilds only edgernn SequenceModel checkpoints; use tflite-litert for other models"
)
TIMEOUT_S = 900.0  # per conversion (TensorFlow start-up + convert + calibration)
TIMEOUT_ENV = "EDGERNN_TFLITE_KERAS_TIMEOUT"  # seconds, overrides TIMEOUT_S
FAULT_ENV = "EDGERNN_TFLITE_KERAS_FAULT"  # tests only: "segv" or "hang" in the converter child
_CHILD_ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "-1",
              "PYTHONWARNINGS": "ignore"}
CALIB_MAX_SAMPLES = 256
PARITY_ATOL = 1e-4  # relative to max(1, |reference|), as in edgernn.exporting
MODE_TEXT = {
    "fp32": "fp32 conversion", "dynamic": "dynamic-range int8 quantization",
    "fp16": "float16 conversion", "int8": "full-int8 calibration and quantization",
    "int16x8": "int16x8 calibration and quantization",
}


class ConverterRejected(ExportError):
    """The TFLite converter raised an error (the message is its most specific line)."""


class ConverterCrashed(ExportError):
    """The converter subprocess died from a signal or timed out."""


def missing_reason() -> str | None:
    """None when tensorflow and tf_keras are importable, else a one-line reason."""
    missing = [m for m in ("tensorflow", "tf_keras") if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    verb = "is" if len(missing) == 1 else "are"
    return f"{' and '.join(missing)} {verb} not installed ({INSTALL})"


# ------------------------------------------------------------------ plan (parent, no TensorFlow)


def build_plan(model: LoadedModel, unroll: bool) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The Keras rebuild as plain data: a JSON-able plan and Keras-layout numpy weights."""
    cfg = model.config
    if cfg is None:
        raise ExportError(NOT_SEQUENCE_MODEL)
    module = model.module
    spec = model.spec
    try:
        tokens = cfg["input"]["kind"] == "tokens"
        layer_cfgs = list(cfg["layers"])
        task = cfg["task"]
        rnns = list(module.rnns)
    except (KeyError, TypeError, AttributeError) as e:
        raise ExportError(f"tflite-keras: the model config is not a SequenceModel config ({e!r})") from None
    rank = 2 if tokens else 3
    if len(spec.axes) != rank or spec.axis_index("batch") not in (0, None) or spec.seq_axis not in (1, None):
        raise ExportError(
            f"tflite-keras: input spec {spec.shape} does not match a SequenceModel input "
            f"([batch, seq{'' if tokens else ', features'}] with batch first)"
        )
    batch_ax, seq_ax = spec.axes[0], spec.axes[1]
    seq_len = int(seq_ax.size)
    if unroll:
        batch = None if batch_ax.name else int(batch_ax.size)
        seq = seq_len
    else:
        batch = 1 if batch_ax.name else int(batch_ax.size)
        seq = None if seq_ax.name else seq_len

    weights: dict[str, np.ndarray] = {}

    def arr(t: Any) -> np.ndarray:
        return t.detach().cpu().numpy().astype(np.float32)

    plan: dict[str, Any] = {
        "tokens": tokens, "batch": batch, "seq": seq, "seq_len": seq_len, "task": task,
        "layers": [], "unroll": unroll,
    }
    if tokens:
        emb = arr(module.embed.weight)
        weights["embed"] = emb
        plan["vocab_size"], plan["embed_dim"] = int(emb.shape[0]), int(emb.shape[1])
    else:
        plan["features"] = int(spec.axes[2].size)
        x_mean = arr(module.x_mean).reshape(-1)
        x_std = arr(module.x_std).reshape(-1)

    if len(layer_cfgs) != len(rnns):
        raise ExportError("tflite-keras: the config's layers do not match the model's recurrent blocks")
    for bi, (lc, rnn) in enumerate(zip(layer_cfgs, rnns, strict=True)):
        cell = str(lc.get("cell", "")).lower()
        kind = type(rnn).__name__
        if cell not in ("lstm", "gru") or kind.lower() != cell:
            raise ExportError(
                f"tflite-keras: recurrent block {bi} is {kind!r}; only LSTM and GRU are rebuilt")
        if int(getattr(rnn, "proj_size", 0) or 0) > 0:
            raise ExportError(f"tflite-keras: block {bi}: LSTM proj_size is not supported")
        if not getattr(rnn, "batch_first", True):
            raise ExportError(f"tflite-keras: block {bi}: only batch_first RNNs are rebuilt")
        hidden, bidir = int(rnn.hidden_size), bool(rnn.bidirectional)
        has_bias = bool(getattr(rnn, "bias", True))
        for k in range(int(rnn.num_layers)):
            idx = len(plan["layers"])
            prefix = f"L{idx}"
            for d, suffix in enumerate(["", "_reverse"] if bidir else [""]):
                wih = arr(getattr(rnn, f"weight_ih_l{k}{suffix}"))
                whh = arr(getattr(rnn, f"weight_hh_l{k}{suffix}"))
                g = wih.shape[0]
                bih = arr(getattr(rnn, f"bias_ih_l{k}{suffix}")) if has_bias else np.zeros(g, np.float32)
                bhh = arr(getattr(rnn, f"bias_hh_l{k}{suffix}")) if has_bias else np.zeros(g, np.float32)
                if cell == "gru":  # PyTorch r,z,n -> Keras z,r,h
                    h = hidden
                    perm = np.r_[h:2 * h, 0:h, 2 * h:3 * h]
                    wih, whh, bih, bhh = wih[perm], whh[perm], bih[perm], bhh[perm]
                kernel, recurrent = wih.T.copy(), whh.T.copy()
                if idx == 0 and not tokens:
                    # (x - m) / s @ K  ==  x @ (K / s) - (m / s) @ K
                    shift = (x_mean / x_std) @ kernel
                    kernel = kernel / x_std[:, None]
                    bih = bih - shift
                bias = bih + bhh if cell == "lstm" else np.stack([bih, bhh])
                weights[f"{prefix}_d{d}_kernel"] = kernel.astype(np.float32)
                weights[f"{prefix}_d{d}_recurrent"] = recurrent.astype(np.float32)
                weights[f"{prefix}_d{d}_bias"] = bias.astype(np.float32)
            plan["layers"].append({
                "cell": cell, "hidden": hidden, "bidirectional": bidir,
                "name": f"{cell}{bi}_{k}" if rnn.num_layers > 1 else f"{cell}{bi}",
                "return_sequences": True,
            })
    if not plan["layers"]:
        raise ExportError("tflite-keras: the model has no recurrent layer")
    plan["layers"][-1]["return_sequences"] = False  # Keras returns the PyTorch last-step features
    head_w, head_b = arr(module.head.weight).T.copy(), arr(module.head.bias)
    if task == "forecast":
        y_std = arr(module.y_std).reshape(-1)
        y_mean = arr(module.y_mean).reshape(-1)
        head_w, head_b = head_w * y_std, head_b * y_std + y_mean
    weights["head_kernel"], weights["head_bias"] = head_w.astype(np.float32), head_b.astype(np.float32)
    plan["outputs"] = int(head_b.shape[0])
    return plan, weights


def describe_plan(plan: dict[str, Any]) -> list[str]:
    """Artifact notes: what each recurrent layer became, and the folded parts."""
    notes = []
    lstm = [x["name"] + (" (bidirectional)" if x["bidirectional"] else "") for x in plan["layers"]
            if x["cell"] == "lstm"]
    gru = [x["name"] + (" (bidirectional)" if x["bidirectional"] else "") for x in plan["layers"]
           if x["cell"] == "gru"]
    if plan["unroll"]:
        notes.append(
            f"all recurrent layers unrolled over {plan['seq_len']} time steps "
            f"({', '.join(lstm + gru)}): no loop, no state variables, fixed sequence length"
        )
    else:
        if lstm:
            notes.append(
                f"LSTM fused into UNIDIRECTIONAL_SEQUENCE_LSTM ({', '.join(lstm)}); its state lives "
                "in variable tensors: call reset_all_variables() before every invoke"
            )
        if gru:
            notes.append(
                f"GRU as a WHILE loop ({', '.join(gru)}): TFLite has no fused GRU op; "
                "tflite-keras-unrolled offers the unrolled form"
            )
        if any(x["bidirectional"] for x in plan["layers"]):
            notes.append("bidirectional layers: a forward and a time-reversed (REVERSE_V2) pass, "
                         "concatenated")
        notes.append(f"batch fixed at {plan['batch']}: the converter needs a static batch to fuse the "
                     "LSTM / lower the GRU loop")
    if plan["tokens"]:
        notes.append("token ids are int32 in the file (the PyTorch model takes int64)")
    else:
        notes.append("input standardisation folded into the first recurrent layer's weights")
    if plan["task"] == "forecast":
        notes.append("forecast de-standardisation folded into the output layer")
    return notes


# ------------------------------------------------------------------ file inspection (no TensorFlow)


def _schema():
    from ai_edge_litert import schema_py_generated as fb

    return fb


def op_census(path: str | Path) -> dict[str, int]:
    """Count of each operator in a .tflite file, over all subgraphs (WHILE bodies included)."""
    try:
        fb = _schema()
    except ImportError:
        return {}
    m = fb.Model.GetRootAs(Path(path).read_bytes(), 0)
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(m.OperatorCodesLength()):
        oc = m.OperatorCodes(i)
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        name = names.get(code, str(code))
        if name == "CUSTOM" and oc.CustomCode():
            name = oc.CustomCode().decode()
        codes.append(name)
    c: Counter[str] = Counter()
    for s in range(m.SubgraphsLength()):
        sg = m.Subgraphs(s)
        for o in range(sg.OperatorsLength()):
            c[codes[sg.Operators(o).OpcodeIndex()]] += 1
    return dict(c)


def weight_elements(path: str | Path | bytes) -> dict[str, int]:
    """Elements of the constant tensors (16 elements or more) in a .tflite file, by storage type."""
    try:
        fb = _schema()
    except ImportError:
        return {}
    m = fb.Model.GetRootAs(path if isinstance(path, bytes) else Path(path).read_bytes(), 0)
    types = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
    seen: set[int] = set()
    out: Counter[str] = Counter()
    for s in range(m.SubgraphsLength()):
        sg = m.Subgraphs(s)
        for t in range(sg.TensorsLength()):
            ten = sg.Tensors(t)
            b = ten.Buffer()
            if b == 0 or b in seen:
                continue
            buf = m.Buffers(b)
            if buf.DataLength() == 0 and int(buf.Offset()) == 0:
                continue
            seen.add(b)
            n = int(np.prod(ten.ShapeAsNumpy())) if ten.ShapeLength() else 1
            if n >= 16:
                out[types.get(ten.Type(), str(ten.Type()))] += n
    return dict(out)


def fraction_of(path: str | Path, *kinds: str) -> float:
    w = weight_elements(path)
    total = sum(w.values())
    return sum(w.get(k, 0) for k in kinds) / total if total else 0.0


_STATEFUL_OPS = {"UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "LSTM",
                 "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_RNN", "SVDF"}
_ITEMSIZE = {"FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "INT16": 2, "INT8": 1, "UINT8": 1, "INT64": 8}


def unshare_state_tensors(blob: bytes) -> tuple[bytes, int]:
    """Give every op that reads a fused LSTM's state variable, other than that LSTM, its own tensor.

    TensorFlow 2.21's converter merges equal zero constants before it fuses the LSTM, so the
    zero initial state of a GRU (a WHILE loop) that follows an LSTM of the same width *is* the
    LSTM's state variable: the GRU then starts from the LSTM's final hidden state and the output
    is wrong. Readers that are not stateful get a zero constant; a second stateful op gets its
    own variable. Returns the (possibly rewritten) file and the number of inputs rewired.
    """
    import flatbuffers

    fb = _schema()
    m = fb.ModelT.InitFromPackedBuf(bytearray(blob), 0)
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
    codes = [names.get(max(int(c.builtinCode), int(c.deprecatedBuiltinCode)), "")
             for c in m.operatorCodes or []]
    rewired = 0
    for sg in m.subgraphs or []:
        tensors = sg.tensors or []
        var = {i for i, t in enumerate(tensors) if t.isVariable}
        if not var:
            continue
        owner: dict[int, int] = {}
        for oi, op in enumerate(sg.operators or []):
            if codes[op.opcodeIndex] in _STATEFUL_OPS:
                for t in op.inputs if op.inputs is not None else []:
                    if int(t) in var:
                        owner.setdefault(int(t), oi)
        for oi, op in enumerate(sg.operators or []):
            if op.inputs is None:
                continue
            ins = [int(t) for t in op.inputs]
            stateful = codes[op.opcodeIndex] in _STATEFUL_OPS
            changed = False
            for k, t in enumerate(ins):
                if t not in var or owner.get(t) == oi:
                    continue
                src = tensors[t]
                new = copy.copy(src)
                new.name = (src.name or b"state") + (b"_own_state" if stateful else b"_zero_init")
                if stateful:  # its own (zero-initialised) variable
                    new.buffer = 0
                else:  # a constant zero (the value the graph meant), zero point for quantized
                    shape = [int(d) for d in (src.shape if src.shape is not None else [])]
                    n = int(np.prod(shape)) if shape else 1
                    tname = types.get(src.type, "FLOAT32")
                    data = np.zeros(n * _ITEMSIZE.get(tname, 4), np.uint8)
                    q = src.quantization
                    zp = int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None \
                        and len(q.zeroPoint) else 0
                    if zp and tname in ("INT8", "INT16"):
                        data = np.full(n, zp, np.int8 if tname == "INT8" else np.int16).view(np.uint8)
                    m.buffers.append(fb.BufferT(data=data))
                    new.buffer = len(m.buffers) - 1
                    new.isVariable = False
                tensors.append(new)
                ins[k] = len(tensors) - 1
                changed = True
                rewired += 1
            if changed:
                op.inputs = np.asarray(ins, dtype=np.int32)
        sg.tensors = tensors
    if not rewired:
        return blob, 0
    builder = flatbuffers.Builder(len(blob) + 4096)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), rewired


# ------------------------------------------------------------------ conversion (subprocess)


def timeout_seconds() -> float:
    try:
        return float(os.environ.get(TIMEOUT_ENV, TIMEOUT_S))
    except ValueError:
        return TIMEOUT_S


def convert_in_subprocess(
    plan: dict[str, Any], weights: dict[str, np.ndarray], out: Path, mode: str = "fp32",
    calib: np.ndarray | None = None, check: tuple[np.ndarray, np.ndarray] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run the Keras rebuild and TFLiteConverter in a fresh Python; return its result dict.

    Raises ConverterCrashed (signal or timeout; the child's process group is killed) or
    ConverterRejected (the converter raised)."""
    what = MODE_TEXT.get(mode, mode)
    limit = timeout_seconds() if timeout is None else timeout
    with tempfile.TemporaryDirectory(prefix="edgernn-tflite-keras-") as td:
        job_dir = Path(td)
        np.savez(job_dir / "weights.npz", **weights)
        extra: dict[str, np.ndarray] = {}
        if calib is not None:
            extra["calib"] = calib
        if check is not None:
            extra["check_x"], extra["check_y"] = check
        if extra:
            np.savez(job_dir / "data.npz", **extra)
        job = {"plan": plan, "mode": mode, "out": str(Path(out).resolve())}
        (job_dir / "job.json").write_text(json.dumps(job))
        env = {**os.environ, **_CHILD_ENV}
        root = Path(__file__).resolve().parents[2]  # a source checkout must import in the child too
        if root.name not in ("site-packages", "dist-packages"):
            env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
        code = f"import sys; from {__name__} import _worker_entry; _worker_entry(sys.argv[1])"
        log_path = job_dir / "log.txt"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", code, str(job_dir)], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env=env, start_new_session=os.name == "posix",
            )
            try:
                rc = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                kill_group(proc)
                raise ConverterCrashed(
                    f"TFLite {what} did not finish within {limit:.0f} s and was stopped "
                    f"(set {TIMEOUT_ENV} to allow longer)"
                ) from None
            except BaseException:  # KeyboardInterrupt: never leave the converter running
                kill_group(proc)
                raise
        result_file = job_dir / "result.json"
        result: dict[str, Any] = {}
        if result_file.exists():
            try:
                result = json.loads(result_file.read_text())
            except ValueError:
                result = {}
        log_tail = _last_line(_without_noise(log_path))
    if rc < 0:
        sig = signal_name(rc)
        hint = ""
        if mode in ("int8", "int16x8") and not plan["unroll"] \
                and any(x["cell"] == "gru" for x in plan["layers"]):
            hint = ("; the TF calibrator crashes on WHILE-loop (GRU) models: use "
                    "tflite-keras-unrolled for full-integer GRU")
        raise ConverterCrashed(f"TFLite converter crashed ({sig}) during {what}{hint}")
    if result.get("error"):
        raise ConverterRejected(f"TFLite {what} failed: {result['error']}")
    if rc != 0 or not result:
        raise ExportError(f"TFLite {what} failed (exit code {rc}): {log_tail or 'no output'}")
    return result


def _without_noise(log_path: Path) -> str:
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    noise = ("W0", "I0", "E0", "WARNING:", "INFO:", "Fatal Python error", "Thread 0x", "Current thread",
             "  File ", "Extension modules")
    return "\n".join(x for x in lines if x.strip() and not x.startswith(noise))


def _last_line(text: str) -> str:
    lines = [x.strip() for x in (text or "").splitlines() if x.strip()]
    return lines[-1][:300] if lines else ""


def converter_message(e: BaseException) -> str:
    """The most specific line of a (very long, MLIR-located) converter error."""
    text = str(e)
    errs = [ln.split("error: ", 1)[1].strip() for ln in text.splitlines() if "error: " in ln]
    errs = [x for x in errs if x]
    # the first specific error names the op; later ones are generic follow-ups
    generic = ("failed to legalize", "Lowering tensor list ops is failed")
    specific = [x for x in errs if not x.startswith(generic)]
    msg = (specific or errs or [_last_line(text) or type(e).__name__])[0]
    return msg.replace("\\n", " ")[:300]


# ------------------------------------------------------------------ the worker (subprocess side)


def _build_keras(plan: dict[str, Any], w: Any, keras: Any) -> Any:
    tokens = plan["tokens"]
    shape = (plan["seq"],) if tokens else (plan["seq"], plan["features"])
    x = keras.Input(shape=shape, batch_size=plan["batch"], dtype="int32" if tokens else "float32",
                    name="input")
    h = x
    if tokens:
        emb = keras.layers.Embedding(plan["vocab_size"], plan["embed_dim"], name="embed")
        h = emb(h)
        emb.set_weights([w["embed"]])
    for i, spec in enumerate(plan["layers"]):
        kw: dict[str, Any] = dict(units=spec["hidden"], return_sequences=spec["return_sequences"],
                                  unroll=plan["unroll"], activation="tanh",
                                  recurrent_activation="sigmoid")
        if spec["cell"] == "lstm":
            layer = keras.layers.LSTM(**kw, name=spec["name"])
        else:
            layer = keras.layers.GRU(**kw, reset_after=True, name=spec["name"])
        if spec["bidirectional"]:
            layer = keras.layers.Bidirectional(layer, merge_mode="concat", name=f"bi_{spec['name']}")
        h = layer(h)
        dirs = 2 if spec["bidirectional"] else 1
        layer.set_weights([w[f"L{i}_d{d}_{part}"] for d in range(dirs)
                           for part in ("kernel", "recurrent", "bias")])
    head = keras.layers.Dense(plan["outputs"], name="head")
    y = head(h)
    head.set_weights([w["head_kernel"], w["head_bias"]])
    return keras.Model(x, y)


def _worker_entry(job_dir: str) -> None:
    """Child entry point: run the job, write result.json, exit without interpreter teardown."""
    import faulthandler

    faulthandler.enable()  # a converter crash leaves its Python stack in the log
    fault = os.environ.get(FAULT_ENV, "")
    if fault == "segv":  # for tests: a crash that looks like the calibrator's
        os.kill(os.getpid(), signal.SIGSEGV)
    elif fault == "hang":
        time.sleep(3600)
    rc = _worker(Path(job_dir))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)  # TensorFlow's atexit teardown is slow and can crash after the file is written


def _worker(job_dir: Path) -> int:
    job = json.loads((job_dir / "job.json").read_text())
    result: dict[str, Any] = {}
    try:
        t0 = time.perf_counter()
        import tensorflow as tf
        import tf_keras as keras

        result["tensorflow"], result["tf_keras"] = tf.__version__, keras.__version__
        result["import_seconds"] = time.perf_counter() - t0
        plan, mode = job["plan"], job["mode"]
        w = dict(np.load(job_dir / "weights.npz"))
        data = dict(np.load(job_dir / "data.npz")) if (job_dir / "data.npz").exists() else {}
        model = _build_keras(plan, w, keras)
        if "check_x" in data:
            xk = data["check_x"].astype(np.int32 if plan["tokens"] else np.float32)
            yk = model(xk, training=False).numpy()
            result["keras_max_abs_diff"] = float(np.max(np.abs(yk - data["check_y"])))
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        if mode != "fp32":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "fp16":
            conv.target_spec.supported_types = [tf.float16]
        elif mode in ("int8", "int16x8"):
            cal = data["calib"]
            dtype = np.int32 if plan["tokens"] else np.float32
            step = plan["batch"] or 1

            def representative():
                for i in range(0, len(cal) - step + 1, step):
                    yield [cal[i:i + step].astype(dtype)]

            conv.representative_dataset = representative
            conv.target_spec.supported_ops = (
                [tf.lite.OpsSet.TFLITE_BUILTINS_INT8] if mode == "int8" else
                [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
            )
        t1 = time.perf_counter()
        try:
            blob = conv.convert()
            if mode == "dynamic" and not plan["unroll"] and any(x["cell"] == "lstm" for x in plan["layers"]):
                # The MLIR dynamic-range quantizer (the default) quantizes a fused LSTM only when
                # every one of its weight tensors has >= 1024 elements: a small input width leaves
                # the whole LSTM in float. The legacy quantizer quantizes it; keep whichever
                # stored more weights as int8.
                legacy = tf.lite.TFLiteConverter.from_keras_model(model)
                legacy.optimizations = [tf.lite.Optimize.DEFAULT]
                legacy.experimental_new_dynamic_range_quantizer = False
                blob2 = legacy.convert()
                n1 = weight_elements(blob).get("INT8", 0)
                n2 = weight_elements(blob2).get("INT8", 0)
                result["dynamic_quantizer"] = "legacy" if n2 > n1 else "mlir"
                if n2 > n1:
                    blob = blob2
        except Exception as e:  # ConverterError and friends
            result["error"] = converter_message(e)
            return 2
        result["convert_seconds"] = time.perf_counter() - t1
        blob, result["unshared_state_inputs"] = unshare_state_tensors(blob)
        Path(job["out"]).write_bytes(blob)
        return 0
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {_last_line(str(e)) or type(e).__name__}"
        return 2
    finally:
        (job_dir / "result.json").write_text(json.dumps(result))


# ------------------------------------------------------------------ the format plug-ins


class TFLiteKerasFormat:
    family = "tflite"
    suffix = ".tflite"
    runtime = "litert"

    def __init__(self, name: str, unroll: bool, timeout: float | None = None):
        self.name = name
        self.unroll = unroll
        self.timeout = timeout

    def available(self) -> str | None:
        return missing_reason()

    def export(self, model: LoadedModel, path: Path) -> Artifact:
        return self.convert(model, path, "fp32")

    def convert(self, model: LoadedModel, path: Path, mode: str,
                calib: np.ndarray | None = None) -> Artifact:
        """Rebuild, convert with ``mode`` in a subprocess, verify what the file accepts."""
        import torch

        t0 = time.perf_counter()
        plan, weights = build_plan(model, self.unroll)
        x = model.example_input(batch=1)
        with torch.no_grad():
            ref = _first(model.module(x)).numpy()
        path.unlink(missing_ok=True)
        res = convert_in_subprocess(plan, weights, path, mode, calib, (x.numpy(), ref), self.timeout)
        seconds = time.perf_counter() - t0
        if not path.exists():
            raise ExportError(f"TFLite {MODE_TEXT.get(mode, mode)} wrote no file")
        ops = op_census(path)
        notes = describe_plan(plan)
        fused = ops.get("UNIDIRECTIONAL_SEQUENCE_LSTM", 0)
        n_lstm = sum(2 if x_["bidirectional"] else 1 for x_ in plan["layers"] if x_["cell"] == "lstm")
        if not self.unroll and n_lstm and fused < n_lstm:
            notes.append(f"only {fused} of {n_lstm} LSTM direction(s) were fused")
        if res.get("unshared_state_inputs"):
            notes.append(
                f"converter bug worked around: {res['unshared_state_inputs']} op input(s) read a fused "
                "LSTM's state variable (TF merged it with an equal zero initial state, e.g. of a "
                "following GRU); they now read their own zero tensor")
        kdiff = res.get("keras_max_abs_diff")
        if kdiff is not None and kdiff > PARITY_ATOL * max(1.0, float(np.max(np.abs(ref)))):
            notes.append(f"the Keras rebuild itself differs from PyTorch by {kdiff:.3g} "
                         "(a weight-transfer problem, not the converter)")
        if res.get("dynamic_quantizer") == "legacy":
            notes.append("used the legacy dynamic-range quantizer (experimental_new_dynamic_range_"
                         "quantizer=False): the MLIR one leaves a fused LSTM float when any of its "
                         "weight tensors has < 1024 elements")
        accepts_seq, dyn_batch, vnotes = self._verify(model, path, plan, strict=(mode == "fp32"))
        notes += vnotes
        return Artifact(
            variant=f"{self.name}-fp32", format=self.family, quantization="fp32", runtime=self.runtime,
            path=str(path), export_seconds=seconds, accepts_other_seq_len=accepts_seq,
            dynamic_batch=dyn_batch, ops=ops, notes=notes,
            backend=(f"tf_keras {res.get('tf_keras', '?')} weight transfer + tf.lite.TFLiteConverter "
                     f"(TensorFlow {res.get('tensorflow', '?')}){', unrolled' if self.unroll else ''}"),
        )

    def _verify(self, model: LoadedModel, path: Path, plan: dict[str, Any],
                strict: bool) -> tuple[bool, bool, list[str]]:
        """Run the file at other sequence lengths / batch 2 and claim only what works.

        ``strict``: also require fp32 parity with PyTorch there (quantized files: runs + finite)."""
        import torch

        from edgernn.probe import runtimes

        notes: list[str] = []
        spec = model.spec
        seq = plan["seq_len"]

        def works(**sizes: int) -> tuple[bool, str]:
            try:
                sess = runtimes.load("litert", str(path), threads=1)
                xx = model.example_input(**sizes)
                with torch.no_grad():
                    ref = _first(model.module(xx)).numpy()
                out = np.asarray(sess.run(xx.numpy())).reshape(ref.shape)
            except Exception as e:
                return False, _last_line(str(e)) or type(e).__name__
            if not np.all(np.isfinite(out)):
                return False, "non-finite output"
            diff = float(np.max(np.abs(out - ref)))
            if strict and diff > PARITY_ATOL * max(1.0, float(np.max(np.abs(ref)))):
                return False, f"output differs from PyTorch by {diff:.3g}"
            return True, ""

        ok, why = works(batch=1, seq=seq) if spec.seq_axis is not None else works(batch=1)
        if not ok:  # exporting's parity check reports this; do not blame the other shapes
            notes.append(f"the file does not match PyTorch at the example shape ({why})")
            return False, False, notes
        accepts = False
        if spec.seq_axis is not None and plan["seq"] is None:
            others = [max(2, seq // 2 + 1), seq + 5]
            bad = [(s, why) for s in others for ok, why in [works(batch=1, seq=s)] if not ok]
            accepts = not bad
            if accepts:
                notes.append(f"sequence axis dynamic (verified at seq {', '.join(map(str, others))})")
            else:
                notes.append(f"sequence length fixed: seq {bad[0][0]} failed ({bad[0][1]})")
        dyn = False
        if spec.axes[0].name and plan["batch"] is None:
            ok, why = works(batch=2)
            dyn = ok
            notes.append("batch axis dynamic (verified at batch 2)" if ok else
                         f"batch fixed: batch 2 failed ({why})")
        return accepts, dyn, notes


def _first(out: Any) -> Any:
    return out[0] if isinstance(out, (tuple, list)) else out


TFLITE_KERAS = register_format(TFLiteKerasFormat("tflite-keras", unroll=False))
TFLITE_KERAS_UNROLLED = register_format(TFLiteKerasFormat("tflite-keras-unrolled", unroll=True))

