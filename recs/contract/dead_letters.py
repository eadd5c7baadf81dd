"""Dead letters: one record of a refused input for both Beam jobs (ingestion and outcomes),
and the kit to write, read and count them.

Every line, row or record a job does not use becomes one JSON line:

    {"reason": "malformed_json",        a `recs.contract.events.Reason` code
     "input": "events",                 which input it came from (`INPUTS`)
     "detail": "...",                   why, in words
     "file": "...", "line": 3,          where, when it came from a line of a file (1-based)
     "record": "..."                    the bytes as delivered, as text; "record_b64" (base64)
                                        instead when they are not UTF-8; absent when there
                                        are none (a user-level refusal)
     ...}                               the job's context, e.g. the `user_id` and `exposures`
                                        of an `arm_changed` letter

so that it can be counted (`count_by_reason`), read back (`read_dead_letters`) and replayed
(`DeadLetter.record` is the bytes as delivered). The streaming consumer's dead letters are
Redis stream entries (`recs.contract.events.DEAD_LETTER_STREAM`), named from the same reasons.

Standard library and the event contract only: a reader of dead letters loads neither
TensorFlow nor Beam.
"""

import base64
import binascii
import collections
import dataclasses
import glob
import json
import os
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

from recs.contract.events import Reason, valid_id

EVENTS, USERS, PROFILE_UPDATES, TITLES = "events", "users", "profile_updates", "titles"
"""Ingestion's inputs (`transforms.ingestion`): event lines and the reference tables."""
SERVED, RECORDS, SUBSCRIPTIONS = "served", "records", "subscriptions"
"""The outcome job's inputs (`transforms.outcomes`): served lists, interaction records,
subscription decisions."""
INPUTS = (EVENTS, USERS, PROFILE_UPDATES, TITLES, SERVED, RECORDS, SUBSCRIPTIONS)

REASON, INPUT, DETAIL, FILE, LINE, RECORD, RECORD_B64 = (
    "reason", "input", "detail", "file", "line", "record", "record_b64")
FIELDS = (REASON, INPUT, DETAIL, FILE, LINE, RECORD, RECORD_B64)
"""The letter's own fields; any other key of a line is context."""
MAX_DETAIL_CHARS = 200
"""`Refused` keeps this much of a detail: enough to say what was wrong, never a whole record."""


