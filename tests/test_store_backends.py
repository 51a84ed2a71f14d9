"""The results store on both backends: SQLite files and a real local PostgreSQL
(scripts/postgres.sh). Every expectation is read back from the table with sqlite3 / psycopg
directly, never through Store."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from edgernn.errors import EdgeRNNError
from edgernn.results.store import Store

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ["sqlite", "postgres"]

# the first release's schema, verbatim (SQLite) and translated by hand (PostgreSQL)
OLD_SQLITE = """
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
OLD_POSTGRES = [
    """CREATE TABLE rows (
        id SERIAL PRIMARY KEY,
        model_sha256 TEXT NOT NULL, model TEXT NOT NULL, variant TEXT NOT NULL,
        target TEXT NOT NULL, data_sha256 TEXT NOT NULL, threads INTEGER, runtime TEXT,
        runtime_version TEXT, edgernn_version TEXT, status TEXT NOT NULL,
        timestamp TEXT NOT NULL, row_json TEXT NOT NULL)""",
    "CREATE INDEX rows_key ON rows (model_sha256, variant, target, data_sha256, threads)",
]


# ---- backends ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pg_server() -> str:
    """URL of the test PostgreSQL (started by scripts/postgres.sh); skip when it cannot run."""
    p = subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh"), "start"],
                       capture_output=True, text=True, timeout=120)
    out = (p.stdout + p.stderr).strip()
    if p.returncode == 3:
        pytest.skip(out.splitlines()[-1] if out else "postgres.sh: SKIP")
    if p.returncode != 0:
        pytest.fail(f"scripts/postgres.sh start failed ({p.returncode}): {out}")
    return p.stdout.strip().splitlines()[-1]


def _fresh_pg_db(server: str) -> str:
    import psycopg

    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return server.rsplit("/", 1)[0] + "/" + name


def _drop_pg_db(server: str, url: str) -> None:
    import psycopg

    with psycopg.connect(server, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


class Raw:
    """Direct access to one store's database, without edgernn."""

    def __init__(self, kind: str, where: str):
        self.kind, self.where = kind, where

    def query(self, sql: str) -> list[tuple]:
        if self.kind == "sqlite":
            con = sqlite3.connect(self.where)
            try:
                return [tuple(r) for r in con.execute(sql)]
            finally:
                con.close()
        import psycopg

        with psycopg.connect(self.where) as c:
            return [tuple(r) for r in c.execute(sql).fetchall()]

    def script(self, statements: list[str]) -> None:
        if self.kind == "sqlite":
            con = sqlite3.connect(self.where)
            try:
                for s in statements:
                    con.executescript(s)
                con.commit()
            finally:
                con.close()
            return
        import psycopg

        with psycopg.connect(self.where, autocommit=True) as c:
            for s in statements:
                c.execute(s)

    def columns(self) -> set[str]:
        if self.kind == "sqlite":
            return {r[1] for r in self.query("PRAGMA table_info(rows)")}
        return {r[0] for r in self.query("SELECT column_name FROM information_schema.columns "
                                         "WHERE table_name = 'rows'")}


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path):
    """(what to pass to Store, Raw access to the same database): a fresh one per test."""
    if request.param == "sqlite":
        path = tmp_path / "sub" / "r.db"
        yield str(path), Raw("sqlite", str(path))
        return
    server = request.getfixturevalue("pg_server")
    url = _fresh_pg_db(server)
    yield url, Raw("postgres", url)
    _drop_pg_db(server, url)


def _row(model: str, variant: str, status: str = "ok", threads: int | None = 1,
         settings: str | None = "s1", target: str = "x86", p50: float = 1.0,
         device: str | None = None) -> dict:
    return {"model_sha256": f"sha-{model}", "model": model, "variant": f"{model}/{variant}",
            "target": target, "data_sha256": "d", "requested_threads": threads,
            "runtime": "onnxruntime", "runtime_version": "1.0", "status": status,
            "timestamp": "2025-01-01T00:00:00", "settings_sha256": settings,
            "device_id": device, "latency_ms": {"p50": p50}}


# ---- the API on both backends -----------------------------------------------------------------

