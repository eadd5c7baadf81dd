"""Seeded hostile raw events, and the valid ones mixed among them, for ingestion and the consumer.

Every class that once stopped a job, and more, each drawn with seeded variations. Valid events
are `like`s of distinct (user, title) pairs an hour apart, so each becomes exactly one
interaction record (batch) and one applied event (stream), and a lost or doubled one shows.
"""

import dataclasses
import json
import re

import numpy as np

USERS = [f"u{i:03d}" for i in range(40)]
VALID_USERS = USERS[:20]
"""Valid events come from these users, hostile ones from the others: a hostile play refused
as a whole (implausible watch time) must not take a valid event of its session along."""
TITLES = [f"t{i:02d}" for i in range(10)]
DURATION_SECONDS = 1000
"""Every title's duration: a play_stop over 3x it is implausible for the catalogue."""


def profiles() -> list[dict]:
    return [{"user_id": user, "age": 20 + i % 50, "country": "us",
             "subscription_tier": "basic", "preferred_genres": "drama"}
            for i, user in enumerate(USERS)]


def catalogue() -> list[dict]:
    return [{"title_id": title, "genre": "drama", "release_year": 2020, "popularity": 1.0,
             "description": "a story", "duration_seconds": DURATION_SECONDS}
            for title in TITLES]