class Refused(ValueError):
    """A record the contract refuses, as an exception: the dead letter's `reason` (a
    `recs.contract.events.Reason` code) and `detail` (cut to `MAX_DETAIL_CHARS`)."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail[:MAX_DETAIL_CHARS]
        super().__init__(f"{self.reason}: {self.detail}")


# Field checks that refuse with a reason, shared by the records read line by line.


def require_id(row: Mapping[str, Any], field: str, name: str = "") -> str:
    """`row[field]` when it is a valid id (the event contract's rule).

    Raises:
        Refused: missing, not a string, or not a valid id; the detail says `name` (default
            `field`).
    """
    value = row.get(field)
    name = name or field
    if value is None:
        raise Refused(Reason.MISSING_FIELD, name)
    if not isinstance(value, str):
        raise Refused(Reason.WRONG_TYPE, f"{name}={value!r}")
    if not valid_id(value):
        raise Refused(Reason.INVALID_ID, f"{name}={value!r}")
    return value


def require_type(row: Mapping[str, Any], field: str, kind: type, name: str = "") -> Any:
    """`row[field]` when it is a `kind`.

    Raises:
        Refused: missing or of another type.
    """
    value = row.get(field)
    name = name or field
    if value is None:
        raise Refused(Reason.MISSING_FIELD, name)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise Refused(Reason.WRONG_TYPE, f"{name} of type {type(value).__name__}")
    return value


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """One refused input.

    Attributes:
        reason: why, as a `Reason` code.
        input: which input (`INPUTS`).
        detail: why, in words.
        file: the file it came from ("" when not from a file).
        line: its 1-based line in `file` (0 when not from a line).
        record: the bytes as delivered; None when the refusal concerns no bytes (a user).
        context: further JSON fields of the job (e.g. `user_id`), written beside the others.

    Raises:
        ValueError: a field of the wrong type, an empty reason or input, a negative line, or
            a context key that is one of `FIELDS`.
    """

    reason: str
    input: str
    detail: str = ""
    file: str = ""
    line: int = 0
    record: bytes | None = None
    context: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in (REASON, INPUT):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"dead letter: {name} must be a non-empty string such as "
                                 f"'malformed_json' or 'events'; received {value!r}.")
        for name in (DETAIL, FILE):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"dead letter: {name} must be a string; received "
                                 f"{getattr(self, name)!r}.")
        if type(self.line) is not int or self.line < 0:
            raise ValueError(f"dead letter: line must be an integer >= 0 (0 = not from a "
                             f"line); received {self.line!r}.")
        if self.record is not None and not isinstance(self.record, bytes):
            raise ValueError(f"dead letter: record must be the bytes as delivered, or None; "
                             f"received {type(self.record).__name__}. Encode text first.")
        clashes = sorted(set(self.context) & set(FIELDS))
        if clashes:
            raise ValueError(f"dead letter: context keys {clashes} are the letter's own "
                             f"fields; rename them (the fields are {list(FIELDS)}).")

    def to_dict(self) -> dict[str, Any]:
        """The letter as its JSON object: file and line only when set, the record as text or
        base64 (none when None), then the context."""
        letter: dict[str, Any] = {REASON: self.reason, INPUT: self.input, DETAIL: self.detail}
        if self.file:
            letter[FILE] = self.file
        if self.line:
            letter[LINE] = self.line
        if self.record is not None:
            try:
                letter[RECORD] = self.record.decode("utf-8")
            except UnicodeDecodeError:
                letter[RECORD_B64] = base64.b64encode(self.record).decode("ascii")
        letter.update(self.context)
        return letter

    def to_json(self) -> str:
        """The letter as one JSON line (without the newline): what the jobs write."""
        return json.dumps(self.to_dict())


def parse(line: str | bytes) -> DeadLetter:
    """One written dead letter -> the `DeadLetter` it holds.

    Raises:
        ValueError: not a JSON object, a field missing or of the wrong type, both `record`
            and `record_b64`, or `record_b64` that is not base64.
    """
    try:
        value = json.loads(line)
    except ValueError as error:
        raise ValueError(f"dead letter: not JSON ({error}); expected one JSON object per "
                         "line as DeadLetter.to_json writes it.") from error
    if not isinstance(value, dict):
        raise ValueError(f"dead letter: expected a JSON object; received "
                         f"{type(value).__name__}.")
    missing = [name for name in (REASON, INPUT) if name not in value]
    if missing:
        raise ValueError(f"dead letter: missing {missing}; every letter names its reason and "
                         "input.")
    if RECORD in value and RECORD_B64 in value:
        raise ValueError("dead letter: holds both record and record_b64; a letter holds its "
                         "bytes once (text, or base64 when they are not UTF-8).")
    record = None
    if RECORD in value:
        if not isinstance(value[RECORD], str):
            raise ValueError(f"dead letter: record must be text; received {value[RECORD]!r}.")
        record = value[RECORD].encode("utf-8", "surrogatepass")
    elif RECORD_B64 in value:
        try:
            record = base64.b64decode(value[RECORD_B64], validate=True)
        except (binascii.Error, TypeError, ValueError) as error:
            raise ValueError(f"dead letter: record_b64 must be base64; received "
                             f"{value[RECORD_B64]!r:.80} ({error}).") from error
    return DeadLetter(reason=value[REASON], input=value[INPUT], detail=value.get(DETAIL, ""),
                      file=value.get(FILE, ""), line=value.get(LINE, 0), record=record,
                      context={key: item for key, item in value.items() if key not in FIELDS})


def _files(path: str | os.PathLike) -> list[str]:
    """The files `path` names: a file, a folder's `*.jsonl` files, or a glob (local, or any
    scheme tf.io.gfile reads)."""
    path = os.fspath(path)
    if "://" in path:
        import tensorflow as tf  # Only for remote paths (gs://, s3://).

        pattern = (f"{path.rstrip('/')}/*.jsonl" if tf.io.gfile.isdir(path) else path)
        return sorted(tf.io.gfile.glob(pattern))
    if os.path.isdir(path):
        return sorted(str(name) for name in pathlib.Path(path).glob("*.jsonl"))
    return sorted(glob.glob(path))


def read_dead_letters(path: str | os.PathLike) -> list[DeadLetter]:
    """Every dead letter written at `path`: ingestion's `dead_letter/` folder (sharded
    files), the outcome job's `<output>.dead_letter.jsonl`, or a glob; blank lines skipped.

    Raises:
        ValueError: nothing matches `path`, or a line is not a dead letter (names the file
            and line).
    """
    from recs.contract.models import open_text

    files = _files(path)
    if not files:
        raise ValueError(f"path {os.fspath(path)!r} holds no dead letters; pass a job's "
                         "dead-letter file, its folder, or a glob of them.")
    letters = []
    for name in files:
        with open_text(name) as handle:
            for number, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    letters.append(parse(text))
                except ValueError as error:
                    raise ValueError(f"{name}:{number}: {error}") from error
    return letters


def count_by_reason(letters: Iterable[DeadLetter]) -> dict[str, int]:
    """{reason: letters}, sorted by reason."""
    return dict(sorted(collections.Counter(letter.reason for letter in letters).items()))


def count_by_input(letters: Iterable[DeadLetter]) -> dict[str, dict[str, int]]:
    """{input: {reason: letters}}, both sorted."""
    counts: dict[str, collections.Counter[str]] = {}
    for letter in letters:
        counts.setdefault(letter.input, collections.Counter())[letter.reason] += 1
    return {name: dict(sorted(by_reason.items())) for name, by_reason in sorted(counts.items())}
