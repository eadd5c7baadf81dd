"""The `recs` command line."""

from recs_cli.main import main

__all__ = ["main"]
