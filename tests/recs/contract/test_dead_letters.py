"""The dead-letter record of both Beam jobs: its line, read back equal, counted, and every
refusal of a field that breaks it."""

import json

import pytest

from recs.contract.dead_letters import (DeadLetter, Refused, count_by_input, count_by_reason,
                                        parse, read_dead_letters, require_id, require_type)
from recs.contract.events import Reason

TEXT = DeadLetter("malformed_json", "events", "Expecting value", "/logs/day=2026-01-05/a.jsonl",
                  3, b'{"event_id": ')
BINARY = DeadLetter("undecodable_bytes", "served", "invalid start byte", "s.jsonl", 7,
                    b"\xff\xfe not utf-8")
USER = DeadLetter("arm_changed", "served", "lists name arms ['a', 'b']",
                  context={"user_id": "u5", "exposures": [{"day": "2026-01-10", "arm": "a"}]})


def test_a_letter_is_one_json_line_in_the_fields_order():
    assert TEXT.to_json() == (
        '{"reason": "malformed_json", "input": "events", "detail": "Expecting value", '
        '"file": "/logs/day=2026-01-05/a.jsonl", "line": 3, "record": "{\\"event_id\\": "}')
    # Bytes that are not UTF-8 as base64; no file, line or record when there are none.
    assert json.loads(BINARY.to_json())["record_b64"] == "//4gbm90IHV0Zi04"
    assert list(json.loads(USER.to_json())) == ["reason", "input", "detail", "user_id",
                                                "exposures"]


@pytest.mark.parametrize("letter", [TEXT, BINARY, USER, DeadLetter("unreadable_file", "users",
                                                                   record=b"")])
def test_a_letter_parses_back_equal(letter):
    assert parse(letter.to_json()) == letter
    assert parse(letter.to_json().encode()) == letter


@pytest.mark.parametrize("fields, message", [
    ({"reason": "", "input": "events"}, "reason must be a non-empty string"),
    ({"reason": "x", "input": None}, "input must be a non-empty string"),
    ({"reason": "x", "input": "events", "detail": 3}, "detail must be a string"),
    ({"reason": "x", "input": "events", "file": None}, "file must be a string"),
    ({"reason": "x", "input": "events", "line": -1}, "line must be an integer >= 0"),
    ({"reason": "x", "input": "events", "line": True}, "line must be an integer >= 0"),
    ({"reason": "x", "input": "events", "record": "text"},
     "record must be the bytes as delivered"),
    ({"reason": "x", "input": "events", "context": {"line": 2}},
     r"context keys \['line'\] are the letter's own fields"),
])
def test_a_broken_letter_cannot_be_built(fields, message):
    with pytest.raises(ValueError, match=message):
        DeadLetter(**fields)


@pytest.mark.parametrize("line, message", [
    ("{", "not JSON"),
    ("[1]", "expected a JSON object; received list"),
    ('{"input": "events"}', r"missing \['reason'\]"),
    ('{"reason": "x", "input": "events", "record": "a", "record_b64": "YQ=="}',
     "both record and record_b64"),
    ('{"reason": "x", "input": "events", "record_b64": "not base64!"}',
     "record_b64 must be base64"),
    ('{"reason": "x", "input": "events", "record": 7}', "record must be text"),
    ('{"reason": "x", "input": "events", "line": "3"}', "line must be an integer"),
])
def test_a_line_that_is_not_a_letter_is_refused(line, message):
    with pytest.raises(ValueError, match=message):
        parse(line)


def test_letters_are_read_from_a_folder_of_shards_a_file_or_a_glob(tmp_path):
    folder = tmp_path / "dead_letter"
    folder.mkdir()
    (folder / "dead_letter-00000-of-00002.jsonl").write_text(TEXT.to_json() + "\n\n")
    (folder / "dead_letter-00001-of-00002.jsonl").write_text(
        BINARY.to_json() + "\n" + USER.to_json() + "\n")
    (folder / "notes.txt").write_text("not a letter")
    assert read_dead_letters(folder) == [TEXT, BINARY, USER]
    assert read_dead_letters(str(folder / "*-00001-*")) == [BINARY, USER]
    assert read_dead_letters(folder / "dead_letter-00000-of-00002.jsonl") == [TEXT]


def test_reading_names_the_file_and_line_of_a_bad_letter_and_an_empty_path(tmp_path):
    path = tmp_path / "out.dead_letter.jsonl"
    path.write_text(TEXT.to_json() + "\n[1]\n")
    with pytest.raises(ValueError, match=f"{path}:2: dead letter: expected a JSON object"):
        read_dead_letters(path)
    with pytest.raises(ValueError, match="holds no dead letters"):
        read_dead_letters(tmp_path / "missing")


def test_letters_are_counted_by_reason_and_by_input():
    letters = [TEXT, BINARY, USER, BINARY]
    assert count_by_reason(letters) == {"arm_changed": 1, "malformed_json": 1,
                                        "undecodable_bytes": 2}
    assert count_by_input(letters) == {"events": {"malformed_json": 1},
                                       "served": {"arm_changed": 1, "undecodable_bytes": 2}}


@pytest.mark.parametrize("row, reason, detail", [
    ({}, Reason.MISSING_FIELD, "name"),
    ({"user_id": None}, Reason.MISSING_FIELD, "name"),
    ({"user_id": 7}, Reason.WRONG_TYPE, "name=7"),
    ({"user_id": "a b\n"}, Reason.INVALID_ID, "name='a b\\n'"),
])
def test_require_id_refuses_with_the_event_rule(row, reason, detail):
    with pytest.raises(Refused) as refused:
        require_id(row, "user_id", "name")
    assert (refused.value.reason, refused.value.detail) == (reason, detail)
    assert require_id({"user_id": "u1"}, "user_id") == "u1"


def test_require_type_refuses_a_missing_or_other_value_and_a_bool_for_a_number():
    assert require_type({"k": [1]}, "k", list) == [1]
    assert require_type({"k": True}, "k", bool) is True
    for row, reason in (({}, Reason.MISSING_FIELD), ({"k": "1"}, Reason.WRONG_TYPE),
                        ({"k": True}, Reason.WRONG_TYPE)):
        with pytest.raises(Refused) as refused:
            require_type(row, "k", int)
        assert refused.value.reason == reason


def test_a_refusal_keeps_only_the_start_of_a_long_detail():
    refused = Refused(Reason.MALFORMED_JSON, "x" * 1000)
    assert len(refused.detail) == 200 and isinstance(refused, ValueError)
