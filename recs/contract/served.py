"""The served-list record: one JSON line per answered recommendation request.

    the service's online policy --ServedList.to_json--> served.jsonl (rotated into
        served/day=D/*.jsonl by a closed loop or a log shipper)
      --read_exposure--> transforms.outcomes (A/B outcomes per user)
      --read_titles----> monitoring.outcomes (how often served titles were engaged)
      --parse----------> any reader that wants the whole record

A line holds, in this order: `ts` (the server's wall clock, Unix seconds as a float),
`request_id`, `user_id`, `device_type`, `hour` (0..23, UTC), `k` (titles asked for),
`fallback` (why the list came from the popularity fallback, or null), `policy` ("models" or
"popularity"), `model_versions` (model -> version, null when unknown), `routes` (role -> the
model target called), `experiments` (experiment -> the user's arm) and `items`, each
{`title_id`, `score` (the ranker's probability; null in a fallback, NaN when the model gave
one), `position` (0-based), `propensity` (the chance the policy had of showing the title in
that slot), `explored`}.

The writer builds a `ServedList` (validated when built) and writes `to_json()`: the standard
JSON encoder, so a non-finite score is spelt `NaN`, which strict parsers refuse; `json_object`
reads such lines. `parse` reads and validates a whole line. Readers that use a few fields
(`read_exposure`, `read_titles`) check those fields only, with the same rules: a line from an
older or newer writer still yields what they need.

Every refusal is a `Refused` (a ValueError) carrying the dead letter's reason code and detail.
Standard library and orjson only: no TensorFlow.
"""

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

import orjson

from recs.contract.dead_letters import Refused, require_id, require_type
from recs.contract.events import Reason
from recs.contract.features import HOURS_PER_DAY

TS, REQUEST_ID, USER_ID, DEVICE_TYPE, HOUR, K = (
    "ts", "request_id", "user_id", "device_type", "hour", "k")
FALLBACK, POLICY, MODEL_VERSIONS, ROUTES, EXPERIMENTS, ITEMS = (
    "fallback", "policy", "model_versions", "routes", "experiments", "items")
FIELDS = (TS, REQUEST_ID, USER_ID, DEVICE_TYPE, HOUR, K, FALLBACK, POLICY, MODEL_VERSIONS,
          ROUTES, EXPERIMENTS, ITEMS)
"""A served list's fields, in the order they are written."""
TITLE_ID, SCORE, POSITION, PROPENSITY, EXPLORED = (
    "title_id", "score", "position", "propensity", "explored")
ITEM_FIELDS = (TITLE_ID, SCORE, POSITION, PROPENSITY, EXPLORED)
"""A served item's fields, in the order they are written."""
_BOM = b"\xef\xbb\xbf"


def _number(value: Any) -> bool:
    """A JSON number: an int or a float (NaN and infinities included), never a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int_in(row: Mapping[str, Any], field: str, low: int, high: int, name: str = "") -> int:
    value = require_type(row, field, int, name)
    if not low <= value <= high:
        raise Refused(Reason.OUT_OF_RANGE, f"{name or field}={value} outside [{low}, {high}]")
    return value


def _versions(row: Mapping[str, Any]) -> None:
    """`model_versions`: model -> version number (an integer >= 0) or null."""
    for model, version in require_type(row, MODEL_VERSIONS, dict).items():
        if version is None:
            continue
        if type(version) is not int:
            raise Refused(Reason.WRONG_TYPE, f"{MODEL_VERSIONS}[{model!r}]={version!r}, not "
                                             "a version number or null")
        if version < 0:
            raise Refused(Reason.OUT_OF_RANGE, f"{MODEL_VERSIONS}[{model!r}]={version} < 0")


def _routes(row: Mapping[str, Any]) -> None:
    """`routes`: role -> the model target called, as text."""
    for role, target in require_type(row, ROUTES, dict).items():
        if not isinstance(target, str):
            raise Refused(Reason.WRONG_TYPE, f"{ROUTES}[{role!r}] of type "
                                             f"{type(target).__name__}")


def _experiments(row: Mapping[str, Any]) -> None:
    """`experiments`: experiment -> the user's arm, a valid id."""
    experiments = require_type(row, EXPERIMENTS, dict)
    for name in experiments:
        require_id(experiments, name, f"{EXPERIMENTS}[{name!r}]")


