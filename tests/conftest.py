"""Shared fixtures. Importing recs first selects Keras 2 before TensorFlow loads."""

import pathlib

import pytest

import recs  # noqa: F401

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The read-only public datasets beside the repository."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    return SHARED_DATA
