"""The shape of ``ferryman.toml``: frozen pydantic models, one per TOML table.

Every field's ``description`` says what it does and which Apache/nginx directive it replaces; the
reference in ``docs/configuration.md`` is generated from it (`ferryman.config.docs`). Validators raise
one error per problem with a message that says what would be valid, in the operator's terms
("60 is a bare number; write a duration string such as "60s"") rather than pydantic's; the loader
only adds the file, line and key path.

Checks that look across tables (a route's pool exists, names are unique...) live in `cross_issues`,
which works on plain TOML data so the loader can run it even when other parts of the file are
invalid. Validating a `Config` directly runs it too, unless the validation context says
``{"defer_cross_checks": True}`` (the loader's way of saying "I report those myself").

Paths (TLS files, htpasswd) are resolved against ``context["base_dir"]`` (the configuration file's
directory; the working directory without a context) and must exist.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, Union, get_args
from urllib.parse import SplitResult, urlsplit

from annotated_types import MinLen
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Discriminator, Field,
                      PrivateAttr, Strict, Tag, ValidationInfo, model_validator)
from pydantic_core import PydanticCustomError, PydanticUndefined

from ferryman.core.units import format_size, parse_duration, parse_size

# -- error helpers ----------------------------------------------------------------------------------

#: The pydantic error type of every message written here; its ``msg`` is final, ready to print.
ERROR_TYPE = "ferryman"

#: Union tags that pydantic puts in error locations; they are not keys and the loader drops them.
ONE, MANY = "<one>", "<many>"
UNION_TAGS = frozenset({ONE, MANY})

Loc = tuple[str | int, ...]


def fail(message: str) -> NoReturn:
    """Raise a validation error whose text is exactly `message` (no "Value error, " prefix)."""
    raise PydanticCustomError(ERROR_TYPE, "{reason}", {"reason": message})


def show(value: object) -> str:
    """`value` as the operator wrote it in TOML, for messages: 'text', 60, true, [...], a table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return str(value)


@dataclass(frozen=True, slots=True)
class Kind:
    """Annotation marker naming a value's kind for the generated docs ("duration", "path"...)."""

    name: str


