"""Who may call the servers, and over what: bearer tokens and TLS for the recommendation
service (`recs serve`) and the model server (`recs serve-models`), and what their clients
present. All of it is off by default: the demo serves plain HTTP on loopback.

    TokenSource   where tokens are read from, a file (a mounted Kubernetes Secret) or an
                  environment variable; a config names the place, never the token, so a
                  config that is logged or kept in a ConfigMap holds no secret
    BearerTokens  the tokens a server accepts, checked in constant time (the HTTP gate in
                  front of both servers is `serving.http.BearerGate`; the model server's
                  gRPC one is `serving.model_server.grpc_api.TokenInterceptor`)
    ServerTls     a server's certificate and key; a client CA turns on mutual TLS
    ClientTls     the CA a client trusts, and the certificate it shows for mutual TLS

Several tokens may be accepted at once, so a token is replaced without a moment in which no
client gets in: add the new one, move the clients to it, remove the old one. Tokens are
compared on their SHA-256 digests with `hmac.compare_digest`, so the time a refusal takes
shows neither a token's content nor its length. Tokens and certificates are read when a
server or client starts: a changed Secret takes effect at the next restart (a rolling
restart of the Deployment).
"""

import dataclasses
import hashlib
import hmac
import os
import re
import ssl
from typing import Sequence

from recs.config import Config, require

MIN_TOKEN_CHARS = 16
"""The shortest token accepted: a guessable one is no lock."""

# RFC 6750's b64token: no space, comma or control character can ride in a header value.
_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NEW_TOKEN = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


@dataclasses.dataclass(frozen=True)
class TokenSource(Config):
    """Where bearer tokens are read from: a file or an environment variable (not both);
    neither leaves tokens off.

    A server accepts every token of its source; a client sends the first one.

    Attributes:
        file: a file of tokens, one a line; blank lines and lines starting with `#` are
            skipped (a Kubernetes Secret mounted as a file).
        env: the name of an environment variable holding tokens separated by commas.

    Example:
        TokenSource(file="/etc/recs/tokens/service").read()  # ("k8Yw...", ...)
    """

    file: str = ""
    env: str = ""

    def __post_init__(self) -> None:
        require(not (self.file and self.env), "TokenSource.file",
                "empty when TokenSource.env is set (tokens come from one place)", self.file)
        require(not self.env or bool(_ENV_NAME.fullmatch(self.env)), "TokenSource.env",
                "an environment variable's name such as RECS_TOKENS", self.env)

    @property
    def enabled(self) -> bool:
        return bool(self.file or self.env)

    def read(self) -> tuple[str, ...]:
        """The tokens, in their order, read now; () when the source is empty.

        Raises:
            ValueError: the file cannot be read, the variable is unset, it holds no token,
                or a token is malformed (the message says where and how long, never the
                token).
        """
        if not self.enabled:
            return ()
        if self.file:
            try:
                with open(self.file, encoding="ascii") as handle:
                    text = handle.read()
            except (OSError, UnicodeDecodeError) as error:
                raise ValueError(f"TokenSource.file must be a readable ASCII file of tokens, "
                                 f"one a line; received {self.file!r} ({error})") from error
            place = f"TokenSource.file {self.file!r}"
            entries = [(f"line {number}", line.strip())
                       for number, line in enumerate(text.splitlines(), 1)
                       if line.strip() and not line.strip().startswith("#")]
        else:
            value = os.environ.get(self.env)
            if value is None:
                raise ValueError(f"TokenSource.env must name a variable that is set; "
                                 f"received {self.env!r}, which is not set")
            place = f"TokenSource.env ${self.env}"
            entries = [(f"entry {number}", part.strip())
                       for number, part in enumerate(value.split(","), 1) if part.strip()]
        if not entries:
            raise ValueError(f"{place} must hold at least one token; received none. Make one "
                             f"with {_NEW_TOKEN}")
        for where, token in entries:
            check_token(token, f"{place}, {where}")
        return tuple(token for _, token in entries)


def check_token(token: str, where: str) -> None:
    """Refuses a token too short, or with a character a bearer token cannot carry.

    Raises:
        ValueError: naming `where` and the token's length, never the token.
    """
    if len(token) < MIN_TOKEN_CHARS or not _TOKEN.fullmatch(token):
        raise ValueError(
            f"{where} must be a token of at least {MIN_TOKEN_CHARS} characters from "
            f"A-Z a-z 0-9 - . _ ~ + / (RFC 6750); received one of {len(token)} characters. "
            f"Make one with {_NEW_TOKEN}")


