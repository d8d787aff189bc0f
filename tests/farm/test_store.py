"""The SQLite results store: WAL, one row per key, ok rows never overwritten, hostile strings stored verbatim."""
from __future__ import annotations

import sqlite3
import threading

import pytest

from kit.core.errors import KitError
from kit.farm.store import Key, ResultsStore, settings_hash
from targets.base import ArtifactRef, DeviceInfo, LatencyStats, ProfileResult, RunSettings


def _result(median: float, settings: RunSettings) -> ProfileResult:
    return ProfileResult(target="local", device=DeviceInfo(name="host"),
                         artifact=ArtifactRef("m.tflite", "ab" * 32, 10),
                         settings=settings, latency=LatencyStats.from_samples([median - 1, median, median + 1]))


def test_wal_unique_key_and_ok_rows_are_kept(tmp_path):
    settings = RunSettings(runs=3)
    key = Key("ab" * 32, "dev'; DROP TABLE measurements; --", settings_hash(settings))
    with ResultsStore(tmp_path / "r.db") as store:
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        store.record_failed(key, "lost", "inv-1", "cls", "host", settings, None, 1)
        assert store.done() == set()
        assert store.record_ok(key, _result(100.0, settings), "inv-2", "cls", "host", 0.0, 2)
        assert store.done() == {key}
        # a second ok for the same key (a duplicate run) neither adds a row nor replaces the first
        assert not store.record_ok(key, _result(999.0, settings), "inv-3", "cls", "host", 0.0, 1)
        # a later failure does not erase a measurement
        store.record_failed(key, "lost again", "inv-4", "cls", "host", settings, None, 1)
        rows = store.measurements()
    assert len(rows) == 1
    row = rows[0]
    assert (row["status"], row["latency_median_us"], row["invocation"], row["device"]) == \
        ("ok", 100.0, "inv-2", key.device)
    # the UNIQUE constraint itself refuses a second row, whatever the code above does
    db = sqlite3.connect(tmp_path / "r.db")
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO measurements (artifact_sha256, device, settings_hash, status, invocation, finished, "
                   "settings) VALUES (?, ?, ?, 'ok', 'x', 0, '{}')",
                   (key.artifact_sha256, key.device, key.settings_hash))


def test_settings_hash_ignores_the_timeout_but_not_the_runs(tmp_path):
    assert settings_hash(RunSettings(runs=5, timeout_s=10)) == settings_hash(RunSettings(runs=5, timeout_s=99))
    assert settings_hash(RunSettings(runs=5)) != settings_hash(RunSettings(runs=6))
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    a.write_bytes(b"1")
    b.write_bytes(b"2")
    assert settings_hash(RunSettings(input_path=str(a))) != settings_hash(RunSettings(input_path=str(b)))


def test_concurrent_writers_lose_nothing(tmp_path):
    settings = RunSettings(runs=3)
    with ResultsStore(tmp_path / "r.db") as store:
        def write(worker: int) -> None:
            for i in range(25):
                store.record_ok(Key(f"{i:064x}", f"dev-{worker}", settings_hash(settings)), _result(10.0 + i, settings),
                                "inv", "cls", "p", 0.0, 1)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(store.measurements()) == 150 and len(store.done()) == 150


def test_not_a_database_is_a_clear_error(tmp_path):
    bad = tmp_path / "r.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(KitError, match="not a usable results database"):
        ResultsStore(bad)
