"""Quantizers for ``tflite-fused`` and ``tflite-loop`` files.

- ``int8-dynamic``: ai-edge-quantizer's ``dynamic_wi8_afp32`` recipe over every op litert-torch
  wrote (FULLY_CONNECTED, convolutions, embeddings), and every recurrent layer's weights int8
  with one symmetric scale per tensor (the fused LSTM's hybrid kernel: int8 weights, float
  state and activations, inputs quantized on the fly).
- ``int8-mixed`` (accuracy-aware; made when data gives an accuracy budget and all-int8 misses
  it): recurrent layers kept fp32 one at a time, the most sensitive first (each layer's drop
  measured alone with LiteRT; the search is ``accuracy_budget.greedy_float_ops``, shared with
  the other mixed quantizers), until the drop fits; the rest of the graph stays int8.

fp16 and full int8 are not offered: the fused LSTM kernel takes neither float16 weights nor,
without per-gate intermediate scales, int8 activations (``tflite-litert`` makes those files).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from edgernn.convert.artifact import Artifact
from edgernn.convert.formats.tflite_common import weight_census
from edgernn.convert.formats.tflite_fused import TFLITE_FUSED, TFLITE_LOOP, converted, write_variant
from edgernn.convert.formats.tflite_litert import INSTALL, _missing, run_child
from edgernn.convert.quantize.base import NotApplicable, NotRelevant, register_quantizer, register_unsupported
from edgernn.errors import EdgeRNNError
from edgernn.model.loading import LoadedModel


def _rest_int8(conv: Any, work: Path) -> tuple[bytes, str]:
    """The pre-legalization file with ai-edge-quantizer's dynamic recipe applied (composites
    are left alone), and the quantizer's version; made once per conversion."""
    if conv.raw_int8 is not None:
        return conv.raw_int8
    src, out = work / "raw.tflite", work / "raw-int8.tflite"
    src.write_bytes(conv.raw)
    res = run_child("edgernn.convert.quantize.tflite_litert",
                    {"src": str(src), "out": str(out), "mode": "dynamic", "recipe": "dynamic"},
                    "ai-edge-quantizer int8-dynamic")
    if not out.exists():
        raise EdgeRNNError("ai-edge-quantizer int8-dynamic wrote no file")
    conv.raw_int8 = (out.read_bytes(), str(res.get("ai_edge_quantizer", "?")))
    return conv.raw_int8


class _FusedQuantizer:
    mode = "dynamic"

    def __init__(self, fmt: Any):
        self.format, self.form = fmt.name, fmt.form

    def available(self) -> str | None:
        missing = _missing("ai_edge_quantizer", "ai_edge_litert", "litert_torch")
        return f"{missing.replace('_', '-')} is not installed ({INSTALL})" if missing else None

    def _finish(self, art: Artifact, path: Path, version: str) -> Artifact:
        census = weight_census(path)
        total = sum(census.values())
        frac = census.get("INT8", 0) / total if total else 0.0
        if frac == 0.0:
            path.unlink(missing_ok=True)
            raise NotApplicable("no weight became int8")
        art.quantized_fraction = frac
        art.notes.insert(1, f"int8 weights: {frac:.0%} of weight elements (counted in the file); "
                            "activations float (hybrid kernels)")
        art.backend = f"{art.backend}; ai-edge-quantizer {version} dynamic_wi8_afp32 + " \
                      "edgernn per-tensor int8 recurrent weights"
        return art


class FusedDynamicInt8(_FusedQuantizer):
    label = "int8-dynamic"

    def quantize(self, model: LoadedModel, fp32: Artifact, path: Path, calib: Any = None) -> Artifact:
        t0 = time.perf_counter()
        conv = converted(model)
        with tempfile.TemporaryDirectory(prefix="edgernn-fused-q-") as tmp:
            raw, version = _rest_int8(conv, Path(tmp))
        art = write_variant(model, conv, path, conv.layers.keys(), self.label,
                            time.perf_counter() - t0, raw=raw, form=self.form)
        return self._finish(art, path, version)


class FusedMixedInt8(_FusedQuantizer):
    """Recurrent layers kept fp32, most sensitive first, until the measured drop fits."""

    label = "int8-mixed"
    accuracy_aware = True
    opt_in = "max-drop"

    def quantize(self, model: LoadedModel, fp32: Artifact, path: Path, calib: Any = None,
                 budget: Any = None) -> Artifact:
        from edgernn.convert.quantize.accuracy_budget import greedy_float_ops, needs_budget

        needs_budget(model, budget)
        t0 = time.perf_counter()
        conv = converted(model)
        what, limit = budget.describe(), budget.max_drop
        ids = sorted(conv.layers)
        with tempfile.TemporaryDirectory(prefix="edgernn-fused-mix-") as tmp:
            work = Path(tmp)
            raw, version = _rest_int8(conv, work)
            reference = budget.outputs(Path(fp32.path))

            def write(float_names: list[str], p: Path) -> None:
                int8 = [j for j in ids if str(j) not in float_names]
                write_variant(model, conv, p, int8, self.label, 0.0, raw=raw, form=self.form)

            full = work / "full.tflite"
            write([], full)
            d_full = budget.drop(reference, budget.outputs(full))
            if d_full <= limit:
                raise NotRelevant(f"all-int8 is within the accuracy budget {limit:g} already ({what}: "
                                  f"{d_full:.4g})")
            floated, reached, sens = greedy_float_ops(
                write, [(str(i), conv.layers[i].describe()) for i in ids], budget, reference, work,
                suffix=".tflite")
            kept = [int(n) for n, _ in floated]
            if reached > limit or len(kept) == len(ids):  # every layer fp32 is no mix
                raise NotApplicable(
                    f"no mix of recurrent layers fits the accuracy budget {limit:g} short of "
                    f"keeping all {len(ids)} fp32 (then the {what} is {reached:.4g}; all-int8: "
                    f"{d_full:.4g})")
        int8 = [j for j in ids if j not in kept]
        art = write_variant(model, conv, path, int8, self.label, time.perf_counter() - t0, raw=raw,
                            form=self.form)
        art.notes.insert(0, (
            "mixed precision: kept fp32 " + "; ".join(
                f"{conv.layers[k].describe()} (drop with only it fp32: {sens[str(k)]:.4g})"
                for k in kept)
            + f"; {what}: {reached:.4g} (all-int8: {d_full:.4g})"))
        return self._finish(art, path, version)


for _fmt in (TFLITE_FUSED, TFLITE_LOOP):
    register_quantizer(FusedDynamicInt8(_fmt))
    register_quantizer(FusedMixedInt8(_fmt))
    register_unsupported(_fmt.name, "fp16", "the fused LSTM and the loops' hybrid kernels take no "
                                            "float16 weights; tflite-litert makes fp16 files")
    register_unsupported(_fmt.name, "int8", "full int8 of the recurrent kernels needs per-gate "
                                            "intermediate scales edgernn does not calibrate yet; "
                                            "tflite-litert makes full-int8 files")
    register_unsupported(_fmt.name, "int16x8", "no int16x8 recurrent kernel here; tflite-litert "
                                               "makes int16x8 files")