@dataclasses.dataclass(frozen=True)
class ServedItem:
    """One title of a served list.

    Attributes:
        title_id: the title.
        score: the ranker's engagement probability; None in a popularity list, NaN when the
            model returned one.
        position: its 0-based slot.
        propensity: the probability the policy had of showing this title in this slot.
        explored: whether exploration put it there.

    Raises:
        Refused: a field breaks its rule (see the module docstring).
    """

    title_id: str
    score: float | None
    position: int
    propensity: float
    explored: bool

    def __post_init__(self) -> None:
        self.check(self.to_dict(), f"{ITEMS}[{self.position!r}]")

    @staticmethod
    def check(row: Mapping[str, Any], name: str) -> None:
        """Validates an item object; `name` prefixes the field names in details."""
        require_id(row, TITLE_ID, f"{name}.{TITLE_ID}")
        score = row.get(SCORE)
        if score is not None and not _number(score):
            raise Refused(Reason.WRONG_TYPE, f"{name}.{SCORE}={score!r}, not a number or null")
        _int_in(row, POSITION, 0, 2 ** 31, f"{name}.{POSITION}")
        propensity = row.get(PROPENSITY)
        if propensity is None:
            raise Refused(Reason.MISSING_FIELD, f"{name}.{PROPENSITY}")
        if not _number(propensity):
            raise Refused(Reason.WRONG_TYPE, f"{name}.{PROPENSITY}={propensity!r}")
        if not 0.0 <= propensity <= 1.0:  # NaN fails too.
            raise Refused(Reason.OUT_OF_RANGE, f"{name}.{PROPENSITY}={propensity} outside "
                                               "[0, 1]")
        require_type(row, EXPLORED, bool, f"{name}.{EXPLORED}")

    def to_dict(self) -> dict[str, Any]:
        return {TITLE_ID: self.title_id, SCORE: self.score, POSITION: self.position,
                PROPENSITY: self.propensity, EXPLORED: self.explored}