@dataclasses.dataclass(frozen=True)
class Corpus:
    """Hostile records by class, and valid events, as raw bytes."""

    hostile: list[tuple[str, bytes]]
    valid: list[dict]

    @property
    def by_class(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for name, _ in self.hostile:
            counts[name] = counts.get(name, 0) + 1
        return counts


def _event(rng: np.random.Generator, event_id: str, stamp: int, changes: dict) -> dict:
    event = {"event_id": event_id, "user_id": str(rng.choice(USERS[len(VALID_USERS):])),
             "title_id": str(rng.choice(TITLES)), "event_type": "play_stop", "ts": stamp,
             "device_type": "tv", "watch_seconds": float(rng.integers(1, 900))}
    event.update(changes)
    return event


def _dumps(event: dict) -> bytes:
    return json.dumps(event).encode()


def _without(event: dict, field: str) -> bytes:
    return _dumps({key: value for key, value in event.items() if key != field})


def _lone_surrogate(text: str, field: str) -> bytes:
    """The field's value with an unpaired surrogate escape (JSON allows writing one)."""
    return re.sub(f'"{field}": "[^"]*"', lambda _: f'"{field}": "a\\ud800b"', text).encode()


def corpus(seed: int, count: int, start_ts: int, span_s: int) -> Corpus:
    """`count` hostile records (every class in turn, seeded variations) and valid events.

    Args:
        seed: the random stream.
        count: hostile records to draw (at least one per class).
        start_ts / span_s: the valid time window: events are stamped inside it.
    """
    rng = np.random.default_rng(seed)

    def ts() -> int:
        return int(start_ts + rng.integers(0, span_s))

    def base(index: int, **changes) -> dict:
        return _event(rng, f"h{seed}-{index}", ts(), changes)

    def text(index: int) -> str:
        return json.dumps(base(index))

    classes = {
        "undecodable_bytes": lambda i: _dumps(base(i))[:20] + bytes(
            rng.integers(0x80, 0x100, size=int(rng.integers(1, 8)), dtype=np.uint8)) + b'"}',
        "gzip_bytes_as_a_line": lambda i: b"\x1f\x8b\x08\x00" + bytes(
            rng.integers(0, 256, size=40, dtype=np.uint8)).replace(b"\n", b" "),
        "deep_nesting": lambda i: (b"[" * int(rng.integers(1025, 20_000))
                                   + b"]" * int(rng.integers(1, 20_000))),
        "deep_nesting_in_a_field": lambda i: text(i).replace(
            '"tv"', "[" * 5000 + "]" * 5000).encode(),
        "huge_integer_ts": lambda i: re.sub(
            r'"ts": \d+', lambda _: '"ts": ' + "9" * int(rng.integers(20, 5000)), text(i)).encode(),
        "huge_integer_watch": lambda i: _dumps(base(i))[:-1] + b', "watch_seconds": '
        + b"9" * int(rng.integers(400, 5000)) + b"}",
        "lone_surrogate": lambda i: _lone_surrogate(text(i), str(rng.choice(
            ["user_id", "title_id", "event_id", "device_type"]))),
        "nan_watch": lambda i: _dumps(base(i))[:-1] + b', "watch_seconds": NaN}',
        "infinite_watch": lambda i: _dumps(base(i))[:-1] + b', "watch_seconds": '
        + rng.choice([b"Infinity", b"-Infinity", b"1e400"]) + b"}",
        "watch_1e308": lambda i: _dumps(base(i, watch_seconds=float(rng.choice([1e308, 1e30])))),
        "negative_watch": lambda i: _dumps(base(i, watch_seconds=-float(rng.integers(1, 99)))),
        "implausible_watch_for_the_title": lambda i: _dumps(base(
            i, watch_seconds=float(DURATION_SECONDS * 3 + rng.integers(1, 10_000)))),
        "bool_for_a_number": lambda i: _dumps(base(i, **{str(rng.choice(["ts", "watch_seconds"])):
                                                        bool(rng.integers(0, 2))})),
        "string_for_a_number": lambda i: _dumps(base(i, ts=str(ts()))),
        "float_ts": lambda i: _dumps(base(i, ts=ts() + 0.5)),
        "ts_beyond_int64": lambda i: _dumps(base(i, ts=int(2 ** 63 + rng.integers(0, 99)))),
        "ts_decades_ahead": lambda i: _dumps(base(i, ts=ts() + int(rng.integers(20, 80))
                                                  * 365 * 86_400)),
        "ts_days_behind": lambda i: _dumps(base(i, ts=ts() - int(rng.integers(3, 30)) * 86_400)),
        "missing_field": lambda i: _without(base(i), str(rng.choice(
            ["event_id", "user_id", "title_id", "event_type", "ts", "device_type"]))),
        "missing_watch_on_a_stop": lambda i: _without(base(i), "watch_seconds"),
        "wrong_type_id": lambda i: _dumps(base(i, user_id=[7, [], {}, 1.5][int(rng.integers(0, 4))])),
        "empty_or_long_or_control_id": lambda i: _dumps(base(i, user_id=str(rng.choice(
            ["", "u" * 200, "u\n1", "u\x00", "\t"])))),
        "unknown_event_type": lambda i: _dumps(base(i, event_type=str(rng.choice(
            ["pause", "PLAY_START", "", "seek"])))),
        "not_an_object": lambda i: rng.choice([b"[1, 2]", b"42", b'"text"', b"null", b"true"]),
        "truncated_json": lambda i: _dumps(base(i))[:int(rng.integers(1, 60))],
        "oversized_record": lambda i: _dumps(base(i, device_type="x" * 70_000)),
        "unknown_user": lambda i: _dumps(base(i, user_id=f"ghost{i}")),
        "unknown_title": lambda i: _dumps(base(i, title_id=f"gone{i}")),
        "duplicate_keys_with_junk": lambda i: b'{"ts": "x", "ts": "y", "event_id": 1}',
        "control_characters": lambda i: b"\x00\x07\x1b[2J" + _dumps(base(i)),
    }
    names = list(classes)
    hostile = []
    for index in range(max(count, len(names))):
        name = names[index % len(names)]
        hostile.append((name, bytes(classes[name](index))))
    # Valid likes of distinct (user, title) pairs, at least an hour apart per user.
    valid = []
    pairs = [(user, title) for user in VALID_USERS for title in TITLES]
    order = rng.permutation(len(pairs))[:min(len(pairs), max(50, count // 2))]
    for n, index in enumerate(order):
        user, title = pairs[index]
        valid.append({"event_id": f"v{seed}-{n}", "user_id": user, "title_id": title,
                      "event_type": "like", "ts": start_ts + 3600 * (n % max(1, span_s // 3600)),
                      "device_type": "web"})
    return Corpus(hostile=hostile, valid=valid)
