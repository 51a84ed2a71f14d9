"""Recurrent architectures as practitioners write them, in plain torch (none is edgernn's).

Each entry builds a small model and its input; ``benchmarks/real_architectures.py`` builds the
same classes at deployment sizes. What each stands for:

- ``speaker_encoder``: stacked LSTM, Linear + ReLU, ``F.normalize``, cosine head over enrolled
  speakers (a d-vector / GE2E encoder);
- ``attention_pool``: LSTM, additive attention over time (softmax), weighted sum, classifier;
- ``layernorm_stack``: LSTM, LayerNorm, LSTM, LayerNorm between layers;
- ``projection_lstm``: ``proj_size`` LSTM (an ASR-style LSTMP);
- ``bi_tagger``: 2-layer bidirectional LSTM emitting a tag per step ``[B, T, C]``;
- ``conv_front``: Conv1d + BatchNorm + ReLU front end, then LSTM (a CRNN);
- ``embedding_front``: token Embedding, LSTM, classifier (int64 ids);
- ``length_masked``: zero-padded frames masked out of a mean pooling (lengths from the data);
- ``residual_stack``: LSTM layers with residual additions and dropout;
- ``gru_classifier``: 2-layer GRU (PyTorch's GRU is ONNX's ``linear_before_reset``);
- ``gru_lstm_mix``: bidirectional GRU under an LSTM, time-major input;
- ``learned_state``: LSTM starting from a learned initial state h0/c0;
- ``time_major``: ``batch_first=False`` LSTM fed ``[T, B, F]`` after a transpose;
- ``step_lstm``: a streaming step model (one frame and the state in, output and state out).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


class SpeakerEncoder(nn.Module):
    def __init__(self, feats: int = 40, hidden: int = 32, layers: int = 3, speakers: int = 6):
        super().__init__()
        self.lstm = nn.LSTM(feats, hidden, num_layers=layers, batch_first=True)
        self.proj = nn.Linear(hidden, hidden)
        self.enrolled = nn.Parameter(torch.randn(speakers, hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(x)
        e = F.normalize(torch.relu(self.proj(h[-1])), dim=-1)
        return e @ F.normalize(self.enrolled, dim=-1).T


class AttentionPool(nn.Module):
    def __init__(self, feats: int = 12, hidden: int = 24, classes: int = 4):
        super().__init__()
        self.lstm = nn.LSTM(feats, hidden, batch_first=True)
        self.score = nn.Sequential(nn.Linear(hidden, 16), nn.Tanh(), nn.Linear(16, 1))
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x)
        w = torch.softmax(self.score(y), dim=1)
        return self.head((w * y).sum(dim=1))


class LayerNormStack(nn.Module):
    def __init__(self, feats: int = 10, hidden: int = 20, classes: int = 3):
        super().__init__()
        self.l1, self.n1 = nn.LSTM(feats, hidden, batch_first=True), nn.LayerNorm(hidden)
        self.l2, self.n2 = nn.LSTM(hidden, hidden, batch_first=True), nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.n1(self.l1(x)[0])
        y = self.n2(self.l2(y)[0])
        return self.head(y[:, -1])


class ProjectionLSTM(nn.Module):
    def __init__(self, feats: int = 16, hidden: int = 32, proj: int = 12, classes: int = 5):
        super().__init__()
        self.lstm = nn.LSTM(feats, hidden, num_layers=2, proj_size=proj, batch_first=True)
        self.head = nn.Linear(proj, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(x)[0].mean(dim=1))


class BiTagger(nn.Module):
    def __init__(self, feats: int = 8, hidden: int = 16, tags: int = 5):
        super().__init__()
        self.lstm = nn.LSTM(feats, hidden, num_layers=2, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, tags)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(x)[0])  # [B, T, tags]


class ConvFront(nn.Module):
    def __init__(self, feats: int = 6, channels: int = 16, hidden: int = 24, classes: int = 3):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(feats, channels, 5, padding=2), nn.BatchNorm1d(channels),
                                  nn.ReLU())
        self.lstm = nn.LSTM(channels, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return self.head(self.lstm(h)[0][:, -1])


class EmbeddingFront(nn.Module):
    def __init__(self, vocab: int = 500, dim: int = 16, hidden: int = 24, classes: int = 2):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(self.emb(ids))
        return self.head(h[-1])


class LengthMasked(nn.Module):
    """Frames that are all zero are padding: masked out of the mean (lengths from the data)."""

    def __init__(self, feats: int = 8, hidden: int = 16, classes: int = 3):
        super().__init__()
        self.lstm = nn.LSTM(feats, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = (x.abs().sum(dim=-1, keepdim=True) > 0).to(x.dtype)
        y = self.lstm(x)[0] * mask
        return self.head(y.sum(dim=1) / mask.sum(dim=1).clamp_min(1.0))


class ResidualStack(nn.Module):
    def __init__(self, feats: int = 12, hidden: int = 20, layers: int = 3, classes: int = 4):
        super().__init__()
        self.inp = nn.Linear(feats, hidden)
        self.layers = nn.ModuleList(nn.LSTM(hidden, hidden, batch_first=True) for _ in range(layers))
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for lstm in self.layers:
            h = h + self.drop(lstm(h)[0])
        return self.head(h[:, -1])


class GRUClassifier(nn.Module):
    def __init__(self, feats: int = 10, hidden: int = 24, classes: int = 3):
        super().__init__()
        self.gru = nn.GRU(feats, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(x)
        return self.head(h[-1])


class GRULSTMMix(nn.Module):
    def __init__(self, feats: int = 8, hidden: int = 16, classes: int = 3):
        super().__init__()
        self.gru = nn.GRU(feats, hidden, bidirectional=True)  # time-major
        self.lstm = nn.LSTM(2 * hidden, hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.gru(x.transpose(0, 1))
        _, (h, _) = self.lstm(y)
        return self.head(h[-1])


class LearnedState(nn.Module):
    def __init__(self, feats: int = 8, hidden: int = 16, classes: int = 3):
        super().__init__()
        self.lstm = nn.LSTM(feats, hidden, batch_first=True)
        self.h0 = nn.Parameter(torch.randn(1, 1, hidden) * 0.5)
        self.c0 = nn.Parameter(torch.randn(1, 1, hidden) * 0.5)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        y, _ = self.lstm(x, (self.h0.expand(1, b, -1).contiguous(), self.c0.expand(1, b, -1).contiguous()))
        return self.head(y[:, -1])


class TimeMajor(nn.Module):
    def __init__(self, feats: int = 6, hidden: int = 16, classes: int = 2):
        super().__init__()
        self.lstm = nn.LSTM(feats, hidden, num_layers=2)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x.transpose(0, 1))  # [T, B, H]
        return self.head(y[-1])


class StepLSTM(nn.Module):
    """One frame and the state in, the output and the new state out."""

    def __init__(self, feats: int = 6, hidden: int = 16, out: int = 6):
        super().__init__()
        self.lstm = nn.LSTM(feats, hidden, batch_first=True)
        self.head = nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        y, (h2, c2) = self.lstm(x.unsqueeze(1), (h, c))
        return torch.sigmoid(self.head(y[:, 0])), h2, c2


# name -> (class, input shape without batch, "float"|"tokens", UNIDIRECTIONAL_SEQUENCE_LSTM ops
# and WHILE loops expected in its tflite-fused file; its tflite-loop file has their sum as loops)
CORPUS = {
    "speaker_encoder": (SpeakerEncoder, (24, 40), "float", 3, 0),
    "attention_pool": (AttentionPool, (20, 12), "float", 1, 0),
    "layernorm_stack": (LayerNormStack, (16, 10), "float", 2, 0),
    "projection_lstm": (ProjectionLSTM, (16, 16), "float", 2, 0),
    "bi_tagger": (BiTagger, (18, 8), "float", 4, 0),
    "conv_front": (ConvFront, (20, 6), "float", 1, 0),
    "embedding_front": (EmbeddingFront, (20,), "tokens", 1, 0),
    "length_masked": (LengthMasked, (20, 8), "float", 1, 0),
    "residual_stack": (ResidualStack, (16, 12), "float", 3, 0),
    "gru_classifier": (GRUClassifier, (20, 10), "float", 0, 2),
    "gru_lstm_mix": (GRULSTMMix, (16, 8), "float", 1, 2),
    "time_major": (TimeMajor, (16, 6), "float", 2, 0),
    "learned_state": (LearnedState, (12, 8), "float", 0, 1),  # given h0/c0: never the fused op
}


# --------------------------------------------------------------------------- data where int8 hurts

def speaker_data(n: int, frames: int = 40, feats: int = 40, speakers: int = 6,
                 seed: int = 0, offset: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """Unnormalised features: every bin sits near ``offset`` (a raw energy level) and each
    speaker's identity is a small pattern (+-0.3) on top. An int8 input scale must span the
    offset, so the pattern keeps a few levels only: the first recurrent layer is where int8
    hurts, as on real speech models fed raw (not mean-removed) features."""
    patterns = np.random.default_rng(1234).uniform(-0.3, 0.3, size=(speakers, feats))
    rng = np.random.default_rng(seed)  # the speakers are fixed; ``seed`` draws utterances
    y = rng.integers(0, speakers, size=n)
    drift = rng.uniform(0.7, 1.3, size=(n, frames, 1))
    x = offset + patterns[y][:, None, :] * drift + rng.normal(0, 0.08, size=(n, frames, feats))
    return x.astype(np.float32), y.astype(np.int64)


def train_speaker_encoder(x: np.ndarray, y: np.ndarray, hidden: int = 32, layers: int = 3,
                          epochs: int = 8, seed: int = 0) -> SpeakerEncoder:
    """A SpeakerEncoder trained on standardised features, with the standardisation then folded
    into the first LSTM layer's input weights and bias (exact in fp32): the deployed model takes
    the raw features, as many shipped models do."""
    torch.manual_seed(seed)
    mean, std = float(x.mean()), float(x.std())
    model = SpeakerEncoder(x.shape[2], hidden, layers, int(y.max()) + 1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy((x - mean) / std), torch.from_numpy(y)
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 32):
            idx = perm[i:i + 32]
            loss = F.cross_entropy(10.0 * model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():  # W (x - m) / s + b  ==  (W / s) x + (b - (W / s) m)
        w = model.lstm.weight_ih_l0
        w.div_(std)
        model.lstm.bias_ih_l0.sub_(w.sum(dim=1) * mean)
    return model.eval()
