"""Certificates for TLS tests, made with `cryptography` the way a public CA issues them.

A root, an intermediate and a leaf (served with its intermediate: a full chain), P-256 ECDSA keys,
a leaf valid for 60 days with a non-critical subjectAltName and the serverAuth extended key usage:
what Mozilla's profile checks (sslyze) and strict path builders expect. Client certificates carry
clientAuth, a CN and optionally an email address in the subject and the subjectAltName.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str, email: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ferryman tests"),
             x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if email:
        attrs.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, email))
    return x509.Name(attrs)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass
class Issuer:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    chain: list[x509.Certificate]  # this issuer and the intermediates above it, not the root

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def _builder(self, subject: x509.Name, key: ec.EllipticCurvePrivateKey,
                 days: int) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.timezone.utc)
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(self.cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now - datetime.timedelta(hours=1) + datetime.timedelta(days=days))
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                               critical=False))

    def child_ca(self, cn: str = "ferryman test intermediate") -> "Issuer":
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (self._builder(_name(cn), key, 3650)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
                .sign(self.key, hashes.SHA256()))
        return Issuer(cert, key, [cert, *self.chain])

    def _leaf(self, subject: x509.Name, sans: list[x509.GeneralName], usage: x509.ObjectIdentifier,
              days: int) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (self._builder(subject, key, days)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [cert, *self.chain])
        return chain, _pem_key(key)

    def server(self, *names: str, days: int = 60) -> tuple[bytes, bytes]:
        """(chain PEM, key PEM) of a server certificate for `names` (DNS names or IP addresses)."""
        sans: list[x509.GeneralName] = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        return self._leaf(_name(names[0]), sans, ExtendedKeyUsageOID.SERVER_AUTH, days)

    def client(self, cn: str, email: str | None = None, san_email: str | None = None) -> tuple[bytes, bytes]:
        """(chain PEM, key PEM) of a client certificate."""
        sans: list[x509.GeneralName] = [x509.RFC822Name(san_email)] if san_email else []
        return self._leaf(_name(cn, email), sans, ExtendedKeyUsageOID.CLIENT_AUTH, 60)


def root_ca(cn: str = "ferryman test root") -> Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return Issuer(cert, key, [])


@dataclass
class ServerFiles:
    root: Issuer
    cert: Path   # chain: leaf + intermediate
    key: Path
    ca: Path     # the root alone


def write_server(tmp: Path, *names: str, days: int = 60) -> ServerFiles:
    root = root_ca()
    chain, key = root.child_ca().server(*(names or ("localhost", "127.0.0.1")), days=days)
    (tmp / "server.pem").write_bytes(chain)
    (tmp / "server-key.pem").write_bytes(key)
    (tmp / "root.pem").write_bytes(root.pem)
    return ServerFiles(root, tmp / "server.pem", tmp / "server-key.pem", tmp / "root.pem")
