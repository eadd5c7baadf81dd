"""The served-list record: the line the service writes, read back whole or in part, and every
refusal with its reason and the field it names."""

import json
import math

import pytest

from recs.contract.dead_letters import Refused
from recs.contract.events import Reason
from recs.contract.served import (ServedItem, ServedList, json_object, parse, read_exposure,
                                  read_titles)

ITEMS = (ServedItem("t1", 0.8, 0, 0.95, False), ServedItem("t2", None, 1, 0.05, True))
SERVED = ServedList(ts=1_767_600_000.25, request_id="9f2c", user_id="u1", device_type="tv",
                    hour=20, k=2, fallback=None, policy="models",
                    model_versions={"ranker": 3, "retrieval": None},
                    routes={"ranker": "ranker@stable"}, experiments={"ranker-v2": "control"},
                    items=ITEMS)
# What `serving.online.policy.OnlinePolicy._log` wrote before the record existed, byte for byte.
LINE = ('{"ts": 1767600000.25, "request_id": "9f2c", "user_id": "u1", "device_type": "tv", '
        '"hour": 20, "k": 2, "fallback": null, "policy": "models", "model_versions": '
        '{"ranker": 3, "retrieval": null}, "routes": {"ranker": "ranker@stable"}, '
        '"experiments": {"ranker-v2": "control"}, "items": [{"title_id": "t1", "score": 0.8, '
        '"position": 0, "propensity": 0.95, "explored": false}, {"title_id": "t2", "score": '
        'null, "position": 1, "propensity": 0.05, "explored": true}]}')


def test_the_line_is_the_one_the_service_wrote_and_parses_back_equal():
    assert SERVED.to_json() == LINE
    assert parse(LINE) == SERVED
    assert parse(LINE.encode()) == SERVED


def test_a_fallback_list_without_items_round_trips():
    served = ServedList(ts=1.0, request_id="r", user_id="u9", device_type="web", hour=0, k=10,
                        fallback="model_server_timeout", policy="popularity",
                        model_versions={}, routes={}, experiments={}, items=[])
    assert parse(served.to_json()) == served
    assert served.items == ()  # Any sequence is kept as a tuple.


def test_a_nan_score_is_written_as_the_standard_encoder_spells_it_and_read_back():
    served = ServedList(**{**SERVED.__dict__, "items": (ServedItem("t1", math.nan, 0, 1.0,
                                                                   False),)})
    assert '"score": NaN' in served.to_json()
    assert math.isnan(parse(served.to_json()).items[0].score)


def test_fields_a_reader_does_not_know_are_ignored():
    assert parse(LINE[:-1] + ', "new_field": [1, 2]}') == SERVED


def test_json_object_drops_a_byte_order_mark_and_a_carriage_return():
    assert json_object(b"\xef\xbb\xbf" + LINE.encode() + b"\r") == json.loads(LINE)


@pytest.mark.parametrize("line, reason", [
    (b'{"user_id": "u1"}\xff', Reason.UNDECODABLE),
    ('{"user_id": ', Reason.MALFORMED_JSON),
    ("[1, 2]", Reason.NOT_AN_OBJECT),
])
def test_a_line_that_is_not_a_json_object_is_refused(line, reason):
    with pytest.raises(Refused) as refused:
        parse(line)
    assert refused.value.reason == reason
    assert isinstance(refused.value, ValueError)


def _line(**changes) -> dict:
    row = json.loads(LINE)
    for field, value in changes.items():
        if value is ...:
            del row[field]
        else:
            row[field] = value
    return row


def _item(**changes) -> dict:
    item = {**json.loads(LINE)["items"][0], **changes}
    return _line(items=[{key: value for key, value in item.items() if value is not ...}])


