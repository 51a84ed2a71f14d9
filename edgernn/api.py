"""Python API: train_model(), export(), bench(). The CLI calls these."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgernn.convert.calibration import calibration_inputs
from edgernn.convert.exporting import export_model
from edgernn.data.datasets import Dataset, load_dataset
from edgernn.data.evalfile import check_fits, load_eval
from edgernn.errors import EdgeRNNError
from edgernn.measure.bench import PARITY_SAMPLES, BenchSettings, bench_models, check_formats
from edgernn.measure.inputs import fit_data
from edgernn.model.loading import load_model, load_model_for_data
from edgernn.models.layers import parse_layers
from edgernn.runners.target import load_target
from edgernn.study.training import TrainResult, train, write_outputs


def train_model(dataset: str | Dataset, layers: str, out: Path, eval_out: Path,
                **kw: Any) -> TrainResult:
    """Train on a bundled dataset (or a ``Dataset``, e.g. a user's CSV read by
    ``edgernn.data.text.from_csv``); write the checkpoint, the held-out evaluation file and,
    for token data, the tokenizer beside the checkpoint (``OUT.tokenizer.json``)."""
    specs = parse_layers(layers)
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    result = train(ds, specs, **kw)
    write_outputs(ds, result, out, eval_out)
    if getattr(ds, "tokenizer_json", None):
        result.tokenizer_path = out.with_suffix(".tokenizer.json")
        result.tokenizer_path.write_text(ds.tokenizer_json)
    return result


def export(
    model: Path, target: str = "x86", out_dir: Path | None = None,
    formats: list[str] | None = None, modes: list[str] | None = None,
    load: dict[str, Any] | None = None, on_step: Callable[[str], None] | None = None,
    calib: Path | None = None, data: Path | None = None, streaming: bool = False,
    chunk: int = 1, max_drop: float | None = None, opt_in: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Export ``model`` for ``target``; returns the manifest (also written to OUT/manifest.json).
    ``data`` (evaluation inputs) adds a parity check on its first samples and is the
    calibration fallback when ``calib`` is not given."""
    t = load_target(target)
    evaluation = load_eval(data, need_y=False) if data is not None else None
    if evaluation is not None:  # a file without an input spec takes its shape from x
        lm, _ = load_model_for_data(model, evaluation.x, dict(load or {}))
    else:
        lm = load_model(model, **(load or {}))
    names = check_formats(t, formats if formats is not None else t.formats)
    modes = modes if modes is not None else t.quantize
    # what bench accepts: [N, T, F] steps for a step model, the model's shape otherwise (a
    # model with several data inputs: x fits the first, as before)
    x = None if evaluation is None else (
        fit_data(lm, evaluation) if len(lm.sig.data_inputs) <= 1 or lm.sig.is_streaming
        else check_fits(evaluation, lm.spec))
    cx, source = calibration_inputs(lm.spec, calib, x)
    out_dir = out_dir or model.with_name(model.stem + "-export")
    if streaming:  # refuse before any work
        from edgernn.model.streaming import refuse_reason

        why = refuse_reason(lm)
        if why:
            raise EdgeRNNError(f"cannot make a step model of {model.name}: {why}")
    budget = None
    if max_drop is not None:
        from edgernn.convert.quantize.accuracy_budget import AccuracyBudget

        if cx is None:
            raise EdgeRNNError("--max-drop needs samples to measure the drop on: pass --data or "
                               "--calib")
        budget = AccuracyBudget(max_drop, cx, None, lm.spec.task or "classify",
                                lm.spec.batch_axis, source or "calibration inputs")
    seven_bit = t.seven_bit_weights()
    manifest = export_model(lm, out_dir, names, modes, t.name, on_step=on_step, calib=cx,
                            calib_source=source,
                            parity_inputs=None if x is None else x[:PARITY_SAMPLES],
                            budget=budget, opt_in=opt_in, seven_bit_weights=seven_bit)
    if streaming:
        from edgernn.model.streaming import make_step_model, step_data

        step_dir = out_dir / "step"
        step_lm = make_step_model(lm, step_dir, chunk)
        manifest["step"] = export_model(
            step_lm, step_dir, names, modes, t.name, on_step=on_step,
            parity_inputs=None if x is None else step_data(x[:PARITY_SAMPLES], chunk),
            seven_bit_weights=seven_bit)
    return manifest


def bench(
    models: list[Path], target: str, data: Path, out_dir: Path,
    settings: BenchSettings | None = None, on_row: Callable[[dict], None] | None = None,
    on_step: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Bench every model's variants on ``target``; rows go to ``on_row`` as they finish.
    Timing trials after the first run round-robin over every variant of every model."""
    t = load_target(target)
    settings = settings or BenchSettings()
    rows: list[dict[str, Any]] = []

    def keep(row: dict[str, Any]) -> None:
        if not any(r is row for r in rows):  # a provisional row comes again when final
            rows.append(row)
        if on_row:
            on_row(row)

    names = [Path(m).stem for m in models]
    if len(set(names)) != len(names):
        raise EdgeRNNError("models must have distinct file names (their stems name the rows)")
    bench_models([Path(m) for m in models], t, Path(data), out_dir, settings, keep, on_step)
    return rows