def test_add_update_rows_count_match_the_table(backend):
    where, raw = backend
    st = Store(where)
    a = st.add(_row("m", "onnx-fp32", p50=1.0, device="pi-1"))
    b = st.add(_row("m", "onnx-int8", p50=0.5, threads=None, settings=None))
    c = st.add(_row("m", "onnx-fp32", p50=0.9, device="pi-2"))  # newer, same key as a
    d = st.add(_row("n", "onnx-fp32", target="pi4", status="failed"))
    assert len({a, b, c, d}) == 4
    table = raw.query("SELECT id, model_sha256, model, variant, target, data_sha256, threads, "
                      "runtime, runtime_version, status, timestamp, settings_sha256, device_id "
                      "FROM rows ORDER BY id")
    assert table == [
        (a, "sha-m", "m", "m/onnx-fp32", "x86", "d", 1, "onnxruntime", "1.0", "ok",
         "2025-01-01T00:00:00", "s1", "pi-1"),
        (b, "sha-m", "m", "m/onnx-int8", "x86", "d", None, "onnxruntime", "1.0", "ok",
         "2025-01-01T00:00:00", None, None),
        (c, "sha-m", "m", "m/onnx-fp32", "x86", "d", 1, "onnxruntime", "1.0", "ok",
         "2025-01-01T00:00:00", "s1", "pi-2"),
        (d, "sha-n", "n", "n/onnx-fp32", "pi4", "d", 1, "onnxruntime", "1.0", "failed",
         "2025-01-01T00:00:00", "s1", None),
    ]
    assert json.loads(raw.query(f"SELECT row_json FROM rows WHERE id = {b}")[0][0]) == \
        _row("m", "onnx-int8", p50=0.5, threads=None, settings=None)

    # update rewrites status, JSON, settings and device of that row only
    st.update(b, _row("m", "onnx-int8", status="ok", p50=0.4, settings="s2", device="pi-3",
                      threads=None))
    got = raw.query(f"SELECT status, settings_sha256, device_id, row_json FROM rows WHERE id = {b}")
    assert got[0][:3] == ("ok", "s2", "pi-3")
    assert json.loads(got[0][3])["latency_ms"] == {"p50": 0.4}
    assert raw.query(f"SELECT status, device_id FROM rows WHERE id = {a}") == [("ok", "pi-1")]

    assert st.count() == 4 == raw.query("SELECT COUNT(*) FROM rows")[0][0]
    if raw.kind == "sqlite":  # several processes may write at once
        assert raw.query("PRAGMA journal_mode") == [("wal",)]
    # latest: the newest row per (model_sha256, variant, target, data_sha256, threads)
    latest = st.rows()
    assert [(r["variant"], r["latency_ms"]["p50"]) for r in latest] == [
        ("m/onnx-fp32", 0.9), ("m/onnx-int8", 0.4), ("n/onnx-fp32", 1.0)]
    assert [r["latency_ms"]["p50"] for r in st.rows(latest=False)] == [1.0, 0.4, 0.9, 1.0]
    assert [r["variant"] for r in st.rows("pi4")] == ["n/onnx-fp32"]
    assert [r["variant"] for r in st.rows(None, ["sha-n"])] == ["n/onnx-fp32"]
    assert [r["variant"] for r in st.rows("x86", ["n", "m"])] == ["m/onnx-fp32", "m/onnx-int8"]
    assert st.rows("x86", ["nobody"]) == []
    st.close()
    # a reopened store sees the same rows (each add/update was committed)
    st2 = Store(where)
    assert st2.count() == 4
    st2.close()


def test_find_reuse_key_is_null_safe_and_skips_failures(backend):
    where, _raw = backend
    st = Store(where)
    ok = st.add(_row("m", "v", p50=1.0))
    st.add(_row("m", "v", status="failed", p50=9.0))  # newer but failed: never reused
    hit = st.find("sha-m", "m/v", "x86", "d", 1, "s1")
    assert hit is not None and hit["latency_ms"]["p50"] == 1.0
    st.update(ok, _row("m", "v", status="crashed"))
    assert st.find("sha-m", "m/v", "x86", "d", 1, "s1") is None  # only failures left
    for status, p50 in (("accuracy collapsed", 2.0), ("skipped", 3.0)):
        st.add(_row("m", "v", status=status, p50=p50))
        assert st.find("sha-m", "m/v", "x86", "d", 1, "s1")["latency_ms"]["p50"] == p50

    # threads / settings None are values of the key: found with None, not with 1 / "s1"
    st.add(_row("k", "v", threads=None, settings=None, p50=4.0))
    assert st.find("sha-k", "k/v", "x86", "d", None, None)["latency_ms"]["p50"] == 4.0
    assert st.find("sha-k", "k/v", "x86", "d", 1, None) is None
    assert st.find("sha-k", "k/v", "x86", "d", None, "s1") is None
    st.add(_row("j", "v", threads=2, settings="s9", p50=5.0))
    assert st.find("sha-j", "j/v", "x86", "d", None, "s9") is None
    assert st.find("sha-j", "j/v", "x86", "d", 2, None) is None
    assert st.find("sha-j", "j/v", "x86", "d", 2, "s9")["latency_ms"]["p50"] == 5.0
    # every other part of the key must match too
    assert st.find("sha-j", "j/v", "pi4", "d", 2, "s9") is None
    assert st.find("sha-j", "j/v", "x86", "other", 2, "s9") is None
    st.close()


