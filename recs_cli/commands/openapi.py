"""`recs openapi`: the recommendation service's OpenAPI spec."""

from recs_cli.commands._base import Command


def run() -> int:
    """Prints the spec (`serving.app.openapi_document`).

    Returns:
        0.
    """
    from serving.app import openapi_document

    print(openapi_document(), end="")
    return 0


COMMAND = Command("openapi", "print the service's OpenAPI spec", run)
