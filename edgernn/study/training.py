"""Training reference models on a bundled dataset, with progress and per-epoch timing."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgernn.data.augment import Augment
from edgernn.data.datasets import Dataset
from edgernn.data.evalfile import save_eval
from edgernn.errors import EdgeRNNError
from edgernn.model.checkpoint import save_checkpoint
from edgernn.model.spec import Axis, InputSpec
from edgernn.models.build import build_model, config_spec, count_parameters
from edgernn.models.layers import EncDecSpec, EnsembleSpec, ModelSpec, format_layers
from edgernn.probe.metrics import HIGHER_IS_BETTER, PRIMARY, compute_metrics

# an ensemble's member i trains with seed ``seed + MEMBER_SEED_STEP * i``: member 0 is the
# single model of the same spec and seed; the others never coincide with a model of a
# nearby seed (compare's --seeds run seed, seed + 1, ...)
MEMBER_SEED_STEP = 1000
VALIDATION_SEED = 0  # the validation split does not change with the model's seed


@dataclass(frozen=True)
class EarlyStop:
    """Train until the validation metric stops improving: ``patience`` epochs without a
    better value (the task's primary metric; equal values broken by the validation loss),
    on a validation split of ``val_share`` of the training data; the epoch cap is the
    caller's ``epochs``. The best epoch's weights are kept. On the way the learning rate is
    halved after every ``patience // 2`` epochs without improvement (as Keras's
    ReduceLROnPlateau), so a run settles before it stops."""

    patience: int = 5
    val_share: float = 0.15


def validation_split(x: np.ndarray, y: np.ndarray, task: str, share: float,
                     groups: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_fit, y_fit, x_val, y_val): forecasting keeps time order (the last ``share`` of the
    training windows validate); classification draws them with a fixed seed, stratified by
    class (every class in both parts where it has two or more samples), or, with ``groups``
    (e.g. the speaker of each sample), whole groups in a seeded order until ``share`` of the
    samples: validation then asks what the held-out split asks (unseen speakers)."""
    n = len(x)
    if n < 2:
        raise EdgeRNNError(f"early stopping needs at least 2 training samples, got {n}")
    if task != "classify":
        cut = min(n - 1, max(1, int(round(n * (1 - share)))))
        return x[:cut], y[:cut], x[cut:], y[cut:]
    rng = np.random.default_rng(VALIDATION_SEED)
    if groups is not None and len(np.unique(groups)) >= 2:
        return _group_split(x, y, np.asarray(groups), share, rng)
    val: list[np.ndarray] = []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        k = int(round(len(idx) * share))
        if len(idx) >= 2:
            val.append(idx[:max(1, k)])
    chosen = np.sort(np.concatenate(val)) if val else np.array([n - 1])
    if len(chosen) >= n:
        chosen = chosen[:n - 1]
    mask = np.zeros(n, bool)
    mask[chosen] = True
    return x[~mask], y[~mask], x[mask], y[mask]


