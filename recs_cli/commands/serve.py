"""`recs serve`: the recommendation service, its HTTP JSON API, metrics and fallbacks."""

import argparse
import pathlib
from typing import TYPE_CHECKING, Any

from recs.contract.layout import DEMO_ROOT
from recs_cli.commands._base import Command

if TYPE_CHECKING:  # Annotations only: serving loads when a command runs.
    from serving.config import ServiceConfig

_ACCESS = ("open", "token", "closed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=pathlib.Path,
                        help="ServiceConfig JSON (the deploy manifests mount one)")
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path(DEMO_ROOT),
                        help="without --config: serve this workdir's models and profiles")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--model-server", default="",
                        help="without --config: REST URL or gRPC host:port (https:// for "
                             "TLS); empty starts a model server in-process")
    parser.add_argument("--protocol", choices=("rest", "grpc"), default="rest")
    parser.add_argument("--served-log", default="", help="JSON lines of every served list")
    security = parser.add_argument_group(
        "authentication and TLS (off by default; without --config; in a config file they "
        "are the ServiceConfig fields named)")
    security.add_argument("--token-file", default="",
                          help="bearer tokens the service accepts, one a line (tokens.file)")
    security.add_argument("--token-env", default="",
                          help="or: an environment variable holding them, comma-separated "
                               "(tokens.env)")
    security.add_argument("--tls-cert", default="", help="PEM certificate (tls.cert_file)")
    security.add_argument("--tls-key", default="", help="its PEM key (tls.key_file)")
    security.add_argument("--tls-client-ca", default="",
                          help="require client certificates signed by this CA "
                               "(tls.client_ca_file)")
    security.add_argument("--metrics", choices=_ACCESS, default="open",
                          help="who reads /metrics (metrics_access)")
    security.add_argument("--docs", choices=_ACCESS, default="open",
                          help="who reads /openapi.json, /docs, /redoc (docs_access)")
    security.add_argument("--model-server-ca", default="",
                          help="CA of an https:// model server (model_server_tls.ca_file)")
    security.add_argument("--model-server-token-file", default="",
                          help="token sent to the model server, the file's first "
                               "(model_server_token.file)")


def security_settings(token_file: str = "", token_env: str = "", tls_cert: str = "",
                      tls_key: str = "", tls_client_ca: str = "", metrics: str = "open",
                      docs: str = "open", model_server_ca: str = "",
                      model_server_token_file: str = "") -> dict[str, Any]:
    """The `ServiceConfig` fields of the authentication and TLS flags; {} when all are
    left at their defaults (off).

    Raises:
        ValueError: a combination the config refuses (a certificate without its key, ...).
    """
    from serving.security import ClientTls, ServerTls, TokenSource

    settings = {"tokens": TokenSource(file=token_file, env=token_env),
                "tls": ServerTls(cert_file=tls_cert, key_file=tls_key,
                                 client_ca_file=tls_client_ca),
                "metrics_access": metrics, "docs_access": docs,
                "model_server_tls": ClientTls(ca_file=model_server_ca),
                "model_server_token": TokenSource(file=model_server_token_file)}
    defaults = {"tokens": TokenSource(), "tls": ServerTls(), "metrics_access": "open",
                "docs_access": "open", "model_server_tls": ClientTls(),
                "model_server_token": TokenSource()}
    return {} if settings == defaults else settings


def service_config(config: pathlib.Path | None, workdir: pathlib.Path, model_server: str,
                   protocol: str, served_log: str, security: dict[str, Any] | None = None
                   ) -> tuple["ServiceConfig", bool]:
    """The `ServiceConfig` of `recs serve` and `recs recommend`.

    Args:
        config: a ServiceConfig JSON file; when given, the other arguments are not read.
        workdir: whose models and profile store to serve.
        model_server: REST URL or gRPC host:port; empty embeds a model server.
        protocol: "rest" or "grpc".
        served_log: where every served list is logged; empty logs none.
        security: authentication and TLS fields (`security_settings`); refused with
            `config`, whose file sets them, so that no flag meant to close the service is
            silently dropped.

    Returns:
        The config, and whether to embed a model server (no `config`, no `model_server`).

    Raises:
        ValueError: `security` given with `config`, or a combination the config refuses.
    """
    from serving.config import ServiceConfig
    from recs.contract.layout import RunLayout

    if config:
        if security:
            raise ValueError(f"the authentication and TLS flags must not be given with "
                             f"--config; set {sorted(security)} in {config} instead")
        return ServiceConfig.from_json(config.read_text()), False
    run_dir = RunLayout(workdir)
    overrides = {"model_server": model_server} if model_server else {}
    settings = ServiceConfig(protocol=protocol, serving_dir=str(run_dir.serving),
                             store=str(run_dir.store), served_log=served_log,
                             **overrides, **(security or {}))
    return settings, not model_server


def run(config: pathlib.Path | None, workdir: pathlib.Path, host: str, port: int,
        model_server: str, protocol: str, served_log: str, token_file: str, token_env: str,
        tls_cert: str, tls_key: str, tls_client_ca: str, metrics: str, docs: str,
        model_server_ca: str, model_server_token_file: str) -> int:
    """Serves recommendations on `host:port` until interrupted (`service_config` for the
    other arguments, `security_settings` for the authentication and TLS flags).

    Returns:
        0.

    Raises:
        ValueError: a flag or file the service cannot run with (shown as one line).
    """
    from serving.app import run_service

    security = security_settings(token_file, token_env, tls_cert, tls_key, tls_client_ca,
                                 metrics, docs, model_server_ca, model_server_token_file)
    settings, embedded = service_config(config, workdir, model_server, protocol, served_log,
                                        security)
    run_service(settings, host, port, embedded)
    return 0


COMMAND = Command("serve", "the recommendation service (HTTP JSON API)", run, add_arguments,
                  refused=(ValueError,))
