"""A private certificate authority for the local broker, made with ``cryptography``.

``respublica kafka start`` makes, on the first start of a data dir, a CA and a broker
certificate for ``127.0.0.1`` and ``localhost`` signed by it, and keeps them in
``<data dir>/tls/`` (every file mode 0600, the folder 0700):

* ``ca.pem``: the CA certificate, which clients trust (``ssl_cafile``);
* ``ca.key``: the CA's private key (only needed to issue another certificate);
* ``broker.pem``: the broker's private key (PKCS#8) followed by its certificate chain, the
  form Kafka's ``ssl.keystore.type=PEM`` reads.

Nothing here talks to Kafka. The CA is local to one data dir: a client of another broker never
trusts it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

VALID_DAYS = 825  # the longest validity browsers accept for a leaf; renewed by a new data dir
KEY_BITS = 2048


@dataclass(frozen=True)
class LocalTls:
    """The TLS files of one local broker."""

    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def broker_pem(self) -> Path:
        return self.folder / "broker.pem"

    def exists(self) -> bool:
        """Whether the CA and the broker's key store are there."""
        return self.ca_cert.exists() and self.broker_pem.exists()

    def create(self) -> None:
        """Make the CA and the broker certificate (once; an existing set is kept)."""
        if self.exists():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        now = datetime.datetime.now(datetime.UTC)
        ca_key = _key()
        ca_name = _name("respublica local CA")
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        broker_key = _key()
        broker_cert = (
            x509.CertificateBuilder()
            .subject_name(_name("respublica local broker"))
            .issuer_name(ca_name)
            .public_key(broker_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [x509.ExtendedKeyUsageOID.SERVER_AUTH, x509.ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        pem = serialization.Encoding.PEM
        _write_private(self.ca_key, _pkcs8(ca_key))
        _write_private(self.ca_cert, ca_cert.public_bytes(pem))
        _write_private(
            self.broker_pem,
            _pkcs8(broker_key) + broker_cert.public_bytes(pem) + ca_cert.public_bytes(pem),
        )


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pkcs8(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only (created 0600, never world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    path.chmod(0o600)
