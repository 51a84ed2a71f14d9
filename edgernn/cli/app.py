"""The click group, the shared consoles and what several commands use: options, parsing
helpers, table width and the exit rule for variant outcomes."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from edgernn.errors import EdgeRNNError


class FiniteFloat(click.FloatRange):
    """A float option that must be finite: click's float type takes ``nan`` and ``inf``, and a
    FloatRange lets ``nan`` through (nan compares false), so ``--max-drop nan`` could lift a
    guard. Bounds as FloatRange's; unbounded it shows as FLOAT."""

    def __init__(self, min: float | None = None, max: float | None = None,  # noqa: A002
                 min_open: bool = False, max_open: bool = False):
        super().__init__(min, max, min_open, max_open)
        if min is None and max is None:
            self.name = "float"

    def _describe_range(self) -> str:
        return "" if self.min is None and self.max is None else super()._describe_range()

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        v = super().convert(value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return v


# tables are wide: when output is not a terminal, do not squeeze them into 80 columns
out = Console(width=None if sys.stdout.isatty() else 320)
err = Console(stderr=True)


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                    console=err, transient=False)


def max_drop_option(f: Callable) -> Callable:
    return click.option(
        "--max-drop", type=FiniteFloat(0), default=None,
        help="Accuracy-aware int8: when all-int8 loses more than this (metric units; without "
             "labels, the share of changed predictions), add an int8-mixed variant keeping the "
             "most sensitive ops float until it fits. bench default for a classifier with "
             "labels: 0.005 (0.5 pp).")(f)


def variant_options(f: Callable) -> Callable:
    """Opt-in groups of extra quantized variants, each measured beside int8-dynamic."""
    f = click.option("--tune", is_flag=True,
                     help="Also try other quantization settings (ONNX: per-channel, asymmetric "
                          "uint8, 7-bit weights; TFLite: weight-only, per-tensor) and say which "
                          "is best on the target.")(f)
    return click.option("--per-op", is_flag=True,
                        help="Measure every quantizable op class (recurrent, MatMul/Gemm, "
                             "Embedding; Conv always) kept fp32 vs int8 and say which to keep.")(f)


def _opt_in(per_op: bool, tune: bool) -> frozenset[str]:
    return frozenset(g for g, on in (("per-op", per_op), ("tune", tune)) if on)


def load_options(f: Callable) -> Callable:
    """Options that say how to read a model file."""
    f = click.option("--task", type=click.Choice(["classify", "forecast"]),
                     help="Task when the file does not say (default: from the data).")(f)
    f = click.option("--input-dtype", type=click.Choice(["float32", "int64", "int32"]),
                     help="Input dtype when the file carries no input spec.")(f)
    f = click.option("--input-shape", metavar="SHAPE",
                     help="Input shape when the file carries none, e.g. batch=1,seq=64,4 "
                          "(named axes are dynamic).")(f)
    f = click.option("--state", "states", multiple=True, metavar="INPUT=OUTPUT",
                     help="Repeatable: output OUTPUT (index or name) is the next step's INPUT "
                          "(default: inputs paired with outputs of the same shape).")(f)
    f = click.option("--input", "inputs", multiple=True, metavar="NAME:SHAPE[:DTYPE]",
                     help="Repeatable, in forward's order, for models with several inputs, e.g. "
                          "--input x:batch=1,576 --input state:2,batch=1,128.")(f)
    f = click.option("--import", "imports", multiple=True, metavar="MODULE",
                     help="Module or .py file defining the classes of a trusted pickle.")(f)
    f = click.option("--trust-pickle", is_flag=True,
                     help="Allow loading a pickled nn.Module (can run arbitrary code).")(f)
    f = click.option("--call-timeout", type=FiniteFloat(min=1), metavar="SECONDS",
                     expose_value=False, callback=_sandbox_setting("call_timeout"),
                     help="Longest one call of a sandboxed model (and its load) may take before "
                          "it is stopped (default 60; an export gets 30 times this).")(f)
    f = click.option("--trust-model", is_flag=True, expose_value=False,
                     callback=_sandbox_setting("sandbox", lambda trusted: not trusted),
                     help="Run a TorchScript archive or trusted pickle in edgernn's own "
                          "process instead of the sandbox (only for files you trust: they are "
                          "programs).")(f)
    return f


def _sandbox_setting(name: str, convert: Callable[[Any], Any] = lambda v: v) -> Callable:
    """A click callback setting this command's sandbox policy (``edgernn.model.sandbox``)."""
    def set_it(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is not None and value is not False:
            from edgernn.model.sandbox import configure

            configure(**{name: convert(value)})
    return set_it


def _load_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    keys = ("trust_pickle", "imports", "input_shape", "input_dtype", "task", "inputs", "states")
    return {k: kw.pop(k) for k in keys}


def _split(value: str, allowed: list[str], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if "all" in items:
        return list(allowed)
    # fp32 is always exported: "none" adds nothing, alone or in a list
    items = [v for v in items if v != "none"]
    bad = [v for v in items if v not in allowed]
    if bad:
        raise EdgeRNNError(f"unknown {what} {', '.join(bad)}; choose from {', '.join(allowed)}, all")
    return items


def _formats(value: str | None) -> list[str] | None:
    """Format plug-in or family names; ``all`` means every registered plug-in."""
    from edgernn.convert.formats import FORMATS, expand_formats

    if not value:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return sorted(FORMATS) if "all" in items else expand_formats(items)


db_option = click.option(
    "--db", metavar="PATH|URL",
    help="Results store: a SQLite file or a postgresql:// URL (a store several people and a "
         "sweep's workers share). Default: $EDGERNN_DB or ~/.local/share/edgernn/results.db.")

trials_option = click.option(
    "--trials", default=3, show_default=True, type=click.IntRange(1),
    help="Timing trials per variant, each in a fresh process, interleaved across variants; "
         "latency is the median of the trial medians (--runs and --min-seconds are split "
         "across them).")

strict_option = click.option(
    "--strict", is_flag=True,
    help="Exit 1 when any requested variant failed (default: only when none is ok).")

calib_option = click.option(
    "--calib", type=click.Path(path_type=Path),
    help="Calibration inputs for full-int8 quantization: .npz with x (sample axis first; "
         "y not needed). Default: evenly spaced samples of --data.")


@click.group()
@click.version_option(package_name="edgernn")
def cli() -> None:
    """Export, quantize and profile LSTM/GRU models on edge targets; pick what to ship."""


def _table_width(wide: bool) -> int | None:
    """The default table is laid out for 120 columns (status cells wrap), also when piped;
    --wide uses the whole console."""
    return None if wide else min(out.width, 120)


def check_outcome(statuses: list[str], strict: bool, what: str) -> None:
    """Exit 1 (one line) when no variant is ok, or with --strict when any requested variant
    failed; skipped variants (not applicable to this model) never count as failures."""
    statuses = [s for s in statuses if s != "not applicable"]  # variants the graph has no op for
    ok = sum(1 for s in statuses if s == "ok")
    bad = [s for s in statuses if s not in ("ok", "skipped")]
    if not ok:
        raise EdgeRNNError(f"{what}: no variant is ok ({len(bad)} failed, "
                           f"{len(statuses) - len(bad)} skipped); see the table above")
    if bad:
        msg = f"{what}: {len(bad)} of {len(statuses)} variants not ok (see the status column)"
        if strict:
            raise EdgeRNNError(msg + "; --strict makes that an error")
        err.print(msg)
