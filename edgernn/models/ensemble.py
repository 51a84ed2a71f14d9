"""EnsembleModel: members trained separately, one module holding them all.

The deployed ensemble is ONE file holding every member, and one call runs them all: its
exported size and measured latency are the ensemble's real cost (both models), not a sum
estimated from the members. Per-member numbers (parameters, training time, held-out
metrics) are kept in the checkpoint's ``meta['members']`` for the record.

Averaging: forecasts are the mean of the members' values. Classifiers average the members'
class probabilities (softmax of each member's logits; a single-column binary score: its
sigmoid) and return the LOG of the mean probability (for one column: its logit), so the
output is still a logit vector: argmax, a threshold at 0 and softmax give the averaged
probabilities' decisions and values.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from edgernn.errors import EdgeRNNError


class EnsembleModel(nn.Module):
    def __init__(self, config: dict[str, Any], members: list[nn.Module]):
        """``members`` are the built member models (``models.build.build_model`` builds them
        from ``config["members"]``)."""
        super().__init__()
        cfgs = config["members"]
        if len(cfgs) < 2:
            raise EdgeRNNError(f"an ensemble needs at least two members, got {len(cfgs)}")
        for c in cfgs:
            if c["task"] != config["task"]:
                raise EdgeRNNError(f"an ensemble member has task {c['task']!r}, the ensemble "
                                   f"{config['task']!r}")
        self.config = config
        self.classify = config["task"] == "classify"
        built = members
        self.members = nn.ModuleList(built)
        self.log_n = math.log(len(built))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = torch.stack([m(x) for m in self.members])
        if not self.classify:
            return outs.mean(0)
        if outs.shape[-1] == 1:  # binary logit: average sigmoid(z), return its logit
            pos = torch.logsumexp(nn.functional.logsigmoid(outs), 0)
            neg = torch.logsumexp(nn.functional.logsigmoid(-outs), 0)
            return pos - neg
        return torch.logsumexp(torch.log_softmax(outs, -1), 0) - self.log_n
