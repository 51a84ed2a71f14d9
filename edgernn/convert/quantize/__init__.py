"""Quantizers as plug-ins, each serving one format. Importing registers the built-ins."""

from edgernn.convert.quantize import onnx_dynamic as _onnx_dynamic  # noqa: F401
from edgernn.convert.quantize import onnx_fp16 as _onnx_fp16  # noqa: F401
from edgernn.convert.quantize import onnx_weight_only as _onnx_weight_only  # noqa: F401
from edgernn.convert.quantize import tflite_fused as _tflite_fused  # noqa: F401
from edgernn.convert.quantize import tflite_keras as _tflite_keras  # noqa: F401
from edgernn.convert.quantize import tflite_litert as _tflite_litert  # noqa: F401
from edgernn.convert.quantize import tflite_mixed as _tflite_mixed  # noqa: F401  (--tune, --max-drop)
from edgernn.convert.quantize.base import (
    MODES,
    NOT_RELEVANT,
    OPT_IN,
    NotApplicable,
    NotRelevant,
    Quantizer,
    alternatives,
    labels_for,
    opt_in_labels,
    quantizers_for,
    register_quantizer,
    register_unsupported,
    unsupported_reason,
)

register_unsupported(
    "onnx", "int16x8",
    "int16x8 is not offered for ONNX: onnxruntime has no int16-activation LSTM/GRU kernels",
)
register_unsupported(
    "onnx", "int8",
    "full int8 is not offered for ONNX: onnxruntime static (QDQ) quantization leaves LSTM/GRU in "
    "fp32 and clips out-of-range inputs; use dynamic",
)

__all__ = ["MODES", "NOT_RELEVANT", "OPT_IN", "NotApplicable", "NotRelevant", "Quantizer",
           "alternatives", "labels_for", "opt_in_labels", "quantizers_for", "register_quantizer",
           "register_unsupported", "unsupported_reason"]
