"""The registry over a toy servable (no world): folders whose names are not versions are
skipped, logged once each and shown, while the good versions serve."""

import logging

from serving.model_server import ModelRegistry
from tests.serving.conftest import write_toy_model


def test_odd_version_folders_are_skipped_logged_once_and_shown(tmp_path, caplog):
    write_toy_model(tmp_path, version=2)
    for name in ("\u00b2", "-1", "9" * 30):
        (tmp_path / "toy" / name).mkdir()
    registry = ModelRegistry(str(tmp_path), ("toy",))
    with caplog.at_level(logging.WARNING, logger="recs.model_server"):
        registry.load()
        registry.refresh()  # The poller's next look: nothing new to say.
        (tmp_path / "toy" / "backup").mkdir()
        registry.refresh()
    try:
        assert registry.versions("toy") == [2]
        assert registry.not_versions == {"toy": sorted(["\u00b2", "-1", "9" * 30, "backup"])}
        warnings = [record.getMessage() for record in caplog.records
                    if "not version numbers" in record.getMessage()]
        assert len(warnings) == 2 and "'backup'" in warnings[1] and "'-1'" in warnings[0]
        (tmp_path / "toy" / "backup").rmdir()
        registry.refresh()
        assert "backup" not in registry.not_versions["toy"]
    finally:
        registry.close()
