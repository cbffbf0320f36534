"""TLS contexts: Mozilla "intermediate" for listeners, verifying contexts for backends (invariant 10)."""

from __future__ import annotations

import ssl
from typing import Any

# Mozilla Server Side TLS "intermediate" (v5.7): TLS 1.2 and 1.3, AEAD ciphers with forward secrecy.
INTERMEDIATE_CIPHERS = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
])


def _san_names(cert_path: str) -> list[str]:
    try:
        from cryptography import x509
    except ImportError:  # pragma: no cover - cryptography comes with trustme/pyOpenSSL setups
        return []
    with open(cert_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [n.lower() for n in ext.value.get_values_for_type(x509.DNSName)]


def _one(cert: Any) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(INTERMEDIATE_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.load_cert_chain(str(cert.cert), str(cert.key))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def server_context(certs: list[Any]) -> ssl.SSLContext:
    """A listener's context; the first certificate is the default, others chosen by SNI."""
    default = _one(certs[0])
    if len(certs) > 1:
        by_name: dict[str, ssl.SSLContext] = {}
        for cert in certs[1:]:
            ctx = _one(cert)
            for name in (cert.names or _san_names(str(cert.cert))):
                by_name.setdefault(name.lower(), ctx)

        def pick(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            if name:
                name = name.lower()
                ctx = by_name.get(name) or by_name.get("*." + name.partition(".")[2])
                if ctx is not None:
                    sock.context = ctx

        default.sni_callback = pick  # type: ignore[assignment]
    return default


def client_context(tls: Any) -> ssl.SSLContext:
    """A backend context: certificates verified against `ca` (or the system store) by default."""
    ca = str(tls.ca) if tls is not None and tls.ca else None
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls is not None and not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls is not None and tls.cert:
        ctx.load_cert_chain(str(tls.cert), str(tls.key) if tls.key else None)
    return ctx