class BearerTokens:
    """The tokens a server accepts.

    Args:
        tokens: at least one, each as `check_token` requires.

    Raises:
        ValueError: no token, or a malformed one.
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        require(len(tokens) > 0, "tokens", "at least one token", "none")
        for number, token in enumerate(tokens, 1):
            check_token(token, f"token {number}")
        self._digests = tuple(hashlib.sha256(token.encode()).digest() for token in tokens)

    def refusal(self, authorization: str | bytes | None) -> str | None:
        """Why a request with this `Authorization` value is refused; None if accepted."""
        if not authorization:
            return "this endpoint needs a bearer token: send Authorization: Bearer <token>"
        if isinstance(authorization, bytes):
            authorization = authorization.decode("latin-1")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return "the Authorization header must use the Bearer scheme"
        # Any text hashes (a hostile header may hold anything); only an ASCII token matches.
        given = hashlib.sha256(token.strip().encode("utf-8", "surrogatepass")).digest()
        accepted = False
        for digest in self._digests:  # Every one compared: no early exit to time.
            accepted |= hmac.compare_digest(digest, given)
        return None if accepted else "the bearer token is not accepted"


def _read_pem(name: str, path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise ValueError(f"{name} must be a readable PEM file; received {path!r} "
                         f"({error.strerror})") from error


@dataclasses.dataclass(frozen=True)
class ServerTls(Config):
    """A server's TLS: its certificate and key, and optionally the CA whose client
    certificates it requires (mutual TLS). All empty serves plain text.

    Attributes:
        cert_file: PEM certificate chain, the server's first (`tls.crt` of a Kubernetes TLS
            Secret); its names must include the host clients connect to.
        key_file: PEM private key of that certificate (`tls.key`).
        client_ca_file: PEM CA certificates; when set, a client must present a certificate
            one of them signed.
    """

    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""

    def __post_init__(self) -> None:
        require(bool(self.cert_file) == bool(self.key_file), "ServerTls.key_file",
                "set exactly when cert_file is (a certificate and its key)",
                f"cert_file={self.cert_file!r}, key_file={self.key_file!r}")
        require(not self.client_ca_file or bool(self.cert_file), "ServerTls.client_ca_file",
                "empty unless cert_file and key_file are set (mutual TLS needs TLS)",
                self.client_ca_file)

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)

    def context(self) -> ssl.SSLContext:
        """The server's SSL context: TLS 1.2 or later with the standard library's ciphers.

        Raises:
            ValueError: a file is missing or unreadable, or the key does not match the
                certificate.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as error:
            raise ValueError(
                f"ServerTls.cert_file and key_file must be a PEM certificate and its private "
                f"key; received {self.cert_file!r} and {self.key_file!r} ({error})") from error
        if self.client_ca_file:
            try:
                context.load_verify_locations(self.client_ca_file)
            except (OSError, ssl.SSLError) as error:
                raise ValueError(f"ServerTls.client_ca_file must be PEM CA certificates; "
                                 f"received {self.client_ca_file!r} ({error})") from error
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def pems(self) -> tuple[bytes, bytes, bytes | None]:
        """(certificate chain, private key, client CA or None) as bytes, for gRPC.

        Raises:
            ValueError: a file cannot be read.
        """
        return (_read_pem("ServerTls.cert_file", self.cert_file),
                _read_pem("ServerTls.key_file", self.key_file),
                _read_pem("ServerTls.client_ca_file", self.client_ca_file)
                if self.client_ca_file else None)


@dataclasses.dataclass(frozen=True)
class ClientTls(Config):
    """What a client uses on a TLS connection (an `https://` address): the CA it trusts,
    and the certificate it shows a server that requires one (mutual TLS).

    Attributes:
        ca_file: PEM CA certificates the server's certificate must chain to; empty trusts
            the system's CAs.
        cert_file: the client's PEM certificate chain, for mutual TLS.
        key_file: its private key.
    """

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    def __post_init__(self) -> None:
        require(bool(self.cert_file) == bool(self.key_file), "ClientTls.key_file",
                "set exactly when cert_file is (a certificate and its key)",
                f"cert_file={self.cert_file!r}, key_file={self.key_file!r}")

    @property
    def configured(self) -> bool:
        return bool(self.ca_file or self.cert_file)

    def context(self) -> ssl.SSLContext:
        """An SSL context that verifies the server's certificate and host name.

        Raises:
            ValueError: a file is missing or unreadable.
        """
        try:
            context = ssl.create_default_context(cafile=self.ca_file or None)
            if self.cert_file:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as error:
            raise ValueError(f"ClientTls files must be PEM: ca_file={self.ca_file!r}, "
                             f"cert_file={self.cert_file!r}, key_file={self.key_file!r} "
                             f"({error})") from error
        return context

    def pems(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """(root CA or None, private key or None, certificate chain or None), the order of
        `grpc.ssl_channel_credentials`.

        Raises:
            ValueError: a file cannot be read.
        """
        def read(name: str, path: str) -> bytes | None:
            return _read_pem(f"ClientTls.{name}", path) if path else None

        return (read("ca_file", self.ca_file), read("key_file", self.key_file),
                read("cert_file", self.cert_file))
