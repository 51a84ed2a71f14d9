"""Export formats as plug-ins. Importing this package registers the built-in formats."""

from edgernn.formats import onnx as _onnx  # noqa: F401  (registers "onnx")
from edgernn.formats.base import FORMATS, Format, get_format, register_format

__all__ = ["FORMATS", "Format", "get_format", "register_format"]
