"""Results store: every bench row in SQLite, keyed so that a re-run skips what is measured.

Default path: ``$EDGERNN_DB``, else ``$XDG_DATA_HOME/edgernn/results.db`` (usually
``~/.local/share/edgernn/results.db``). WAL mode and a busy timeout let several benches
write at once.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edgernn.errors import EdgeRNNError
from edgernn.results import CSV_FIELDS, flatten

SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model_sha256 TEXT NOT NULL,
    model TEXT NOT NULL,
    variant TEXT NOT NULL,
    target TEXT NOT NULL,
    data_sha256 TEXT NOT NULL,
    threads INTEGER,
    runtime TEXT,
    runtime_version TEXT,
    edgernn_version TEXT,
    status TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    row_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rows_key ON rows (model_sha256, variant, target, data_sha256, threads);
"""
# columns added after the first release: (name, SQL type); older stores get them on open
MIGRATIONS = [("settings_sha256", "TEXT")]


def default_path() -> Path:
    if os.environ.get("EDGERNN_DB"):
        return Path(os.environ["EDGERNN_DB"])
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "edgernn" / "results.db"


class Store:
    """A thin SQLite wrapper; rows stay JSON so new fields need no migration."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else default_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA busy_timeout=30000")
            self.db.executescript(SCHEMA)
            have = {r[1] for r in self.db.execute("PRAGMA table_info(rows)")}
            for col, kind in MIGRATIONS:
                if col not in have:
                    self.db.execute(f"ALTER TABLE rows ADD COLUMN {col} {kind}")
        except (sqlite3.DatabaseError, OSError) as e:
            raise EdgeRNNError(f"results store {self.path} cannot be opened ({e})") from None

    def add(self, row: dict[str, Any]) -> int:
        """Insert a row; returns its id (for :meth:`update`)."""
        from edgernn import __version__

        cur = self.db.execute(
            "INSERT INTO rows (model_sha256, model, variant, target, data_sha256, threads, "
            "runtime, runtime_version, edgernn_version, status, timestamp, row_json, "
            "settings_sha256) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (row["model_sha256"], row["model"], row["variant"], row["target"],
             row.get("data_sha256") or "", row.get("requested_threads"), row.get("runtime"),
             row.get("runtime_version"), __version__, row["status"], row["timestamp"],
             json.dumps(row, default=str), row.get("settings_sha256")),
        )
        return int(cur.lastrowid)

    def update(self, rid: int, row: dict[str, Any]) -> None:
        """Rewrite a stored row in place (a provisional row after its further trials)."""
        self.db.execute(
            "UPDATE rows SET status=?, row_json=?, settings_sha256=? WHERE id=?",
            (row["status"], json.dumps(row, default=str), row.get("settings_sha256"), rid),
        )

    def find(self, model_sha256: str, variant: str, target: str, data_sha256: str,
             threads: int | None, settings_sha256: str | None) -> dict[str, Any] | None:
        """The newest finished row for this key, or None (failed runs are measured again).
        ``settings_sha256`` covers every bench setting that changes a number: rows measured
        with other runs, warm-up, calibration data, trials... are not reused."""
        cur = self.db.execute(
            "SELECT row_json FROM rows WHERE model_sha256=? AND variant=? AND target=? AND "
            "data_sha256=? AND threads IS ? AND settings_sha256 IS ? AND "
            "status IN ('ok', 'accuracy collapsed', 'skipped') ORDER BY id DESC LIMIT 1",
            (model_sha256, variant, target, data_sha256, threads, settings_sha256),
        )
        hit = cur.fetchone()
        return json.loads(hit[0]) if hit else None

    def rows(self, target: str | None = None, models: Iterable[str] | None = None,
             latest: bool = True) -> list[dict[str, Any]]:
        """Stored rows (newest per key when ``latest``), optionally for one target / models."""
        q = "SELECT id, model_sha256, variant, target, data_sha256, threads, row_json FROM rows"
        args: list[Any] = []
        where = []
        if target:
            where.append("target=?")
            args.append(target)
        models = list(models or [])
        if models:
            where.append(f"(model IN ({','.join('?' * len(models))}) OR model_sha256 IN "
                         f"({','.join('?' * len(models))}))")
            args += models + models
        if where:
            q += " WHERE " + " AND ".join(where)
        q += " ORDER BY id"
        out: dict[Any, dict[str, Any]] = {}
        for rid, *key, js in self.db.execute(q, args):
            out[tuple(key) if latest else rid] = json.loads(js)
        return list(out.values())

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM rows").fetchone()[0])

    def close(self) -> None:
        self.db.close()


def export_rows(rows: list[dict[str, Any]], path: Path) -> None:
    """Write rows as JSON (``.json``) or flat CSV (anything else)."""
    if path.suffix == ".json":
        path.write_text(json.dumps(rows, indent=2, default=str))
        return
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(flatten(r))
    path.write_text(buf.getvalue())
