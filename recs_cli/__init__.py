"""The `recs` command line (`recs_cli.main`)."""

from recs._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {"main": "recs_cli.main"})
