"""Training-time augmentation (SpecAugment masking): what is masked, how much, and that only
training batches see it. Expected values: hand counts and the masks' expected width."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous True runs of a 1-D mask as (start, length)."""
    out, start = [], None
    for i, v in enumerate(list(mask) + [False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append((start, i - start))
            start = None
    return out


def test_masked_cells_take_the_fill_and_the_rest_is_untouched():
    from edgernn.data.augment import SpecAugment

    x = torch.randn(64, 50, 20) + 5.0  # never equal to the fill by chance
    before = x.clone()
    fill = torch.arange(20, dtype=torch.float32) * -1.0
    y = SpecAugment(freq_masks=2, freq_width=4, time_masks=1, time_width=6)(
        x, fill, torch.Generator().manual_seed(0))
    assert torch.equal(x, before)  # the input is not modified
    changed = (y != x).numpy()
    assert np.array_equal(y.numpy()[changed], np.broadcast_to(fill.numpy(), y.shape)[changed])
    for i in range(len(y)):
        bands = changed[i].all(axis=0)  # a frequency masked at every step
        steps = changed[i].all(axis=1)  # a step masked at every frequency
        # what changed is exactly the union of masked bands and masked steps
        assert np.array_equal(changed[i], bands[None, :] | steps[:, None])
        assert len(_runs(bands)) <= 2 and bands.sum() <= 8  # 2 masks of <= 4 bands
        if not bands.all():
            assert len(_runs(steps)) <= 1 and steps.sum() <= 6


def test_mask_widths_are_uniform_up_to_the_width():
    """One frequency mask of up to W=10 bands: the masked share averages (W/2)/F, the widths
    seen span 0..W, and the starts cover every band a mask of that width fits."""
    from edgernn.data.augment import SpecAugment

    n, f, w = 4000, 40, 10
    x = torch.ones(n, 3, f)
    y = SpecAugment(freq_masks=1, freq_width=w, time_masks=0)(
        x, torch.zeros(f), torch.Generator().manual_seed(1))
    widths = (y[:, 0, :] == 0).sum(1).numpy()
    assert set(widths.tolist()) == set(range(w + 1))
    assert widths.mean() == pytest.approx(w / 2, abs=0.25)  # sd of the mean ~ 0.05
    masked = (y[:, 0, :] == 0).numpy()
    assert masked[:, 0].any() and masked[:, -1].any()  # both edges reachable


def test_the_same_generator_seed_gives_the_same_masks():
    from edgernn.data.augment import SpecAugment

    x = torch.randn(8, 30, 12)
    a = SpecAugment()(x, torch.zeros(12), torch.Generator().manual_seed(3))
    b = SpecAugment()(x, torch.zeros(12), torch.Generator().manual_seed(3))
    c = SpecAugment()(x, torch.zeros(12), torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_only_training_batches_are_augmented():
    """A recording augmentation sees every training batch of every epoch (the fit part, after
    the validation split) and nothing else: validation and held-out data stay clean."""
    from edgernn.data.datasets import load_dataset
    from edgernn.models.layers import parse_layers
    from edgernn.study.training import EarlyStop, train_epochs, validation_split

    ds = load_dataset("vowels")
    seen: list[int] = []

    def record(xb, fill, gen):
        seen.append(len(xb))
        return xb

    runs = list(train_epochs(ds, parse_layers("gru:4"), epochs=2, batch_size=32, seed=0,
                             early_stop=EarlyStop(patience=5, val_share=0.2), augment=record))
    n_fit = len(validation_split(ds.x_train, ds.y_train, "classify", 0.2)[0])
    per_epoch = [32] * (n_fit // 32) + ([n_fit % 32] if n_fit % 32 else [])
    assert len(runs) == 2 and seen == per_epoch * 2
