"""Bench rows to files a program reads (JSON list, flat CSV), written after every row."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class ResultWriter:
    """Keeps every finished row on disk, so an error or Ctrl-C later loses nothing."""

    def __init__(self, json_path: Path | None, csv_path: Path | None):
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
