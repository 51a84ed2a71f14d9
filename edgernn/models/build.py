"""The model factory: a reference model from its config, the spec it was built from, its size.
The model classes never build each other; this module builds them all."""

from __future__ import annotations

from typing import Any

from torch import nn

from edgernn.errors import EdgeRNNError
from edgernn.models.encdec import EncDecModel
from edgernn.models.ensemble import EnsembleModel
from edgernn.models.layers import EncDecSpec, EnsembleSpec, LayerSpec, ModelSpec
from edgernn.models.sequence import SequenceModel

REFERENCE_MODELS = (SequenceModel, EncDecModel, EnsembleModel)


def build_model(config: dict[str, Any]) -> nn.Module:
    """Build a model from its config (``arch``: ``sequence``, ``encdec`` or ``ensemble``), with
    a one-line error on a bad config."""
    try:
        arch = config.get("arch", "sequence")
        if arch == "encdec":
            return EncDecModel(config)
        if arch == "ensemble":
            return EnsembleModel(config, [build_model(c) for c in config["members"]])
        if arch != "sequence":
            raise EdgeRNNError(f"model config has an unknown arch {arch!r}")
        return SequenceModel(config)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise EdgeRNNError(f"model config is malformed: {e!r}") from None


def config_spec(config: dict[str, Any]) -> ModelSpec:
    """The model spec a config was built from (``format_layers`` prints it)."""
    arch = config.get("arch", "sequence")
    if arch == "encdec":
        return EncDecSpec(tuple(LayerSpec(**d) for d in config["encoder"]),
                          LayerSpec(**config["decoder"]))
    if arch == "ensemble":
        return EnsembleSpec(tuple(config_spec(c) for c in config["members"]))  # type: ignore[misc]
    return [LayerSpec(**d) for d in config["layers"]]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
