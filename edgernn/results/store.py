"""Results store: every bench row in SQLite or PostgreSQL, keyed so that a re-run skips
what is measured.

``Store(path_or_url)`` takes a filesystem path (SQLite) or a URL: ``sqlite:///rel/path.db``,
``sqlite:////abs/path.db``, ``postgresql://user:pw@host:5432/db`` (driven by psycopg 3; plain
``postgresql://`` and ``postgres://`` mean ``postgresql+psycopg://``). Default: ``$EDGERNN_DB``
(a path or a URL), else ``$XDG_DATA_HOME/edgernn/results.db`` (usually
``~/.local/share/edgernn/results.db``).

One schema (:data:`ROWS`) and one migration list (:data:`MIGRATIONS`) serve both backends;
columns a store lacks are added on open. Every :meth:`Store.add` / :meth:`Store.update` is a
transaction of its own, so many writers can share a store: processes on one machine (SQLite
in WAL mode with a busy timeout) or many hosts on one PostgreSQL server.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import sqlite3
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from edgernn.errors import EdgeRNNError, EdgeRNNWarning
from edgernn.results.files import CSV_FIELDS, flatten

# columns added after the first release: (name, SQL type); older stores get them on open
MIGRATIONS = [("settings_sha256", "TEXT"), ("device_id", "TEXT")]
_TYPES = {"TEXT": sa.Text, "INTEGER": sa.Integer}

METADATA = sa.MetaData()
ROWS = sa.Table(
    "rows", METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_sha256", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("variant", sa.Text, nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("data_sha256", sa.Text, nullable=False),
    sa.Column("threads", sa.Integer),
    sa.Column("runtime", sa.Text),
    sa.Column("runtime_version", sa.Text),
    sa.Column("edgernn_version", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("timestamp", sa.Text, nullable=False),
    sa.Column("row_json", sa.Text, nullable=False),
    *(sa.Column(name, _TYPES[kind]) for name, kind in MIGRATIONS),
    sa.Index("rows_key", "model_sha256", "variant", "target", "data_sha256", "threads"),
    sqlite_autoincrement=True,  # ids never reused after a delete, as in the first release
)
SCHEMA = ROWS  # the name of the first release's schema constant
_REUSABLE = ("ok", "accuracy collapsed", "skipped")
_DDL_LOCK = 0x6564676572726E6E  # pg_advisory_xact_lock key ("edgernnn"): one DDL at a time
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+://")


def default_path() -> Path:
    if os.environ.get("EDGERNN_DB"):
        return Path(os.environ["EDGERNN_DB"])
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "edgernn" / "results.db"


def is_url(s: Any) -> bool:
    """True for a database URL (``scheme://...``), False for a filesystem path."""
    return isinstance(s, str) and bool(_URL_RE.match(s))


def open_store(db: str | Path | None) -> Store:
    """The store at a path or URL (``None``: the default store)."""
    return Store(db)


def _mask(text: str) -> str:
    """Hide the password of any ``scheme://user:password@`` in ``text``."""
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


def _first_line(e: BaseException) -> str:
    orig = getattr(e, "orig", None) or e  # the driver's own message, without SQLAlchemy's
    lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip()]
    return _mask(lines[0] if lines else type(orig).__name__)


def _unmangle(p: Path) -> str | None:
    """A URL that went through ``Path`` (``postgresql://h/db`` -> ``postgresql:/h/db``)."""
    m = re.match(r"^(postgres(?:ql)?(?:\+\w+)?):/([^/].*)$", str(p))
    return f"{m.group(1)}://{m.group(2)}" if m else None


class _Raw:
    """``Store.db``: run driver-level SQL (``?`` parameters on SQLite, ``%s`` on
    PostgreSQL), each statement committed at once, as the first release's connection did."""

    def __init__(self, store: Store):
        self._store = store

    def execute(self, sql: str, params: Any = ()) -> _Result:
        with self._store._begin("execute") as conn:
            res = conn.exec_driver_sql(sql, tuple(params) if isinstance(params, list) else params)
            rows = [tuple(r) for r in res] if res.returns_rows else []
            return _Result(rows, res.rowcount, getattr(res, "lastrowid", None))

    def close(self) -> None:
        self._store.close()


class _Result:
    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int, lastrowid: Any):
        self._rows, self.rowcount, self.lastrowid = rows, rowcount, lastrowid

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows, []
        return rows

    def __iter__(self):
        return iter(self.fetchall())


