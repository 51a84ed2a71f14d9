"""Quantizers as plug-ins, each serving one format. Importing registers the built-ins."""

from edgernn.quantize import onnx_dynamic as _onnx_dynamic  # noqa: F401
from edgernn.quantize import onnx_fp16 as _onnx_fp16  # noqa: F401
from edgernn.quantize.base import (
    MODES,
    NotApplicable,
    Quantizer,
    quantizers_for,
    register_quantizer,
)

__all__ = ["MODES", "NotApplicable", "Quantizer", "quantizers_for", "register_quantizer"]
