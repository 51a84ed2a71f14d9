"""Commands that make and look at models and data: datasets, train, inspect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape as rich_escape

from edgernn.cli.app import _load_kwargs, _progress, load_options, out
from edgernn.errors import EdgeRNNError


@click.command()
@click.option("--stream", metavar="NAME", help="Write NAME's held-out data as step streams with a "
              "label per step (for step models) to --out.")
@click.option("--steps", default=28, show_default=True, type=click.IntRange(2),
              help="Steps per stream (with --stream).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where --stream writes its .npz (x [N, steps, features], y [N, steps]).")
def datasets(stream: str | None, steps: int, out_path: Path | None) -> None:
    """List the bundled datasets (or write one as per-step labelled streams)."""
    from edgernn.data.datasets import STREAMS, info, load_dataset, names

    escape = rich_escape

    if stream:
        from edgernn.data.evalfile import save_eval

        if stream not in STREAMS:
            raise EdgeRNNError(f"no stream form of {stream!r}; streams: {', '.join(STREAMS)}")
        if out_path is None:
            raise EdgeRNNError("--stream needs --out FILE.npz")
        x, y, what = STREAMS[stream](steps)
        save_eval(out_path, x, y, "classify", description=what)
        out.print(f"wrote {out_path}: x {list(x.shape)}, y {list(y.shape)}; {what}",
                  highlight=False)
        return
    for n in names():
        meta = info(n)
        try:
            ds = load_dataset(n)
        except EdgeRNNError as e:  # files not fetched: list it with the fix
            out.print(f"[bold]{n}[/] ({meta.domain}; not available: {escape(str(e))})")
            continue
        kind = "real" if ds.real else "synthetic"
        shape = f"seq {ds.seq_len}" + (", variable length, front-padded"
                                       if getattr(ds, "lengths_train", None) is not None else "")
        domain = f"{meta.domain}, " if meta.domain and meta.domain != kind else ""
        out.print(f"[bold]{n}[/] ({domain}{kind}, {ds.task}, {len(ds.x_train)}+"
                  f"{len(ds.x_test)} windows, {shape}): {escape(ds.description)}")
        if ds.source or ds.license:
            out.print(f"    source: {escape(ds.source or '?')}; license: {escape(ds.license or '?')}",
                      highlight=False)


@click.command()
@click.option("--dataset", default="weather", show_default=True, help="Bundled dataset.")
@click.option("--data", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Train on your own CSV of sentences and labels instead (a BPE tokenizer is "
                   "trained on its training rows and written beside OUT as .tokenizer.json).")
@click.option("--text-column", default="text", show_default=True, help="With --data: text column.")
@click.option("--label-column", default="label", show_default=True,
              help="With --data: label column.")
@click.option("--vocab-size", default=2000, show_default=True, type=click.IntRange(8),
              help="With --data: tokenizer vocabulary size.")
@click.option("--seq-len", type=click.IntRange(1),
              help="With --data: tokens per sentence (default: the 95th percentile, up to 256).")
@click.option("--layers", default="lstm:64", show_default=True,
              help="Recurrent stack, e.g. gru:128,lstm:128 or bilstm:64x2; an encoder/decoder "
             "forecaster gru:64/lstm:64; an ensemble lstm:64+gru:64 (members trained "
             "separately, predictions averaged).")
@click.option("--epochs", default=15, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=3e-3, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--max-train", type=click.IntRange(1), help="Use only the first N training windows.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Checkpoint to write (.pt).")
@click.option("--eval-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Held-out evaluation file (default: OUT with .eval.npz).")
def train(dataset: str, csv_path: Path | None, text_column: str, label_column: str,
          vocab_size: int, seq_len: int | None, layers: str, epochs: int, batch_size: int,
          lr: float, seed: int, max_train: int | None, out_path: Path,
          eval_out: Path | None) -> None:
    """Train a reference classifier or forecaster on a bundled dataset or your CSV of text."""
    from edgernn.api import train_model

    source: Any = dataset
    if csv_path is not None:
        from edgernn.data.text import from_csv

        source = from_csv(csv_path, text_column, label_column, vocab_size=vocab_size,
                          seq_len=seq_len, seed=seed)
    eval_out = eval_out or out_path.with_suffix(".eval.npz")
    with _progress() as progress:
        res = train_model(source, layers, out_path, eval_out, epochs=epochs,
                          batch_size=batch_size, lr=lr, seed=seed, max_train=max_train,
                          progress=progress)
    final = ", ".join(f"{k} {v:.4f}" for k, v in res.final.items())
    per = sum(res.epoch_seconds) / len(res.epoch_seconds)
    out.print(f"wrote {out_path} ({sum(p.numel() for p in res.model.parameters())} parameters, "
              f"{per:.2f} s/epoch; held-out {final}) and {eval_out}"
              + (f"; tokenizer {res.tokenizer_path}" if res.tokenizer_path else ""))


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", "data_path", type=click.Path(path_type=Path),
              help="Also check that this evaluation data fits the model.")
@load_options
def inspect(model: Path, data_path: Path | None, **kw: Any) -> None:
    """Load MODEL safely and show what it is: kind, input spec, recurrent layers, parameters."""
    from edgernn.data.evalfile import check_targets, load_eval
    from edgernn.measure.bench import model_classes
    from edgernn.measure.inputs import fit_data, per_step
    from edgernn.model.loading import load_model

    lm = load_model(model, **_load_kwargs(kw))
    out.print(f"[bold]{lm.path}[/] ({lm.kind}, sha256 {lm.sha256[:16]}...)")
    sig = lm.sig
    for t in sig.inputs:
        out.print(f"  input {t}" + (" (state)" if t.role == "state" else ""), highlight=False,
                  markup=False)
    for t in sig.outputs:
        out.print(f"  output {t}" + (" (state)" if t.role == "state" else ""), highlight=False,
                  markup=False)
    for i, o in sig.state.items():
        how = "by equal shape" if sig.paired == "shape" else "as given"
        out.print(f"  state: {o} feeds {i} at the next step ({how})", highlight=False)
    out.print(f"  task: {lm.spec.task or '?'}" + ("; streaming step model" if sig.is_streaming
                                                  else ""), highlight=False)
    out.print(f"  parameters: {lm.parameters_count():,}")
    for name, m in lm.module.named_modules():
        kind = getattr(m, "original_name", type(m).__name__)
        if kind in ("LSTM", "GRU", "RNN"):
            d = " bidirectional" if getattr(m, "bidirectional", False) else ""
            out.print(f"  {name or 'model'}: {kind} hidden {getattr(m, 'hidden_size', '?')} x"
                      f"{getattr(m, 'num_layers', '?')}{d}", highlight=False)
    if data_path:
        data = load_eval(data_path)
        x = fit_data(lm, data)
        task = lm.spec.task or data.task
        check_targets(data, lm.spec, task, model_classes(lm, x, task, per_step(lm, data.y, task)))
        out.print(f"  data: {data_path} fits: x {list(x.shape)} {x.dtype}, y {list(data.y.shape)} "
                  f"({data.task})", highlight=False)
