"""The child-process side of ``tflite-keras``: build the Keras model of a plan, convert it with
``tf.lite.TFLiteConverter`` (quantizing on request) and repair the file.

Runs only in a fresh Python started by ``tflite_common.run_child`` (TensorFlow is never imported
in the calling process); ``_child_main`` returns the result dict, or ``{"error": ...,
"error_kind": "converter"}`` when the converter refused the model.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgernn.convert.formats.tflite_common import schema, weight_census
from edgernn.convert.formats.tflite_keras.plan import Plan, Step


def build_keras(plan: Plan, w: dict[str, np.ndarray], keras: Any, tf: Any) -> Any:
    """The Keras model of ``plan`` with its weights set."""
    shape = plan.input_shape()
    x = keras.Input(batch_shape=tuple(shape), dtype="int32" if plan.tokens else "float32", name="input")
    h = x
    for step in plan.steps:
        h = _apply(step, h, w, plan, keras, tf)
    return keras.Model(x, h)


def _apply(s: Step, h: Any, w: dict[str, np.ndarray], plan: Plan, keras: Any, tf: Any) -> Any:
    a, n = s.attrs, s.name
    if s.op == "transpose":
        perm = list(a["perm"])
        return keras.layers.Lambda(lambda t: tf.transpose(t, perm), name=n)(h)
    if s.op == "embedding":
        layer = keras.layers.Embedding(a["vocab"], a["dim"], name=n)
        out = layer(h)
        layer.set_weights([w[f"{n}/embeddings"]])
        return out
    if s.op == "dense":
        layer = keras.layers.Dense(a["units"], name=n)
        out = layer(h)
        layer.set_weights([w[f"{n}/kernel"], w[f"{n}/bias"]])
        return out
    if s.op == "conv1d":
        left, right = a["pad"]
        if left or right:
            h = keras.layers.ZeroPadding1D((left, right), name=f"{n}_pad")(h)
        layer = keras.layers.Conv1D(a["filters"], a["kernel"], strides=a["stride"],
                                    dilation_rate=a["dilation"], groups=a["groups"], padding="valid", name=n)
        out = layer(h)
        layer.set_weights([w[f"{n}/kernel"], w[f"{n}/bias"]])
        return out
    if s.op == "rnn":
        kw: dict[str, Any] = dict(units=a["hidden"], return_sequences=a["return_sequences"],
                                  unroll=plan.unroll, activation="tanh", recurrent_activation="sigmoid")
        layer = (keras.layers.LSTM(**kw, name=n) if a["cell"] == "lstm"
                 else keras.layers.GRU(**kw, reset_after=True, name=n))
        if a["bidirectional"]:
            layer = keras.layers.Bidirectional(layer, merge_mode="concat", name=f"bi_{n}")
        out = layer(h)
        dirs = 2 if a["bidirectional"] else 1
        layer.set_weights([w[f"{n}/d{d}_{part}"] for d in range(dirs)
                           for part in ("kernel", "recurrent", "bias")])
        return out
    if s.op == "affine":
        scale, shift = tf.constant(w[f"{n}/scale"]), tf.constant(w[f"{n}/shift"])
        return keras.layers.Lambda(lambda t: t * scale + shift, name=n)(h)
    if s.op == "layernorm":
        layer = keras.layers.LayerNormalization(axis=-1, epsilon=a["eps"], center=a["affine"],
                                                scale=a["affine"], name=n)
        out = layer(h)
        if a["affine"]:
            layer.set_weights([w[f"{n}/gamma"], w[f"{n}/beta"]])
        return out
    if s.op == "activation":
        return keras.layers.Lambda(_activation(a, tf), name=n)(h)
    if s.op == "pool":
        return _pool(a["mode"], h, n, keras, tf, plan)
    raise ValueError(f"unknown plan op {s.op}")


def _activation(a: dict[str, Any], tf: Any) -> Any:
    fn = a["fn"]
    table = {
        "relu": tf.nn.relu, "tanh": tf.math.tanh, "sigmoid": tf.math.sigmoid, "silu": tf.nn.silu,
        "gelu": lambda t: tf.nn.gelu(t, approximate=False),
        "gelu_tanh": lambda t: tf.nn.gelu(t, approximate=True),
        "leaky_relu": lambda t: tf.nn.leaky_relu(t, alpha=a.get("alpha", 0.01)),
        "softmax": lambda t: tf.nn.softmax(t, axis=-1),
        "log_softmax": lambda t: tf.nn.log_softmax(t, axis=-1),
    }
    return table[fn]


def _pool(mode: str, h: Any, n: str, keras: Any, tf: Any, plan: Plan) -> Any:
    if mode == "mean":
        return keras.layers.GlobalAveragePooling1D(name=n)(h)
    if mode == "max":
        return keras.layers.GlobalMaxPooling1D(name=n)(h)
    if mode == "last":
        return keras.layers.Lambda(lambda t: t[:, -1, :], name=n)(h)
    if mode == "first":
        return keras.layers.Lambda(lambda t: t[:, 0, :], name=n)(h)
    if mode == "final":  # bidirectional: forward at the last step, backward at the first
        def final(t: Any) -> Any:
            k = t.shape[-1] // 2
            return tf.concat([t[:, -1, :k], t[:, 0, k:]], axis=-1)

        return keras.layers.Lambda(final, name=n)(h)
    raise ValueError(f"unknown pooling {mode}")


def _child_main(job: dict[str, Any]) -> dict[str, Any]:
    """Build, check against PyTorch's output, convert with ``job["mode"]``, repair, write."""
    t0 = time.perf_counter()
    import tensorflow as tf
    import tf_keras as keras

    result: dict[str, Any] = {"tensorflow": tf.__version__, "tf_keras": keras.__version__,
                              "import_seconds": time.perf_counter() - t0}
    plan, mode = Plan.from_json(job["plan"]), job["mode"]
    w = dict(np.load(job["files"]["weights"]))
    data = dict(np.load(job["files"]["data"])) if "data" in job["files"] else {}
    model = build_keras(plan, w, keras, tf)
    dtype = np.int32 if plan.tokens else np.float32
    if "check_x" in data:
        yk = model(data["check_x"].astype(dtype), training=False).numpy()
        result["keras_max_abs_diff"] = float(np.max(np.abs(yk - data["check_y"])))
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode != "fp32":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "fp16":
        conv.target_spec.supported_types = [tf.float16]
    elif mode in ("int8", "int16x8"):
        batches = _calibration_batches(data["calib"], plan, dtype)
        result["calib_samples"] = sum(int(b.shape[plan.batch_axis]) for b in batches)
        conv.representative_dataset = lambda: ([b] for b in batches)
        conv.target_spec.supported_ops = (
            [tf.lite.OpsSet.TFLITE_BUILTINS_INT8] if mode == "int8" else
            [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8])
    t1 = time.perf_counter()
    try:
        blob = conv.convert()
        if mode == "dynamic" and not plan.unroll and any(s.attrs["cell"] == "lstm" for s in plan.rnn_steps()):
            # The MLIR dynamic-range quantizer (the default) quantizes a fused LSTM only when
            # every one of its weight tensors has >= 1024 elements: a small input width leaves
            # the whole LSTM in float. The legacy quantizer quantizes it; keep whichever stored
            # more weights as int8.
            legacy = tf.lite.TFLiteConverter.from_keras_model(model)
            legacy.optimizations = [tf.lite.Optimize.DEFAULT]
            legacy.experimental_new_dynamic_range_quantizer = False
            blob2 = legacy.convert()
            n1, n2 = (weight_census(b).get("INT8", 0) for b in (blob, blob2))
            result["dynamic_quantizer"] = "legacy" if n2 > n1 else "mlir"
            if n2 > n1:
                blob = blob2
    except Exception as e:  # ConverterError and friends
        return {**result, "error": converter_message(e), "error_kind": "converter"}
    result["convert_seconds"] = time.perf_counter() - t1
    blob, result["unshared_state_inputs"] = unshare_state_tensors(blob)
    Path(job["out"]).write_bytes(blob)
    return result


