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


# -- ONNX quantization of foreign graphs (issue 11): scripted models whose exported weights sit
# -- in Constant nodes, a GRU onnxruntime cannot quantize, a loop with a sub-graph --------------


class ConvFrontLSTM(nn.Module):
    """Two Conv1d layers in front of one LSTM (hidden 128, so LSTM weights dominate)."""

    def __init__(self, features: int = 8, channels: int = 32, hidden: int = 128, classes: int = 5):
        super().__init__()
        self.conv1 = nn.Conv1d(features, channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size=3, padding=1)
        self.rnn = nn.LSTM(channels, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv2(torch.relu(self.conv1(x.transpose(1, 2))))).transpose(1, 2)
        out, _ = self.rnn(h)
        return self.head(out[:, -1])


class GRUClassifier(nn.Module):
    """One GRU (hidden 64) and a linear head: onnxruntime alone makes only the head int8."""

    def __init__(self, features: int = 6, hidden: int = 64, classes: int = 4):
        super().__init__()
        self.rnn = nn.GRU(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


class BareGRU(nn.Module):
    """A GRU and nothing else: onnxruntime alone has nothing to quantize (edgernn stores the
    GRU's weights int8)."""

    def __init__(self, features: int = 4, hidden: int = 32):
        super().__init__()
        self.rnn = nn.GRU(features, hidden, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0][:, -1]


class LoopRNN(nn.Module):
    """A hand-written Elman cell in a Python loop: scripted, it exports as an ONNX Loop whose body
    holds the weights."""

    def __init__(self, features: int = 8, hidden: int = 64, classes: int = 3):
        super().__init__()
        self.hidden = hidden
        self.inp = nn.Linear(features, hidden)
        self.rec = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.size(0), self.hidden)
        for t in range(x.size(1)):
            h = torch.tanh(self.inp(x[:, t]) + self.rec(h))
        return self.head(h)


# --- tflite-keras graph walk (tests/test_tflite_keras.py) ---


class ConvBnLSTM(nn.Module):
    """Conv1d front end (+ BatchNorm, ReLU) over [batch, seq, features], one LSTM, last step."""

    def __init__(self, features: int = 4, hidden: int = 16, classes: int = 3):
        super().__init__()
        self.conv = nn.Conv1d(features, 8, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm1d(8)
        self.rnn = nn.LSTM(8, hidden, batch_first=True)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x.transpose(1, 2))))
        out, _ = self.rnn(h.transpose(1, 2))
        return self.head(self.drop(out[:, -1, :]))


class TokenBiLSTM(nn.Module):
    """Embedding, 2-layer bidirectional LSTM, both final states, LayerNorm, GELU, linear head."""

    def __init__(self, vocab: int = 30, hidden: int = 8):
        super().__init__()
        self.embed = nn.Embedding(vocab, 6)
        self.rnn = nn.LSTM(6, hidden, num_layers=2, batch_first=True, bidirectional=True)
        self.norm = nn.LayerNorm(2 * hidden)
        self.head = nn.Linear(2 * hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.rnn(self.embed(x))
        return self.head(nn.functional.gelu(self.norm(torch.cat([h[-2], h[-1]], dim=1))))


class StftLSTM(nn.Module):
    """An STFT front end (not a layer tflite-keras can rebuild) feeding an LSTM."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(5, 8, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(x.flatten(1), n_fft=8, hop_length=4, return_complex=True)  # STFT-LINE
        out, _ = self.rnn(spec.abs().transpose(1, 2))
        return self.head(out.mean(dim=1))


class ResidualLSTM(nn.Module):
    """A skip connection around a linear layer: not a chain."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 3)
        self.rnn = nn.LSTM(3, 8, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x + self.proj(x))[0][:, -1]  # RESIDUAL-LINE


class BareRNN(nn.Module):
    """A vanilla tanh RNN and nothing else: no int8 form anywhere (onnxruntime has no int8
    RNN; edgernn rewrites only GRU and LSTM)."""

    def __init__(self, features: int = 4, hidden: int = 32):
        super().__init__()
        self.rnn = nn.RNN(features, hidden, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0][:, -1]
