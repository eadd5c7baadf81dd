"""The online profile store: user profiles, the titles each user played and finished.

SQLite is the embedded default (one file, no server); the event-queue consumer and the
recommendation service share it through this class.
"""

import sqlite3
import threading

import tensorflow as tf

from recs import features as F
from recs.data.catalogue import read_jsonl
from recs.types import JsonDict

PROFILE_FIELDS = (F.AGE, F.COUNTRY, F.SUBSCRIPTION_TIER, F.PREFERRED_GENRES)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (
    user_id TEXT PRIMARY KEY, age INTEGER NOT NULL, country TEXT NOT NULL,
    subscription_tier TEXT NOT NULL, preferred_genres TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS finished (
    user_id TEXT NOT NULL, title_id TEXT NOT NULL, PRIMARY KEY (user_id, title_id));
CREATE TABLE IF NOT EXISTS plays (
    user_id TEXT NOT NULL, title_id TEXT NOT NULL, ts INTEGER NOT NULL,
    PRIMARY KEY (user_id, title_id));
"""


class ProfileStore:
    """Thread-safe SQLite store of profiles and finished titles.

    Args:
        path: database file; ":memory:" for a throwaway store.
    """

    def __init__(self, path: str) -> None:
        self._connection = sqlite3.connect(path, check_same_thread=False)
        self._connection.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def upsert_profiles(self, profiles: list[JsonDict]) -> None:
        """Inserts or replaces profiles (dicts with user_id and PROFILE_FIELDS).

        Raises:
            ValueError: a profile lacks a field.
        """
        rows = []
        for profile in profiles:
            missing = [key for key in (F.USER_ID, *PROFILE_FIELDS) if key not in profile]
            if missing:
                raise ValueError(f"profile {profile.get(F.USER_ID)!r} lacks {missing}; "
                                 f"expected {[F.USER_ID, *PROFILE_FIELDS]}.")
            rows.append(tuple(profile[key] for key in (F.USER_ID, *PROFILE_FIELDS)))
        with self._lock, self._connection:
            self._connection.executemany(
                "INSERT OR REPLACE INTO profiles VALUES (?, ?, ?, ?, ?)", rows)

    def mark_finished(self, pairs: list[tuple[str, str]]) -> None:
        """Records (user_id, title_id) pairs as finished; repeats are ignored."""
        with self._lock, self._connection:
            self._connection.executemany("INSERT OR IGNORE INTO finished VALUES (?, ?)", pairs)

    def record_plays(self, plays: list[tuple[str, str, int]]) -> None:
        """Records (user_id, title_id, unix seconds) plays; a title keeps its latest time."""
        with self._lock, self._connection:
            self._connection.executemany(
                "INSERT INTO plays VALUES (?, ?, ?) ON CONFLICT (user_id, title_id) "
                "DO UPDATE SET ts = MAX(ts, excluded.ts)", plays)

    def history(self, user_id: str, limit: int = F.MAX_HISTORY) -> list[str]:
        """The user's played titles, most recent first (the query tower's `history`)."""
        with self._lock:
            rows = self._connection.execute(
                "SELECT title_id FROM plays WHERE user_id = ? ORDER BY ts DESC, title_id "
                "LIMIT ?", (user_id, limit)).fetchall()
        return [title for (title,) in rows]

    def profile(self, user_id: str) -> JsonDict | None:
        with self._lock:
            row = self._connection.execute(
                "SELECT age, country, subscription_tier, preferred_genres FROM profiles "
                "WHERE user_id = ?", (user_id,)).fetchone()
        return None if row is None else {F.USER_ID: user_id, **dict(zip(PROFILE_FIELDS, row))}

    def finished(self, user_id: str) -> set[str]:
        with self._lock:
            rows = self._connection.execute(
                "SELECT title_id FROM finished WHERE user_id = ?", (user_id,)).fetchall()
        return {title for (title,) in rows}

    def close(self) -> None:
        self._connection.close()


def load_store(store: ProfileStore, users_path: str, examples_glob: str) -> tuple[int, int]:
    """Bulk-loads profiles from JSON lines, and plays and finished titles from interaction
    tf.Examples.

    Returns:
        (profiles loaded, finished pairs loaded).
    """
    profiles = read_jsonl(users_path)
    store.upsert_profiles(profiles)
    spec = {key: tf.io.FixedLenFeature([], F.RAW_FEATURE_DTYPES[key])
            for key in (F.USER_ID, F.TITLE_ID, F.COMPLETED, F.TIMESTAMP)}
    files = tf.io.gfile.glob(examples_glob)
    dataset = (tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096)
               .map(lambda x: tf.io.parse_example(x, spec)))
    pairs: list[tuple[str, str]] = []
    for batch in dataset:
        store.record_plays([(u.decode(), t.decode(), int(ts)) for u, t, ts in zip(
            batch[F.USER_ID].numpy(), batch[F.TITLE_ID].numpy(), batch[F.TIMESTAMP].numpy())])
        done = batch[F.COMPLETED].numpy() == 1
        users = batch[F.USER_ID].numpy()[done]
        titles = batch[F.TITLE_ID].numpy()[done]
        pairs.extend((u.decode(), t.decode()) for u, t in zip(users, titles))
    store.mark_finished(pairs)
    return len(profiles), len(set(pairs))