def _group_split(x: np.ndarray, y: np.ndarray, groups: np.ndarray, share: float,
                 rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Whole groups, in a seeded order, go to validation until it holds ``share`` of the
    samples (at least one group; at least one group left to fit)."""
    names, counts = np.unique(groups, return_counts=True)
    order = rng.permutation(len(names))
    held, total = [], 0
    for i in order[:-1]:
        if held and total >= share * len(x):
            break
        held.append(names[i])
        total += counts[i]
    mask = np.isin(groups, held)
    return x[~mask], y[~mask], x[mask], y[mask]


@dataclass
class TrainResult:
    model: nn.Module  # SequenceModel, EncDecModel or EnsembleModel
    spec: InputSpec
    epoch_seconds: list[float] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)
    tokenizer_path: Path | None = None  # token data: the tokenizer written beside the checkpoint
    members: list[TrainResult] = field(default_factory=list)  # an ensemble's members
    seed: int = 0
    eval_samples: int = 0  # held-out samples the history's metrics come from
    best_epoch: int | None = None  # early stopping: the epoch whose weights were kept
    val_samples: int = 0  # early stopping: training samples held out to validate

    @property
    def final(self) -> dict[str, float]:
        """The held-out metrics of the model as returned (the best epoch's when stopped
        early)."""
        if not self.history:
            return {}
        return self.history[(self.best_epoch or len(self.history)) - 1]


def model_config(ds: Dataset, layers: ModelSpec, embed_dim: int = 32) -> dict[str, Any]:
    inp = (
        {"kind": "tokens", "vocab_size": ds.vocab_size, "embed_dim": embed_dim}
        if ds.vocab_size
        else {"kind": "features", "features": ds.features}
    )
    common = {"input": inp, "task": ds.task, "num_classes": ds.num_classes,
              "horizon": ds.horizon}
    if isinstance(layers, EnsembleSpec):
        return {"arch": "ensemble", **common,
                "members": [model_config(ds, m, embed_dim) for m in layers.members]}
    if isinstance(layers, EncDecSpec):
        if ds.task != "forecast":
            raise EdgeRNNError(
                f"--layers {layers}: an encoder/decoder model forecasts several steps; "
                f"dataset {ds.name!r} is a {ds.task} task (use a stack such as gru:64,lstm:64)")
        return {"arch": "encdec", **common, "encoder": [x.to_dict() for x in layers.encoder],
                "decoder": layers.decoder.to_dict()}
    return {"arch": "sequence", "input": inp, "layers": [x.to_dict() for x in layers],
            "task": ds.task, "num_classes": ds.num_classes, "horizon": ds.horizon}


def input_spec(ds: Dataset) -> InputSpec:
    axes = [Axis(1, "batch"), Axis(ds.seq_len, "seq")]
    if not ds.vocab_size:
        axes.append(Axis(int(ds.features or 1)))
    return InputSpec(
        axes=axes, dtype="int64" if ds.vocab_size else "float32", task=ds.task,
        vocab_size=ds.vocab_size, num_classes=ds.num_classes, horizon=ds.horizon,
    )


def train(
    ds: Dataset, layers: ModelSpec, *, epochs: int = 10, batch_size: int = 64,
    lr: float = 3e-3, seed: int = 0, max_train: int | None = None, threads: int | None = None,
    progress: Any = None, early_stop: EarlyStop | None = None,
) -> TrainResult:
    """Train a model of spec ``layers`` on ``ds``; evaluate on its held-out split after each
    epoch. An ensemble's members are trained separately (member i with seed
    ``seed + MEMBER_SEED_STEP * i``, the same epochs each) and evaluated together."""
    run = train_epochs(ds, layers, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                       max_train=max_train, threads=threads, progress=progress,
                       early_stop=early_stop)
    results = list(run)
    return results[-1]


def train_epochs(
    ds: Dataset, layers: ModelSpec, *, epochs: int = 10, batch_size: int = 64,
    lr: float = 3e-3, seed: int = 0, max_train: int | None = None, threads: int | None = None,
    progress: Any = None, label: str = "", early_stop: EarlyStop | None = None,
    augment: Augment | None | bool = True,
) -> Iterator[TrainResult]:
    """Like ``train`` but yields after every epoch, so several models can be trained in
    lockstep (machine noise then falls on every contender alike). With ``early_stop`` the
    run ends when the validation metric stops improving (or at ``epochs``); its last yield
    carries the best epoch's weights and ``best_epoch``. ``augment``: True applies the
    dataset's own training augmentation (``Dataset.augment``; none of the bundled sets has one),
    False or None none, or the one given."""
    if augment is True:
        augment = ds.augment
    if isinstance(layers, EnsembleSpec):
        yield from _train_ensemble(ds, layers, epochs=epochs, batch_size=batch_size, lr=lr,
                                   seed=seed, max_train=max_train, threads=threads,
                                   progress=progress, label=label, early_stop=early_stop,
                                   augment=augment)
        return
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    model = build_model(model_config(ds, layers))
    unit_forget_bias(model)
    xtr, ytr, groups = ds.x_train, ds.y_train, ds.groups_train
    if max_train:
        xtr, ytr = xtr[:max_train], ytr[:max_train]
        groups = None if groups is None else groups[:max_train]
    xval = yval = None
    if early_stop is not None:
        xtr, ytr, xval, yval = validation_split(xtr, ytr, ds.task, early_stop.val_share, groups)
    if not ds.vocab_size:
        flat = xtr.reshape(-1, xtr.shape[-1])
        model.x_mean.copy_(torch.from_numpy(flat.mean(0)))
        model.x_std.copy_(torch.from_numpy(flat.std(0) + 1e-6))
    if ds.task == "forecast":
        model.y_mean.fill_(float(ytr.mean()))
        model.y_std.fill_(float(ytr.std() + 1e-6))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    result = TrainResult(model, input_spec(ds), seed=seed,
                         val_samples=0 if xval is None else len(xval))
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)  # the augmentation's draws
    task_id = progress.add_task(label or "train", total=epochs) if progress else None
    watch = _Watch(PRIMARY[ds.task], early_stop) if early_stop is not None else None
    for epoch in range(epochs):
        model.train()
        t0 = time.perf_counter()
        order = torch.from_numpy(rng.permutation(len(xt)))
        total = 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            xb = xt[idx]
            if augment:
                xb = augment(xb, model.x_mean, gen)
            out = model(xb)
            if ds.task == "classify":
                loss = nn.functional.cross_entropy(out, yt[idx])
            else:
                loss = nn.functional.mse_loss(
                    (out - model.y_mean) / model.y_std, (yt[idx] - model.y_mean) / model.y_std
                )
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total += float(loss.detach()) * len(idx)
        result.epoch_seconds.append(time.perf_counter() - t0)
        metrics = evaluate_torch(model, ds.x_test, ds.y_test, ds.task)
        metrics["loss"] = total / len(xt)
        stop = False
        if watch is not None:
            val = validation_scores(model, xval, yval, ds.task)
            metrics.update({f"val_{k}": v for k, v in val.items()})
            stop = watch.update(epoch + 1, val, model) or epoch == epochs - 1
            metrics["lr"] = opt.param_groups[0]["lr"]
            if watch.reduce_lr(epoch + 1):
                for g in opt.param_groups:
                    g["lr"] *= 0.5
        result.history.append(metrics)
        result.eval_samples = len(ds.y_test)
        if progress is not None:
            shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()
                              if k != "lr" and (not k.startswith("val_")
                                                or k == f"val_{PRIMARY[ds.task]}"))
            progress.update(task_id, advance=1,
                            description=f"{label + ' ' if label else ''}epoch {epoch + 1}/{epochs} {shown}")
        model.eval()
        if stop:
            model.load_state_dict(watch.best_state)
            result.best_epoch = watch.best_epoch
            if progress is not None:
                progress.update(task_id, total=epoch + 1, completed=epoch + 1)
            yield result
            return
        yield result


def unit_forget_bias(model: nn.Module) -> None:
    """Start every LSTM's forget gate open (bias 1, as Keras does by default; Jozefowicz et
    al. 2015): without it an LSTM reading 100+ steps learns several times slower at first."""
    for mod in model.modules():
        if isinstance(mod, nn.LSTM):
            with torch.no_grad():
                for name, p in mod.named_parameters():
                    if name.startswith(("bias_ih", "bias_hh")):
                        h = p.shape[0] // 4  # gates i, f, g, o
                        p[h:2 * h].fill_(1.0 if name.startswith("bias_ih") else 0.0)


class _Watch:
    """The best validation epoch so far and its weights; says when patience runs out."""

    def __init__(self, metric: str, rule: EarlyStop):
        self.metric, self.rule = metric, rule
        self.higher = HIGHER_IS_BETTER[metric]
        self.best: tuple[float, float] | None = None  # (metric, loss) of the best epoch
        self.best_epoch = 0
        self.best_state: dict[str, Any] = {}
        self.last_cut = 0  # the epoch the learning rate was last halved

    def reduce_lr(self, epoch: int) -> bool:
        """Whether to halve the learning rate now: ``patience // 2`` (at least 1) epochs
        without improvement since the best epoch and since the last cut."""
        wait = max(1, self.rule.patience // 2)
        if epoch - max(self.best_epoch, self.last_cut) >= wait:
            self.last_cut = epoch
            return True
        return False

    def update(self, epoch: int, val: dict[str, float], model: nn.Module) -> bool:
        m, loss = val[self.metric], val["loss"]
        key = (m if self.higher else -m, -loss)
        if self.best is None or key > self.best:
            self.best, self.best_epoch = key, epoch
            self.best_state = copy.deepcopy(model.state_dict())
        return epoch - self.best_epoch >= self.rule.patience


@torch.no_grad()
def validation_scores(model: nn.Module, x: np.ndarray, y: np.ndarray,
                      task: str) -> dict[str, float]:
    """The task's metrics on the validation split, and its loss (cross-entropy, or the
    standardised MSE training minimises)."""
    out = torch.from_numpy(predict(model, x))
    yt = torch.from_numpy(y)
    if task == "classify":
        loss = float(nn.functional.cross_entropy(out, yt))
    else:
        loss = float(nn.functional.mse_loss((out - model.y_mean) / model.y_std,
                                            (yt - model.y_mean) / model.y_std))
    return {**compute_metrics(out.numpy(), y, task), "loss": loss}


def _train_ensemble(
    ds: Dataset, spec: EnsembleSpec, *, epochs: int, batch_size: int, lr: float, seed: int,
    max_train: int | None, threads: int | None, progress: Any, label: str,
    early_stop: EarlyStop | None = None, augment: Augment | None | bool = None,
) -> Iterator[TrainResult]:
    """Each member trained on its own (own seed, same epoch cap, its own early stop), one
    epoch of each per step; the ensemble's epoch time is the sum of its members' that
    trained in that step (training it costs both)."""
    from edgernn.models.ensemble import EnsembleModel

    runs = [train_epochs(ds, m, epochs=epochs, batch_size=batch_size, lr=lr,
                         seed=seed + MEMBER_SEED_STEP * i, max_train=max_train, threads=threads,
                         early_stop=early_stop, augment=augment)
            for i, m in enumerate(spec.members)]
    task_id = progress.add_task(label or "train", total=epochs) if progress else None
    result: TrainResult | None = None
    members: list[TrainResult | None] = [None] * len(runs)
    active = set(range(len(runs)))
    for epoch in range(epochs):
        stepped = []
        for i in sorted(active):
            try:
                members[i] = next(runs[i])
                stepped.append(i)
            except StopIteration:
                active.discard(i)
        if not stepped:
            break
        if result is None:
            model = EnsembleModel(model_config(ds, spec), [m.model for m in members])
            result = TrainResult(model, input_spec(ds), members=members, seed=seed)
        result.epoch_seconds.append(sum(members[i].epoch_seconds[-1] for i in stepped))
        metrics = evaluate_torch(result.model, ds.x_test, ds.y_test, ds.task)
        metrics["loss"] = float(np.mean([m.history[-1]["loss"] for m in members]))
        result.history.append(metrics)
        result.eval_samples = len(ds.y_test)
        if progress is not None:
            shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
            progress.update(task_id, advance=1,
                            description=f"{label + ' ' if label else ''}epoch {epoch + 1}/{epochs} {shown}")
        result.model.eval()
        yield result


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """``model``'s outputs on ``x`` in eval mode, ``batch`` samples at a time."""
    model.eval()
    return np.concatenate([model(torch.from_numpy(x[i:i + batch])).numpy()
                           for i in range(0, len(x), batch)])


def evaluate_torch(model: nn.Module, x: np.ndarray, y: np.ndarray, task: str) -> dict[str, float]:
    return compute_metrics(predict(model, x), y, task)


def write_outputs(ds: Dataset, result: TrainResult, out: Path, eval_out: Path) -> None:
    """Write the checkpoint and the held-out evaluation file. An ensemble's checkpoint holds
    every member (one file, one model); ``meta['members']`` keeps each member's own numbers."""
    meta = {
        "dataset": ds.name, "dataset_real": ds.real,
        "layers": format_layers(config_spec(result.model.config)),
        "parameters": count_parameters(result.model), "epochs": len(result.epoch_seconds),
        "epoch_seconds": result.epoch_seconds, "history": result.history,
        "torch": torch.__version__,
    }
    if result.members:
        meta["members"] = [
            {"layers": format_layers(config_spec(m.model.config)),
             "parameters": count_parameters(m.model), "seed": m.seed,
             "epoch_seconds": m.epoch_seconds, "history": m.history}
            for m in result.members]
    save_checkpoint(out, result.model.config, result.model.state_dict(), result.spec, meta)
    save_eval(eval_out, ds.x_test, ds.y_test, ds.task, dataset=ds.name)
