"""TLS contexts: Mozilla profiles for listeners, verifying contexts for backends (invariant 10).

Key exchange groups. Mozilla's "intermediate" and "modern" profiles allow exactly X25519, P-256 and
P-384. OpenSSL 3 offers more by default (X448, P-521, the ffdhe groups), and Python 3.11's `ssl` can
only pin a single curve (`set_ecdh_curve`), which would lock out clients that lack it. So
`restrict_groups` calls OpenSSL's ``SSL_CTX_set1_groups_list`` itself: that is a macro for
``SSL_CTX_ctrl(ctx, SSL_CTRL_SET_GROUPS_LIST, 0, "X25519:P-256:P-384")``, reached with `ctypes`
through the `_ssl` extension module (so the very libssl the context lives in), on the ``SSL_CTX *``
that CPython keeps as the first field after the object header of an `ssl.SSLContext`
(``PySSLContext.ctx``). The pointer is checked before use: ``SSL_CTX_get_options`` on it must give
the context's own `options`. If anything does not fit (another layout, a static libssl), the
context falls back to ``set_ecdh_curve("X25519")``: still compliant, only X25519 offered.
"""

from __future__ import annotations

import asyncio
import ctypes
import ssl
from collections.abc import Callable
from typing import Any

from ferryman.core.auth import user_from_certificate
from ferryman.core.clients import client_unit

# Mozilla Server Side TLS "intermediate" (v5.7): TLS 1.2 and 1.3, AEAD ciphers with forward secrecy.
INTERMEDIATE_CIPHERS = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
])
GROUPS = b"X25519:P-256:P-384"
_SSL_CTRL_SET_GROUPS_LIST = 92  # include/openssl/ssl.h

_libssl: Any = None


def _lib() -> Any:
    global _libssl
    if _libssl is None:
        import _ssl

        lib = ctypes.CDLL(_ssl.__file__)
        lib.SSL_CTX_ctrl.restype = ctypes.c_long
        lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
        lib.SSL_CTX_get_options.restype = ctypes.c_uint64
        lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
        _libssl = lib
    return _libssl


def _ssl_ctx_pointer(ctx: ssl.SSLContext) -> int | None:
    """The ``SSL_CTX *`` inside `ctx`, or None when it cannot be found and confirmed."""
    try:
        lib = _lib()
        ptr = ctypes.c_void_p.from_address(id(ctx) + 2 * ctypes.sizeof(ctypes.c_ssize_t)).value
        if not ptr or lib.SSL_CTX_get_options(ptr) != int(ctx.options):
            return None
        return int(ptr)
    except (OSError, AttributeError, ImportError, ValueError):
        return None


def restrict_groups(ctx: ssl.SSLContext, groups: bytes = GROUPS) -> bool:
    """Offer only `groups` for key exchange; True when set exactly, False after the fallback."""
    ptr = _ssl_ctx_pointer(ctx)
    if ptr is not None and _lib().SSL_CTX_ctrl(ptr, _SSL_CTRL_SET_GROUPS_LIST, 0, ctypes.c_char_p(groups)) == 1:
        return True
    ctx.set_ecdh_curve("X25519")
    return False


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


