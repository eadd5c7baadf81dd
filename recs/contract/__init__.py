"""The contract every part of the project shares, importable without TensorFlow: feature keys
(`features`), the raw event schema and its validation (`events`), signature names and output
keys (`signatures`), served model names and the serving layout (`models`), and the records
that cross a process or a log: the served-list line (`served`), the dead letter
(`dead_letters`), the A/B outcome row (`outcomes`), profile and title rows (`rows`), a run's
directory (`layout`) and the pipeline's component ids the run report reads (`components`)."""

from recs.contract import (components, dead_letters, events, features, layout, models,
                           outcomes, rows, served, signatures)

__all__ = ["components", "dead_letters", "events", "features", "layout", "models",
           "outcomes", "rows", "served", "signatures"]
