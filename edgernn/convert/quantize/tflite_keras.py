"""TFLite quantization for the tf_keras rebuilds (``tflite-keras``, ``tflite-keras-unrolled``).

TFLiteConverter quantizes while converting, so each mode re-runs the rebuild and conversion
(in a subprocess, like the fp32 export; the fp32 file is not an input):

- ``dynamic`` (int8-dynamic): ``Optimize.DEFAULT`` without data; weights of 1024 elements or
  more become int8, activations stay float (the fused LSTM runs its hybrid kernel).
- ``fp16``: float16 weights (``supported_types=[tf.float16]``) dequantized at load time.
- ``int8``: full integer with a representative dataset from ``calib``; float input/output kept.
- ``int16x8``: int16 activations, int8 weights
  (``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8``).

TensorFlow 2.21 facts these encode: the int8/int16x8 calibrator segfaults on WHILE-loop (GRU)
models, which surfaces as an ExportError naming the signal; the converter has no 16x8 fused
LSTM ("Quantization to 16x8-bit not yet supported for op: 'UNIDIRECTIONAL_SEQUENCE_LSTM'"),
which is NotApplicable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgernn.convert.artifact import Artifact
from edgernn.convert.formats.tflite_keras import (
    TFLITE_KERAS,
    TFLITE_KERAS_UNROLLED,
    ConverterRejected,
    TFLiteKerasFormat,
    fraction_of,
    missing_reason,
)
from edgernn.convert.quantize.base import NotApplicable, register_quantizer
from edgernn.model.loading import LoadedModel

_MODES = {  # mode -> (label, backend text)
    "dynamic": ("int8-dynamic", "TFLiteConverter Optimize.DEFAULT (dynamic-range int8 weights)"),
    "fp16": ("fp16", "TFLiteConverter Optimize.DEFAULT + supported_types=[float16]"),
    "int8": ("int8", "TFLiteConverter full integer (TFLITE_BUILTINS_INT8, float I/O)"),
    "int16x8": ("int16x8", "TFLiteConverter EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8"),
}
_CALIBRATED = ("int8", "int16x8")


class TFLiteKerasQuantizer:
    def __init__(self, fmt: TFLiteKerasFormat, mode: str):
        self.fmt = fmt
        self.format = fmt.name
        self.mode = mode
        self.label, self.backend = _MODES[mode]

    def available(self) -> str | None:
        return missing_reason()

    def quantize(self, model: LoadedModel, fp32: Artifact, path: Path, calib: Any = None) -> Artifact:
        cal = self._calibration(model, calib) if self.mode in _CALIBRATED else None
        try:
            art, res = self.fmt.convert(model, path, self.mode, cal)
        except ConverterRejected as e:
            path.unlink(missing_ok=True)
            if "not yet supported" in str(e) or "not supported" in str(e):
                raise NotApplicable(str(e)) from None
            raise
        art.variant = f"{self.format}-{self.label}"
        art.quantization = self.label
        art.backend = f"{art.backend}; {self.backend}"
        if self.mode == "fp16":
            frac16 = fraction_of(path, "FLOAT16")
            if frac16 == 0.0:
                path.unlink(missing_ok=True)
                raise NotApplicable("float16 conversion left every weight in float32")
            art.notes.append(f"float16 weights: {frac16:.0%} of weight elements, dequantized to "
                             "float32 at load time (a storage saving)")
        else:
            frac = fraction_of(path, "INT8")
            if frac == 0.0:
                path.unlink(missing_ok=True)
                raise NotApplicable(
                    "the converter quantized no weight (dynamic-range quantization skips tensors "
                    "under 1024 elements)" if self.mode == "dynamic"
                    else "the converter quantized no weight")
            art.quantized_fraction = frac
            art.notes.append(f"int8 weights: {frac:.0%} of weight elements")
        if self.mode == "dynamic":
            art.notes.append("activations stay float; weights dequantized on the fly (hybrid kernels)")
        if self.mode in _CALIBRATED:
            used = res.get("calib_samples")
            given = "" if used == len(cal) else \
                f" of the {len(cal)} given (whole batches of the fixed batch size)"
            art.notes.append(f"calibrated on {used} samples{given}; float input/output kept")
            if not model.spec.is_tokens:
                art.notes.append("raw (unstandardised) inputs share one int8 scale: narrow-range "
                                 "features lose resolution")
        return art

    def _calibration(self, model: LoadedModel, calib: Any) -> np.ndarray:
        what = "full int8" if self.mode == "int8" else "int16x8"
        if calib is None:
            raise NotApplicable(f"{what} needs calibration data: pass --calib FILE.npz")
        cal = np.asarray(calib)
        spec = model.spec
        if cal.ndim != len(spec.axes) or len(cal) == 0:
            raise NotApplicable(
                f"calibration data has shape {list(cal.shape)}; expected samples shaped like "
                f"{spec.shape} (sample-first)")
        ax = spec.seq_axis
        if self.fmt.unroll and ax is not None and cal.shape[ax] != spec.shape[ax]:
            raise NotApplicable(
                f"calibration sequences have length {cal.shape[ax]}; this unrolled "
                f"file is fixed at {spec.shape[ax]}")
        return cal  # exactly the samples given: the caller (edgernn.convert.calibration) chose them


for _fmt in (TFLITE_KERAS, TFLITE_KERAS_UNROLLED):
    for _mode in _MODES:
        register_quantizer(TFLiteKerasQuantizer(_fmt, _mode))