def _one(cert: Any, profile: str = "intermediate", client_ca: Any = None, verify_client: str = "require"
         ) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if profile == "modern":  # Mozilla "modern": TLS 1.3 only (its cipher suites are all AEAD)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    else:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(INTERMEDIATE_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    if profile == "modern":
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE  # modern: the client picks (all are strong)
    else:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.load_cert_chain(str(cert.cert), str(cert.key))
    ctx.set_alpn_protocols(["http/1.1"])
    restrict_groups(ctx)
    if client_ca is not None:
        ctx.load_verify_locations(cafile=str(client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED if verify_client == "require" else ssl.CERT_OPTIONAL
    return ctx


def server_context(certs: list[Any], profile: str = "intermediate", client_ca: Any = None,
                   verify_client: str = "require") -> ssl.SSLContext:
    """A listener's context; the first certificate is the default, others chosen by SNI.

    `profile` is "intermediate" (TLS 1.2 and 1.3) or "modern" (TLS 1.3 only). With `client_ca`,
    clients are asked for a certificate issued by it: "require" refuses the handshake without one,
    "optional" lets a client without one in; a certificate from another issuer is always refused.
    """
    default = _one(certs[0], profile, client_ca, verify_client)
    if len(certs) > 1:
        by_name: dict[str, ssl.SSLContext] = {}
        for cert in certs[1:]:
            ctx = _one(cert, profile, client_ca, verify_client)
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


# -- accepting TLS connections --------------------------------------------------------------------

class TlsAcceptor(asyncio.Protocol):
    """The first protocol of a connection to a TLS listener: runs the handshake, then hands over.

    The handshake goes through `loop.start_tls`, so its outcome is ferryman's to see: a failure
    (wrong protocol, no or a bad client certificate, garbage, `tls_handshake_timeout` passed) is
    counted on the listener and logged -- once per client address and minute, see
    `ferryman.core.throttle.LogGate` -- where `create_server(ssl=...)` would drop it silently. Until
    the HTTP side takes the TLS transport over, this object is the transport's application
    protocol and keeps what arrives (a request sent right behind the Finished message) for it.
    """

    def __init__(self, listener: Any, make_client: Callable[[], Any], on_failure: Callable[[Any, str, BaseException],
                                                                                          None]) -> None:
        self.listener = listener
        self.make_client = make_client
        self.on_failure = on_failure
        self.transport: Any = None
        self.peer_ip = "-"
        self.early: list[tuple[str, Any]] = []  # calls for the HTTP side made before it took over
        self.task: asyncio.Task[None] | None = None
        self.raw: list[bytes] = []  # bytes read before start_tls took the transport over
        self.lost = False           # the TCP connection closed before the handshake started
        self.held: str | None = None  # the slot taken in the listener's connection counts, until handover

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer_ip = peer[0]
        # a handshake in progress holds a connection like any other: max_connections and
        # max_connections_per_client count it, or connections that never finish one would not be limited
        listener = self.listener
        unit = "" if self.peer_ip in listener.trusted or not listener.max_per_client else client_unit(self.peer_ip)
        over = ("max_connections" if listener.open_connections >= listener.max_connections else
                "max_connections_per_client" if unit and listener.per_client.get(unit, 0) >= listener.max_per_client
                else None)
        if over is not None:
            transport.abort()
            self.on_failure(listener, self.peer_ip, ConnectionRefusedError(f"over {over}, closed before the handshake"))
            return
        listener.open_connections += 1
        if unit:
            listener.per_client[unit] = listener.per_client.get(unit, 0) + 1
        self.held = unit
        self.task = asyncio.get_running_loop().create_task(self._handshake())

    def _release(self) -> None:
        """Give the counted slot back (the handshake failed, or the HTTP side counts it from now on)."""
        unit = self.held
        if unit is None:
            return
        self.held = None
        listener = self.listener
        listener.open_connections -= 1
        if unit:
            left = listener.per_client.get(unit, 1) - 1
            if left > 0:
                listener.per_client[unit] = left
            else:
                listener.per_client.pop(unit, None)

    async def _handshake(self) -> None:
        try:
            await self._shake_hands()
        finally:
            self._release()  # whatever ended it; a no-op once the HTTP side counts the connection

    async def _shake_hands(self) -> None:
        listener = self.listener
        loop = asyncio.get_running_loop()
        if self.lost:  # gone before the handshake could start (a port scan, a TCP health check)
            self.on_failure(listener, self.peer_ip, ConnectionResetError("closed before the handshake"))
            return
        starting = loop.create_task(loop.start_tls(
            self.transport, self, listener.ssl_context, server_side=True,
            ssl_handshake_timeout=listener.tls_handshake_timeout))
        # Bytes can reach this protocol before start_tls takes the transport over (uvloop starts
        # reading right after connection_made, and pausing inside it has no effect). One turn of the
        # loop lets start_tls swap in its TLS protocol and queue that protocol's connection_made;
        # the bytes are then handed to it right behind, before any further read.
        await asyncio.sleep(0)
        if self.raw:
            raw, self.raw = b"".join(self.raw), []
            loop.call_soon(_feed, self.transport.get_protocol(), raw)
        try:
            tls = await starting
        except asyncio.CancelledError:
            starting.cancel()
            self.transport.abort()
            raise
        except Exception as exc:  # noqa: BLE001 - every way a handshake fails is the client's
            self.transport.abort()
            self.on_failure(listener, self.peer_ip, exc)
            return
        self._release()  # the HTTP side counts it from here
        client = self.make_client()
        if listener.tls_user_field is not None:
            client.cert_user = user_from_certificate(tls.get_extra_info("peercert"), listener.tls_user_field)
        tls.set_protocol(client)
        client.connection_made(tls)
        for name, arg in self.early:
            if name == "data":
                client.data_received(arg)
            elif name == "eof":
                client.eof_received()
            else:
                client.connection_lost(arg)
        self.early = []

    def data_received(self, data: bytes) -> None:
        if self.transport.get_protocol() is self:
            self.raw.append(data)  # plain TCP still: the start of the handshake
        else:
            self.early.append(("data", data))  # decrypted, from behind the finished handshake

    def eof_received(self) -> bool:
        if self.transport.get_protocol() is not self:
            self.early.append(("eof", None))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport.get_protocol() is self:
            self.lost = True
        else:
            self.early.append(("lost", exc))


def _feed(protocol: Any, data: bytes) -> None:
    """Give `data` to a (buffered) protocol as if it had just been read from its transport."""
    if not hasattr(protocol, "get_buffer"):
        protocol.data_received(data)
        return
    view = memoryview(data)
    while view:
        buf = protocol.get_buffer(len(view))
        n = min(len(buf), len(view))
        buf[:n] = view[:n]
        protocol.buffer_updated(n)
        view = view[n:]


def handshake_reason(exc: BaseException) -> str:
    """A short, log-friendly reason for a failed handshake."""
    if isinstance(exc, ssl.SSLError):
        return (exc.reason or str(exc)).lower().replace("_", " ")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) or "longer than" in str(exc):
        return "handshake timed out"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)) and not str(exc):
        return "the client closed the connection"
    return str(exc) or type(exc).__name__
