"""Opening a study's storage safely for several workers and several sweeps at once.

Optuna claims a queued (WAITING) trial with a read-check-write of its state inside one
transaction and relies on ``SELECT ... FOR UPDATE`` to make it atomic. SQLite ignores
``FOR UPDATE`` and starts transactions deferred, so two workers could both read WAITING and
both take the trial (observed: ``ValueError: Cannot tell a COMPLETE trial``). Here every
SQLite transaction begins ``IMMEDIATE`` (the write lock is taken before the read), which
makes the check-and-set atomic across processes. PostgreSQL honours ``FOR UPDATE``.

Creating the schema of a new store is not safe against a concurrent creation either
("table studies already exists"): on SQLite it runs under an exclusive file lock beside the
database, on PostgreSQL it is retried. Enqueueing a grid runs under the same lock (SQLite) or
a PostgreSQL advisory lock, so two sweeps started at once enqueue each design once.

PostgreSQL connections time out (``CONNECT_TIMEOUT_S``) instead of hanging on a server
that accepts TCP but never answers, statements after ``STATEMENT_TIMEOUT_S``; a
``postgresql://`` URL uses the installed driver (psycopg2 when psycopg 3 is absent).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import time
from pathlib import Path

from ..errors import FFAccelError
from .optuna_compat import rdb_engine

HEARTBEAT_S = 10
CONNECT_TIMEOUT_S = 10


def connect_timeout() -> int:
    """PostgreSQL's connect timeout in seconds: ``CONNECT_TIMEOUT_S``, or
    ``$FFACCEL_PG_CONNECT_TIMEOUT`` (1..600) for a slow network or an impatient test."""
    v = os.environ.get("FFACCEL_PG_CONNECT_TIMEOUT")
    if v is None:
        return CONNECT_TIMEOUT_S
    if not v.isdigit() or not 1 <= int(v) <= 600:
        raise FFAccelError(f"FFACCEL_PG_CONNECT_TIMEOUT={v!r} out of range (allowed: 1..600 seconds)")
    return int(v)
STATEMENT_TIMEOUT_S = 120
SQLITE_BUSY_TIMEOUT_S = 120
LOCK_WAIT_S = 600


def normalise_url(url: str) -> str:
    """The storage URL with a driver that is installed (``postgresql://`` -> psycopg2 when
    SQLAlchemy's default for it, psycopg 3, is missing)."""
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


#: Bytes a new SQLite store takes with Optuna's schema and a few designs (the empty schema
#: is 176 kB), checked before a sweep creates one.
NEW_STORE_BYTES = 200 << 10


def storage_label(url: str) -> str:
    """``url`` without its credentials (``user:password@``), for messages and reports."""
    return url.split("@")[-1]


def sqlite_path(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


@contextlib.contextmanager
def _folder_lock(db: Path):
    """An exclusive lock on the folder that holds the SQLite store ``db`` (flock on the
    folder itself: no lock file is created beside the user's file, and none is left when
    a store is refused). Stores in one folder share it; it is held for schema creation and
    for enqueueing a grid, both short."""
    folder = db.resolve().parent
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise FFAccelError(f"store folder {str(folder)!r} cannot be opened ({e.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _immediate_transactions(engine) -> None:
    """Every transaction of ``engine`` (pysqlite) begins IMMEDIATE; pooled connections made
    before this are dropped so that every connection follows the rule."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None       # SQLAlchemy emits BEGIN, not pysqlite

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()


def open_storage(url: str):
    """An Optuna RDBStorage for ``url`` that several worker processes and sweeps can share."""
    from optuna.storages import RDBStorage
    url = normalise_url(url)
    db = sqlite_path(url)
    if db is not None:
        kw = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
        with _folder_lock(db):
            fresh = not db.exists()
            try:
                storage = RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=3 * HEARTBEAT_S,
                                     engine_kwargs=kw)
            except BaseException:
                if fresh:               # no empty or half-made store left behind
                    for f in (db, db.with_name(db.name + "-journal")):
                        f.unlink(missing_ok=True)
                raise
        _immediate_transactions(rdb_engine(storage))
        return storage
    kw = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        kw["connect_args"] = {"connect_timeout": connect_timeout(),
                              "options": f"-c statement_timeout={STATEMENT_TIMEOUT_S * 1000}"}
    for attempt in range(3):
        try:
            return RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=3 * HEARTBEAT_S,
                              engine_kwargs=kw)
        except Exception as e:          # a concurrent schema creation: the other one wins
            if "already exists" not in str(e) or attempt == 2:
                raise
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def sweep_lock(storage, url: str, study_name: str):
    """Exclusive across every process sharing the store: around enqueueing a grid."""
    url = normalise_url(url)
    db = sqlite_path(url)
    if db is not None:
        with _folder_lock(db):
            yield
        return
    if not url.startswith("postgresql"):
        yield
        return
    key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big", signed=True)
    with rdb_engine(storage).connect() as conn:
        # wait as long as the other sweep enqueues (the statement timeout would cut it),
        # polling so that the wait is visible and bounded
        deadline = time.monotonic() + LOCK_WAIT_S
        while not conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({key})").scalar():
            if time.monotonic() > deadline:
                raise FFAccelError(f"another sweep of study {study_name!r} has held its enqueue lock "
                                   f"for {LOCK_WAIT_S} s; try again later")
            time.sleep(0.5)
        try:
            yield
        finally:
            conn.exec_driver_sql(f"SELECT pg_advisory_unlock({key})")
            conn.commit()


def check_workers(n: int, cpus: int | None = None) -> None:
    """``--workers`` between 1 and twice this machine's cores (more only slows each one)."""
    cpus = cpus or os.cpu_count() or 1
    if not 1 <= n <= 2 * cpus:
        raise FFAccelError(f"--workers={n} out of range (allowed: 1..{2 * cpus}, twice this machine's cores)")
