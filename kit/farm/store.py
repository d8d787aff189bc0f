"""The results store: one SQLite file, every measurement written the moment it finishes.

A measurement is keyed by (artifact sha256, device, settings hash) with a
UNIQUE constraint, so re-running a pipeline after a crash or `kill -9` skips
what is done and can never add a second row for the same key. WAL journal,
`synchronous=FULL` and one transaction per write: a committed row survives a
killed process; an uncommitted one was never reported as done. Queries are
parameterised; nothing a user or device sends is pasted into SQL.

Readers (`kit results`, `report`, `export`) open the store read-only: a
missing or empty file is an error, never a new store, and nothing is written.
Every row they read is checked against the column types (a text where a
number belongs, a non-finite figure); damage is a `StoreError` with a hint.
A `kit run` that finds an invocation of its run still marked `running` (the
process was killed) marks it `interrupted` when it resumes.
"""
from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from kit.core.errors import KitError
from targets.base import ProfileResult, RunSettings

SCHEMA_VERSION = 1
_SQLITE_HEADER = b"SQLite format 3\x00"
_DAMAGE_HINT = ("check the file with `sqlite3 FILE 'PRAGMA integrity_check'`; restore it from a copy, or move it "
                "away and run the pipeline again (finished measurements in it are then measured again)")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS invocations (
    id TEXT PRIMARY KEY, run TEXT NOT NULL, started REAL NOT NULL, finished REAL, status TEXT NOT NULL,
    planned INTEGER, skipped INTEGER);
CREATE TABLE IF NOT EXISTS artifacts (
    sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, fmt TEXT NOT NULL, bytes INTEGER NOT NULL, path TEXT,
    model TEXT, recipe TEXT, accuracy REAL, accuracy_source TEXT, meta TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY,
    artifact_sha256 TEXT NOT NULL, device TEXT NOT NULL, settings_hash TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    invocation TEXT NOT NULL, device_class TEXT, profile TEXT, target TEXT,
    latency_count INTEGER, latency_min_us REAL, latency_median_us REAL, latency_mean_us REAL,
    latency_p90_us REAL, latency_p99_us REAL, latency_max_us REAL, latency_std_us REAL,
    init_us REAL, peak_memory_bytes INTEGER, memory_method TEXT,
    energy_uj REAL, energy_method TEXT, energy_note TEXT, estimate INTEGER NOT NULL DEFAULT 0,
    error TEXT, attempts INTEGER NOT NULL DEFAULT 1, started REAL, finished REAL NOT NULL, seconds REAL,
    settings TEXT NOT NULL, result TEXT,
    UNIQUE (artifact_sha256, device, settings_hash));
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY, invocation TEXT NOT NULL, artifact_sha256 TEXT NOT NULL, device TEXT NOT NULL,
    settings_hash TEXT NOT NULL, error TEXT NOT NULL, device_lost INTEGER NOT NULL, finished REAL NOT NULL);
