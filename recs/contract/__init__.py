"""The contract every part of the project shares, importable without TensorFlow: feature keys
(`features`), the raw event schema and its validation (`events`), signature names and output
keys (`signatures`), served model names and the serving layout (`models`)."""

from recs.contract import events, features, models, signatures

__all__ = ["events", "features", "models", "signatures"]
