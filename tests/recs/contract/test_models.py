"""Served model names and TF Serving's layout: which directories are versions."""

import pytest

from recs.contract.models import MAX_VERSION, not_versions, version_number, versions_on_disk


@pytest.mark.parametrize("name, version", [
    ("1", 1), ("0", 0), ("007", 7), ("12/", 12), (str(MAX_VERSION), MAX_VERSION),
    (str(MAX_VERSION + 1), None), ("9" * 5000, None), ("-1", None), ("12a", None),
    ("\u00b2", None), ("\u0663", None), ("", None), ("1.5", None),
])
def test_only_ascii_int64_numbers_are_versions(name, version):
    assert version_number(name) == version


def test_odd_folders_are_skipped_not_a_crash(tmp_path):
    for name in ("1", "3", "\u00b2", "-2", str(MAX_VERSION + 1), "backup", "7"):
        (tmp_path / "ranker" / name).mkdir(parents=True)
        (tmp_path / "ranker" / name / "saved_model.pb").write_bytes(b"")
    (tmp_path / "ranker" / "9").mkdir()  # No saved_model.pb yet: still being copied in.
    assert versions_on_disk(str(tmp_path), "ranker") == [1, 3, 7]
    assert versions_on_disk(str(tmp_path), "towers") == []
    (tmp_path / "ranker" / ".staging-8").mkdir()  # A push in progress: hidden, not odd.
    assert not_versions(str(tmp_path), "ranker") == sorted(
        ["\u00b2", "-2", str(MAX_VERSION + 1), "backup"])
    assert not_versions(str(tmp_path), "towers") == []


def test_the_newest_version_is_one_with_a_saved_model_never_a_half_copied_folder(tmp_path):
    from recs.contract.models import newest_version_dir

    with pytest.raises(FileNotFoundError, match="no pushed version of 'ranker'"):
        newest_version_dir(str(tmp_path), "ranker")
    (tmp_path / "ranker" / "3").mkdir(parents=True)
    (tmp_path / "ranker" / "3" / "saved_model.pb").write_bytes(b"")
    (tmp_path / "ranker" / "4").mkdir()  # Being copied in: no saved_model.pb yet.
    assert newest_version_dir(str(tmp_path), "ranker") == str(tmp_path / "ranker" / "3")
