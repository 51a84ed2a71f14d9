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
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgernn.errors import EdgeRNNError


class EnsembleModel(nn.Module):
    def __init__(self, config: dict[str, Any], members: list[nn.Module] | None = None):
        super().__init__()
        from edgernn.models.sequence import build_model

        cfgs = config["members"]
        if len(cfgs) < 2:
            raise EdgeRNNError(f"an ensemble needs at least two members, got {len(cfgs)}")
        for c in cfgs:
            if c["task"] != config["task"]:
                raise EdgeRNNError(f"an ensemble member has task {c['task']!r}, the ensemble "
                                   f"{config['task']!r}")
        self.config = config
        self.classify = config["task"] == "classify"
        built = members if members is not None else [build_model(c) for c in cfgs]
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


def write_members(path: str | Path, out_dir: str | Path) -> list[Path]:
    """Each member of an ensemble checkpoint written as its own checkpoint
    ``<stem>.member<i>.pt`` (same input spec; ``meta`` from the ensemble's record of that
    member), so the members can be exported and benched on their own for the record."""
    from edgernn.checkpoint import save_checkpoint
    from edgernn.spec import InputSpec

    p, out = Path(path), Path(out_dir)
    ck = torch.load(p, map_location="cpu", weights_only=True)
    cfg = ck.get("config") or {}
    if cfg.get("arch") != "ensemble":
        raise EdgeRNNError(f"{p} is not an ensemble checkpoint")
    spec = InputSpec.from_dict(ck["input_spec"])
    records = (ck.get("meta") or {}).get("members") or []
    paths = []
    for i, member in enumerate(cfg["members"]):
        prefix = f"members.{i}."
        state = {k[len(prefix):]: v for k, v in ck["state_dict"].items() if k.startswith(prefix)}
        meta = {**(records[i] if i < len(records) else {}), "member_of": p.name, "member": i}
        paths.append(save_checkpoint(out / f"{p.stem}.member{i}.pt", member, state, spec, meta))
    return paths