class Store:
    """Bench rows in one table; each row stays whole as JSON so new fields need no migration.

    ``path`` names the store in messages: the SQLite file's path, or the URL with its
    password masked."""

    def __init__(self, path: str | Path | None = None):
        target: str | Path = path or default_path()
        if not path and is_url(os.environ.get("EDGERNN_DB")):
            target = os.environ["EDGERNN_DB"]  # a URL, not to be mangled by Path
        elif isinstance(target, Path) and _unmangle(target):
            target = _unmangle(target) or ""
        elif isinstance(target, Path) and str(target).startswith("sqlite:/"):
            raise EdgeRNNError(f"results store {target}: a sqlite URL that lost its slashes "
                               f"(passed as a path); give the database file's path instead")
        self.engine: sa.Engine | None = None
        try:
            if is_url(target):
                self.url = self._parse_url(str(target))
            else:
                self.url = sa.URL.create("sqlite", database=str(Path(target)))
            if self.url.get_backend_name() == "sqlite":
                db = self.url.database or ""
                self.path: Path | str = Path(db) if db and db != ":memory:" else ":memory:"
                if isinstance(self.path, Path):
                    self.path.parent.mkdir(parents=True, exist_ok=True)
            else:
                self.path = self.url.render_as_string(hide_password=True)
            self.engine = self._engine()
            self._migrate()
        except EdgeRNNError:
            self.close()
            raise
        except (sa_exc.SQLAlchemyError, OSError, ImportError, ValueError) as e:
            self.close()
            name = getattr(self, "path", None) or _mask(str(target))
            raise EdgeRNNError(f"results store {name} cannot be opened ({_first_line(e)})") from None
        self.db = _Raw(self)

    @staticmethod
    def _parse_url(text: str) -> sa.URL:
        try:
            url = sa.make_url(text)
        except sa_exc.ArgumentError:
            raise EdgeRNNError(f"results store {_mask(text)} cannot be opened (not a database "
                               f"URL; use a path, sqlite:///file.db or "
                               f"postgresql://user@host/db)") from None
        backend = url.get_backend_name()
        if backend == "postgres":
            backend = "postgresql"
        if backend not in ("sqlite", "postgresql"):
            raise EdgeRNNError(f"results store {url.render_as_string(hide_password=True)} cannot "
                               f"be opened (unsupported database {backend!r}; use a path, "
                               f"sqlite:///file.db or postgresql://user@host/db)")
        if backend == "postgresql":  # postgres:// and postgresql:// -> psycopg 3
            driver = url.drivername.partition("+")[2] or "psycopg"
            url = url.set(drivername=f"postgresql+{driver}")
        return url

    def _engine(self) -> sa.Engine:
        if self.url.get_backend_name() == "sqlite":
            engine = sa.create_engine(self.url, connect_args={"timeout": 30})

            @sa.event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA busy_timeout=30000")
                # switching a new file to WAL fails at once ("database is locked", no busy
                # wait) while another process opens it: retry until one of them has switched
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                            cur.execute("PRAGMA journal_mode=WAL")
                        break
                    except sqlite3.OperationalError as e:
                        if "locked" not in str(e) or time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)
                cur.close()

            return engine
        return sa.create_engine(self.url, pool_pre_ping=True,
                                connect_args={"connect_timeout": 10})

    def _schema_ok(self, conn: sa.Connection) -> tuple[bool, set[str]]:
        insp = sa.inspect(conn)
        if not insp.has_table(ROWS.name):
            return False, set()
        have = {c["name"] for c in insp.get_columns(ROWS.name)}
        indexes = {i["name"] for i in insp.get_indexes(ROWS.name)}
        return {c.name for c in ROWS.columns} <= have and "rows_key" in indexes, have

    def _migrate(self) -> None:
        """Create the table and index, add missing MIGRATIONS columns. On PostgreSQL, DDL
        runs under an advisory lock (new processes creating one table at once would race on
        its catalog rows); on SQLite the database write lock serialises it."""
        assert self.engine is not None
        with self.engine.connect() as conn:
            ok, _ = self._schema_ok(conn)
        if ok:
            return
        pg = self.url.get_backend_name() == "postgresql"
        with self.engine.begin() as conn:
            if pg:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_DDL_LOCK)))
            conn.execute(sa.schema.CreateTable(ROWS, if_not_exists=True))
            for index in ROWS.indexes:
                conn.execute(sa.schema.CreateIndex(index, if_not_exists=True))
            _, have = self._schema_ok(conn)
            prep = conn.dialect.identifier_preparer
            for col, kind in MIGRATIONS:
                if col in have:
                    continue
                sql = f"ALTER TABLE {prep.quote(ROWS.name)} ADD COLUMN {prep.quote(col)} {kind}"
                try:
                    conn.exec_driver_sql(sql)
                except sa_exc.OperationalError as e:  # SQLite: another process added it first
                    if "duplicate column" not in str(e).lower():
                        raise

    def _begin(self, what: str):
        if self.engine is None:
            raise EdgeRNNError(f"results store {self.path} is closed ({what})")
        return _Guard(self, what)

    def add(self, row: dict[str, Any]) -> int:
        """Insert a row; returns its id (for :meth:`update`)."""
        from edgernn import __version__

        values = dict(
            model_sha256=row["model_sha256"], model=row["model"], variant=row["variant"],
            target=row["target"], data_sha256=row.get("data_sha256") or "",
            threads=row.get("requested_threads"), runtime=row.get("runtime"),
            runtime_version=row.get("runtime_version"), edgernn_version=__version__,
            status=row["status"], timestamp=row["timestamp"],
            row_json=json.dumps(row, default=str), settings_sha256=row.get("settings_sha256"),
            device_id=row.get("device_id"),
        )
        with self._begin("add") as conn:
            res = conn.execute(ROWS.insert().values(**values))
            return int(res.inserted_primary_key[0])

    def update(self, rid: int, row: dict[str, Any]) -> None:
        """Rewrite a stored row in place (a provisional row after its further trials)."""
        with self._begin("update") as conn:
            conn.execute(ROWS.update().where(ROWS.c.id == rid).values(
                status=row["status"], row_json=json.dumps(row, default=str),
                settings_sha256=row.get("settings_sha256"), device_id=row.get("device_id")))

    def find(self, model_sha256: str, variant: str, target: str, data_sha256: str,
             threads: int | None, settings_sha256: str | None,
             statuses: tuple[str, ...] | None = None) -> dict[str, Any] | None:
        """The newest finished row for this key, or None (failed runs are measured again).
        ``settings_sha256`` covers every bench setting that changes a number: rows measured
        with other runs, warm-up, calibration data, trials... are not reused. ``statuses``:
        other statuses to accept (an export failure of a reused export is the same failure)."""
        c = ROWS.c
        q = (sa.select(c.row_json)
             .where(c.model_sha256 == model_sha256, c.variant == variant, c.target == target,
                    c.data_sha256 == data_sha256, c.threads.is_not_distinct_from(threads),
                    c.settings_sha256.is_not_distinct_from(settings_sha256),
                    c.status.in_(statuses or _REUSABLE))
             .order_by(c.id.desc()).limit(1))
        with self._begin("find") as conn:
            hit = conn.execute(q).first()
        return json.loads(hit[0]) if hit else None

    def rows(self, target: str | None = None, models: Iterable[str] | None = None,
             latest: bool = True) -> list[dict[str, Any]]:
        """Stored rows (newest per key when ``latest``), optionally for one target / models."""
        c = ROWS.c
        q = sa.select(c.id, c.model_sha256, c.variant, c.target, c.data_sha256, c.threads,
                      c.row_json)
        if target:
            q = q.where(c.target == target)
        models = list(models or [])
        if models:
            q = q.where(sa.or_(c.model.in_(models), c.model_sha256.in_(models)))
        out: dict[Any, dict[str, Any]] = {}
        skipped: list[str] = []
        with self._begin("rows") as conn:
            for rid, *key, js in conn.execute(q.order_by(c.id)):
                row, problem = checked_row(js)
                if problem:
                    skipped.append(f"id {rid}: {problem}")
                    continue
                out[tuple(key) if latest else rid] = row
        if skipped:
            warnings.warn(EdgeRNNWarning(
                f"skipped {len(skipped)} malformed row(s) in {self.path} ({'; '.join(skipped[:3])}"
                f"{'; ...' if len(skipped) > 3 else ''}); the others are shown"), stacklevel=2)
        return list(out.values())

    def count(self) -> int:
        with self._begin("count") as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(ROWS)).scalar_one())

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Guard:
    """One committed transaction; a database error becomes a one-line EdgeRNNError."""

    def __init__(self, store: Store, what: str):
        self.store, self.what = store, what

    def __enter__(self) -> sa.Connection:
        assert self.store.engine is not None
        self.ctx = self.store.engine.begin()
        try:
            return self.ctx.__enter__()
        except sa_exc.SQLAlchemyError as e:
            raise EdgeRNNError(f"results store {self.store.path}: {self.what} failed "
                               f"({_first_line(e)})") from None

    def __exit__(self, et: Any, ev: Any, tb: Any) -> bool:
        try:
            self.ctx.__exit__(et, ev, tb)
        except sa_exc.SQLAlchemyError as e:
            raise EdgeRNNError(f"results store {self.store.path}: {self.what} failed "
                               f"({_first_line(e)})") from None
        if isinstance(ev, sa_exc.SQLAlchemyError):
            raise EdgeRNNError(f"results store {self.store.path}: {self.what} failed "
                               f"({_first_line(ev)})") from None
        return False


