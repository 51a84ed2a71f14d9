"""The export command: a model to the target's formats and quantizations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgernn.cli.app import (
    _formats,
    _load_kwargs,
    _opt_in,
    _split,
    _table_width,
    calib_option,
    check_outcome,
    err,
    load_options,
    max_drop_option,
    out,
    strict_option,
    variant_options,
)


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", default="x86", show_default=True, help="Target name or .yaml path.")
@click.option("--format", "fmt", default=None,
              help="Format family (onnx, tflite), backend (tflite-litert) or all; comma-separated "
                   "(default: the target's).")
@click.option("--quantize", default=None,
              help="none, dynamic, fp16, int8 or all; comma-separated (default: the target's).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (default: MODEL's name + -export).")
@click.option("--data", "data_path", type=click.Path(path_type=Path),
              help="Evaluation data (.npz with x): parity is also checked on its first "
                   "samples, and it calibrates int8 when --calib is not given.")
@click.option("--streaming", is_flag=True,
              help="Also write step models of an edgernn checkpoint (one step or --chunk steps "
                   "per call, every layer's state in and out) into OUT/step.")
@click.option("--chunk", default=1, show_default=True, type=click.IntRange(1),
              help="Time steps per call of the --streaming step model.")
@click.option("--notes", "all_notes", is_flag=True,
              help="Show every footnote in full (default: the first ones, one line each).")
@max_drop_option
@variant_options
@calib_option
@strict_option
@load_options
def export(model: Path, target: str, fmt: str | None, quantize: str | None,
           out_dir: Path | None, data_path: Path | None, streaming: bool, chunk: int,
           all_notes: bool, max_drop: float | None, per_op: bool, tune: bool,
           calib: Path | None, strict: bool, **kw: Any) -> None:
    """Export MODEL to the target's formats and quantizations; write manifest.json."""
    from edgernn.api import export as api_export
    from edgernn.convert.quantize import MODES
    from edgernn.results.table import manifest_table

    load = _load_kwargs(kw)
    formats = _formats(fmt)
    modes = _split(quantize, list(MODES), "quantization") if quantize else None
    out_dir = out_dir or (model.with_name(model.stem + "-export") if model.name else Path("export"))
    with err.status("exporting") as st:
        manifest = api_export(model, target, out_dir, formats, modes, load,
                              on_step=lambda m: st.update(m), calib=calib, data=data_path,
                              streaming=streaming, chunk=chunk, max_drop=max_drop,
                              opt_in=_opt_in(per_op, tune))
    width = _table_width(False)  # 120 columns when piped; notes go to the legend
    out.print(manifest_table(manifest, all_notes), width=width)
    out.print(f"manifest: {out_dir / 'manifest.json'}")
    statuses = [a["status"] for a in manifest["artifacts"]]
    if manifest.get("step"):
        out.print(manifest_table(manifest["step"], all_notes), width=width)
        out.print(f"step model: {manifest['step']['model']['path']}; manifest: "
                  f"{out_dir / 'step' / 'manifest.json'}")
        statuses += [a["status"] for a in manifest["step"]["artifacts"]]
    check_outcome(statuses, strict, "export")