@pytest.mark.parametrize("row, reason, detail", [
    (_line(ts=...), Reason.MISSING_FIELD, "ts"),
    (_line(ts="now"), Reason.WRONG_TYPE, "ts='now'"),
    (_line(ts=True), Reason.WRONG_TYPE, "ts=True"),
    (_line(ts=math.inf), Reason.NON_FINITE_NUMBER, "ts=inf"),
    (_line(request_id=""), Reason.INVALID_ID, "request_id=''"),
    (_line(user_id=42), Reason.WRONG_TYPE, "user_id=42"),
    (_line(device_type="x" * 129), Reason.INVALID_ID, "device_type='xxx"),
    (_line(hour=24), Reason.OUT_OF_RANGE, "hour=24 outside [0, 23]"),
    (_line(hour=20.0), Reason.WRONG_TYPE, "hour of type float"),
    (_line(k=0), Reason.OUT_OF_RANGE, "k=0 outside [1, "),
    (_line(k=True), Reason.WRONG_TYPE, "k of type bool"),
    (_line(fallback=False), Reason.WRONG_TYPE, "fallback=False, not a string or null"),
    (_line(policy=...), Reason.MISSING_FIELD, "policy"),
    (_line(model_versions=[3]), Reason.WRONG_TYPE, "model_versions of type list"),
    (_line(model_versions={"ranker": "3"}), Reason.WRONG_TYPE, "model_versions['ranker']='3'"),
    (_line(model_versions={"ranker": -1}), Reason.OUT_OF_RANGE,
     "model_versions['ranker']=-1 < 0"),
    (_line(routes={"ranker": 3}), Reason.WRONG_TYPE, "routes['ranker'] of type int"),
    (_line(experiments={"ranker-v2": ""}), Reason.INVALID_ID, "experiments['ranker-v2']=''"),
    (_line(items={}), Reason.WRONG_TYPE, "items of type dict"),
    (_line(items=["t1"]), Reason.WRONG_TYPE, "items[0] of type str"),
    (_item(title_id=...), Reason.MISSING_FIELD, "items[0].title_id"),
    (_item(score="high"), Reason.WRONG_TYPE, "items[0].score='high', not a number or null"),
    (_item(position=-1), Reason.OUT_OF_RANGE, "items[0].position=-1 outside [0, "),
    (_item(propensity=...), Reason.MISSING_FIELD, "items[0].propensity"),
    (_item(propensity="1"), Reason.WRONG_TYPE, "items[0].propensity='1'"),
    (_item(propensity=1.5), Reason.OUT_OF_RANGE, "items[0].propensity=1.5 outside [0, 1]"),
    (_item(explored=0), Reason.WRONG_TYPE, "items[0].explored of type int"),
])
def test_each_broken_field_is_refused_with_its_reason_and_name(row, reason, detail):
    with pytest.raises(Refused) as refused:
        parse(json.dumps(row))
    assert refused.value.reason == reason
    assert refused.value.detail.startswith(detail)
    assert str(refused.value) == f"{reason}: {refused.value.detail}"


def test_the_writer_cannot_build_a_broken_record():
    with pytest.raises(Refused, match="items\\[0\\].propensity=2.0 outside"):
        ServedItem("t1", 0.5, 0, 2.0, False)
    with pytest.raises(Refused, match="hour=-1 outside"):
        ServedList(**{**SERVED.__dict__, "hour": -1})
    with pytest.raises(Refused, match="items\\[0\\] of type dict, not a ServedItem"):
        ServedList(**{**SERVED.__dict__, "items": [{"title_id": "t1"}]})


def test_read_exposure_reads_the_user_the_arm_and_the_titles_only():
    # The outcome job's view: a line missing every other field still yields its exposure.
    row = {"user_id": "u1", "experiments": {"ranker-v2": "control", "other": ""},
           "items": [{"title_id": "t2"}, {"title_id": "t1"}, {"title_id": "t2"}]}
    assert read_exposure(row, "ranker-v2") == ("u1", "control", ("t1", "t2"))
    assert read_exposure(row, "not-running") == ("u1", None, ("t1", "t2"))


@pytest.mark.parametrize("row, reason, detail", [
    ({"user_id": 42, "experiments": {}, "items": []}, Reason.WRONG_TYPE, "user_id=42"),
    ({"user_id": "u1", "items": []}, Reason.MISSING_FIELD, "experiments"),
    ({"user_id": "u1", "experiments": [], "items": []}, Reason.WRONG_TYPE,
     "experiments of type list"),
    ({"user_id": "u1", "experiments": {}, "items": [3]}, Reason.WRONG_TYPE,
     "items[0] of type int"),
    ({"user_id": "u1", "experiments": {}, "items": [{"title_id": ""}]}, Reason.INVALID_ID,
     "items[0].title_id=''"),
    ({"user_id": "u1", "experiments": {"x": 7}, "items": []}, Reason.WRONG_TYPE,
     "experiments['x']=7"),
])
def test_read_exposure_refuses_what_it_reads_with_the_record_rules(row, reason, detail):
    with pytest.raises(Refused) as refused:
        read_exposure(row, "x")
    assert (refused.value.reason, refused.value.detail) == (reason, detail)


def test_read_titles_reads_the_user_the_titles_and_their_scores():
    row = {"user_id": "u1", "items": [{"title_id": "t1", "score": 0.8}, {"title_id": "t3"}]}
    assert read_titles(row) == ("u1", [("t1", 0.8), ("t3", None)])
    with pytest.raises(Refused, match="items\\[0\\].score='0.8'"):
        read_titles({"user_id": "u1", "items": [{"title_id": "t1", "score": "0.8"}]})
    with pytest.raises(Refused, match="missing_field: items"):
        read_titles({"user_id": "u1"})
