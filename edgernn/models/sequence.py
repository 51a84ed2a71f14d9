"""SequenceModel: (embedding | normalisation) -> mixed LSTM/GRU stack -> linear head."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edgernn.models.layers import LayerSpec

_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


def last_step(h: torch.Tensor, bidirectional: bool, hidden: int) -> torch.Tensor:
    """A recurrent block's summary of the whole sequence [batch, width]: the last step's output,
    or for a bidirectional block the forward half at the last step and the backward half at
    the first (where the backward direction has seen everything)."""
    if bidirectional:
        return torch.cat([h[:, -1, :hidden], h[:, 0, hidden:]], dim=1)
    return h[:, -1, :]


def add_input_stage(module: nn.Module, inp: dict[str, Any]) -> int:
    """Give ``module`` its input stage (an Embedding for token ids, else standardisation
    buffers ``x_mean``/``x_std`` filled by training); return the width it feeds the RNNs."""
    module.tokens = inp["kind"] == "tokens"
    if module.tokens:
        module.embed = nn.Embedding(inp["vocab_size"], inp["embed_dim"])
        return int(inp["embed_dim"])
    width = int(inp["features"])
    module.register_buffer("x_mean", torch.zeros(width))
    module.register_buffer("x_std", torch.ones(width))
    return width


def input_stage(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` through ``module``'s input stage (see ``add_input_stage``)."""
    return module.embed(x) if module.tokens else (x - module.x_mean) / module.x_std


class SequenceModel(nn.Module):
    """Many-to-one recurrent model for classification (logits) or forecasting (values).

    Float inputs are standardised inside the model and forecasts de-standardised, so the
    exported artifacts take and return values in the data's own units.
    """

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.config = config
        width = add_input_stage(self, config["input"])
        self.rnns = nn.ModuleList()
        for spec in (LayerSpec(**d) for d in config["layers"]):
            self.rnns.append(
                _CELLS[spec.cell](
                    width, spec.hidden, num_layers=spec.num_layers, batch_first=True,
                    bidirectional=spec.bidirectional,
                )
            )
            width = spec.hidden * (2 if spec.bidirectional else 1)
        self.last_bidirectional = bool(config["layers"][-1].get("bidirectional"))
        self.last_hidden = int(config["layers"][-1]["hidden"])
        out = config["num_classes"] if config["task"] == "classify" else config["horizon"]
        self.head = nn.Linear(width, out)
        self.register_buffer("y_mean", torch.zeros(1))
        self.register_buffer("y_std", torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = input_stage(self, x)
        for rnn in self.rnns:
            h, _ = rnn(h)
        out = self.head(last_step(h, self.last_bidirectional, self.last_hidden))
        if self.config["task"] == "forecast":
            out = out * self.y_std + self.y_mean
        return out
