"""The raw playback event contract: validation shared by Beam ingestion (batch) and the
profile-update consumer (streaming), so both accept and refuse exactly the same records."""

import dataclasses
import json
from typing import Any

from recs import features as F

EVENT_TYPES = ("play_start", "play_stop", "like", "skip")
REQUIRED_FIELDS: dict[str, tuple[type, ...]] = {
    "event_id": (str,),
    F.USER_ID: (str,),
    F.TITLE_ID: (str,),
    "event_type": (str,),
    "ts": (int,),
    F.DEVICE_TYPE: (str,),
}


class Reason:
    """Dead-letter reason codes."""

    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    NEGATIVE_WATCH_TIME = "negative_watch_time"
    DUPLICATE_EVENT_ID = "duplicate_event_id"
    UNKNOWN_USER = "unknown_user"
    UNKNOWN_TITLE = "unknown_title"
    # Checks that need more than the record itself (its file's day, the user's other events,
    # the catalogue); Beam ingestion applies them.
    TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
    BOT_TRAFFIC = "bot_traffic"
    IMPLAUSIBLE_WATCH_TIME = "implausible_watch_time"


@dataclasses.dataclass(frozen=True)
class Parsed:
    """A validated event, or the reason (and detail) it was refused."""

    event: dict[str, Any] | None
    reason: str = ""
    detail: str = ""


def parse_event(line: str | bytes) -> Parsed:
    """Parses and validates one raw event (a JSON object).

    Returns:
        `Parsed(event)` when valid, else `Parsed(None, reason, detail)` with a `Reason` code.
    """
    try:
        event = json.loads(line)
    except ValueError as error:
        return Parsed(None, Reason.MALFORMED_JSON, str(error))
    if not isinstance(event, dict):
        return Parsed(None, Reason.NOT_AN_OBJECT, type(event).__name__)
    for field, types in REQUIRED_FIELDS.items():
        if field not in event or event[field] is None:
            return Parsed(None, Reason.MISSING_FIELD, field)
        value = event[field]
        if not isinstance(value, types) or isinstance(value, bool):
            return Parsed(None, Reason.WRONG_TYPE, f"{field}={value!r}")
    if event["event_type"] not in EVENT_TYPES:
        return Parsed(None, Reason.UNKNOWN_EVENT_TYPE, event["event_type"])
    if event["event_type"] == "play_stop":
        watched = event.get("watch_seconds")
        if not isinstance(watched, (int, float)) or isinstance(watched, bool):
            return Parsed(None, Reason.WRONG_TYPE, f"watch_seconds={watched!r}")
        if watched < 0:
            return Parsed(None, Reason.NEGATIVE_WATCH_TIME, str(watched))
    return Parsed(event)
