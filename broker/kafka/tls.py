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
from collections.abc import Sequence
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
        ca_pem, ca_key, broker_pem = issue(
            "respublica local CA", "respublica local broker", ["localhost"], ["127.0.0.1"]
        )
        write_private(self.ca_key, ca_key)
        write_private(self.ca_cert, ca_pem)
        write_private(self.broker_pem, broker_pem)


def issue(
    ca_name: str,
    broker_name: str,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    now: datetime.datetime | None = None,
) -> tuple[bytes, bytes, bytes]:
    """A new CA and a broker certificate it signs for those names and addresses, as PEM:
    ``(ca.pem, ca.key, broker.pem)``, where ``broker.pem`` is the broker's PKCS#8 key followed
    by its certificate chain (Kafka's ``ssl.keystore.type=PEM``). Also used by
    ``deploy/make_secrets.py`` for the shipped deployments."""
    now = now or datetime.datetime.now(datetime.UTC)
    ca_key = _key()
    ca_subject = _name(ca_name)
    ca_cert = (
        _builder(ca_subject, ca_subject, ca_key, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    broker_key = _key()
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    broker_cert = (
        _builder(_name(broker_name), ca_subject, broker_key, now)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [x509.ExtendedKeyUsageOID.SERVER_AUTH, x509.ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_pem = ca_cert.public_bytes(pem)
    return ca_pem, _pkcs8(ca_key), _pkcs8(broker_key) + broker_cert.public_bytes(pem) + ca_pem


def _builder(
    subject: x509.Name, issuer: x509.Name, key: rsa.RSAPrivateKey, now: datetime.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not cert_sign,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
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


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only (created 0600, never world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    path.chmod(0o600)