# -- scalar types -----------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")  # RFC 9110 token: header and cookie names
_ROUTE_ID_BAD = re.compile(r"[\s;,=]")
_HOST = re.compile(r"[A-Za-z0-9_.-]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

StrictBool = Annotated[bool, Strict()]


def _name(what: str) -> Callable[[str], str]:
    def check(v: str) -> str:
        if not _NAME.fullmatch(v):
            fail(f"{show(v)} is not a valid {what}; use letters, digits, '_', '.' and '-'")
        return v
    return check


def _one_or_many(value: object) -> str:
    """Discriminator of "one item or a non-empty list of them": pick by shape, so an error names only
    the branch the operator meant."""
    return MANY if isinstance(value, (list, tuple)) else ONE


ListenerName = Annotated[str, AfterValidator(_name("listener name")), Kind("name")]
PoolName = Annotated[str, AfterValidator(_name("pool name")), Kind("name")]
ListenerNames = Annotated[
    Union[Annotated[ListenerName, Tag(ONE)], Annotated[tuple[ListenerName, ...], Tag(MANY), MinLen(1)]],
    Discriminator(_one_or_many), Kind("name or list of names")]


def _choice(what: str, literal: Any) -> Callable[[object], object]:
    """Check a Literal with an error that lists the values: "'fast' is not a balancing method; use one of ..."."""
    values = get_args(literal)

    def check(v: object) -> object:
        if not (isinstance(v, str) and v in values):
            fail(f"{show(v)} is not {what}; use one of {', '.join(values)}")
        return v
    return check


def _at_least(lo: int) -> Callable[[int], int]:
    def check(v: int) -> int:
        if v < lo:
            fail(f"{v} is too small; use {lo} or more")
        return v
    return check


def _at_most_size(hi: int) -> Callable[[int], int]:
    def check(v: int) -> int:
        if v > hi:
            fail(f'{format_size(v)} is too large; use "{format_size(hi)}" or less')
        return v
    return check


def _weight(v: int) -> int:
    if not 1 <= v <= 100:
        fail(f"{v} is out of range; a weight (Apache loadfactor) is 1-100")
    return v


Positive = Annotated[int, Strict(), AfterValidator(_at_least(1)), Kind("integer, 1 or more")]
NonNegative = Annotated[int, Strict(), AfterValidator(_at_least(0)), Kind("integer, 0 or more")]
Weight = Annotated[int, Strict(), AfterValidator(_weight), Kind("integer, 1-100")]


def _duration(v: object, *, positive: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        fail(f'{show(v)} is not a duration; write a duration string such as "5s"')
    if isinstance(v, (int, float)):
        fail(f'{show(v)} is a bare number; write a duration string such as "{show(abs(v))}s"')
    try:
        seconds = parse_duration(v)
    except ValueError as e:
        fail(str(e))
    if positive and seconds == 0:
        fail(f'{show(v)} is zero; write a positive duration such as "5s"')
    return seconds


def _size(v: object, *, positive: bool = False) -> int:
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        fail(f'{show(v)} is not a size; write a size string such as "64KiB"')
    if isinstance(v, int) and v >= 0:
        fail(f'{v} is a bare number; write a size string such as "{format_size(v)}"')
    if isinstance(v, (int, float)):
        fail(f'{show(v)} is a bare number; write a size string such as "64KiB"')
    try:
        n = parse_size(v)
    except ValueError as e:
        fail(str(e))
    if positive and n == 0:
        fail(f'{show(v)} is zero; write a positive size such as "8KiB"')
    return n


def _rate(v: object) -> int:
    """Bytes per second, written as a size per second: "500/s", "1KiB/s"; "0/s" turns the check off."""
    example = 'write a size per second such as "1KiB/s"'
    if not isinstance(v, str) or isinstance(v, bool):
        fail(f"{show(v)} is not a rate; {example}")
    size, slash, unit = v.strip().rpartition("/")
    if not slash or unit.strip() != "s":
        fail(f"{show(v)} is not a rate; {example}")
    try:
        return parse_size(size.strip())
    except ValueError as e:
        fail(f"{show(v)} is not a rate ({e}); {example}")


Duration = Annotated[float, BeforeValidator(_duration), Kind("duration")]
Rate = Annotated[int, BeforeValidator(_rate), Kind("size per second")]
Timeout = Annotated[float, BeforeValidator(lambda v: _duration(v, positive=True)), Kind("duration, > 0")]
Size = Annotated[int, BeforeValidator(_size), Kind("size")]
PositiveSize = Annotated[int, BeforeValidator(lambda v: _size(v, positive=True)), Kind("size, > 0")]


def _existing_file(v: object, info: ValidationInfo) -> Path:
    """A path relative to the configuration file's directory, resolved, that names a file."""
    if not isinstance(v, str) or not v.strip():
        fail(f'{show(v)} is not a file path; write a path such as "certs/front.pem"')
    base = Path((info.context or {}).get("base_dir") or os.getcwd())
    path = Path(os.path.normpath(base.absolute() / Path(v).expanduser()))
    if path.is_file():
        return path
    relative = "" if Path(v).expanduser().is_absolute() else \
        "; paths are relative to the configuration file's directory"
    if path.exists():
        fail(f"{show(v)} is not a regular file ({path}){relative}")
    fail(f"{show(v)} does not exist (looked for {path}){relative}")


ExistingFile = Annotated[Path, BeforeValidator(_existing_file), Kind("path")]


def _existing_dir(v: object, info: ValidationInfo) -> Path:
    """A directory path relative to the configuration file's directory, resolved, that exists."""
    if not isinstance(v, str) or not v.strip():
        fail(f'{show(v)} is not a directory path; write a path such as "/srv/media"')
    base = Path((info.context or {}).get("base_dir") or os.getcwd())
    path = Path(os.path.normpath(base.absolute() / Path(v).expanduser()))
    if path.is_dir():
        return path
    relative = "" if Path(v).expanduser().is_absolute() else \
        "; paths are relative to the configuration file's directory"
    if path.exists():
        fail(f"{show(v)} is not a directory ({path}){relative}")
    fail(f"{show(v)} does not exist (looked for {path}){relative}")


ExistingDir = Annotated[Path, BeforeValidator(_existing_dir), Kind("directory")]

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def _network(v: object) -> Network:
    if not isinstance(v, str):
        fail(f'{show(v)} is not an address; write an IP address or CIDR network in quotes, such as "10.0.0.0/8"')
    try:
        return ipaddress.ip_network(v.strip())
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(v.strip(), strict=False)
    except ValueError:
        fail(f'{show(v)} is not an IP address or CIDR network; write one such as "10.0.0.0/8", '
             f'"127.0.0.1" or "::1"')
    fail(f'{show(v)} has host bits set; write the network address "{loose}"')


TrustedNetworks = Annotated[tuple[Annotated[Network, BeforeValidator(_network)], ...],
                            Kind("list of addresses or CIDR networks")]


def _plain_text(what: str, example: str) -> Callable[[str], str]:
    """A non-empty string without whitespace or control characters (host names)."""
    def check(v: str) -> str:
        if not v or re.search(r"\s", v) or _CONTROL.search(v):
            fail(f"{show(v)} is not {what}; write one without spaces, such as {example}")
        return v
    return check


HostName = Annotated[str, AfterValidator(_plain_text("a host name", '"www.example.com"'))]


def _token(what: str, example: str) -> Callable[[str], str]:
    """An RFC 9110 token: a header or cookie name."""
    def check(v: str) -> str:
        if not _TOKEN.fullmatch(v):
            fail(f"{show(v)} is not {what}; use letters, digits and '-', such as {example}")
        return v
    return check


def _no_control(v: str) -> str:
    if _CONTROL.search(v):
        fail(f"{show(v)} contains a control character; write plain text")
    return v


# -- addresses --------------------------------------------------------------------------------------

def split_host_port(text: str) -> tuple[str, str | None]:
    """``"host:port"`` / ``"[v6]:port"`` / ``"host"`` -> (host without brackets, port text or None).

    Raises:
        ValueError: an unbracketed IPv6 address or an unclosed bracket.
    """
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError("has an unclosed '['")
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError(f"has {rest!r} after the IPv6 address")
        return host, rest[1:] if rest else None
    if text.count(":") > 1:
        raise ValueError("looks like an IPv6 address; write it in brackets")
    host, sep, port = text.partition(":")
    return host, port if sep else None


def _check_host(host: str, bracketed: bool) -> str | None:
    """Why `host` is unusable, or None."""
    if not host:
        return "has no host"
    if bracketed:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"has {host!r} in brackets, which is not an IPv6 address"
        return None
    if not _HOST.fullmatch(host):
        return f"has an invalid host {host!r}"
    return None


def _port_problem(text: str, port: str | None, low: int) -> str | None:
    if port is None or port == "":
        return None
    if not port.isdigit():
        return f"{show(text)} has port {port!r}; write a number {low}-65535"
    if int(port) > 65535:
        return f"{show(text)} has port {int(port)}; ports are 0-65535"
    if int(port) < low:
        return f"{show(text)} has port {int(port)}; a member needs a port 1-65535"
    return None


def _bind(v: str) -> str:
    example = '"127.0.0.1:8080", "0.0.0.0:8080" or "[::1]:8080"'
    s = v.strip()
    if s.isdigit():
        fail(f'{show(v)} has no host; write host:port, such as "0.0.0.0:{s}" (every address) or "127.0.0.1:{s}"')
    try:
        host, port = split_host_port(s)
    except ValueError as e:
        fail(f"{show(v)} {e}; write host:port, such as {example}")
    problem = _check_host(host, s.startswith("["))
    if problem:
        fail(f"{show(v)} {problem}; write host:port, such as {example}")
    if not port:
        fail(f"{show(v)} has no port; write host:port, such as {example}")
    problem = _port_problem(v, port, 0)
    if problem:
        fail(problem)
    return s


_URL_FORM = "a member URL is http(s)://host[:port][/path]"


def _member_url(v: str) -> str:
    s = v.strip()
    scheme, sep, _ = s.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        fail(f"{show(v)} is not an http(s) URL")
    parts = urlsplit(s)
    for problem, present in (("user info", "@" in parts.netloc), ("a query", bool(parts.query) or "?" in s),
                             ("a fragment", bool(parts.fragment) or "#" in s)):
        if present:
            fail(f"{show(v)} has {problem}; {_URL_FORM}")
    try:
        host, port = split_host_port(parts.netloc)
    except ValueError as e:
        fail(f"{show(v)} {e}; {_URL_FORM}")
    reason = _check_host(host, parts.netloc.startswith("["))
    if reason:
        fail(f"{show(v)} {reason}; {_URL_FORM}")
    bad_port = _port_problem(v, port, 1)
    if bad_port:
        fail(bad_port)
    return s


def _member_route(v: str) -> str:
    if not v or _ROUTE_ID_BAD.search(v):
        what = "is empty" if not v else "contains whitespace, ';', ',' or '='"
        fail(f"{show(v)} {what}; a route is a short name such as \"http-1\" (no whitespace, ';', ',' or '=')")
    return v


def _sticky_sep(v: str) -> str:
    if len(v) != 1 or not v.isprintable() or v in ";=,\\\" ":
        fail(f"{show(v)} is not a separator; use one printable character other than ; = , or space, such as \".\"")
    return v


def _sticky(v: str) -> str:
    names = v.split("|")
    if len(names) > 2 or not all(_TOKEN.fullmatch(n) and "|" not in n for n in names):
        fail(f'{show(v)} is not a stickysession name; write "NAME" or "COOKIE|PARAM", such as '
             f'"sessionid" or "JSESSIONID|jsessionid"')
    return v


_ROUTE_PATH_FORBIDDEN = ("?", "#", "%", "..", "//")


def normalize_route_path(v: str) -> str:
    """A route's public prefix as matched: starts with "/", no trailing "/" (except "/" itself).

    Raises:
        ValueError: with the operator-facing message.
    """
    if not v.startswith("/"):
        raise ValueError(f'{show(v)} does not start with "/"; write a path such as "/{v.lstrip("/") or "app"}"')
    for bad in _ROUTE_PATH_FORBIDDEN:
        if bad in v:
            raise ValueError(f"{show(v)} contains {bad!r}; a route path is a plain prefix such as "
                             f"\"/webapps\" (no '?', '#', '%', '..' or '//')")
    if re.search(r"\s", v) or _CONTROL.search(v):
        raise ValueError(f'{show(v)} contains whitespace; a route path is a plain prefix such as "/webapps"')
    return v.rstrip("/") or "/"


def _route_path(v: str) -> str:
    try:
        return normalize_route_path(v)
    except ValueError as e:
        fail(str(e))


# -- models -----------------------------------------------------------------------------------------

def _field(default: Any = PydanticUndefined, **kwargs: Any) -> Any:
    """`Field`, typed Any: defaults are written as in TOML ("30s") and validated into the field's type."""
    return Field(default, **kwargs)


def _required(description: str, missing: str) -> Any:
    """A required field; `missing` completes the message "missing; ..." when it is left out."""
    return Field(description=description, json_schema_extra={"missing": missing})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["text", "json"]
AccessLogFormat = Literal["combined", "json", "off"]
LbMethod = Literal["byrequests", "bybusyness", "bytraffic", "p2c", "hash"]
MemberStatus = Literal["enabled", "disabled", "drain", "hot-standby", "stopped"]
SameSite = Literal["Strict", "Lax", "None"]
EncodedSlashes = Literal["refuse", "keep"]


class _BindAddress:
    """`host` and `port` of a table's `bind` (a listener's, the admin listener's)."""

    if TYPE_CHECKING:  # the field itself is each table's own (a runtime annotation would become a field)
        bind: str

    @property
    def host(self) -> str:
        """The host part of `bind`, IPv6 without brackets."""
        return split_host_port(self.bind)[0]

    @property
    def port(self) -> int:
        """The port part of `bind`; 0 means the system picks one."""
        return int(split_host_port(self.bind)[1] or 0)


class Log(_Model):
    """``[log]``: ferryman's own event log (not the access log)."""

    level: Annotated[LogLevel, BeforeValidator(_choice("a log level", LogLevel))] = _field(
        "info", description="Least severe event written. Apache: LogLevel; nginx: error_log LEVEL.")
    path: Annotated[str, AfterValidator(_no_control)] = _field(
        "-", description='File to append to; "-" is standard error. Apache: ErrorLog; nginx: error_log PATH.')
    format: Annotated[LogFormat, BeforeValidator(_choice("a log format", LogFormat))] = _field(
        "text", description='"text": a line per event for people; "json": an object per line for log '
                            "collectors. Apache: ErrorLogFormat.")


class Limits(_Model):
    """``[limits]``: how large a request may be, on every listener (Apache ``LimitRequest*``); time and
    connection limits are per listener, a route may set its own body size."""

    max_request_line: PositiveSize = _field(
        "8KiB", description="Longest request line (method, target, version); longer is answered 414. "
                            "Apache: LimitRequestLine; nginx: large_client_header_buffers.")
    max_header_size: PositiveSize = _field(
        "32KiB", description="Largest request head, all header lines together; larger is answered 431. "
                             "Apache: LimitRequestFieldSize (per line); nginx: large_client_header_buffers.")
    max_headers: Positive = _field(
        100, description="Most header lines in one request; more is answered 431. Apache: LimitRequestFields.")
    max_body_size: Size = _field(
        "1GiB", description='Largest request body; larger is answered 413. "0" means unlimited. A route\'s '
                            "own max_body_size replaces it there. "
                            "Apache: LimitRequestBody; nginx: client_max_body_size.")


class TlsCert(_Model):
    """One certificate a listener can present; several make SNI."""

    cert: ExistingFile = _required(
        "PEM file with the certificate chain, leaf first. Apache: SSLCertificateFile; nginx: ssl_certificate.",
        'the PEM certificate chain, such as "certs/front.pem"')
    key: ExistingFile = _required(
        "PEM file with the private key. Apache: SSLCertificateKeyFile; nginx: ssl_certificate_key.",
        'the PEM private key, such as "certs/front-key.pem"')
    names: tuple[HostName, ...] | None = _field(
        None, description="Host names (SNI) this certificate answers for, instead of the names in its "
                          "subjectAltName; the first certificate is the default. Apache: ServerName/ServerAlias "
                          "of the <VirtualHost>; nginx: server_name.")


TlsCerts = Annotated[
    Union[Annotated[TlsCert, Tag(ONE)], Annotated[tuple[TlsCert, ...], Tag(MANY), MinLen(1)]],
    Discriminator(_one_or_many), Kind("table or list of tables")]


class AccessLog(_Model):
    """A listener's access log: one line per request."""

    format: Annotated[AccessLogFormat, BeforeValidator(_choice("an access log format", AccessLogFormat))] = _field(
        "combined", description='"combined" (Apache/nginx combined format), "json" (an object per line) or '
                                '"off". Apache: CustomLog ... combined; nginx: access_log ... combined.')
    path: Annotated[str, AfterValidator(_no_control)] = _field(
        "-", description='File to append to; "-" is standard output. Apache: CustomLog; nginx: access_log.')


TlsProfile = Literal["intermediate", "modern"]
VerifyClient = Literal["require", "optional"]
UserField = Literal["CN", "emailAddress", "SAN:email"]


def _redirect_https(v: object) -> str:
    """``redirect_https``: a port (the same host, that port) or an origin ``https://host[:port]``."""
    example = '8443 or "https://www.example.com"'
    if isinstance(v, int) and not isinstance(v, bool):
        if not 1 <= v <= 65535:
            fail(f"{v} is not a port; use 1-65535, or an origin such as {example}")
        return str(v)
    if not isinstance(v, str) or not v.startswith("https://"):
        fail(f"{show(v)} is not a port or an https:// origin; write one such as {example}")
    rest = v[len("https://"):]
    if not rest or any(c in rest for c in "/?#@\\") or _CONTROL.search(rest) or " " in rest:
        fail(f"{show(v)} must be an origin alone (no path, query or user); write one such as {example}")
    try:
        host, port = split_host_port(rest)
    except ValueError as e:
        fail(f"{show(v)} {e}; write an origin such as {example}")
    problem = _check_host(host, rest.startswith("[")) or (port and _port_problem(v, port, 1))
    if problem:
        fail(f"{show(v)} {problem}; write an origin such as {example}")
    return v


class Listener(_BindAddress, _Model):
    """``[[listener]]``: one listening socket (Apache ``Listen`` + ``<VirtualHost>``)."""

    name: ListenerName = _required(
        "Unique name that routes refer to. Apache: the <VirtualHost> it replaces; nginx: a server block.",
        'a unique name that routes refer to, such as "http"')
    bind: Annotated[str, AfterValidator(_bind), Kind("host:port")] = _required(
        'Address and port to listen on: "host:port" or "[v6]:port"; port 0 picks a free port. '
        "Apache: Listen; nginx: listen.",
        'the address to listen on, such as "127.0.0.1:8080"')
    tls: TlsCerts | None = _field(
        None, json_schema_extra={"missing": '{ cert = "...", key = "..." } or a list of them; leave tls out for '
                                            "plain HTTP"},
        description="Serve HTTPS with this certificate ({ cert, key }), or a list of them for SNI "
                          "(the first is the default). Omitted: plain HTTP. Apache: SSLEngine on + "
                          "SSLCertificateFile; nginx: listen ... ssl.")
    trusted_proxies: TrustedNetworks | None = _field(
        None, description="Overrides the top-level trusted_proxies for this listener. "
                          "Apache: RemoteIPTrustedProxy; nginx: set_real_ip_from.")
    server_name: HostName | None = _field(
        None, description="Value of X-Forwarded-Server; omitted: this machine's host name. "
                          "Apache: ServerName (mod_proxy sends it as X-Forwarded-Server).")
    forwarded: StrictBool = _field(
        False, description="Also send the RFC 7239 Forwarded header (X-Forwarded-* are always sent). "
                           "nginx: proxy_set_header Forwarded ...")
    access_log: AccessLog = _field(
        default_factory=AccessLog, description="Access log of this listener: { format, path }. "
                                                "Apache: CustomLog; nginx: access_log.")
    header_timeout: Timeout = _field(
        "10s", description="Time a client has to send a complete request head; then 408 and close. "
                           "Apache: RequestReadTimeout header=; nginx: client_header_timeout.")
    keepalive_timeout: Duration = _field(
        "5s", description="How long an idle client connection is kept open between requests; \"0s\" "
                          "closes after each response. Apache: KeepAliveTimeout; nginx: keepalive_timeout.")
    body_timeout: Timeout = _field(
        "60s", description="Longest idle time while reading a request body or writing a response to the "
                           "client. Apache: RequestReadTimeout body= / Timeout; nginx: client_body_timeout, "
                           "send_timeout.")
    body_min_rate: Rate = _field(
        "500/s", description="Slowest average a request body may arrive at, measured over body_rate_window "
                             "(the first window is a grace period; time ferryman itself stops reading does "
                             "not count). Slower is answered 408 and the connection closed, a backend "
                             'already receiving the body is cut off too. "0/s" turns it off. '
                             "Apache: RequestReadTimeout body=...,MinRate=.")
    body_rate_window: Timeout = _field(
        "10s", description="Window of body_min_rate: a body may stall this long, and must then catch up. "
                           "Apache: the first value of RequestReadTimeout body=.")
    max_connections: Positive = _field(
        10000, description="Most client connections open at once; a connection beyond it gets a 503 and is "
                           "closed. Apache: MaxRequestWorkers; nginx: worker_connections.")
    tls_profile: Annotated[TlsProfile, BeforeValidator(_choice("a TLS profile", TlsProfile))] = _field(
        "intermediate", description='Mozilla TLS profile: "intermediate" (TLS 1.2 and 1.3, AEAD ciphers) or '
                                    '"modern" (TLS 1.3 only); both offer only the X25519, P-256 and P-384 groups. '
                                    "Apache: SSLProtocol + SSLCipherSuite + SSLOpenSSLConfCmd Groups; nginx: "
                                    "ssl_protocols + ssl_ciphers + ssl_ecdh_curve.")
    tls_handshake_timeout: Timeout = _field(
        "10s", description="Time a client has to complete the TLS handshake; then the connection is closed. "
                           "Apache: RequestReadTimeout handshake=; HAProxy: timeout client.")
    tls_client_ca: ExistingFile | None = _field(
        None, description="Ask clients for a certificate issued by this PEM CA bundle (mutual TLS); the user "
                          "named by tls_user_field reaches the app as Remote-User. "
                          "Apache: SSLCACertificateFile; nginx: ssl_client_certificate.")
    tls_verify_client: Annotated[VerifyClient, BeforeValidator(_choice("a client check", VerifyClient))] = _field(
        "require", description='With tls_client_ca: "require" refuses a handshake without a valid client '
                               'certificate; "optional" lets clients without one in (no Remote-User). '
                               "Apache: SSLVerifyClient; nginx: ssl_verify_client.")
    tls_user_field: Annotated[UserField, BeforeValidator(_choice("a certificate field", UserField))] = _field(
        "CN", description='What of the client certificate becomes Remote-User: "CN" or "emailAddress" of the '
                          'subject, or "SAN:email" (the first email subjectAltName). Apache: SSLUserName.')
    redirect_https: Annotated[str, BeforeValidator(_redirect_https), Kind("port or https:// origin")] | None = _field(
        None, description='Answer every request with a redirect to HTTPS: a port (8443: the request\'s host, '
                          'server_name when set, on that port) or an origin ("https://www.example.com"); '
                          "301 for GET and HEAD, 308 otherwise, path and query kept. Plain HTTP listeners "
                          "only. nginx: return 301 https://$host$request_uri.")
    hsts_max_age: Duration | None = _field(
        None, description='Send Strict-Transport-Security with this max-age ("365d") on every answer of this '
                          "TLS listener. Apache/nginx: add_header Strict-Transport-Security.")
    hsts_include_subdomains: StrictBool = _field(
        False, description="Add includeSubDomains to Strict-Transport-Security (only with hsts_max_age).")
    max_connections_per_client: NonNegative = _field(
        256, description="Most connections open at once from one client address (an IPv6 client: its /64); "
                         "one beyond it gets a 503 and is closed, other addresses are unaffected. Peers in trusted_proxies are "
                         "not counted (they carry many clients); raise it for clients behind large NATs; 0: "
                         "no limit. nginx: limit_conn; HAProxy: src_conn_cur.")
    max_requests_per_connection: NonNegative = _field(
        1000, description="Requests served on one client connection; the answer to the last carries "
                          "Connection: close, and the client opens a new one. 0: no limit. "
                          "Apache: MaxKeepAliveRequests; nginx: keepalive_requests.")
    explain_header: StrictBool = _field(
        False, description="Add a ferryman-explain response header saying how the member was chosen "
                           "(pool, member, route, sticky, balanced, failover, hot standby). Apache: "
                           "BALANCER_WORKER_ROUTE/BALANCER_ROUTE_CHANGED environment variables.")

    @model_validator(mode="after")
    def _tls_keys_fit(self) -> Listener:
        if self.tls is None:
            for key in ("tls_client_ca", "hsts_max_age"):
                if getattr(self, key) is not None:
                    fail(f"{key} is set on a plain HTTP listener; add tls = {{ cert, key }} or remove {key}")
        elif self.redirect_https is not None:
            fail("redirect_https is set on a TLS listener; set it on the plain HTTP listener that sends clients "
                 "here")
        if self.hsts_include_subdomains and self.hsts_max_age is None:
            fail('hsts_include_subdomains needs hsts_max_age; add hsts_max_age = "365d"')
        return self

    @property
    def tls_certs(self) -> list[TlsCert]:
        """`tls` as a list, whichever way it was written: empty for plain HTTP."""
        if self.tls is None:
            return []
        return [self.tls] if isinstance(self.tls, TlsCert) else list(self.tls)


class BackendTls(_Model):
    """``[pool.NAME] tls``: how ferryman checks and authenticates to HTTPS members."""

    ca: ExistingFile | None = _field(
        None, description="PEM file of CA certificates that members' certificates must chain to; omitted: "
                          "the system CAs. Apache: SSLProxyCACertificateFile; nginx: proxy_ssl_trusted_certificate.")
    verify: StrictBool = _field(
        True, description="Check the member's certificate and host name. false is for testing only. "
                          "Apache: SSLProxyVerify + SSLProxyCheckPeerName; nginx: proxy_ssl_verify.")
    cert: ExistingFile | None = _field(
        None, description="PEM client certificate presented to members (mutual TLS). "
                          "Apache: SSLProxyMachineCertificateFile; nginx: proxy_ssl_certificate.")
    key: ExistingFile | None = _field(
        None, description="PEM private key of cert, when it is not in the cert file. "
                          "nginx: proxy_ssl_certificate_key.")
    server_name: HostName | None = _field(
        None, description="Name sent in SNI and checked against the member's certificate; omitted: the "
                          "member URL's host. nginx: proxy_ssl_name.")

    @model_validator(mode="after")
    def _key_needs_cert(self) -> BackendTls:
        if self.key is not None and self.cert is None:
            fail('key is set without cert; add cert = "client.pem" or remove key')
        return self


class RouteCookie(_Model):
    """``[pool.NAME] route_cookie``: ferryman sets ``NAME=.<route>`` so later requests stick."""

    name: Annotated[str, AfterValidator(_token("a cookie name", '"ROUTEID"'))] | None = _field(
        None, description="Cookie name; omitted: derived from the pool name, so pools never share one. "
                          "Apache: Header add Set-Cookie \"ROUTEID=.%{BALANCER_WORKER_ROUTE}e\" + stickysession=ROUTEID.")
    samesite: Annotated[SameSite, BeforeValidator(_choice("a SameSite value", SameSite))] = _field(
        "Lax", description="SameSite attribute of the cookie. Apache: the Set-Cookie attributes in that Header line.")
    httponly: StrictBool = _field(True, description="Set HttpOnly, hiding the cookie from scripts.")
    secure: StrictBool | None = _field(
        None, description="Set Secure; omitted: set on TLS listeners only.")
    max_age: Duration | None = _field(
        None, description="Max-Age of the cookie; omitted: a session cookie, gone when the browser closes.")


class Member(_Model):
    """One backend of a pool (Apache ``BalancerMember``)."""

    url: Annotated[str, AfterValidator(_member_url), Kind("URL")] = _required(
        "Where the member listens: http(s)://host[:port][/path]. A request for <route path><rest> goes to "
        "<url path><rest>. Apache: BalancerMember URL; nginx: server in upstream.",
        'the member\'s address, such as { url = "http://127.0.0.1:9001" }')
    route: Annotated[str, AfterValidator(_member_route)] | None = _field(
        None, description="Route name that sticky sessions carry after the first '.' of the session value; "
                          "unique in the pool. Apache: BalancerMember route=.")
    weight: Weight = _field(
        1, description="Share of traffic relative to the other members. Apache: BalancerMember loadfactor=; "
                       "nginx: server ... weight=.")
    status: Annotated[MemberStatus, BeforeValidator(_choice("a member status", MemberStatus))] = _field(
        "enabled", description="enabled; disabled (no traffic); drain (only requests sticky to it); "
                               "hot-standby (used only when no other member is usable); stopped. "
                               "Apache: BalancerMember status= (D, N, H, S); nginx: server ... down/backup.")
    lbset: NonNegative = _field(
        0, description="Failover tier: members of the lowest lbset with a usable member take all traffic. "
                       "Apache: BalancerMember lbset=.")
    ignore_errors: StrictBool = _field(
        False, description="Never put this member in error, whatever fails: it is always considered usable. "
                           "Apache: BalancerMember status=+I.")

    @property
    def _parts(self) -> SplitResult:
        return urlsplit(self.url)

    @property
    def scheme(self) -> str:
        """"http" or "https"."""
        return self._parts.scheme.lower()

    @property
    def host(self) -> str:
        """Host of the URL, lower case, IPv6 without brackets."""
        return self._parts.hostname or ""

    @property
    def port(self) -> int:
        """Port of the URL, or 80/443 by scheme."""
        return self._parts.port or (443 if self.scheme == "https" else 80)

    @property
    def path(self) -> str:
        """Path of the URL without trailing "/"; "" for the root."""
        return self._parts.path.rstrip("/")


def _status_range(v: str) -> str:
    for part in v.split(","):
        lo, _, hi = part.strip().partition("-")
        if not (lo.isdigit() and (not hi or hi.isdigit())) or not 100 <= int(lo) <= int(hi or lo) <= 599:
            fail(f"{show(v)} is not a status range; write codes and ranges such as \"200-399\" or \"200,302\"")
    return v


def _hash_on(v: str) -> str:
    kind, _, name = v.partition(":")
    if v == "client" or (kind in ("cookie", "header") and name and _TOKEN.fullmatch(name)):
        return v
    fail(f"{show(v)} is not a hash key; use \"client\", \"cookie:NAME\" or \"header:NAME\"")


def _status_code(v: int) -> int:
    if not 100 <= v <= 599:
        fail(f"{v} is not an HTTP status; use 100-599")
    return v


def _ratio(v: float) -> float:
    if not 0.0 <= v <= 1.0:
        fail(f"{v} is not a ratio; use a number from 0 to 1, such as 0.2")
    return v


class HealthCheck(_Model):
    """``[pool.NAME] health``: active HTTP checks of every member (Apache ``mod_proxy_hcheck``)."""

    path: Annotated[str, AfterValidator(_no_control)] = _field(
        "/", description="Path requested on each member (appended to nothing: give the full path). "
                         "Apache: ProxyHCExpr/hcuri=; HAProxy: option httpchk GET /path.")
    method: Literal["GET", "HEAD", "OPTIONS"] = _field(
        "GET", description="Method of the check request. Apache: hcmethod=; HAProxy: option httpchk METHOD.")
    interval: Timeout = _field(
        "5s", description="Time between checks of one member (spread with up to 10% jitter so members are "
                          "not probed at once). Apache: hcinterval=; HAProxy: inter.")
    timeout: Timeout = _field(
        "2s", description="A check not answered within this counts as failed. HAProxy: timeout check.")
    expect: Annotated[str, AfterValidator(_status_range)] = _field(
        "200-399", description="Statuses that count as healthy, e.g. \"200-399\" or \"200,204\". "
                               "HAProxy: http-check expect status.")
    body: Annotated[str, AfterValidator(_no_control)] | None = _field(
        None, description="Text the response body must contain (first 64 KiB). HAProxy: http-check expect string.")
    passes: Positive = _field(
        2, description="Consecutive successes that bring an ejected member back. Apache: hcpasses=; HAProxy: rise.")
    fails: Positive = _field(
        3, description="Consecutive failures that eject a member. Apache: hcfails=; HAProxy: fall.")
    host: Annotated[str, AfterValidator(_no_control)] | None = _field(
        None, description="Host header of the check; omitted: the member's host:port.")


class Passive(_Model):
    """``[pool.NAME] passive``: eject members that keep failing live requests (outlier detection)."""

    fails: NonNegative = _field(
        3, description="Consecutive failed requests (reset, timeout, malformed answer, failonstatus) that "
                       "eject a member; 0 disables. nginx: max_fails; Envoy: consecutive_5xx.")
    max_backoff: Timeout = _field(
        "5m", description="An ejected member rests `retry`, doubled each time it is ejected again without "
                          "recovering in between, up to this (never less than `retry`, which a connection "
                          "failure always rests in full). Envoy: max_ejection_time.")


class Pool(_Model):
    """``[pool.NAME]``: a balancer (Apache ``<Proxy balancer://NAME>``)."""

    lbmethod: Annotated[LbMethod, BeforeValidator(_choice("a balancing method", LbMethod))] = _field(
        "byrequests", description="byrequests (weighted request count), bybusyness (fewest in flight), "
                                  "bytraffic (weighted bytes), p2c (power of two choices), hash. "
                                  "Apache: ProxySet lbmethod=; nginx: least_conn, hash, random two.")
    sticky: Annotated[str, AfterValidator(_sticky)] | None = _field(
        None, description='Cookie or URL parameter whose value ends ".<route>": "NAME", or "COOKIE|PARAM" '
                          "when they differ. Django's sessionid carries no route: add route_cookie. "
                          "Apache: ProxySet stickysession=.")
    retry: Duration = _field(
        "60s", description="How long a failed member rests before it is tried again; when every member "
                           "rests, the next request tries them all at once. "
                           "Apache: BalancerMember retry=; nginx: server ... fail_timeout=.")
    tls: BackendTls | None = _field(
        None, description="TLS towards https:// members: { ca, verify, cert, key, server_name }; omitted: "
                          "verified against the system CAs. Apache: SSLProxy*; nginx: proxy_ssl_*.")
    members: tuple[Member, ...] = _field(
        min_length=1, description="The backends: { url, route, weight, status, lbset } each. "
                                  "Apache: BalancerMember; nginx: server in upstream.",
        json_schema_extra={"missing": 'the backends, such as members = [{ url = "http://127.0.0.1:9001" }]'})
    connect_timeout: Timeout = _field(
        "5s", description="Time to open a connection (and TLS handshake) to a member. "
                          "Apache: BalancerMember connectiontimeout=; nginx: proxy_connect_timeout.")
    response_timeout: Timeout = _field(
        "60s", description="Time from sending the request to receiving the response head. "
                           "Apache: ProxyTimeout / BalancerMember timeout=; nginx: proxy_read_timeout.")
    read_timeout: Timeout = _field(
        "60s", description="Longest idle time between reads of the response body. "
                           "Apache: ProxyTimeout; nginx: proxy_read_timeout.")
    keepalive: NonNegative = _field(
        128, description="Idle connections kept per member for reuse; 0 disables reuse. Size it to "
                         "the concurrent requests a member serves, or connections churn. "
                        "Apache: BalancerMember max= / disablereuse=; nginx: keepalive.")
    max_response_head: PositiveSize = _field(
        "64KiB", description="Largest response head (status line and header block) a member may send; larger "
                             "is answered 502 and the connection closed. nginx: proxy_buffer_size "
                             '("upstream sent too big header").')
    max_interim_responses: Positive = _field(
        32, description="Most interim (1xx) responses a member may send before its final one; one more is "
                        "answered 502, the connection closed and the member counted as failing. Real members "
                        "send a few (100 Continue, 103 Early Hints, a 102 now and then during a long request); "
                        "the bound ends an endless stream before response_timeout. Apache: a fixed 10 "
                        "(AP_MAX_INTERIM_RESPONSES).")
    keepalive_timeout: Duration = _field(
        "60s", description="An idle pooled connection is closed after this. "
                           "Apache: BalancerMember ttl=; nginx: keepalive_timeout in upstream.")
    hash_on: Annotated[str, AfterValidator(_hash_on)] | None = _field(
        None, description='What lbmethod = "hash" hashes: "client" (address), "cookie:NAME" or "header:NAME"; '
                          "needs lbmethod = \"hash\"; a request without it is balanced by request count. "
                          "nginx: hash ... consistent; HAProxy: balance hdr()/source.")
    nofailover: StrictBool = _field(
        False, description="A sticky request whose member is unusable gets 503 instead of another member. "
                           "Apache: ProxySet nofailover=On.")
    scolonpathdelim: StrictBool = _field(
        False, description="A ';' also ends the sticky value in a URL (/x;sessionid=a.r;x=1). "
                           "Apache: ProxySet scolonpathdelim=On.")
    stickysessionsep: Annotated[str, AfterValidator(_sticky_sep)] = _field(
        ".", description="The character that separates the route in a sticky value. "
                         "Apache: ProxySet stickysessionsep=.")
    max_tries: NonNegative = _field(
        0, description="Members tried for one request; 0: each usable member once. "
                       "Apache: ProxySet maxattempts=; nginx: proxy_next_upstream_tries.")
    retry_budget: Annotated[float, AfterValidator(_ratio)] = _field(
        0.2, description="Retries a pool may add, as a share of its requests over the last 10 s "
                         "(at least 3 per second are always allowed), so retries cannot multiply an "
                         "outage. Envoy: retry_budget.budget_percent.")
    failonstatus: tuple[Annotated[int, Strict(), AfterValidator(_status_code)], ...] = _field(
        (), description="Backend statuses that put the member in error (the response is still passed on). "
                        "Apache: ProxySet failonstatus=.")
    failontimeout: StrictBool = _field(
        False, description="A response timeout puts the member in error. Apache: ProxySet failontimeout=On.")
    health: HealthCheck | None = _field(
        None, description="Active HTTP health checks: { path, method, interval, timeout, expect, body, passes, "
                          "fails, host }; omitted: none. Apache: mod_proxy_hcheck; HAProxy: check.")
    passive: Passive = _field(
        default_factory=Passive, description="Ejection of members that keep failing live requests: "
                                              "{ fails, max_backoff }. nginx: max_fails/fail_timeout.")
    slow_start: Duration = _field(
        "0s", description="A member that comes back ramps its share up over this time instead of taking a "
                          "full share at once; 0: at once. nginx: slow_start; HAProxy: slowstart.")
    route_cookie: RouteCookie | None = _field(
        None, description="Have ferryman set a route cookie on the first response and honour it afterwards: "
                          "{ name, samesite, httponly, secure, max_age }. Apache: Header add Set-Cookie "
                          "\"ROUTEID=.%{BALANCER_WORKER_ROUTE}e\".")


class Auth(_Model):
    """``[[route]] auth``: who may use a route; the user reaches the app as ``Remote-User``."""

    htpasswd: ExistingFile = _required(
        "htpasswd file (bcrypt, {SHA}, APR1 MD5 hashes). Apache: AuthUserFile + AuthType Basic + "
        "Require valid-user; nginx: auth_basic_user_file.",
        'the htpasswd file, such as "users.htpasswd"')
    realm: Annotated[str, AfterValidator(_no_control)] = _field(
        "ferryman", description="Realm shown by the browser's login prompt. Apache: AuthName; nginx: auth_basic.")
    trusted_header: Annotated[str, AfterValidator(_token("a header name", '"X-Auth-User"'))] | None = _field(
        None, description="Header naming the user, honoured only from trusted proxies (single sign-on in "
                          "front of ferryman); ferryman then sends it as Remote-User. "
                          "Apache: RequestHeader + mod_remoteip; nginx: auth_request_set.")
    max_failures: Annotated[int, Strict(), AfterValidator(_at_least(0)), Kind("integer, 0 or more")] = _field(
        10, description="Failed logins from one client address within failure_window that lock it out; 0: "
                        "never. fail2ban: maxretry.")
    failure_window: Timeout = _field(
        "1m", description="Time over which failed logins are counted. fail2ban: findtime.")
    lockout: Timeout = _field(
        "1m", description="How long a locked-out address is answered 429 (with Retry-After) without any "
                          "password being checked. fail2ban: bantime.")
    cache_ttl: Duration = _field(
        "5m", description="How long a verified answer (right or wrong) is remembered, so a slow hash such as "
                          "bcrypt runs once per credential and not per request; \"0s\": never remembered. "
                          "Apache: AuthnCacheTimeout.")


class Admin(_BindAddress, _Model):
    """``[admin]``: the admin listener (GET /metrics for Prometheus, GET /status as JSON). Off unless the
    table is present; ``[admin]`` alone listens on 127.0.0.1:9900."""

    bind: Annotated[str, AfterValidator(_bind), Kind("host:port")] = _field(
        "127.0.0.1:9900", description="Address and port of the admin listener. A loopback address (127.0.0.1, "
                                      "[::1]) needs no password; any other needs htpasswd, and clients that are "
                                      "not on loopback must then log in. Apache: the Listen of a "
                                      "<Location /server-status>; nginx: the listen of a stub_status server.")
    htpasswd: ExistingFile | None = _field(
        None, description="htpasswd file of the users who may read the admin listener from another machine "
                          "(Basic authentication; loopback clients need none). Required when bind is not a "
                          "loopback address. Apache: AuthUserFile in that <Location>.")


def _key_source(v: str, what: str, example: str) -> str:
    if not v or _CONTROL.search(v):
        fail(f"{show(v)} is not {what}; write one such as {example}")
    return v


class SigningKey(_Model):
    """``[signing] keys``: one shared secret, read from a file, an environment variable or the TOML."""

    file: Annotated[str, AfterValidator(lambda v: _key_source(v, "a file path", '"signing.key"')),
                    Kind("path")] | None = _field(
        None, description="File holding the secret (surrounding whitespace ignored); relative to the "
                          "configuration file's directory. Keep it readable by ferryman only.")
    env: Annotated[str, AfterValidator(lambda v: _key_source(v, "an environment variable name",
                                                             '"FERRYMAN_SIGNING_KEY"'))] | None = _field(
        None, description="Name of the environment variable holding the secret.")
    value: Annotated[str, AfterValidator(_no_control)] | None = _field(
        None, description="The secret itself, in the TOML (prefer file or env: the file is often readable "
                          "by more people than the secret should be).")

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> SigningKey:
        secret, problem = _read_secret(self, Path((info.context or {}).get("base_dir") or os.getcwd()))
        if secret is None:
            fail(problem)
        object.__setattr__(self, "_secret", secret)
        return self

    @property
    def secret(self) -> bytes:
        """The secret bytes, read when the configuration was loaded."""
        return self.__dict__["_secret"]  # type: ignore[no-any-return]


def _read_secret(key: SigningKey, base: Path) -> tuple[bytes | None, str]:
    """(secret, "") or (None, what is wrong)."""
    given = [k for k in ("file", "env", "value") if getattr(key, k) is not None]
    if len(given) != 1:
        return None, (f"sets {' and '.join(given)}; give exactly one of file, env or value"
                      if given else "is empty; give one of file, env or value")
    if key.file is not None:
        path = Path(os.path.normpath(base.absolute() / Path(key.file).expanduser()))
        try:
            secret = path.read_bytes().strip()
        except OSError as e:
            return None, f"file {key.file!r} cannot be read ({e.strerror or e}; looked for {path})"
        where = f"file {key.file!r}"
    elif key.env is not None:
        text = os.environ.get(key.env)
        if text is None:
            return None, f"environment variable {key.env} is not set; export it before starting ferryman"
        secret = text.strip().encode("utf-8")
        where = f"environment variable {key.env}"
    else:
        secret = (key.value or "").encode("utf-8")
        where = "value"
    if len(secret) < 16:
        return None, (f"{where} holds {len(secret)} bytes; a signing key needs 16 or more (32 random bytes "
                      "are best: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return secret, ""


def _at_most_two_keys(keys: tuple[SigningKey, ...]) -> tuple[SigningKey, ...]:
    if len(keys) > 2:
        fail(f"has {len(keys)} keys; give one, or two while rotating (the signing key first)")
    return keys


class Signing(_Model):
    """``[signing]``: ferryman signs what it vouches for in a ``Ferryman-Signature`` header."""

    keys: Annotated[tuple[SigningKey, ...], AfterValidator(_at_most_two_keys)] = _field(
        min_length=1,
        description="Shared secrets, { file = \"...\" }, { env = \"NAME\" } or { value = \"...\" } each: "
                    "ferryman signs the client address, host, scheme, port, prefix, method and user of every "
                    "request with the first (HMAC-SHA256, with a timestamp and a nonce); the apps "
                    "(ferryman.wsgi, ferryman.asgi, ferryman.django) verify with any of theirs. Rotation: add the new "
                    "key to every app, then put it first here (the old one may stay second), then remove "
                    "the old one from the apps. No Apache equivalent (mod_auth_tkt comes closest).",
        json_schema_extra={"missing": 'a list such as keys = [{ env = "FERRYMAN_SIGNING_KEY" }]'})

    @property
    def secrets(self) -> tuple[bytes, ...]:
        """The keys' secret bytes, signing key first (read once, when the configuration is loaded)."""
        return tuple(k.secret for k in self.keys)


class Route(_Model):
    """``[[route]]``: public prefix on a listener -> pool (Apache ``ProxyPass`` + ``ProxyPassReverse``)."""

    listener: ListenerNames | None = _field(
        None, json_schema_extra={"missing": "a listener name or a list of them; leave listener out for every "
                                            "listener"},
        description="Listener name, or a list of names; omitted: every listener. "
                          "Apache: the <VirtualHost> holding the ProxyPass.")
    path: Annotated[str, AfterValidator(_route_path), Kind("path prefix")] = _required(
        'Public path prefix, matched on a segment boundary (/webapps matches /webapps/x, not /webappsX); '
        "a trailing / is ignored. Apache: <Location /webapps> / ProxyPass /webapps; nginx: location /webapps/.",
        'the public path prefix, such as "/webapps"')
    pool: PoolName | None = _field(
        None, description="Name of the pool serving it; a route has pool or static, not both. "
                          "Apache: ProxyPass /path balancer://NAME; nginx: proxy_pass http://NAME.")
    static: ExistingDir | None = _field(
        None, description="Serve the files of this directory instead of a pool (GET and HEAD, ETag and "
                          "Last-Modified, conditional and single-range requests); <path><rest> is the file "
                          "<static>/<rest>. Paths with dot segments, encoded slashes or dots, backslashes, "
                          "NUL or hidden names (starting with '.') are refused, as are symbolic links "
                          "leading out of the directory (404). A directory is 404 (no listings, no index file); a "
                          "request body is read and discarded. Django: MEDIA_ROOT served by the front end. "
                          "Apache: Alias /path /dir + <Directory>; nginx: location /path { alias /dir; }.")
    static_max_age: Timeout | None = _field(
        None, description="With static: send Cache-Control: max-age=<seconds> with files, so browsers reuse "
                          "them that long without asking; omitted: no Cache-Control (browsers revalidate with "
                          "If-None-Match / If-Modified-Since and get 304). Apache: ExpiresDefault; "
                          "nginx: expires.")
    preserve_host: StrictBool = _field(
        False, description="Send the client's Host to members instead of the member's host:port. "
                           "Apache: ProxyPreserveHost; nginx: proxy_set_header Host $host.")
    reverse: StrictBool = _field(
        True, description="Rewrite Location, Content-Location and URI headers that point at a member to the "
                          "public URL. Apache: ProxyPassReverse; nginx: proxy_redirect.")
    cookie_path: StrictBool = _field(
        True, description="Rewrite Set-Cookie Path from the member's path to the public prefix. "
                          "Apache: ProxyPassReverseCookiePath; nginx: proxy_cookie_path.")
    cookie_domain: dict[str, str] = _field(
        default_factory=dict, json_schema_extra={"missing": 'a table such as { "app1.internal" = "www.example.com" }'},
        description='Set-Cookie Domain rewrites, { "internal.domain" = "public.domain" }. '
                                          "Apache: ProxyPassReverseCookieDomain; nginx: proxy_cookie_domain.")
    encoded_slashes: Annotated[EncodedSlashes, BeforeValidator(_choice("an encoded_slashes mode", EncodedSlashes))] = _field(
        "refuse", description='"refuse": a request path with %2F (or %5C, %00) is refused, never forwarded; '
                              '"keep": %2F is forwarded encoded and never treated as a segment boundary. '
                              "Apache: AllowEncodedSlashes NoDecode + ProxyPass nocanon.")
    auth: Auth | None = _field(
        None, description="Basic authentication: { htpasswd, realm, trusted_header }; the user reaches the app "
                          "as Remote-User. Apache: AuthType Basic in the <Location>; nginx: auth_basic.")
    websocket: StrictBool = _field(
        True, description="Tunnel protocol upgrades (WebSocket): a request with Connection: upgrade and Upgrade "
                          "is forwarded with them, and a 101 answer turns the connection into a byte tunnel. "
                          "false: the request is forwarded as plain HTTP without Upgrade, as Apache and nginx do when "
                          "upgrades are not configured. Apache: ProxyPass upgrade=websocket "
                          "(mod_proxy_wstunnel); nginx: proxy_set_header Upgrade/Connection.")
    tunnel_idle_timeout: Timeout = _field(
        "60s", description="A tunnel (WebSocket) with no byte in either direction for this long is closed. "
                           "nginx: proxy_read_timeout; Apache: ProxyWebsocketIdleTimeout.")
    max_body_size: Size | None = _field(
        None, description='Largest request body on this route, instead of [limits] max_body_size (larger or '
                          'smaller); larger is answered 413. "0" means unlimited. Apache: LimitRequestBody '
                          "in the <Location>; nginx: client_max_body_size in the location.")
    request_buffer: Annotated[int, BeforeValidator(_size), AfterValidator(_at_most_size(16 << 20)),
                              Kind("size")] = _field(
        "64KiB", description="A request body up to this size is read whole before a member is chosen, so a "
                             "slow client holds ferryman (a few KiB of memory), not an app worker; a larger body "
                             'is forwarded once this much has arrived, then streamed. "0" forwards at once. At '
                             "most 16MiB. nginx: proxy_request_buffering + client_body_buffer_size.")

    @model_validator(mode="after")
    def _pool_or_static(self) -> Route:
        if self.pool is not None and self.static is not None:
            fail('has both pool and static; a route is served by a pool or by a directory: remove one')
        if self.pool is None and self.static is None:
            fail('has neither pool nor static; add pool = "NAME" (such as "django-http") to proxy it, or '
                 'static = "DIR" (such as "/srv/media") to serve files')
        if self.static is None and self.static_max_age is not None:
            fail('has static_max_age without static; it applies to files a static route serves: remove it '
                 'or add static = "DIR"')
        return self

    @property
    def listeners(self) -> tuple[str, ...] | None:
        """Names of the listeners this route is on; None means every listener."""
        if self.listener is None:
            return None
        return (self.listener,) if isinstance(self.listener, str) else tuple(self.listener)


class Config(_Model):
    """The whole ``ferryman.toml``."""

    #: Where it was read (file name and line locator), set by the loader, for `compile_plan`'s messages.
    _source: Any = PrivateAttr(None)

    trusted_proxies: TrustedNetworks = _field(
        (), description="Peers whose X-Forwarded-*/Forwarded headers are believed: IP addresses and CIDR "
                        "networks. Empty: nobody. Apache: RemoteIPTrustedProxy; nginx: set_real_ip_from.")
    signing: Signing | None = _field(
        None, description="Sign forwarded facts for the apps: { keys = [...] }; omitted: no "
                          "Ferryman-Signature header (apps then rely on trusted_proxies alone).")
    shutdown_timeout: Duration = _field(
        "30s", description="On SIGTERM/SIGINT, how long in-flight requests may finish before ferryman exits. "
                           "Apache: GracefulShutdownTimeout; nginx: worker_shutdown_timeout.")
    workers: Positive | None = _field(
        None, description="Worker processes serving the listeners; omitted: one per CPU ferryman may run on. "
                          "With more than one, a master process binds the listeners, runs the health checks "
                          "and keeps the workers running; 1: a single process, no master. Apache: "
                          "StartServers/ServerLimit; nginx: worker_processes.")
    pid_file: Annotated[str, AfterValidator(_no_control)] | None = _field(
        None, description="Where ferryman run writes its process id (removed at exit), so that ferryman reload "
                          "-c FILE finds it; relative to the configuration file's directory. Default: a file "
                          "named after the configuration's absolute path, in $XDG_RUNTIME_DIR/ferryman/ or else "
                          "in <temp dir>/ferryman-<uid>/. Apache: PidFile; nginx: pid.")
    log: Log = _field(default_factory=Log, description="ferryman's own event log. Apache: ErrorLog, LogLevel.")
    limits: Limits = _field(default_factory=Limits, description="Request size limits on every listener. "
                                                               "Apache: LimitRequest*.")
    listener: tuple[Listener, ...] = _field(
        min_length=1, description="Sockets to listen on, one [[listener]] each. Apache: Listen + <VirtualHost>; "
                                  "nginx: server { listen }.",
        json_schema_extra={"missing": 'at least one [[listener]] with name and bind, such as name = "http", '
                                      'bind = "127.0.0.1:8080"'})
    pool: dict[PoolName, Pool] = _field(
        min_length=1, description="Balancer pools by name, [pool.NAME] each. Apache: <Proxy balancer://NAME>; "
                                  "nginx: upstream NAME.",
        json_schema_extra={"missing": "at least one [pool.NAME] table with members"})
    admin: Admin | None = _field(
        None, description="The admin listener: { bind, htpasswd }; omitted: none. Apache: mod_status; "
                          "nginx: stub_status.")
    route: tuple[Route, ...] = _field(
        min_length=1, description="Public path prefixes and the pools serving them, [[route]] each. "
                                  "Apache: ProxyPass/ProxyPassReverse; nginx: location + proxy_pass.",
        json_schema_extra={"missing": 'at least one [[route]] with path and pool, such as path = "/", '
                                      'pool = "app"'})

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> Config:
        if (info.context or {}).get("defer_cross_checks"):
            return self
        issues = cross_issues(self.model_dump())
        if issues:
            fail("\n".join(f"{format_key(loc)}: {message}" for loc, message in issues))
        return self


# -- cross-table checks -----------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def format_key(loc: Sequence[str | int]) -> str:
    """``("pool", "a.b", "members", 1, "url")`` -> ``pool."a.b".members[1].url`` (TOML quoting)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = part if _BARE_KEY.fullmatch(part) else '"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"'
            out += f".{key}" if out else key
    return out


def _items(value: object) -> list[tuple[int, Mapping[str, Any]]]:
    """(index, table) for each table in a TOML array, skipping anything else (reported elsewhere)."""
    if not isinstance(value, (list, tuple)):
        return []
    return [(i, v) for i, v in enumerate(value) if isinstance(v, Mapping)]


def _suggest(name: str, known: Sequence[str], what: str) -> str:
    close = get_close_matches(name, known, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    if known:
        return f"defined {what}: {', '.join(known)}"
    return f"no {what} are defined"


def cross_issues(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Problems between tables, as (location, message), on plain TOML data of any validity.

    Unique listener names and binds, unique member routes in a pool, routes naming existing pools and
    listeners, and unique (listener, path) pairs. Values of the wrong type are skipped: the per-field
    validation reports them.
    """
    issues: list[tuple[Loc, str]] = []
    listeners: dict[str, int] = {}
    binds: dict[str, int] = {}
    for i, lst in _items(data.get("listener")):
        name, bind = lst.get("name"), lst.get("bind")
        if isinstance(name, str):
            if name in listeners:
                issues.append((("listener", i, "name"), f"{show(name)} is already the name of "
                               f"listener[{listeners[name]}]; listener names must be unique"))
            else:
                listeners[name] = i
        if isinstance(bind, str) and not bind.strip().endswith(":0"):
            key = bind.strip().lower()
            if key in binds:
                issues.append((("listener", i, "bind"), f"{show(bind)} is already the address of "
                               f"listener[{binds[key]}]; each listener needs its own address"))
            else:
                binds[key] = i
    pools = data.get("pool")
    pools = pools if isinstance(pools, Mapping) else None
    for pname, pool in (pools or {}).items():
        if not isinstance(pool, Mapping):
            continue
        seen: dict[str, int] = {}
        for i, member in _items(pool.get("members")):
            route = member.get("route")
            if isinstance(route, str):
                if route in seen:
                    issues.append((("pool", pname, "members", i, "route"), f"{show(route)} already used by "
                                   f"members[{seen[route]}]; routes must be unique in a pool"))
                else:
                    seen[route] = i
    routed: dict[tuple[str, str], int] = {}
    for i, route in _items(data.get("route")):
        pool = route.get("pool")
        if pools is not None and isinstance(pool, str) and pool not in pools:
            issues.append((("route", i, "pool"),
                           f"no pool named {pool!r}; {_suggest(pool, list(pools), 'pools')}"))
        names = route.get("listener")
        on: list[str]
        if names is None:
            on = list(listeners)
        elif isinstance(names, str):
            on = [names]
            if names not in listeners:
                issues.append((("route", i, "listener"),
                               f"no listener named {names!r}; {_suggest(names, list(listeners), 'listeners')}"))
        elif isinstance(names, (list, tuple)):
            on = [n for n in names if isinstance(n, str)]
            for j, n in enumerate(names):
                if isinstance(n, str) and n not in listeners:
                    issues.append((("route", i, "listener", j),
                                   f"no listener named {n!r}; {_suggest(n, list(listeners), 'listeners')}"))
        else:
            on = []
        written = route.get("path")
        if not isinstance(written, str):
            continue
        try:
            path = normalize_route_path(written)
        except ValueError:
            continue
        for name in dict.fromkeys(on):
            if (name, path) in routed:
                issues.append((("route", i, "path"), f"{show(written)} on listener {name!r} is already routed by "
                               f"route[{routed[name, path]}]; each (listener, path) must be unique"))
                break
            routed[name, path] = i
    return issues