def _calibration_batches(cal: np.ndarray, plan: Plan, dtype: Any) -> list[np.ndarray]:
    """Every calibration sample (sample-first) in batches of the file's input shape."""
    step = plan.batch or 1
    axis = plan.batch_axis
    return [np.ascontiguousarray(np.moveaxis(cal[i:i + step], 0, axis), dtype=dtype)
            for i in range(0, len(cal) - step + 1, step)]


def converter_message(e: BaseException) -> str:
    """The most specific line of a (very long, MLIR-located) converter error."""
    text = str(e)
    errs = [ln.split("error: ", 1)[1].strip() for ln in text.splitlines() if "error: " in ln]
    errs = [x for x in errs if x]
    # the first specific error names the op; later ones are generic follow-ups
    generic = ("failed to legalize", "Lowering tensor list ops is failed")
    specific = [x for x in errs if not x.startswith(generic)]
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    msg = (specific or errs or [lines[-1] if lines else type(e).__name__])[0]
    return msg.replace("\\n", " ")[:300]


# ------------------------------------------------------------------ file repair

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

    fb = schema()
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
                tensors.append(_own_tensor(tensors[t], stateful, m, fb, types))
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


def _own_tensor(src: Any, stateful: bool, m: Any, fb: Any, types: dict[int, str]) -> Any:
    """A copy of state tensor ``src``: its own variable (for a stateful op) or a zero constant
    (the value the graph meant; the zero point for a quantized tensor)."""
    new = copy.copy(src)
    new.name = (src.name or b"state") + (b"_own_state" if stateful else b"_zero_init")
    if stateful:
        new.buffer = 0
        return new
    shape = [int(d) for d in (src.shape if src.shape is not None else [])]
    n = int(np.prod(shape)) if shape else 1
    tname = types.get(src.type, "FLOAT32")
    data = np.zeros(n * _ITEMSIZE.get(tname, 4), np.uint8)
    q = src.quantization
    zp = int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None and len(q.zeroPoint) else 0
    if zp and tname in ("INT8", "INT16"):
        data = np.full(n, zp, np.int8 if tname == "INT8" else np.int16).view(np.uint8)
    m.buffers.append(fb.BufferT(data=data))
    new.buffer = len(m.buffers) - 1
    new.isVariable = False
    return new
