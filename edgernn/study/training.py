"""Training reference models on a bundled dataset, with progress and per-epoch timing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgernn.data.datasets import Dataset
from edgernn.data.evalfile import save_eval
from edgernn.errors import EdgeRNNError
from edgernn.model.checkpoint import save_checkpoint
from edgernn.model.spec import Axis, InputSpec
from edgernn.models.build import build_model, config_spec, count_parameters
from edgernn.models.layers import EncDecSpec, EnsembleSpec, ModelSpec, format_layers
from edgernn.probe.metrics import compute_metrics

# an ensemble's member i trains with seed ``seed + MEMBER_SEED_STEP * i``: member 0 is the
# single model of the same spec and seed; the others never coincide with a model of a
# nearby seed (compare's --seeds run seed, seed + 1, ...)
MEMBER_SEED_STEP = 1000


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

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


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
    progress: Any = None,
) -> TrainResult:
    """Train a model of spec ``layers`` on ``ds``; evaluate on its held-out split after each
    epoch. An ensemble's members are trained separately (member i with seed
    ``seed + MEMBER_SEED_STEP * i``, the same epochs each) and evaluated together."""
    run = train_epochs(ds, layers, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                       max_train=max_train, threads=threads, progress=progress)
    results = list(run)
    return results[-1]


def train_epochs(
    ds: Dataset, layers: ModelSpec, *, epochs: int = 10, batch_size: int = 64,
    lr: float = 3e-3, seed: int = 0, max_train: int | None = None, threads: int | None = None,
    progress: Any = None, label: str = "",
) -> Iterator[TrainResult]:
    """Like ``train`` but yields after every epoch, so several models can be trained in
    lockstep (machine noise then falls on every contender alike)."""
    if isinstance(layers, EnsembleSpec):
        yield from _train_ensemble(ds, layers, epochs=epochs, batch_size=batch_size, lr=lr,
                                   seed=seed, max_train=max_train, threads=threads,
                                   progress=progress, label=label)
        return
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    model = build_model(model_config(ds, layers))
    xtr, ytr = ds.x_train, ds.y_train
    if max_train:
        xtr, ytr = xtr[:max_train], ytr[:max_train]
    if not ds.vocab_size:
        flat = xtr.reshape(-1, xtr.shape[-1])
        model.x_mean.copy_(torch.from_numpy(flat.mean(0)))
        model.x_std.copy_(torch.from_numpy(flat.std(0) + 1e-6))
    if ds.task == "forecast":
        model.y_mean.fill_(float(ytr.mean()))
        model.y_std.fill_(float(ytr.std() + 1e-6))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    result = TrainResult(model, input_spec(ds), seed=seed)
    rng = np.random.default_rng(seed)
    task_id = progress.add_task(label or "train", total=epochs) if progress else None
    for epoch in range(epochs):
        model.train()
        t0 = time.perf_counter()
        order = torch.from_numpy(rng.permutation(len(xt)))
        total = 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            out = model(xt[idx])
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
        result.history.append(metrics)
        result.eval_samples = len(ds.y_test)
        if progress is not None:
            shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
            progress.update(task_id, advance=1,
                            description=f"{label + ' ' if label else ''}epoch {epoch + 1}/{epochs} {shown}")
        model.eval()
        yield result


def _train_ensemble(
    ds: Dataset, spec: EnsembleSpec, *, epochs: int, batch_size: int, lr: float, seed: int,
    max_train: int | None, threads: int | None, progress: Any, label: str,
) -> Iterator[TrainResult]:
    """Each member trained on its own (own seed, same epochs), one epoch of each per step;
    the ensemble's epoch time is the sum of its members' (training it costs both)."""
    from edgernn.models.ensemble import EnsembleModel

    runs = [train_epochs(ds, m, epochs=epochs, batch_size=batch_size, lr=lr,
                         seed=seed + MEMBER_SEED_STEP * i, max_train=max_train, threads=threads)
            for i, m in enumerate(spec.members)]
    task_id = progress.add_task(label or "train", total=epochs) if progress else None
    result: TrainResult | None = None
    for epoch in range(epochs):
        members = [next(r) for r in runs]
        if result is None:
            model = EnsembleModel(model_config(ds, spec), [m.model for m in members])
            result = TrainResult(model, input_spec(ds), members=members, seed=seed)
        result.epoch_seconds.append(sum(m.epoch_seconds[-1] for m in members))
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
def evaluate_torch(model: nn.Module, x: np.ndarray, y: np.ndarray, task: str) -> dict[str, float]:
    model.eval()
    outs = [model(torch.from_numpy(x[i : i + 256])).numpy() for i in range(0, len(x), 256)]
    return compute_metrics(np.concatenate(outs), y, task)


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
