"""Bench rows to files a program reads (JSON list, flat CSV), written after every row."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from edgernn.errors import EdgeRNNError

CSV_FIELDS = [
    "model", "variant", "format", "quantization", "runtime", "runtime_version", "target",
    "emulated", "status", "reason", "size_bytes", "latency_p50_ms", "latency_p90_ms",
    "latency_p99_ms", "latency_mean_ms", "latency_std_ms", "latency_iqr_ms", "latency_count",
    "first_ms", "load_ms", "step_ms", "rtf", "rtf_p99", "signature", "peak_mb", "peak_rss_mb",
    "metric", "value", "accuracy_drop",
    "relative_drop", "agreement", "parity_max_abs_diff", "threads", "cpu_model", "machine",
    "notes", "timestamp",
]


def flatten(row: dict[str, Any]) -> dict[str, Any]:
    flat = {k: row.get(k) for k in CSV_FIELDS if k in row}
    lat = row.get("latency_ms") or {}
    for k in ("p50", "p90", "p99", "mean", "std", "iqr"):
        flat[f"latency_{k}_ms"] = lat.get(k)
    flat["latency_count"] = lat.get("count")
    flat["first_ms"], flat["load_ms"] = lat.get("first"), lat.get("load")
    dev = row.get("device") or {}
    flat["cpu_model"], flat["machine"] = dev.get("cpu_model"), dev.get("machine")
    flat["notes"] = "; ".join(row.get("notes") or [])
    return flat


def _atomic_write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        raise EdgeRNNError(f"cannot write {path} ({e.strerror or type(e).__name__}); choose a "
                           "path you can write") from None


def write_text(path: Path, text: str, inputs: list[Path] | tuple[Path, ...] = ()) -> None:
    """Write an output file whole (atomically), refusing one that is one of ``inputs``."""
    check_output(path, inputs)
    _atomic_write(path, text)


def check_output(path: Path, inputs: list[Path] | tuple[Path, ...] = (),
                 rows_file: bool = False) -> None:
    """Refuse an output path that is one of the command's ``inputs``, a folder, or (for a
    ``rows_file``: --json/--csv of rows) an existing file that is not rows edgernn wrote:
    outputs never overwrite an input. Checked before any work starts."""
    where = path.expanduser()
    for q in inputs:
        if q is not None and (where.resolve() == Path(q).expanduser().resolve()
                              or (where.exists() and Path(q).exists()
                                  and os.path.samefile(where, q))):
            raise EdgeRNNError(f"{path} is also an input of this command; writing it would "
                               "overwrite it: choose another output path")
    if where.is_dir():
        raise EdgeRNNError(f"{path} is a folder; give a file path for the output")
    if rows_file and where.is_file() and where.stat().st_size and not _is_rows_file(where):
        raise EdgeRNNError(f"{path} exists and is not a rows file edgernn wrote (JSON list or "
                           "CSV with its header); refusing to overwrite it: choose another path "
                           "or remove it")


def _is_rows_file(path: Path) -> bool:
    """True for a JSON list or a CSV starting with edgernn's header (a file it may replace)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
        text = head.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if path.suffix == ".json" or text.lstrip().startswith("["):
        try:
            return isinstance(json.loads(path.read_text()), list)
        except (OSError, ValueError, UnicodeDecodeError, RecursionError):
            return False
    return text.split("\n", 1)[0].strip() == ",".join(CSV_FIELDS)


class ResultWriter:
    """Keeps every finished row on disk, so an error or Ctrl-C later loses nothing."""

    def __init__(self, json_path: Path | None, csv_path: Path | None,
                 inputs: list[Path] | tuple[Path, ...] = ()):
        for p in (json_path, csv_path):
            if p is not None:
                check_output(p, inputs, rows_file=True)
        self.json_path, self.csv_path = json_path, csv_path
        self.rows: list[dict[str, Any]] = []

    def add(self, row: dict[str, Any]) -> None:
        """Append a row, or rewrite it when the same row comes again (after more trials)."""
        if not any(r is row for r in self.rows):
            self.rows.append(row)
        self.flush()

    def flush(self) -> None:
        if self.json_path:
            _atomic_write(self.json_path, json.dumps(self.rows, indent=2, default=str))
        if self.csv_path:
            import io

            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
            w.writeheader()
            for r in self.rows:
                w.writerow(flatten(r))
            _atomic_write(self.csv_path, buf.getvalue())