_TEXT_KEYS = ("model", "variant", "target", "status", "runtime")
_OPTIONAL_TEXT = ("metric", "format", "quantization", "runtime_version", "reason",
                  "model_sha256", "data_sha256", "timestamp", "device_id", "metric_fn")
_LATENCY = ("p50", "p90", "p99", "mean", "std", "min", "max", "iqr", "count", "first", "load")
_NONNEGATIVE = ("size_bytes", "peak_mb", "peak_rss_mb", "threads", "eval_samples")


def checked_row(js: Any) -> tuple[dict[str, Any], str | None]:
    """A stored row parsed and checked (text keys are strings; numbers finite; sizes,
    latencies and memory not negative), or the problem that makes it unusable."""
    try:
        row = json.loads(js)
    except (TypeError, ValueError, RecursionError):
        return {}, "row_json is not JSON"
    if not isinstance(row, dict):
        return {}, f"row_json holds a {type(row).__name__}, not an object"
    for k in _TEXT_KEYS:
        if not isinstance(row.get(k), str):
            return {}, f"{k!r} is {row.get(k)!r}, not text"
    lat = row.get("latency_ms")
    if lat is not None and not (isinstance(lat, dict) and "p50" in lat):
        return {}, "'latency_ms' is not an object with p50"
    numbers = [(k, row.get(k), k in _NONNEGATIVE) for k in (*_NONNEGATIVE, "value",
               "accuracy_drop", "relative_drop", "agreement", "parity_max_abs_diff")]
    numbers += [(f"latency_ms.{k}", (lat or {}).get(k), True) for k in _LATENCY]
    quantiles = (lat or {}).get("quantiles")
    if quantiles is not None and not (isinstance(quantiles, list) and all(
            isinstance(q, (int, float)) and not isinstance(q, bool) and math.isfinite(q) and q >= 0
            for q in quantiles)):
        return {}, "latency_ms.quantiles is not a list of finite latencies"
    for k, v, positive in numbers:
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return {}, f"{k} is {v!r}, not a finite number"
        if positive and v < 0:
            return {}, f"{k} is negative ({v!r})"
    for k in _OPTIONAL_TEXT:
        if row.get(k) is not None and not isinstance(row[k], str):
            return {}, f"{k!r} is {row[k]!r}, not text"
    for k in ("notes", "metrics", "device"):
        if row.get(k) is not None and not isinstance(row[k], (list if k == "notes" else dict)):
            return {}, f"{k!r} has the wrong type"
    if not all(isinstance(n, str) for n in row.get("notes") or []):
        return {}, "'notes' holds something that is not text"
    for k, v in (row.get("metrics") or {}).items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                              or not math.isfinite(v)):
            return {}, f"metrics.{k} is {v!r}, not a finite number"
    return row, None


def export_rows(rows: list[dict[str, Any]], path: Path) -> None:
    """Write rows as JSON (``.json``) or flat CSV (anything else); never over a file that is
    not rows edgernn wrote."""
    from edgernn.results.files import _atomic_write, check_output

    check_output(path, rows_file=True)
    if path.suffix == ".json":
        _atomic_write(path, json.dumps(rows, indent=2, default=str))
        return
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(flatten(r))
    _atomic_write(path, buf.getvalue())
