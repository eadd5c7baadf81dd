"""The event contract: total over any bytes, one set of rules for batch and stream."""

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recs.contract.events import (EVENT_TYPES, MAX_RECORD_BYTES, MAX_WATCH_SECONDS, Parsed, Reason,
                               TimeWindow, parse_event, plausible_watch)

T0 = 1_767_600_000
WINDOW = TimeWindow.around(T0, 86_400, 86_400, 86_400)
GOOD = {"event_id": "e1", "user_id": "u1", "title_id": "t1", "event_type": "play_stop",
        "ts": T0, "device_type": "tv", "watch_seconds": 600}


def _line(**changes) -> bytes:
    event = {**GOOD, **changes}
    return json.dumps({k: v for k, v in event.items() if v is not ...}).encode()


def test_a_valid_event_keeps_only_the_contract_fields():
    parsed = parse_event(_line(extra={"deep": [1, 2]}), WINDOW)
    assert parsed.event == {**GOOD, "watch_seconds": 600.0}
    assert isinstance(parsed.event["watch_seconds"], float)


@pytest.mark.parametrize("record, reason", [
    (b'{"event_id": "e1", ', Reason.MALFORMED_JSON),
    (b"[1, 2]", Reason.NOT_AN_OBJECT),
    (b'{"a": 1}\xff', Reason.UNDECODABLE),                          # not UTF-8
    (b"\x1f\x8b\x08\x00gzip bytes", Reason.UNDECODABLE),            # a gzip file named .jsonl
    (_line(user_id="\ud800"), Reason.MALFORMED_JSON),               # lone surrogate escape
    (b"[" * 10_000 + b"]" * 10_000, Reason.MALFORMED_JSON),         # nesting 10k deep
    (_line().replace(b"600", b"9" * 400), Reason.NON_FINITE_NUMBER),  # 1e400 as digits
    (_line().replace(b"600", b"NaN"), Reason.MALFORMED_JSON),       # NaN literal
    (_line().replace(b"600", b"Infinity"), Reason.MALFORMED_JSON),
    (_line().replace(b"600", b"1e400"), Reason.NON_FINITE_NUMBER),
    (_line(watch_seconds=1e308), Reason.IMPLAUSIBLE_WATCH_TIME),
    (_line(watch_seconds=MAX_WATCH_SECONDS + 1), Reason.IMPLAUSIBLE_WATCH_TIME),
    (_line(watch_seconds=-5.0), Reason.NEGATIVE_WATCH_TIME),
    (_line(watch_seconds=True), Reason.WRONG_TYPE),                 # bool is not a number
    (_line(watch_seconds="600"), Reason.WRONG_TYPE),
    (_line(watch_seconds=...), Reason.MISSING_FIELD),
    (_line(ts=True), Reason.WRONG_TYPE),
    (_line(ts=float(T0)), Reason.WRONG_TYPE),
    (_line(ts="noon"), Reason.WRONG_TYPE),
    (_line(ts=2 ** 63), Reason.TIMESTAMP_OUT_OF_RANGE),             # beyond SQLite and int64
    (_line(ts=T0 + 40 * 365 * 86_400), Reason.TIMESTAMP_OUT_OF_RANGE),  # decades ahead
    (_line(ts=T0 - 3 * 86_400), Reason.TIMESTAMP_OUT_OF_RANGE),
    (_line(user_id=...), Reason.MISSING_FIELD),
    (_line(user_id=None), Reason.MISSING_FIELD),
    (_line(user_id=7), Reason.WRONG_TYPE),
    (_line(user_id=""), Reason.INVALID_ID),
    (_line(user_id="u\n1"), Reason.INVALID_ID),
    (_line(user_id="u" * 129), Reason.INVALID_ID),
    (_line(event_type="pause"), Reason.UNKNOWN_EVENT_TYPE),
    (b" " * (MAX_RECORD_BYTES + 1), Reason.OVERSIZED),
])
def test_every_class_of_bad_record_gets_its_reason(record, reason):
    parsed = parse_event(record, WINDOW)
    assert (parsed.event, parsed.reason) == (None, reason), parsed


def test_a_byte_order_mark_and_a_crlf_ending_are_not_errors():
    assert parse_event(b"\xef\xbb\xbf" + _line() + b"\r", WINDOW).event is not None


def test_an_already_decoded_line_with_a_lone_surrogate_is_refused():
    assert parse_event('{"user_id": "\ud800"}', WINDOW).reason == Reason.UNDECODABLE


def test_the_window_is_half_open_and_must_not_be_empty():
    window = TimeWindow(T0, T0 + 10)
    assert parse_event(_line(ts=T0), window).event is not None
    assert parse_event(_line(ts=T0 + 10), window).reason == Reason.TIMESTAMP_OUT_OF_RANGE
    with pytest.raises(ValueError, match="earliest < latest"):
        TimeWindow(T0, T0)


def test_the_catalogue_rule_caps_watching_at_a_multiple_of_the_duration():
    assert plausible_watch(3000.0, 1000.0, 3.0) and not plausible_watch(3000.1, 1000.0, 3.0)
    assert plausible_watch(2.0, 0.0, 3.0)  # A zero duration counts as one second.


def _satisfies_the_rules(parsed: Parsed) -> None:
    event = parsed.event
    assert set(event) <= {"event_id", "user_id", "title_id", "event_type", "ts",
                          "device_type", "watch_seconds"}
    for key in ("event_id", "user_id", "title_id", "device_type"):
        assert isinstance(event[key], str) and 0 < len(event[key]) <= 128
        assert event[key].isprintable()
        event[key].encode("utf-8")  # No lone surrogates.
    assert event["event_type"] in EVENT_TYPES
    assert type(event["ts"]) is int and WINDOW.earliest <= event["ts"] < WINDOW.latest
    if event["event_type"] == "play_stop" or "watch_seconds" in event:
        watched = event["watch_seconds"]
        assert type(watched) is float and math.isfinite(watched)
        assert 0.0 <= watched <= MAX_WATCH_SECONDS


_FUZZ = settings(max_examples=400, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.binary(max_size=2000))
def test_any_bytes_get_an_event_or_a_reason(record):
    parsed = parse_event(record, WINDOW)
    assert (parsed.event is None) != (parsed.reason == "")
    if parsed.event is not None:
        _satisfies_the_rules(parsed)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4), max_leaves=20)
_FIELD_VALUES = {
    "event_id": st.text(max_size=130) | _JSON,
    "user_id": st.text(max_size=130) | _JSON,
    "title_id": st.sampled_from(["t1", "t2"]) | _JSON,
    "event_type": st.sampled_from(EVENT_TYPES + ("pause",)) | _JSON,
    "ts": st.integers(T0 - 3 * 86_400, T0 + 4 * 86_400) | st.integers() | _JSON,
    "device_type": st.sampled_from(["tv", "web"]) | _JSON,
    "watch_seconds": st.floats(allow_nan=True, allow_infinity=True) | st.integers() | _JSON,
}


@_FUZZ
@given(st.fixed_dictionaries({}, optional=_FIELD_VALUES))
def test_any_json_object_gets_an_event_or_a_reason_and_accepted_ones_obey_every_rule(event):
    # Python's json writes NaN and Infinity literals and lone surrogates: all must be refused.
    parsed = parse_event(json.dumps(event).encode(), WINDOW)
    assert (parsed.event is None) != (parsed.reason == "")
    if parsed.event is not None:
        _satisfies_the_rules(parsed)
