"""Training-time augmentation of a batch of features (held-out and validation data are never
augmented). A dataset names the augmentation that suits it (``Dataset.augment``); training
applies it to every training batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


def _band_masks(n: int, size: int, count: int, width: int, gen: torch.Generator) -> torch.Tensor:
    """[n, size] bool: per sample, ``count`` bands each of a uniform width in [0, width] at a
    uniform start (bands may overlap)."""
    mask = torch.zeros(n, size, dtype=torch.bool)
    pos = torch.arange(size)
    for _ in range(count):
        w = torch.randint(0, min(width, size) + 1, (n,), generator=gen)
        start = (torch.rand(n, generator=gen) * (size - w + 1).float()).long()
        mask |= (pos[None, :] >= start[:, None]) & (pos[None, :] < (start + w)[:, None])
    return mask


@dataclass(frozen=True)
class SpecAugment:
    """Frequency and time masking of a spectrogram (SpecAugment, Park et al. 2019, without
    time warping): per sample, ``freq_masks`` bands of up to ``freq_width`` features and
    ``time_masks`` spans of up to ``time_width`` steps are set to ``fill`` (the features'
    training mean, i.e. 0 after the model's standardisation)."""

    freq_masks: int = 2
    freq_width: int = 8
    time_masks: int = 2
    time_width: int = 12

    def __call__(self, x: torch.Tensor, fill: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """``x`` [N, T, F] float; ``fill`` [F]. Returns a new tensor; ``x`` is unchanged."""
        n, t, f = x.shape
        freq = _band_masks(n, f, self.freq_masks, self.freq_width, gen)[:, None, :]
        time = _band_masks(n, t, self.time_masks, self.time_width, gen)[:, :, None]
        return torch.where(freq | time, fill.to(x.dtype).expand_as(x), x)

    def __str__(self) -> str:
        return (f"SpecAugment ({self.freq_masks} frequency masks of <= {self.freq_width} bands, "
                f"{self.time_masks} time masks of <= {self.time_width} steps)")


# what training calls on each batch: (x [N, T, F], fill [F], generator) -> augmented x
Augment = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