@dataclasses.dataclass(frozen=True)
class ServedList:
    """One served list, as logged (see the module docstring for each field's meaning).

    Raises:
        Refused: a field breaks its rule; the reason code says how (missing_field,
            wrong_type, invalid_id, non_finite_number, out_of_range) and the detail which
            field and what it held.

    Example:
        line = ServedList(ts=time.time(), request_id=request_id, user_id="u1",
                          device_type="tv", hour=20, k=10, fallback=None, policy="models",
                          model_versions={"ranker": 3}, routes={"ranker": "ranker"},
                          experiments={}, items=(ServedItem("t1", 0.8, 0, 1.0, False),)
                          ).to_json()
    """

    ts: float
    request_id: str
    user_id: str
    device_type: str
    hour: int
    k: int
    fallback: str | None
    policy: str
    model_versions: Mapping[str, int | None]
    routes: Mapping[str, str]
    experiments: Mapping[str, str]
    items: tuple[ServedItem, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))  # Any sequence; kept immutable.
        for index, item in enumerate(self.items):
            if not isinstance(item, ServedItem):
                raise Refused(Reason.WRONG_TYPE, f"{ITEMS}[{index}] of type "
                                                 f"{type(item).__name__}, not a ServedItem")
        self.check({**self._fields(), ITEMS: []})  # The items checked themselves.

    def _fields(self) -> dict[str, Any]:
        return {TS: self.ts, REQUEST_ID: self.request_id, USER_ID: self.user_id,
                DEVICE_TYPE: self.device_type, HOUR: self.hour, K: self.k,
                FALLBACK: self.fallback, POLICY: self.policy,
                MODEL_VERSIONS: self.model_versions, ROUTES: self.routes,
                EXPERIMENTS: self.experiments}

    @staticmethod
    def check(row: Mapping[str, Any]) -> None:
        """Validates a served-list object, field by field in the written order.

        Raises:
            Refused: the first field that breaks its rule.
        """
        ts = row.get(TS)
        if ts is None:
            raise Refused(Reason.MISSING_FIELD, TS)
        if not _number(ts):
            raise Refused(Reason.WRONG_TYPE, f"{TS}={ts!r}")
        if not math.isfinite(ts):
            raise Refused(Reason.NON_FINITE_NUMBER, f"{TS}={ts}")
        for field in (REQUEST_ID, USER_ID, DEVICE_TYPE):
            require_id(row, field)
        _int_in(row, HOUR, 0, HOURS_PER_DAY - 1)
        _int_in(row, K, 1, 2 ** 31)
        fallback = row.get(FALLBACK)
        if fallback is not None and not isinstance(fallback, str):
            raise Refused(Reason.WRONG_TYPE, f"{FALLBACK}={fallback!r}, not a string or null")
        require_id(row, POLICY)
        _versions(row)
        _routes(row)
        _experiments(row)
        for index, item in enumerate(require_type(row, ITEMS, list)):
            if not isinstance(item, dict):
                raise Refused(Reason.WRONG_TYPE,
                              f"{ITEMS}[{index}] of type {type(item).__name__}")
            ServedItem.check(item, f"{ITEMS}[{index}]")

    def to_dict(self) -> dict[str, Any]:
        return {**self._fields(), MODEL_VERSIONS: dict(self.model_versions),
                ROUTES: dict(self.routes), EXPERIMENTS: dict(self.experiments),
                ITEMS: [item.to_dict() for item in self.items]}

    def to_json(self) -> str:
        """The log line (without its newline), as `json.dumps` writes it."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> "ServedList":
        """A served-list object -> the record; fields it does not know are ignored.

        Raises:
            Refused: a field breaks its rule.
        """
        cls.check(row)
        # Nullable fields may be left out: absent reads as null.
        return cls(**{field: row.get(field) for field in FIELDS if field != ITEMS},
                   items=tuple(ServedItem(**{field: item.get(field) for field in ITEM_FIELDS})
                               for item in row[ITEMS]))


def json_object(line: bytes | str) -> dict[str, Any]:
    """One JSON-lines line -> its object: a leading byte-order mark and a trailing CR are
    dropped, and `NaN` / `Infinity` (how the standard encoder spells a non-finite score)
    are read.

    Raises:
        Refused: not UTF-8 (`undecodable_bytes`), not JSON (`malformed_json`), or not an
            object (`not_an_object`).
    """
    if isinstance(line, str):
        line = line.encode("utf-8", "surrogatepass")
    if line.startswith(_BOM):
        line = line[len(_BOM):]
    try:
        text = line.rstrip(b"\r").decode("utf-8")
    except UnicodeDecodeError as error:
        raise Refused(Reason.UNDECODABLE, str(error)) from error
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        # orjson refuses NaN and Infinity, which the standard encoder writes.
        try:
            value = json.loads(text)
        except ValueError as error:
            raise Refused(Reason.MALFORMED_JSON, str(error)) from error
    if not isinstance(value, dict):
        raise Refused(Reason.NOT_AN_OBJECT, type(value).__name__)
    return value


def parse(line: bytes | str) -> ServedList:
    """One line of the served-list log -> the validated record.

    Raises:
        Refused: (a ValueError) the line is not a JSON object, or a field breaks its rule;
            `reason` is the dead-letter code, `detail` names the field and its value.
    """
    return ServedList.from_dict(json_object(line))


def read_exposure(row: Mapping[str, Any], experiment: str
                  ) -> tuple[str, str | None, tuple[str, ...]]:
    """What an A/B analysis reads of a served-list object: (user id, the user's arm in
    `experiment` or None, the distinct served titles, sorted). Other fields are not read.

    Raises:
        Refused: a missing or wrongly typed `user_id`, `experiments`, `items` or item
            `title_id`, or an arm of `experiment` that is not a valid id.
    """
    user = require_id(row, USER_ID)
    experiments = require_type(row, EXPERIMENTS, dict)
    titles = set()
    for index, item in enumerate(require_type(row, ITEMS, list)):
        if not isinstance(item, dict):
            raise Refused(Reason.WRONG_TYPE, f"{ITEMS}[{index}] of type {type(item).__name__}")
        titles.add(require_id(item, TITLE_ID, f"{ITEMS}[{index}].{TITLE_ID}"))
    arm = None
    if experiments.get(experiment) is not None:
        arm = require_id(experiments, experiment, f"{EXPERIMENTS}[{experiment!r}]")
    return user, arm, tuple(sorted(titles))


def read_titles(row: Mapping[str, Any]) -> tuple[str, list[tuple[str, float | None]]]:
    """What served-title engagement reads of a served-list object: (user id, [(title id,
    score or None)] in slot order). Other fields are not read.

    Raises:
        Refused: a missing or wrongly typed `user_id`, `items`, item `title_id` or score.
    """
    user = require_id(row, USER_ID)
    served = []
    for index, item in enumerate(require_type(row, ITEMS, list)):
        if not isinstance(item, dict):
            raise Refused(Reason.WRONG_TYPE, f"{ITEMS}[{index}] of type {type(item).__name__}")
        score = item.get(SCORE)
        if score is not None and not _number(score):
            raise Refused(Reason.WRONG_TYPE, f"{ITEMS}[{index}].{SCORE}={score!r}")
        served.append((require_id(item, TITLE_ID, f"{ITEMS}[{index}].{TITLE_ID}"), score))
    return user, served


__all__ = ["FIELDS", "ITEM_FIELDS", "ServedItem", "ServedList", "json_object",
           "parse", "read_exposure", "read_titles"]
