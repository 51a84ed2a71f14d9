"""Quantizers for litert-torch .tflite files, with ai-edge-quantizer recipes.

- ``dynamic`` (int8-dynamic): ``recipe.dynamic_wi8_afp32`` - channelwise int8 weights,
  activations quantized on the fly inside FULLY_CONNECTED (and EMBEDDING_LOOKUP tables).
- ``fp16``: weight-only FLOAT_CASTING to float16; the weights are dequantized to fp32 at
  load, so compute stays float32 (a storage saving).
- ``int8``: ``recipe.static_wi8_ai8`` - full integer (int8 activations and weights), calibrated
  on the caller's ``calib`` samples. Input and output become int8 with a scale (token ids
  stay int32).
- ``int16x8``: ``recipe.static_wi8_ai16`` - int16 activations, int8 weights, calibrated.

Alternatives to ``int8-dynamic`` made on request (the bench measures each beside it):

- ``--tune`` settings: ``int8-weight-only`` (``recipe.weight_only_wi8_afp32``: int8-stored
  weights expanded by DEQUANTIZE ops, float32 compute) and ``int8-dynamic-pertensor`` (dynamic
  int8 with one scale per weight tensor instead of one per output channel);
- ``--max-drop D``: ``int8-mixed``, the weights whose int8 costs the most accuracy kept float
  (with every op that uses them) until the drop measured with LiteRT fits D.

Those live in ``edgernn.convert.quantize.tflite_mixed``, which reads every variant's notes back from
the written file.

Each runs in a child process (see ``edgernn.convert.formats.tflite_litert.run_child``), so a crash in
the calibrator or quantizer becomes a one-line error instead of killing the run.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgernn.convert.artifact import Artifact
from edgernn.convert.formats.tflite_common import (
    io_details,
    op_census,
    opcode_names,
    read_model,
    schema,
    share_identical_buffers,
    weight_census,
)
from edgernn.convert.formats.tflite_litert import INSTALL, _missing, run_child
from edgernn.convert.quantize.base import NotApplicable, register_quantizer
from edgernn.errors import EdgeRNNError
from edgernn.model.loading import LoadedModel

FORMAT = "tflite-litert"

_INT_TYPES = {"INT8", "UINT8", "INT16", "INT4"}
_FLOAT_TYPES = {"FLOAT32", "FLOAT16"}
_IO_OPS = {"QUANTIZE", "DEQUANTIZE"}


def op_precision(path: str | Path) -> dict[str, dict[str, int]]:
    """Per builtin op: how many compute in int (integer output), hybrid (float output, integer
    constant weight) or float. QUANTIZE/DEQUANTIZE are counted as themselves."""
    m = read_model(path)
    type_names = {v: k for k, v in vars(schema().TensorType).items() if not k.startswith("_")}
    codes = opcode_names(m)
    out: dict[str, Counter[str]] = {}
    for g in range(m.SubgraphsLength()):
        sg = m.Subgraphs(g)

        def ttype(i: int, sg: Any = sg) -> str:
            return type_names.get(sg.Tensors(i).Type(), "?")

        def is_const(i: int, sg: Any = sg) -> bool:
            b = sg.Tensors(i).Buffer()
            return b > 0 and (m.Buffers(b).DataLength() > 0 or m.Buffers(b).Size() > 0)

        for o in range(sg.OperatorsLength()):
            op = sg.Operators(o)
            name = codes[op.OpcodeIndex()]
            ins = [i for i in op.InputsAsNumpy() if i >= 0] if op.InputsLength() else []
            outs = [i for i in op.OutputsAsNumpy() if i >= 0] if op.OutputsLength() else []
            if name in _IO_OPS:
                kind = name.lower()
            elif outs and ttype(outs[0]) in _INT_TYPES:
                kind = "int"
            elif any(is_const(i) and ttype(i) in _INT_TYPES for i in ins):
                kind = "hybrid"
            else:
                kind = "float"
            out.setdefault(name, Counter())[kind] += 1
    return {k: dict(v) for k, v in out.items()}


def _summarise(prec: dict[str, dict[str, int]], kind: str) -> str:
    parts = [f"{c[kind]} {name}" for name, c in sorted(prec.items()) if c.get(kind)]
    return ", ".join(parts) if parts else "none"


def _weights_note(census: dict[str, int], stored: str) -> tuple[float, str]:
    total = sum(n for t, n in census.items() if t in _FLOAT_TYPES | _INT_TYPES)
    q = sum(n for t, n in census.items() if t in ({"FLOAT16"} if stored == "fp16" else _INT_TYPES))
    frac = q / total if total else 0.0
    return frac, f"{stored} weights: {frac:.0%} of {total} weight elements"


def _io_note(which: str, dtype: str | None, q: list | None) -> str:
    scale, zero = (q or [0.0, 0])[:2]
    if dtype in ("int8", "int16", "uint8") and scale:
        return f"{which} {dtype} (scale {scale:.4g}, zero point {zero})"
    return f"{which} stays {dtype}"


def file_parts(path: str | Path) -> Counter[str]:
    """Where a .tflite file's bytes go: ``data`` (distinct constant buffers), ``bias`` (the
    int32/int64 ones among them, with ``bias_buffers``), ``vectors`` (how many distinct 1-D
    constants of 16 or more elements: biases of any type), ``qtables`` (distinct scale and
    zero-point vectors, as stored after :func:`share_identical_buffers`), ``graph`` (the rest:
    tensors, ops, names), ``tensors`` and ``quant_ops`` (QUANTIZE/DEQUANTIZE)."""
    blob = Path(path).read_bytes()
    m = read_model(blob)
    codes = opcode_names(m)
    wide = {schema().TensorType.INT32, schema().TensorType.INT64}
    seen: set[int] = set()
    vectors: set[tuple[int, bytes]] = set()
    out = Counter(file=len(blob))
    for g in range(m.SubgraphsLength()):
        sg = m.Subgraphs(g)
        out["tensors"] += sg.TensorsLength()
        out["quant_ops"] += sum(codes[sg.Operators(o).OpcodeIndex()] in _IO_OPS
                                for o in range(sg.OperatorsLength()))
        for t in range(sg.TensorsLength()):
            ten = sg.Tensors(t)
            q = ten.Quantization()
            if q is not None:
                for kind, vec in ((0, q.ScaleAsNumpy()), (1, q.ZeroPointAsNumpy())):
                    if isinstance(vec, np.ndarray):
                        vectors.add((kind, vec.tobytes()))
            b = ten.Buffer()
            if b <= 0 or b in seen or b >= m.BuffersLength():
                continue
            buf = m.Buffers(b)
            n = int(buf.Size()) if int(buf.Offset()) > 1 else buf.DataLength()
            if n:
                seen.add(b)
                out["data"] += n
                if ten.ShapeLength() == 1 and ten.Shape(0) >= 16:
                    out["vectors"] += 1
                    if ten.Type() in wide:
                        out["bias"] += n
                        out["bias_buffers"] += 1
    out["qtables"] = sum(len(v) for _, v in vectors)
    out["graph"] = out["file"] - out["data"] - out["qtables"]
    return out  # a Counter: absent parts are 0


def _kb(n: int) -> str:
    return f"{n / 1000:.1f} kB"


def size_note(path: str | Path, fp32_path: str | Path, label: str) -> str | None:
    """None when ``path`` is no larger than its fp32 source; else a note with both sizes and
    where the extra bytes are (per-step integer biases, quantization tables, graph)."""
    q, f = file_parts(path), file_parts(fp32_path)
    if q["file"] <= f["file"]:
        return None
    why = []
    if q["bias_buffers"] > f["vectors"]:
        why.append(f"{q['bias_buffers']} integer bias buffer(s), {_kb(q['bias'])}, where fp32 "
                   f"has {f['vectors']} bias vector(s): an integer bias is rescaled to each op's "
                   "input scale, so every unrolled time step gets its own")
    if q["qtables"] > 0:
        why.append(f"{_kb(q['qtables'])} of distinct scale / zero-point tables (per-channel "
                   "scales of each int8 weight and integer bias)")
    if q["graph"] > f["graph"]:
        why.append(f"graph +{_kb(q['graph'] - f['graph'])} ({q['tensors'] - f['tensors']:+d} "
                   f"tensors, {q['quant_ops']} QUANTIZE/DEQUANTIZE op(s))")
    why.append(f"constant data {_kb(q['data'])} vs {_kb(f['data'])} in fp32")
    return (f"the {label} file ({_kb(q['file'])}) is larger than its fp32 source "
            f"({_kb(f['file'])}): " + "; ".join(why))


# --------------------------------------------------------------------------- child side


def _recipe(key: str, exclude: list[str] | tuple[str, ...] = ()) -> Any:
    """The ai-edge-quantizer recipe of ``key``; ``exclude``: regexes of op scopes left float
    (NO_QUANTIZE, which takes precedence as it is added last)."""
    from ai_edge_quantizer import qtyping, recipe, recipe_manager

    rm = recipe_manager.RecipeManager()
    ops = qtyping.TFLOperationName.ALL_SUPPORTED
    if key == "dynamic":
        rm.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    elif key == "dynamic-pertensor":
        rm.load_quantization_recipe(
            recipe.dynamic_wi8c_afp32(granularity=qtyping.QuantGranularity.TENSORWISE))
    elif key == "weight-only":
        rm.load_quantization_recipe(recipe.weight_only_wi8_afp32())
    elif key == "fp16":
        rm.add_weight_only_config(regex=".*", operation_name=ops, num_bits=16,
                                  algorithm_key=recipe.AlgorithmName.FLOAT_CASTING)
    elif key == "int8":
        rm.load_quantization_recipe(recipe.static_wi8_ai8())
    elif key == "int16x8":
        rm.load_quantization_recipe(recipe.static_wi8_ai16())
    else:
        raise ValueError(f"unknown recipe {key}")
    for regex in exclude:
        rm.add_quantization_config(regex=regex, operation_name=ops,
                                   algorithm_key=recipe.AlgorithmName.NO_QUANTIZE)
    return rm.get_quantization_recipe()


def _child_main(job: dict[str, Any]) -> dict[str, Any]:
    import contextlib
    import io
    import os

    os.environ.setdefault("TQDM_DISABLE", "1")
    from ai_edge_quantizer import quantizer

    qt = quantizer.Quantizer(job["src"], _recipe(job.get("recipe") or job["mode"],
                                                 job.get("exclude") or ()))
    calib_result = None
    n = 0
    if qt.need_calibration:
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=job["src"])
        sigs = it.get_signature_list()
        key = next(iter(sigs))
        name = sigs[key]["inputs"][0]
        runner = it.get_signature_runner(key)
        want = runner.get_input_details()[name]
        dtype, shape = np.dtype(want["dtype"]), tuple(int(d) for d in want["shape"])
        x = np.load(job["calib"])
        batch_axis = int(job.get("batch_axis", 0))
        data = []
        for i in range(len(x)):
            s = np.moveaxis(x[i : i + 1], 0, batch_axis)
            if s.shape != shape:
                raise ValueError(f"calibration sample shape {list(s.shape)} does not match the "
                                 f"file's fixed input {list(shape)}")
            data.append({name: np.ascontiguousarray(s, dtype=dtype)})
        n = len(data)
        with contextlib.redirect_stderr(io.StringIO()):
            calib_result = qt.calibrate({key: data}, num_threads=1)
    t0 = time.perf_counter()
    res = qt.quantize(calib_result, enable_progress_report=False)
    res.export_model(job["out"], overwrite=True)
    before, merged = _share(job["out"])
    seconds = time.perf_counter() - t0
    for more in job.get("extra") or ():  # more files from the same source (no calibration)
        other = quantizer.Quantizer(job["src"], _recipe(more["recipe"], more.get("exclude") or ()))
        other.quantize(None, enable_progress_report=False).export_model(more["out"], overwrite=True)
        _share(more["out"])
    return {"calib_samples": n, "quantize_seconds": seconds,
            "ai_edge_quantizer": _version("ai-edge-quantizer"), "shared_buffers": merged,
            "size_before_sharing": before, **io_details(job["out"])}


def _share(path: str) -> tuple[int, int]:
    """Rewrite ``path`` with repeated buffers and quantization tables stored once
    (:func:`share_identical_buffers`); its size before, and the number of buffers merged."""
    p = Path(path)
    blob = p.read_bytes()
    new, merged = share_identical_buffers(blob)
    if new is not blob:
        p.write_bytes(new)
    return len(blob), merged


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


# --------------------------------------------------------------------------- parent side


class _LitertQuantizer:
    format = FORMAT
    mode = ""
    label = ""
    recipe_name = ""
    recipe_key = ""  # the child's recipe (default: the mode)

    def available(self) -> str | None:
        missing = _missing("ai_edge_quantizer", "ai_edge_litert")
        if missing:
            dist = {"ai_edge_quantizer": "ai-edge-quantizer", "ai_edge_litert": "ai-edge-litert"}[missing]
            return f"{dist} is not installed ({INSTALL})"
        return None

    def _run(self, fp32: Artifact, path: Path, calib_file: Path | None = None,
             batch_axis: int = 0, exclude: list[str] | tuple[str, ...] = (),
             extra: list[dict[str, Any]] | tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
        """Quantize in a child; ``exclude``: op-scope regexes left float; ``extra``: more files
        ({"out", "recipe", "exclude"}) written by the same child."""
        path.unlink(missing_ok=True)
        job = {"src": fp32.path, "out": str(path), "mode": self.mode,
               "recipe": self.recipe_key or self.mode, "exclude": list(exclude),
               "extra": list(extra),
               "calib": str(calib_file) if calib_file else None, "batch_axis": batch_axis}
        res = run_child(__name__, job, f"ai-edge-quantizer {self.label}")
        if not path.exists():
            raise EdgeRNNError(f"ai-edge-quantizer {self.label} wrote no file")
        return res

    def _artifact(self, fp32: Artifact, path: Path, notes: list[str], frac: float | None,
                  res: dict[str, Any]) -> Artifact:
        bigger = size_note(path, fp32.path, self.label)
        if bigger:
            notes = [*notes, bigger]
        return Artifact(
            variant=f"{FORMAT}-{self.label}", format=fp32.format, quantization=self.label,
            runtime=fp32.runtime, path=str(path), ops=op_census(path), notes=notes,
            quantized_fraction=frac, accepts_other_seq_len=fp32.accepts_other_seq_len,
            dynamic_batch=fp32.dynamic_batch,
            backend=f"ai-edge-quantizer {res.get('ai_edge_quantizer', '?')} "
                    f"recipe.{self.recipe_name}",
        )

    def _fixed_shape_note(self, fp32: Artifact) -> list[str]:
        return [n for n in fp32.notes if n.startswith(("unrolled", "int64 token"))]


class LitertDynamicInt8(_LitertQuantizer):
    mode = "dynamic"
    label = "int8-dynamic"
    recipe_name = "dynamic_wi8_afp32()"
    granularity = "channelwise"

    def quantize(self, model: LoadedModel, fp32: Artifact, path: Path, calib: Any = None) -> Artifact:
        res = self._run(fp32, path)
        frac, notes = self._dynamic_notes(path, fp32)
        return self._artifact(fp32, path, notes, frac, res)

    def _dynamic_notes(self, path: Path, fp32: Artifact) -> tuple[float, list[str]]:
        """The int8 share and what the dynamic-int8 file holds (NotApplicable: no int8 weight)."""
        census = weight_census(path)
        frac, wnote = _weights_note(census, "int8")
        if frac == 0.0:
            path.unlink(missing_ok=True)
            raise NotApplicable(f"ai-edge-quantizer {self.recipe_name} left every weight in fp32")
        prec = op_precision(path)
        return frac, [
            f"{wnote} ({self.granularity}, symmetric)",
            f"int8-weight ops (activations quantized per call): {_summarise(prec, 'hybrid')}",
            f"stay float32: {_summarise(prec, 'float')}",
            *self._fixed_shape_note(fp32),
        ]


class LitertFloat16(_LitertQuantizer):
    mode = "fp16"
    label = "fp16"
    recipe_name = "FLOAT_CASTING weight-only 16-bit"

    def quantize(self, model: LoadedModel, fp32: Artifact, path: Path, calib: Any = None) -> Artifact:
        res = self._run(fp32, path)
        census = weight_census(path)
        frac, wnote = _weights_note(census, "fp16")
        if frac == 0.0:
            path.unlink(missing_ok=True)
            raise NotApplicable("ai-edge-quantizer fp16 cast no weight to float16")
        deq = op_census(path).get("DEQUANTIZE", 0)
        notes = [
            wnote,
            f"{deq} DEQUANTIZE op(s) expand them to float32 at load: compute stays float32 "
            "(a storage saving, not a speed-up on CPU)",
            *self._fixed_shape_note(fp32),
        ]
        return self._artifact(fp32, path, notes, None, res)


class LitertStatic(_LitertQuantizer):
    """Full-integer quantization calibrated on the caller's samples."""

    act_bits = 8

    def quantize(self, model: LoadedModel, fp32: Artifact, path: Path, calib: Any = None) -> Artifact:
        if model.sig.is_streaming:
            raise NotApplicable(f"full {self.label} of a step model would need calibration "
                                "samples of every state input as well; use dynamic int8")
        if calib is None:
            raise NotApplicable(f"full {self.label} needs calibration data: pass --calib FILE.npz")
        x = np.asarray(calib)
        if len(x) == 0:
            raise NotApplicable(f"full {self.label} needs calibration data: the calibration set is empty")
        if model.spec.is_tokens and x.dtype.kind == "f":
            raise EdgeRNNError(f"calibration data is {x.dtype} but the model takes integer token ids")
        want = list(model.example_input(batch=1).shape)
        got = list(np.moveaxis(x[:1], 0, model.spec.batch_axis).shape)
        if got != want:
            raise EdgeRNNError(
                f"calibration samples have shape {list(x.shape)} (samples first), but the "
                f".tflite file's input is fixed at {want}: pass samples of that shape"
            )
        # exactly the samples given: the caller (edgernn.convert.calibration) chose and counted them
        with tempfile.TemporaryDirectory(prefix="edgernn-calib-") as tmp:
            cfile = Path(tmp) / "calib.npy"
            np.save(cfile, np.ascontiguousarray(x))
            res = self._run(fp32, path, cfile, model.spec.batch_axis)
        census = weight_census(path)
        frac, wnote = _weights_note(census, "int8")
        prec = op_precision(path)
        io_note = "; ".join([
            _io_note("input", res.get("input_dtype"), res.get("input_quantization")),
            _io_note("output", res.get("output_dtype"), res.get("output_quantization")),
        ]) + " (quantize inputs / dequantize outputs with these on the device)"
        notes = [
            f"int{self.act_bits} activations, int8 weights; calibrated on {res.get('calib_samples')} "
            "sample(s)",
            f"{wnote} (integer biases not counted)",
            f"integer ops: {_summarise(prec, 'int')}",
            f"stay float: {_summarise(prec, 'float')}",
            io_note,
            *([f"the raw input is quantized with one scale for all {model.spec.shape[-1]} features, "
               "before the model's own standardisation: small-range features lose resolution"]
              if res.get("input_dtype") in ("int8", "int16") and not model.spec.is_tokens
              and model.spec.shape[-1] > 1 else []),
            "inputs outside the calibrated range are clipped: check accuracy, not just parity",
            *self._sharing_notes(res, path),
            *self._fixed_shape_note(fp32),
        ]
        return self._artifact(fp32, path, notes, frac, res)

    @staticmethod
    def _sharing_notes(res: dict[str, Any], path: Path) -> list[str]:
        out = []
        merged = int(res.get("shared_buffers") or 0)
        if merged:
            out.append(f"{merged} duplicate per-step weight copies merged (ai-edge-quantizer "
                       "gave the uses of one float weight their own quantized copies): one copy "
                       "of each weight")
        before, after = int(res.get("size_before_sharing") or 0), path.stat().st_size
        if before > after:
            out.append(f"repeated quantization tables stored once ({_kb(before)} as "
                       f"ai-edge-quantizer wrote it, {_kb(after)} now; no value changed)")
        return out


class LitertInt8(LitertStatic):
    mode = "int8"
    label = "int8"
    recipe_name = "static_wi8_ai8()"
    act_bits = 8


class LitertInt16x8(LitertStatic):
    mode = "int16x8"
    label = "int16x8"
    recipe_name = "static_wi8_ai16()"
    act_bits = 16


register_quantizer(LitertDynamicInt8())
register_quantizer(LitertFloat16())
register_quantizer(LitertInt8())
register_quantizer(LitertInt16x8())