def test_old_schema_gets_the_new_columns_and_keeps_its_rows(backend):
    where, raw = backend
    if raw.kind == "sqlite":
        Path(raw.where).parent.mkdir(parents=True)
        raw.script([OLD_SQLITE])
    else:
        raw.script(OLD_POSTGRES)
    old = _row("m", "v", threads=None, p50=7.0)
    raw.script([
        "INSERT INTO rows (model_sha256, model, variant, target, data_sha256, threads, "
        "runtime, runtime_version, edgernn_version, status, timestamp, row_json) VALUES "
        f"('sha-m', 'm', 'm/v', 'x86', 'd', NULL, 'ort', '1', '0.0.1', 'ok', 't0', "
        f"'{json.dumps(old)}')"])
    assert "settings_sha256" not in raw.columns() and "device_id" not in raw.columns()

    st = Store(where)
    assert {"settings_sha256", "device_id"} <= raw.columns()
    assert st.count() == 1
    assert st.rows()[0]["latency_ms"] == {"p50": 7.0}
    # the old row has no settings: found only with settings None
    assert st.find("sha-m", "m/v", "x86", "d", None, None)["latency_ms"] == {"p50": 7.0}
    rid = st.add(_row("m", "v", device="pi-9"))
    st.close()
    assert raw.query(f"SELECT device_id, settings_sha256 FROM rows WHERE id = {rid}") == \
        [("pi-9", "s1")]
    Store(where).close()  # a second open finds nothing to migrate
    assert raw.query("SELECT COUNT(*) FROM rows")[0][0] == 2


