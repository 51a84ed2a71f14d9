"""Export formats as plug-ins. Importing this package registers the built-in formats."""

from edgernn.convert.formats import onnx as _onnx  # noqa: F401,E402  (registers "onnx")
from edgernn.convert.formats import tflite_fused as _tflite_fused  # noqa: F401,E402
from edgernn.convert.formats import tflite_keras as _tflite_keras  # noqa: F401,E402
from edgernn.convert.formats import tflite_litert as _tflite_litert  # noqa: F401,E402
from edgernn.convert.formats.base import (
    FORMATS,
    Format,
    expand_formats,
    families,
    get_format,
    register_format,
)

__all__ = ["FORMATS", "Format", "expand_formats", "families", "get_format", "register_format"]
