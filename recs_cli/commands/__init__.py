"""The `recs` commands, one module each: its flags (`add_arguments`), a typed `run` that the
tests call directly, and its `COMMAND` declaration, which `recs_cli.main` lists."""

from recs_cli.commands._base import Command

__all__ = ["Command"]
