"""Users' per-frame models built with plain torch (not edgernn classes): a streaming GRU
enhancer (one spectral frame and the state in, a sigmoid mask for that frame and the new state
out), its whole-sequence form, a two-output form, and noisy/clean spectra to judge them on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

BINS = 8  # spectral bins per frame
HIDDEN = 12


class StepEnhancer(nn.Module):
    """frame [B, F] + h [1, B, H] -> mask [B, F] (sigmoid), new h."""

    def __init__(self, bins: int = BINS, hidden: int = HIDDEN):
        super().__init__()
        self.gru = nn.GRU(bins, hidden, batch_first=True)
        self.head = nn.Linear(hidden, bins)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, hn = self.gru(x.unsqueeze(1), h)
        return torch.sigmoid(self.head(y[:, -1])), hn


class SeqEnhancer(nn.Module):
    """A whole-sequence enhancer: x [B, T, F] -> dense -> GRU -> dense -> mask [B, T, F]."""

    def __init__(self, bins: int = BINS, hidden: int = HIDDEN):
        super().__init__()
        self.inp = nn.Linear(bins, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.gru(torch.relu(self.inp(x)))[0]))


class VadAndMask(nn.Module):
    """Two outputs per frame: voice activity [B, T, 1] first, then the mask [B, T, F]."""

    def __init__(self, bins: int = BINS, hidden: int = HIDDEN):
        super().__init__()
        self.gru = nn.GRU(bins, hidden, batch_first=True)
        self.vad = nn.Linear(hidden, 1)
        self.head = nn.Linear(hidden, bins)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.gru(x)[0]
        return torch.sigmoid(self.vad(y)), torch.sigmoid(self.head(y))


def spectra(n: int = 6, steps: int = 10, bins: int = BINS,
            seed: int = 0) -> dict[str, np.ndarray]:
    """Clean and noisy magnitudes [N, T, F], log-power features x of the noisy ones and the
    ideal ratio mask y = clip(clean / noisy, 0, 1)."""
    rng = np.random.default_rng(seed)
    clean = rng.uniform(0.0, 1.0, (n, steps, bins)).astype(np.float32)
    noisy = (clean + rng.uniform(0.05, 0.5, (n, steps, bins))).astype(np.float32)
    x = np.log(noisy**2 + 1e-6).astype(np.float32)
    y = np.clip(clean / noisy, 0, 1).astype(np.float32)
    return {"x": x, "y": y, "clean": clean, "noisy": noisy}


def scripted(path: Path, module: nn.Module) -> Path:
    torch.jit.save(torch.jit.script(module.eval()), str(path))
    return path


STEP_ARGS = ["--input", f"x:batch=1,{BINS}", "--input", f"h:1,batch=1,{HIDDEN}"]
