"""A local certificate authority and the certificates of the demo's front end and app servers.

Made once and kept in the state directory, so a browser or ``curl --cacert`` told to trust the CA
keeps trusting the demo across restarts.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NAMES = ("localhost", "127.0.0.1", "::1")
VALID_DAYS = 825


class CertificateError(Exception):
    """A certificate file in the state directory is unreadable or unusable."""


@dataclass(frozen=True)
class Certificates:
    """Paths of the PEM files."""

    ca: Path
    front: Path
    front_key: Path
    app: Path
    app_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ferryman demo"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write(path: Path, data: bytes, private: bool = False) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _make_ca(now: datetime.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    name = _name(f"ferryman demo CA {now:%Y-%m-%d %H:%M}")
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _make_leaf(common: str, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
               now: datetime.datetime, names: tuple[str, ...]) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    alt: list[x509.GeneralName] = []
    for n in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            alt.append(x509.DNSName(n))
    cert = (x509.CertificateBuilder().subject_name(_name(common)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def _check(paths: list[Path]) -> None:
    """Every file parses as PEM; raise naming the first that does not."""
    for path in paths:
        try:
            data = path.read_bytes()
            if path.name.endswith("-key.pem"):
                serialization.load_pem_private_key(data, None)
            else:
                x509.load_pem_x509_certificates(data)
        except (OSError, ValueError) as e:
            raise CertificateError(f"{path} is unusable ({e}); delete the directory {path.parent} "
                                   f"to make new certificates (the CA changes too)") from e


def ensure(directory: Path, hosts: tuple[str, ...] = ()) -> tuple[Certificates, bool]:
    """The certificates in `directory`, made on first use; (paths, whether they were just made).

    `hosts` are further names the front end answers for (the host it binds, when not loopback).
    """
    certs = Certificates(directory / "ca.pem", directory / "front.pem", directory / "front-key.pem",
                         directory / "app.pem", directory / "app-key.pem")
    files = [certs.ca, certs.front, certs.front_key, certs.app, certs.app_key]
    if all(p.exists() for p in files):
        _check(files)
        return certs, False
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca, ca_key = _make_ca(now)
    _write(directory / "ca-key.pem", _pem_key(ca_key), private=True)
    _write(certs.ca, ca.public_bytes(serialization.Encoding.PEM))
    front_names = NAMES + tuple(h for h in hosts if h not in NAMES)
    for cert_path, key_path, common, names in ((certs.front, certs.front_key, "ferryman demo front end", front_names),
                                               (certs.app, certs.app_key, "ferryman demo app server", NAMES)):
        cert, key = _make_leaf(common, ca, ca_key, now, names)
        _write(key_path, _pem_key(key), private=True)
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return certs, True
