"""EncDecModel: a recurrent encoder over the input window, then a recurrent decoder run for
``horizon`` steps (one forecast value per decoder step).

Wiring (a hand re-implementation in tests/test_hybrids.py checks it):

- the input is standardised (features) or embedded (token ids), as in SequenceModel;
- the encoder stack (LSTM/GRU blocks, any mix) reads the window; its summary ``ctx`` is the
  last block's output at the last step (a bidirectional last block: the forward half at the
  last step and the backward half at the first step);
- the hand-off: ``s = tanh(bridge(ctx))`` is cut into the decoder's initial state, ``h0``
  (and ``c0`` for an LSTM decoder) per decoder layer: ``s`` viewed as
  ``[batch, 2 (h, c) or 1, layers, hidden]``. A projection is needed because a GRU encoder
  has h only while an LSTM decoder takes h and c (and the sizes may differ);
- the decoder reads ``ctx`` at each of its ``horizon`` steps (the encoder summary repeated:
  no feedback of its own forecasts, so the whole decoder is one LSTM/GRU call that exports
  as one recurrent operator) and ``head`` (one Linear shared by the steps) turns each step's
  output into one value;
- forecasts are de-standardised (``y * y_std + y_mean``) into the data's units.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edgernn.errors import EdgeRNNError
from edgernn.models.layers import LayerSpec
from edgernn.models.sequence import add_input_stage, input_stage, last_step

_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


class EncDecModel(nn.Module):
    """Encoder/decoder forecaster: ``[batch, seq(, features)] -> [batch, horizon]``."""

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        if config["task"] != "forecast":
            raise EdgeRNNError("an encoder/decoder model forecasts a horizon; its config says "
                               f"task {config['task']!r}")
        horizon = int(config["horizon"] or 0)
        if horizon < 1:
            raise EdgeRNNError(f"an encoder/decoder model needs a horizon >= 1, got {horizon}")
        self.config = config
        self.horizon = horizon
        width = add_input_stage(self, config["input"])
        encoder = [LayerSpec(**d) for d in config["encoder"]]
        if not encoder:
            raise EdgeRNNError("an encoder/decoder model needs at least one encoder block")
        self.encoder = nn.ModuleList()
        for spec in encoder:
            self.encoder.append(_CELLS[spec.cell](
                width, spec.hidden, num_layers=spec.num_layers, batch_first=True,
                bidirectional=spec.bidirectional))
            width = spec.hidden * (2 if spec.bidirectional else 1)
        self.last_bidirectional = encoder[-1].bidirectional
        self.last_hidden = encoder[-1].hidden
        dec = LayerSpec(**config["decoder"])
        if dec.bidirectional:
            raise EdgeRNNError("the decoder of an encoder/decoder model runs forward only")
        self.dec_lstm = dec.cell == "lstm"
        self.dec_layers, self.dec_hidden = dec.num_layers, dec.hidden
        self.n_state = 2 if self.dec_lstm else 1
        self.bridge = nn.Linear(width, self.n_state * dec.num_layers * dec.hidden)
        self.decoder = _CELLS[dec.cell](width, dec.hidden, num_layers=dec.num_layers,
                                        batch_first=True)
        self.head = nn.Linear(dec.hidden, 1)
        self.register_buffer("y_mean", torch.zeros(1))
        self.register_buffer("y_std", torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = input_stage(self, x)
        for rnn in self.encoder:
            h, _ = rnn(h)
        ctx = last_step(h, self.last_bidirectional, self.last_hidden)
        s = torch.tanh(self.bridge(ctx))
        s = s.reshape(-1, self.n_state, self.dec_layers, self.dec_hidden).permute(1, 2, 0, 3)
        steps = ctx.unsqueeze(1).expand(-1, self.horizon, -1)
        if self.dec_lstm:
            out, _ = self.decoder(steps, (s[0].contiguous(), s[1].contiguous()))
        else:
            out, _ = self.decoder(steps, s[0].contiguous())
        # the head on [batch * horizon, hidden] (a Gemm), not on the 3-d output (a MatMul
        # after the LSTM's Transpose): onnxruntime 1.32 crashes (SIGSEGV) building a session
        # for the fp16 graph of the 3-d form at its default optimisation level
        y = self.head(out.reshape(-1, self.dec_hidden)).reshape(-1, self.horizon)
        return y * self.y_std + self.y_mean