CREATE INDEX IF NOT EXISTS measurements_device ON measurements (device);
"""

#: columns filled from a ProfileResult, in insert order
_RESULT_COLUMNS = ("latency_count", "latency_min_us", "latency_median_us", "latency_mean_us", "latency_p90_us",
                   "latency_p99_us", "latency_max_us", "latency_std_us", "init_us", "peak_memory_bytes",
                   "memory_method", "energy_uj", "energy_method", "energy_note", "estimate", "target", "result")


def settings_key(settings: RunSettings) -> dict[str, Any]:
    """What makes two runs comparable: the run knobs, with the input file by content, without the timeout."""
    d = {"threads": settings.threads, "warmup": settings.warmup, "runs": settings.runs,
         "delegate": settings.delegate, "core_mask": settings.core_mask, "input_sha256": None}
    if settings.input_path:
        d["input_sha256"] = hashlib.sha256(Path(settings.input_path).read_bytes()).hexdigest()
    return d


def settings_hash(settings: RunSettings) -> str:
    blob = json.dumps(settings_key(settings), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class Key:
    artifact_sha256: str
    device: str
    settings_hash: str


class StoreError(KitError):
    """A results store that is missing, empty, damaged or holds rows of the wrong type."""


class ResultsStore:
    """Thread-safe: one connection, one lock, one transaction per write.

    `read_only=True` opens an existing store without creating, migrating or writing anything.
    """

    def __init__(self, path: str | Path, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        self._lock = threading.Lock()
        self._types: dict[str, dict[str, str]] = {}
        if read_only:
            self._open_read_only()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._check_version()
        except sqlite3.DatabaseError as e:
            raise KitError(f"{self.path} is not a usable results database: {e}",
                           "point the pipeline's `store` at a new file, or move the damaged one away") from None
        if mode.lower() != "wal":
            raise KitError(f"{self.path}: SQLite refused WAL journaling ({mode})",
                           "keep the results database on a local file system")

    def _open_read_only(self) -> None:
        if not self.path.is_file():
            raise StoreError(f"the results store {self.path} does not exist",
                             "pass the run folder of a `kit run`; reading never creates a store")
        try:
            with open(self.path, "rb") as f:
                head = f.read(len(_SQLITE_HEADER))
        except OSError as e:
            raise StoreError(f"cannot read the results store {self.path}: {e}") from None
        if not head:
            raise StoreError(f"the results store {self.path} is empty (0 bytes)",
                             "it was never written or was truncated; run the pipeline again to measure")
        if head != _SQLITE_HEADER:
            raise StoreError(f"{self.path} is not an SQLite results store (it starts with {head[:16]!r})",
                             _DAMAGE_HINT)
        try:
            self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30,
                                       check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            missing = {"meta", "invocations", "artifacts", "measurements", "attempts"} - tables
            if missing:
                raise StoreError(f"{self.path} is not a results store: it lacks table(s) {', '.join(sorted(missing))}",
                                 _DAMAGE_HINT)
            self._check_version()
            for table in ("invocations", "measurements", "attempts"):
                self._types[table] = {r["name"]: r["type"].upper()
                                      for r in self._db.execute(f"PRAGMA table_info({table})")}
        except sqlite3.DatabaseError as e:
            raise StoreError(f"the results store {self.path} is damaged: {e}", _DAMAGE_HINT) from None

    def _check_version(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            if self.read_only:
                raise StoreError(f"{self.path} has no schema version", _DAMAGE_HINT)
            self._db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            return
        text = str(row[0]).strip()
        if not text.isdigit():
            raise StoreError(f"{self.path} has schema version {row[0]!r}, not a whole number", _DAMAGE_HINT)
        if int(text) != SCHEMA_VERSION:
            raise KitError(f"{self.path} has results schema {text}; this kit reads schema {SCHEMA_VERSION}",
                           "use a new results file for this kit version")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "ResultsStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, sql: str, params: tuple) -> int:
        if self.read_only:
            raise StoreError(f"{self.path} was opened read-only")
        with self._lock:
            cur = self._db.execute(sql, params)
            return cur.rowcount

    # -- invocations and artifacts ---------------------------------------------------------------

    def begin(self, invocation: str, run: str, planned: int, skipped: int) -> int:
        """Record a new invocation of `run`; earlier ones still `running` (killed) become `interrupted`.

        The caller holds the run's lock, so no other invocation of it is alive. Returns how many were marked.
        """
        marked = self._write("UPDATE invocations SET status = 'interrupted' WHERE run = ? AND status = 'running'",
                             (run,))
        self._write("INSERT INTO invocations (id, run, started, status, planned, skipped) VALUES (?, ?, ?, ?, ?, ?)",
                    (invocation, run, time.time(), "running", planned, skipped))
        return marked

    def end(self, invocation: str, status: str) -> None:
        self._write("UPDATE invocations SET finished = ?, status = ? WHERE id = ?", (time.time(), status, invocation))

    def invocations(self, run: str | None = None) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM invocations", ()
        if run is not None:
            sql, params = sql + " WHERE run = ?", (run,)
        return self._rows(sql + " ORDER BY started", params, "invocations")

    def add_artifact(self, sha256: str, name: str, fmt: str, nbytes: int, path: str | None, model: str | None,
                     recipe: str | None, accuracy: float | None, accuracy_source: str | None,
                     meta: dict[str, Any]) -> None:
        self._write(
            "INSERT INTO artifacts (sha256, name, fmt, bytes, path, model, recipe, accuracy, accuracy_source, meta) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sha256) DO UPDATE SET name = excluded.name, "
            "fmt = excluded.fmt, path = excluded.path, model = excluded.model, recipe = excluded.recipe, "
            "accuracy = excluded.accuracy, accuracy_source = excluded.accuracy_source, meta = excluded.meta",
            (sha256, name, fmt, nbytes, path, model, recipe, accuracy, accuracy_source, json.dumps(meta)))

    # -- measurements ----------------------------------------------------------------------------

    def record_ok(self, key: Key, result: ProfileResult, invocation: str, device_class: str, profile: str,
                  started: float, attempts: int) -> bool:
        """Write one finished measurement. False when the key already held one (it is kept, not doubled)."""
        finished = time.time()
        values = _result_values(result)
        cols = ", ".join(_RESULT_COLUMNS)
        marks = ", ".join("?" * len(_RESULT_COLUMNS))
        updates = ", ".join(f"{c} = excluded.{c}" for c in _RESULT_COLUMNS)
        sql = (f"INSERT INTO measurements (artifact_sha256, device, settings_hash, status, invocation, device_class, "
               f"profile, error, attempts, started, finished, seconds, settings, {cols}) "
               f"VALUES (?, ?, ?, 'ok', ?, ?, ?, NULL, ?, ?, ?, ?, ?, {marks}) "
               f"ON CONFLICT (artifact_sha256, device, settings_hash) DO UPDATE SET status = 'ok', "
               f"invocation = excluded.invocation, device_class = excluded.device_class, profile = excluded.profile, "
               f"error = NULL, attempts = excluded.attempts, started = excluded.started, "
               f"finished = excluded.finished, seconds = excluded.seconds, settings = excluded.settings, {updates} "
               f"WHERE measurements.status != 'ok'")
        params = (key.artifact_sha256, key.device, key.settings_hash, invocation, device_class, profile, attempts,
                  started, finished, finished - started, json.dumps(settings_key(result.settings)), *values)
        return self._write(sql, params) == 1

    def record_failed(self, key: Key, error: str, invocation: str, device_class: str, profile: str,
                      settings: RunSettings, started: float | None, attempts: int) -> None:
        """A job that will not be retried in this invocation; a later run retries it. Never replaces an ok row."""
        finished = time.time()
        self._write(
            "INSERT INTO measurements (artifact_sha256, device, settings_hash, status, invocation, device_class, "
            "profile, error, attempts, started, finished, seconds, settings) "
            "VALUES (?, ?, ?, 'failed', ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (artifact_sha256, device, settings_hash) DO UPDATE SET invocation = excluded.invocation, "
            "error = excluded.error, attempts = excluded.attempts, started = excluded.started, "
            "finished = excluded.finished, seconds = excluded.seconds WHERE measurements.status = 'failed'",
            (key.artifact_sha256, key.device, key.settings_hash, invocation, device_class, profile, error, attempts,
             started, finished, None if started is None else finished - started,
             json.dumps(settings_key(settings))))

    def record_attempt(self, key: Key, error: str, device_lost: bool, invocation: str) -> None:
        self._write("INSERT INTO attempts (invocation, artifact_sha256, device, settings_hash, error, device_lost, "
                    "finished) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (invocation, key.artifact_sha256, key.device, key.settings_hash, error, int(device_lost),
                     time.time()))

    def done(self) -> set[Key]:
        """Keys with a finished measurement."""
        rows = self._rows("SELECT artifact_sha256, device, settings_hash FROM measurements WHERE status = 'ok'", ())
        return {Key(r["artifact_sha256"], r["device"], r["settings_hash"]) for r in rows}

    def measurements(self, keys: Iterable[Key] | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Rows (as dicts) for the given keys (all rows when None), oldest first."""
        sql, params = "SELECT * FROM measurements", []
        if status is not None:
            sql, params = sql + " WHERE status = ?", [status]
        rows = self._rows(sql + " ORDER BY id", tuple(params), "measurements")
        if keys is not None:
            wanted = set(keys)
            rows = [r for r in rows if Key(r["artifact_sha256"], r["device"], r["settings_hash"]) in wanted]
        return rows

    def artifacts(self) -> list[dict[str, Any]]:
        """Every artifact ever recorded (the label is in `meta`)."""
        return self._rows("SELECT * FROM artifacts ORDER BY sha256", ())

    def attempts(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM attempts ORDER BY id", (), "attempts")

    def _rows(self, sql: str, params: tuple, table: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            try:
                rows = [dict(r) for r in self._db.execute(sql, params).fetchall()]
            except sqlite3.DatabaseError as e:
                raise StoreError(f"the results store {self.path} is damaged: {e}", _DAMAGE_HINT) from None
        types = self._types.get(table or "")
        if types:
            for row in rows:
                self._check_row(table, row, types)
        return rows

    def _check_row(self, table: str, row: dict[str, Any], types: dict[str, str]) -> None:
        """A value of the wrong type (text for a number) or a non-finite figure is damage, not a result."""
        for col, value in row.items():
            kind = types.get(col, "")
            if value is None:
                continue
            if kind == "INTEGER":
                ok = isinstance(value, int)
            elif kind == "REAL":
                ok = isinstance(value, (int, float)) and math.isfinite(value)
            elif kind == "TEXT":
                ok = isinstance(value, str)
            else:
                ok = True
            if not ok:
                raise StoreError(f"the results store {self.path} holds {col} = {value!r} in {table} row "
                                 f"{row.get('id')!r}, where a {kind.lower()} belongs", _DAMAGE_HINT)


def _result_values(r: ProfileResult) -> tuple:
    lat = r.latency
    stats = (lat.count, lat.min_us, lat.median_us, lat.mean_us, lat.p90_us, lat.p99_us, lat.max_us, lat.std_us) \
        if lat else (None,) * 8
    return (*stats, r.init_us, r.peak_memory_bytes, r.memory_method, r.energy_uj_per_inference, r.energy_method,
            r.energy_note, int(bool(r.estimate)), r.target, r.to_json())
