"""Test TLS material made in milliseconds (EC keys, one-day certificates) and the tokens the
security tests accept."""

import dataclasses
import pathlib


@dataclasses.dataclass(frozen=True)
class Pki:
    """PEM files of a test CA and what it signed, under one directory.

    Attributes:
        ca: the CA's certificate.
        server_cert / server_key: a server certificate for `localhost` and `127.0.0.1`.
        client_cert / client_key: a client certificate (mutual TLS).
        other_ca: a CA that signed nothing here: a client trusting it must refuse the server.
    """

    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca: str


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())  # Faster to make than RSA.


def _certificate(subject: str, key, issuer: str, issuer_key, *, ca: bool,
                 names: tuple[str, ...] = (), client: bool = False):
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(name)) if name[0].isdigit()
             else x509.DNSName(name) for name in names]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: pathlib.Path) -> Pki:
    """Writes a test CA, a server certificate it signed for localhost and 127.0.0.1, a client
    certificate it signed, and an unrelated CA, under `directory`."""
    from cryptography.hazmat.primitives import serialization

    def write(name: str, data: bytes) -> str:
        path = directory / name
        path.write_bytes(data)
        return str(path)

    def cert_pem(certificate) -> bytes:
        return certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(key) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    ca_key, other_key, server_key, client_key = _key(), _key(), _key(), _key()
    ca = _certificate("recs test CA", ca_key, "recs test CA", ca_key, ca=True)
    other = _certificate("another CA", other_key, "another CA", other_key, ca=True)
    server = _certificate("localhost", server_key, "recs test CA", ca_key, ca=False,
                          names=("localhost", "127.0.0.1"))
    client = _certificate("recs-service", client_key, "recs test CA", ca_key, ca=False,
                          client=True)
    return Pki(ca=write("ca.crt", cert_pem(ca)),
               server_cert=write("tls.crt", cert_pem(server)),
               server_key=write("tls.key", key_pem(server_key)),
               client_cert=write("client.crt", cert_pem(client)),
               client_key=write("client.key", key_pem(client_key)),
               other_ca=write("other-ca.crt", cert_pem(other)))


TOKENS = ("old-token-0123456789abcdef", "new-token-0123456789abcdef")
"""Two accepted tokens, as during a rotation."""

