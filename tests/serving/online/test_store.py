"""The profile store under faults of its file: replaced, truncated, deleted, not a database,
or locked by another writer. A failing call is `StoreUnavailableError`; the store recovers by
itself once the file is good."""

import os
import sqlite3
import threading
import time

import pytest

from serving.online.store import SqliteProfileStore
from serving.types import StoreUnavailableError

PROFILE = {"user_id": "u1", "age": 30, "country": "de", "subscription_tier": "basic",
           "preferred_genres": "drama"}


def _store_file(path, age: int) -> None:
    store = SqliteProfileStore(str(path))
    store.upsert_profiles([{**PROFILE, "age": age}])
    store.mark_finished([("u1", f"t{age}")])
    store.close()


@pytest.fixture
def live(tmp_path):
    _store_file(tmp_path / "profiles.db", 30)
    store = SqliteProfileStore(str(tmp_path / "profiles.db"), busy_timeout_s=0.1,
                               check_every_s=0.0, retry_after_s=0.0)
    yield store, tmp_path / "profiles.db"
    store.close()


def test_a_file_replaced_under_the_store_is_read_at_once(live, tmp_path):
    store, path = live
    assert store.profile("u1")["age"] == 30
    _store_file(tmp_path / "backup.db", 41)
    os.replace(tmp_path / "backup.db", path)  # A restore from a backup: a new inode.
    assert store.profile("u1")["age"] == 41 and store.finished("u1") == {"t41"}


@pytest.mark.parametrize("damage", ["truncated", "not_a_database", "deleted"])
def test_a_damaged_file_is_unavailable_then_recovers_when_good_again(live, tmp_path, damage):
    store, path = live
    if damage == "truncated":
        with open(path, "r+b") as handle:
            handle.truncate(0)
    elif damage == "not_a_database":
        path.write_bytes(b"this is not a database " * 100)
    else:
        path.unlink()
    with pytest.raises(StoreUnavailableError, match="profile store"):
        store.profile("u1")
    with pytest.raises(StoreUnavailableError):
        store.ping()
    assert not path.exists() or damage != "deleted"  # Never re-created empty.
    _store_file(tmp_path / "restored.db", 52)
    os.replace(tmp_path / "restored.db", path)
    store.ping()
    assert store.profile("u1")["age"] == 52


def test_a_writer_holding_the_lock_past_the_budget_is_unavailable_not_a_wait(live):
    store, path = live
    holder = sqlite3.connect(str(path))
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="locked"):
            store.profile("u1")
        assert time.monotonic() - started < 5.0  # The 0.1 s budget, not SQLite's 5 s.
    finally:
        holder.rollback()
        holder.close()
    assert store.profile("u1")["age"] == 30


def test_concurrent_readers_survive_a_swap(live, tmp_path):
    store, path = live
    errors, ages = [], set()

    def read() -> None:
        for _ in range(200):
            try:
                ages.add(store.profile("u1")["age"])
            except StoreUnavailableError:
                pass  # Allowed while the file changes; anything else is a bug.
            except Exception as error:  # noqa: BLE001
                errors.append(error)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    _store_file(tmp_path / "next.db", 63)
    os.replace(tmp_path / "next.db", path)
    for thread in threads:
        thread.join()
    assert errors == [] and store.profile("u1")["age"] == 63 and ages <= {30, 63}


def test_bad_timeouts_are_refused(tmp_path):
    with pytest.raises(ValueError,
                       match="busy_timeout_s/check_every_s/retry_after_s must be >= 0"):
        SqliteProfileStore(str(tmp_path / "s.db"), busy_timeout_s=-1)


def test_after_a_failure_calls_fail_fast_for_a_moment_then_try_again(tmp_path):
    _store_file(tmp_path / "profiles.db", 30)
    store = SqliteProfileStore(str(tmp_path / "profiles.db"), busy_timeout_s=0.1,
                               check_every_s=0.0, retry_after_s=0.3)
    holder = sqlite3.connect(str(tmp_path / "profiles.db"))
    holder.execute("BEGIN EXCLUSIVE")
    with pytest.raises(StoreUnavailableError, match="locked"):
        store.profile("u1")
    holder.rollback()
    holder.close()
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="retried after 0.3 s"):
        store.profile("u1")  # Within the moment: no wait for the lock, no file access.
    assert time.monotonic() - started < 0.05
    time.sleep(0.35)
    assert store.profile("u1")["age"] == 30
    store.close()


def test_a_programming_error_is_not_taken_for_an_unavailable_store(live):
    store, _ = live
    with pytest.raises(sqlite3.ProgrammingError):
        store.record_plays([("u1", "t1")])  # One value short: a bug, not the file.
    assert store.profile("u1")["age"] == 30
