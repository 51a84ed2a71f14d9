"""Hostile TorchScript archives for the sandbox tests (issue 23): each one does something a
model file must not be able to do outside edgernn's sandbox. ``edgernn.save`` embeds the input
spec, so the CLI needs no shape options."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

EXAMPLE = (1, 10, 4)  # batch, seq, features


class Benign(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(4, 8, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(x)
        return self.fc(y[:, -1])


class WritesInForward(Benign):
    """``forward`` creates (writes) ``marker`` with ``torch.from_file(shared=True)``."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.from_file(self.marker, shared=True, size=16)  # used: not optimised away
        return self.run(x) + t[0] * 0


class WritesOnLoad(nn.Module):
    """``__setstate__`` (run by ``torch.jit.load``) creates ``marker``; a scripted module with
    its own state restores every field itself, so this one has no submodules."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.weight = torch.randn(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1) @ self.weight

    @torch.jit.export
    def __getstate__(self) -> tuple[str, torch.Tensor, bool]:
        return (self.marker, self.weight, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, torch.Tensor, bool]) -> None:
        t = torch.from_file(state[0], shared=True, size=16)  # used: not optimised away
        self.marker = state[0]
        self.weight = state[1] + t[0] * 0
        self.training = state[2]


class NeverReturns(Benign):
    """``forward`` loops forever once armed (after saving: ``edgernn.save`` runs it once)."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = 0
        while self.armed:
            n = n + 1
        return self.run(x)


def save_scripted(module: nn.Module, path: Path) -> Path:
    """``module`` scripted, with its input spec embedded (``edgernn.save``)."""
    import edgernn

    edgernn.save(torch.jit.script(module.eval()), path, example_input=torch.randn(*EXAMPLE),
                 task="classify", num_classes=3)
    return path


def benign(path: Path) -> Path:
    torch.manual_seed(0)
    return save_scripted(Benign(), path)


def writes_in_forward(path: Path, marker: Path) -> Path:
    torch.manual_seed(0)
    save_scripted(WritesInForward(str(marker)), path)
    marker.unlink(missing_ok=True)  # saving ran it once
    return path


def writes_on_load(path: Path, marker: Path) -> Path:
    torch.manual_seed(0)
    save_scripted(WritesOnLoad(str(marker)), path)
    marker.unlink(missing_ok=True)
    return path


def never_returns(path: Path) -> Path:
    """Saved while disarmed, then re-saved armed (the flag is a scripted attribute)."""
    torch.manual_seed(0)
    m = NeverReturns()
    save_scripted(m, path)
    extra = {"edgernn_spec.json": ""}
    sm = torch.jit.load(str(path), _extra_files=extra)
    sm.armed = True
    torch.jit.save(sm, str(path), _extra_files=extra)
    return path
