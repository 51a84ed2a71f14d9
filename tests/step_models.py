"""Users' streaming step models, built with plain torch (not edgernn classes): one frame and
the recurrent state in, a prediction and the new state out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

FRAME = 576  # 36 ms of 16 kHz audio per step


class StepKWS(nn.Module):
    """Conv front end over a raw audio frame, LSTM; probability of speech and the new state.
    state [2, B, H] holds (h, c) stacked, as shipped voice-activity detectors do."""

    def __init__(self, frame: int = FRAME, hidden: int = 128):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(1, 16, 9, stride=4), nn.ReLU(),
                                  nn.Conv1d(16, 32, 9, stride=4), nn.ReLU(),
                                  nn.AdaptiveAvgPool1d(1))
        self.lstm = nn.LSTM(32, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.conv(x.unsqueeze(1)).squeeze(-1).unsqueeze(1)  # [B, 1, 32]
        y, (h, c) = self.lstm(f, (state[0:1], state[1:2]))
        return torch.sigmoid(self.head(y[:, -1])), torch.stack([h[0], c[0]])


class StepGRU(nn.Module):
    """A GRU step over a feature frame: logits for 3 classes and the new hidden state."""

    def __init__(self, features: int = 10, hidden: int = 24):
        super().__init__()
        self.gru = nn.GRU(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 3)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, hn = self.gru(x.unsqueeze(1), h)
        return self.head(y[:, -1]), hn


class NoStateOut(nn.Module):
    """Takes a state but returns only the prediction: a state input with nothing to pair."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(10, 8, batch_first=True)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.gru(x.unsqueeze(1), h)[0][:, -1]


def speech_frames(n: int = 12, steps: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Frames [N, T, FRAME] where label-1 steps (speech) carry a louder tone; y [N, T]."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, steps)) > 0.5).astype(np.int64)
    t = np.arange(FRAME) / 16000
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    x = 0.05 * rng.standard_normal((n, steps, FRAME)).astype(np.float32)
    x += y[..., None] * tone * rng.uniform(0.5, 1.0, (n, steps, 1)).astype(np.float32)
    return x.astype(np.float32), y


def write_step_kws(out: Path, hidden: int = 128) -> dict[str, Path]:
    """A scripted StepKWS (TorchScript, no edgernn metadata) and per-step labelled frames."""
    torch.manual_seed(0)
    m = StepKWS(hidden=hidden).eval()
    out.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.script(m), str(out / "kws_step.pt"))
    x, y = speech_frames()
    np.savez(out / "frames.npz", x=x, y=y)
    np.savez(out / "frames_last.npz", x=x, y=y[:, -1])
    return {"model": out / "kws_step.pt", "eval": out / "frames.npz",
            "eval_last": out / "frames_last.npz"}


KWS_ARGS = ["--input", f"x:batch=1,{FRAME}", "--input", "state:2,batch=1,128"]


class FrameTagger(nn.Module):
    """A whole-sequence model with a prediction per time step (sequence labelling)."""

    def __init__(self, features: int = 6, hidden: int = 16, classes: int = 3):
        super().__init__()
        self.gru = nn.GRU(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gru(x)[0])  # [B, T, classes]