# ---- many writers -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pool():
    """4 spawned worker processes, warmed up (edgernn imported) so they start work together."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as p:
        pids: set[int] = set()
        for _ in range(20):
            pids |= set(p.map(_warm, range(4)))
            if len(pids) >= 4:
                break
        yield p


def _warm(_i: int) -> int:
    import edgernn.results.store  # noqa: F401

    time.sleep(0.3)
    return os.getpid()


def _wait(start: float) -> None:
    time.sleep(max(0.0, start - time.time()))


def _writer(args: tuple[str, int, int, float]) -> tuple[float, float]:
    where, writer, n, start = args
    _wait(start)
    t0 = time.time()
    st = Store(where)
    for i in range(n):
        st.add(_row(f"w{writer}", f"i{i}", device=f"dev{writer}"))
    st.close()
    return t0, time.time()


def _opener(args: tuple[str, float]) -> str:
    where, start = args
    _wait(start)
    try:
        st = Store(where)
        st.add(_row("opener", str(os.getpid())))
        st.close()
        return "ok"
    except Exception as e:  # the test reports what failed
        return f"{type(e).__name__}: {e}"


def test_four_processes_write_at_once(backend, pool, capsys):
    where, raw = backend
    Store(where).close()  # the table exists; the race for creating it is the next test
    start = time.time() + 0.5
    spans = pool.map(_writer, [(where, w, 50, start) for w in range(4)])
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    with capsys.disabled():
        print(f"\n[{raw.kind}] 4 writers x 50 rows: {wall:.2f} s, {200 / wall:.0f} rows/s")
    got = raw.query("SELECT id, model, variant, device_id FROM rows")
    assert len(got) == 200
    assert len({r[0] for r in got}) == 200
    assert {(r[1], r[2], r[3]) for r in got} == {
        (f"w{w}", f"w{w}/i{i}", f"dev{w}") for w in range(4) for i in range(50)}


def test_four_processes_create_a_new_store_at_once(backend, pool):
    where, raw = backend
    # several brand-new databases: the race is short. SQLite: switching a new file to WAL
    # fails at once while another process opens it; PostgreSQL: CREATE TABLE IF NOT EXISTS
    # from two sessions collides on the catalog (pg_type) unless serialised
    for attempt in range(3 if raw.kind == "postgres" else 8):
        if raw.kind == "postgres":
            server = where.rsplit("/", 1)[0] + "/edgernn"
            target = where if attempt == 0 else _fresh_pg_db(server)
        else:
            target = str(Path(where).with_name(f"new{attempt}.db"))
        try:
            start = time.time() + 0.3
            results = pool.map(_opener, [(target, start)] * 4)
            assert results == ["ok"] * 4, results
            check = Raw(raw.kind, target)
            assert check.query("SELECT COUNT(*) FROM rows")[0][0] == 4
            assert {"settings_sha256", "device_id"} <= check.columns()
        finally:
            if raw.kind == "postgres" and attempt:
                _drop_pg_db(server, target)


def test_sqlite_switch_to_wal_waits_for_a_writer(tmp_path):
    """Opening a rollback-journal file while another connection is writing: switching it to
    WAL fails at once ("database is locked", the busy timeout does not apply to the upgrade
    of a read transaction); the store must wait for the writer instead."""
    import threading

    path = tmp_path / "plain.db"
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    con.execute("CREATE TABLE other (x)")
    con.execute("BEGIN IMMEDIATE")
    con.execute("INSERT INTO other VALUES (1)")  # holds the RESERVED lock
    done = threading.Timer(0.5, lambda: con.execute("COMMIT"))
    done.start()
    t = time.time()
    try:
        st = Store(path)
    finally:
        done.join()
    waited = time.time() - t
    st.add(_row("m", "v"))
    st.close()
    con.close()
    assert 0.4 < waited < 10
    assert Raw("sqlite", str(path)).query("PRAGMA journal_mode") == [("wal",)]
    assert Raw("sqlite", str(path)).query("SELECT model FROM rows") == [("m",)]


def test_close_leaves_no_postgres_connection(pg_server):
    url = _fresh_pg_db(pg_server)
    name = url.rsplit("/", 1)[1]
    try:
        stores = [Store(url) for _ in range(3)]  # kept alive: only close() may disconnect
        for st in stores:
            st.add(_row("m", "v"))
            st.count()
        def open_sessions() -> int:
            return Raw("postgres", pg_server).query(
                f"SELECT COUNT(*) FROM pg_stat_activity WHERE datname = '{name}'")[0][0]
        assert open_sessions() >= 3
        for st in stores:
            st.close()
        deadline = time.time() + 5
        while open_sessions() and time.time() < deadline:
            time.sleep(0.1)
        assert open_sessions() == 0
        with pytest.raises(EdgeRNNError, match="closed"):
            stores[0].count()
    finally:
        _drop_pg_db(pg_server, url)


# ---- opening errors ---------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("url", [
    "postgresql://edgernn:hunter2@127.0.0.1:{port}/edgernn",
    "postgresql+psycopg://edgernn:hunter2@127.0.0.1:{port}/edgernn",
])
def test_server_down_is_one_line_with_the_password_masked(url):
    url = url.format(port=_free_port())  # nothing listens there
    t = time.time()
    with pytest.raises(EdgeRNNError) as e:
        Store(url)
    msg = str(e.value)
    assert time.time() - t < 15
    assert "\n" not in msg and "hunter2" not in msg
    assert "edgernn:***@127.0.0.1" in msg and "cannot be opened" in msg
    assert "refused" in msg.lower() or "failed" in msg.lower()


@pytest.mark.parametrize("where, needle", [
    ("mysql://u:hunter2@h/db", "unsupported database"),
    ("postgresql://u:hunter2@[bad/db", "cannot be opened"),
])
def test_bad_url_is_one_line(where, needle):
    with pytest.raises(EdgeRNNError) as e:
        Store(where)
    msg = str(e.value)
    assert "\n" not in msg and "hunter2" not in msg and needle in msg


def test_unopenable_sqlite_path_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EdgeRNNError, match="lost its slashes"):
        Store(Path("sqlite:///x.db"))  # click's path_type=Path made it "sqlite:/x.db"
    assert not (tmp_path / "sqlite:").exists()
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(EdgeRNNError) as e:
        Store(tmp_path / "file" / "r.db")
    assert "\n" not in str(e.value) and str(tmp_path / "file" / "r.db") in str(e.value)
    (tmp_path / "junk.db").write_bytes(b"this is not a database file at all" * 200)
    with pytest.raises(EdgeRNNError) as e:
        Store(tmp_path / "junk.db")
    assert "\n" not in str(e.value) and "junk.db" in str(e.value)


def test_url_forms_reach_the_same_database(pg_server, tmp_path, monkeypatch):
    """A URL in $EDGERNN_DB, a URL that went through Path (click's --db), sqlite:/// URLs."""
    url = _fresh_pg_db(pg_server)
    try:
        monkeypatch.setenv("EDGERNN_DB", url.replace("edgernn@", "edgernn:pw@"))
        st = Store()
        assert st.path == url.replace("postgresql://", "postgresql+psycopg://").replace(
            "edgernn@", "edgernn:***@")
        st.add(_row("m", "v"))
        st.close()
        st = Store(Path(url))  # "postgresql:/edgernn@..." after Path collapsed the slashes
        st.add(_row("m", "v"))
        st.close()
        assert Raw("postgres", url).query("SELECT COUNT(*) FROM rows")[0][0] == 2
    finally:
        _drop_pg_db(pg_server, url)
    st = Store(f"sqlite:///{tmp_path}/u.db")
    st.add(_row("m", "v"))
    assert st.path == tmp_path / "u.db"
    st.close()
    assert Raw("sqlite", str(tmp_path / "u.db")).query("SELECT model FROM rows") == [("m",)]
