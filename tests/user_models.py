"""User-style models (not edgernn's): what practitioners hand to edgernn."""

from __future__ import annotations

import pathlib

import torch
from torch import nn


class SeqFirstGRU(nn.Module):
    """GRU with batch_first=False: input (seq, batch, features)."""

    def __init__(self, features: int = 3, hidden: int = 8):
        super().__init__()
        self.rnn = nn.GRU(features, hidden, num_layers=2)
        self.head = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[-1])


class BiLSTMConv(nn.Module):
    """Conv1d front, bidirectional 2-layer LSTM, LayerNorm, linear head; returns a tuple."""

    def __init__(self, features: int = 4, hidden: int = 8):
        super().__init__()
        self.conv = nn.Conv1d(features, 8, kernel_size=3, padding=1)
        self.rnn = nn.LSTM(8, hidden, num_layers=2, batch_first=True, bidirectional=True)
        self.norm = nn.LayerNorm(2 * hidden)
        self.head = nn.Linear(2 * hidden, 3)

    def forward(self, x: torch.Tensor):
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)
        out, (hn, _) = self.rnn(h)
        return self.head(self.norm(out[:, -1])), hn


class ProjLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(4, 8, proj_size=4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0][:, -1]


class PackedLSTM(nn.Module):
    """Packs its input inside forward: the exporters cannot follow PackedSequence."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(4, 8, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.int64)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True)
        out, _ = self.rnn(packed)
        padded, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
        return padded[:, -1]


class PackedInputLSTM(nn.Module):
    """Takes a PackedSequence as its input."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(4, 8, batch_first=True)

    def forward(self, packed: nn.utils.rnn.PackedSequence) -> torch.Tensor:
        out, _ = self.rnn(packed)
        padded, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
        return padded[:, -1]


class Evil:
    """Unpickling this creates a marker file: stands for a pickle that runs code."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))
