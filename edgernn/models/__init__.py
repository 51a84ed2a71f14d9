"""Reference architectures: sequence classifiers and forecasters built from a layer spec."""

from edgernn.models.build import build_model
from edgernn.models.layers import LayerSpec, format_layers, parse_layers
from edgernn.models.sequence import SequenceModel

__all__ = ["LayerSpec", "SequenceModel", "build_model", "format_layers", "parse_layers"]
