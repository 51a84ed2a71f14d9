"""The model factory: a reference model from its config, the spec it was built from, its size.
The model classes never build each other; this module builds them all."""

from __future__ import annotations

from typing import Any

from torch import nn

from edgernn.errors import EdgeRNNError
from edgernn.limits import LimitError, bounded_int
from edgernn.models.encdec import EncDecModel
from edgernn.models.ensemble import EnsembleModel
from edgernn.models.layers import EncDecSpec, EnsembleSpec, LayerSpec, ModelSpec
from edgernn.models.sequence import SequenceModel

REFERENCE_MODELS = (SequenceModel, EncDecModel, EnsembleModel)


MAX_HIDDEN = 16384  # units of one recurrent layer
MAX_LAYERS = 64  # blocks in a stack, and stacked layers in one block
MAX_WIDTH = 10**6  # input features, embedding width, classes, horizon
MAX_VOCAB = 10**7
MAX_MEMBERS = 16
MAX_PARAMETERS = 2 * 10**9  # 8 GB of float32 weights


def check_config(config: Any, depth: int = 0) -> int:
    """Check a model config's structure and sizes before anything is allocated (a file that
    declares ``num_layers: 100000`` or ``hidden: 10**6`` is refused in one line, not built
    for minutes or until memory runs out); return the parameter count it implies."""
    where = "model config"
    if not isinstance(config, dict):
        raise LimitError(f"{where} must be a mapping, got {type(config).__name__}")
    arch = config.get("arch", "sequence")
    if arch == "ensemble":
        members = config.get("members")
        if depth or not isinstance(members, list) or not members:
            raise LimitError(f"{where}: an ensemble needs a non-empty list of member configs "
                             "(members cannot be ensembles)")
        bounded_int(len(members), 1, MAX_MEMBERS, f"{where}: ensemble members")
        return _capped(sum(check_config(m, depth + 1) for m in members))
    if arch not in ("sequence", "encdec"):
        raise LimitError(f"{where} has an unknown arch {arch!r} (sequence, encdec, ensemble)")
    inp = config.get("input")
    if not isinstance(inp, dict) or inp.get("kind") not in ("features", "tokens"):
        raise LimitError(f"{where}: 'input' must be a mapping with kind features or tokens")
    if inp["kind"] == "tokens":
        params = bounded_int(inp.get("vocab_size"), 1, MAX_VOCAB, f"{where}: vocab_size") * \
            bounded_int(inp.get("embed_dim"), 1, MAX_WIDTH, f"{where}: embed_dim")
        width = inp["embed_dim"]
    else:
        width = bounded_int(inp.get("features"), 1, MAX_WIDTH, f"{where}: features")
        params = 2 * width
    task = config.get("task")
    if task == "classify":
        out = bounded_int(config.get("num_classes"), 1, MAX_WIDTH, f"{where}: num_classes")
    elif task == "forecast":
        out = bounded_int(config.get("horizon") or 1, 1, MAX_WIDTH, f"{where}: horizon")
    else:
        raise LimitError(f"{where}: task must be classify or forecast, got {task!r}")
    blocks = config.get("layers" if arch == "sequence" else "encoder")
    if not isinstance(blocks, list) or not blocks:
        what = "layers" if arch == "sequence" else "encoder"
        raise LimitError(f"{where}: {what!r} must be a non-empty list of layers (e.g. "
                         "[{cell: lstm, hidden: 64}])")
    bounded_int(len(blocks), 1, MAX_LAYERS, f"{where}: number of layers")
    if arch == "encdec":
        blocks = [*blocks, config.get("decoder")]
    for i, b in enumerate(blocks):
        params, width = _block(b, width, params, f"{where}: layer {i}")
    return _capped(params + width * out + out)


def _block(b: Any, width: int, params: int, where: str) -> tuple[int, int]:
    """Parameters so far plus this recurrent block's, and the width it outputs."""
    if not isinstance(b, dict) or b.get("cell") not in ("lstm", "gru"):
        raise LimitError(f"{where} must be a mapping with cell lstm or gru, got {b!r}"[:300])
    hidden = bounded_int(b.get("hidden"), 1, MAX_HIDDEN, f"{where}: hidden")
    layers = bounded_int(b.get("num_layers", 1), 1, MAX_LAYERS, f"{where}: num_layers")
    bi = b.get("bidirectional", False)
    if not isinstance(bi, bool):
        raise LimitError(f"{where}: bidirectional must be true or false, got {bi!r}")
    gates, dirs = (4 if b["cell"] == "lstm" else 3), (2 if bi else 1)
    for _ in range(layers):
        params = _capped(params + dirs * gates * hidden * (width + hidden + 2))
        width = hidden * dirs
    return params, width


def _capped(params: int) -> int:
    if params > MAX_PARAMETERS:
        raise LimitError(f"model config describes more than {MAX_PARAMETERS:,} parameters "
                         f"({MAX_PARAMETERS * 4 / 1e9:.0f} GB); refused before building it")
    return params


def build_model(config: dict[str, Any]) -> nn.Module:
    """Build a model from its config (``arch``: ``sequence``, ``encdec`` or ``ensemble``), with
    a one-line error on a bad config (sizes checked first: ``check_config``)."""
    check_config(config)
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
