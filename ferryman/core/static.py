"""Serving files from a directory (a ``static`` route): which file, whether it changed, which bytes.

The pure half of a static route: the server does the file system calls (``open`` relative to the
route's directory, ``fstat``, ``realpath``) and hands the results here.

- `resolve_path` turns the request path below the route prefix into path segments, refusing every way
  of naming something outside the directory or something a file system reads differently than a URL:
  ``.`` and ``..`` segments (also ``%2e``/``%2E``), an encoded ``/`` (``%2F``), a backslash (raw or
  ``%5C``), NUL and other control characters, broken percent-encoding and non-UTF-8 names. Hidden names
  (a segment starting with ``.``) are refused too unless asked for: they are configuration, not content.
- `validators` makes the ``ETag`` and ``Last-Modified`` of a file from its size and modification time
  (the same file gives the same validators on every worker and after a restart).
- `decide` evaluates the conditional headers (RFC 9110 section 13.2.2 order: ``If-Match``,
  ``If-Unmodified-Since``, ``If-None-Match``, ``If-Modified-Since``, then ``If-Range``) and ``Range``
  (section 14), and says: 200 whole file, 206 one range, 304 not modified, 412 precondition failed,
  416 range not satisfiable, or 405 for a method other than GET and HEAD; with the headers to send.
- `content_type` names the media type from the file name with Python's built-in table (never the
  machine's ``/etc/mime.types``, so every machine answers alike).

Several ranges in one request are answered with the whole file (RFC 9110 allows ignoring ``Range``):
a multipart answer buys little for static files and many small ranges are a known amplification trick.
"""

from __future__ import annotations

import datetime
import mimetypes
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Decision", "Refused", "Resolved", "Validators", "content_type", "contained", "decide",
           "format_http_date", "parse_http_date", "parse_range", "resolve_path", "validators"]

# -- paths ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resolved:
    """A safe path below the route's directory: decoded segments, and whether it ended with "/"."""

    segments: tuple[str, ...]
    directory: bool

    @property
    def relative(self) -> str:
        """The segments joined with "/" ("" for the directory itself)."""
        return "/".join(self.segments)


@dataclass(frozen=True, slots=True)
class Refused:
    """The path was refused (answer 404, never touching the file system); `reason` is for the log."""

    reason: str


_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _decode(segment: str) -> str | Refused:
    if _ESCAPE.search(segment):
        return Refused(f"broken percent-encoding in {segment!r}")
    try:
        raw = segment.encode("ascii")
    except UnicodeEncodeError:
        return Refused("a raw non-ASCII character in the path")
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 0x25:  # "%"
            out.append(int(raw[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        return Refused(f"{segment!r} is not UTF-8 once decoded")


def resolve_path(rest: str, *, allow_hidden: bool = False) -> Resolved | Refused:
    """The file named by `rest`, the request path below the route prefix ("" or "/..." without query).

    Empty segments (``a//b``) are merged. Everything in this module's documentation that could leave
    the directory or be read differently by the file system is `Refused`.
    """
    if rest and not rest.startswith("/"):
        return Refused(f"{rest!r} does not start with '/'")
    if "\\" in rest:
        return Refused("a backslash in the path")
    segments: list[str] = []
    for raw in rest.split("/"):
        if raw == "":
            continue
        name = _decode(raw)
        if isinstance(name, Refused):
            return name
        if name in (".", ".."):
            return Refused(f"a dot segment {raw!r}")
        if "/" in name or "\\" in name:
            return Refused(f"an encoded slash or backslash in {raw!r}")
        if _CONTROL.search(name):
            return Refused(f"a control character in {raw!r}")
        if name.startswith(".") and not allow_hidden:
            return Refused(f"a hidden name {raw!r}")
        segments.append(name)
    return Resolved(tuple(segments), directory=rest == "" or rest.endswith("/"))


def contained(root: str, target: str) -> bool:
    """Whether absolute path `target` is `root` or below it (both already resolved with realpath), so a
    symbolic link inside the directory cannot lead out of it."""
    root = posixpath.normpath(root)
    target = posixpath.normpath(target)
    return target == root or target.startswith(root.rstrip("/") + "/")


# -- validators and dates ---------------------------------------------------------------------------

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_LONG_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTH = "(" + "|".join(_MONTHS) + ")"
_TIME = r"(\d\d):(\d\d):(\d\d)"
_IMF = re.compile(rf"({'|'.join(_DAYS)}), (\d\d) {_MONTH} (\d{{4}}) {_TIME} GMT")
_RFC850 = re.compile(rf"({'|'.join(_LONG_DAYS)}), (\d\d)-{_MONTH}-(\d\d) {_TIME} GMT")
_ASCTIME = re.compile(rf"({'|'.join(_DAYS)}) {_MONTH} ( \d|\d\d) {_TIME} (\d{{4}})")
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def format_http_date(seconds: int) -> str:
    """IMF-fixdate (RFC 9110 section 5.6.7) of a Unix time: ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    d = _EPOCH + datetime.timedelta(seconds=seconds)
    return (f"{_DAYS[d.weekday()]}, {d.day:02d} {_MONTHS[d.month - 1]} {d.year:04d} "
            f"{d.hour:02d}:{d.minute:02d}:{d.second:02d} GMT")


def _seconds(year: int, month: str, day: int, hh: str, mm: str, ss: str) -> int | None:
    try:
        d = datetime.datetime(year, _MONTHS.index(month) + 1, day, int(hh), int(mm), int(ss),
                              tzinfo=datetime.timezone.utc)
    except ValueError:
        return None
    return int((d - _EPOCH).total_seconds())


def parse_http_date(text: str, *, now_year: int = 2000) -> int | None:
    """Unix time of an HTTP date in any of the three forms a recipient must accept (IMF-fixdate,
    RFC 850, asctime), or None. A two-digit RFC 850 year is the one within 50 years of `now_year`
    (RFC 9110 section 5.6.7); the caller passes the current year."""
    text = text.strip()
    if m := _IMF.fullmatch(text):
        return _seconds(int(m[4]), m[3], int(m[2]), m[5], m[6], m[7])
    if m := _RFC850.fullmatch(text):
        year = now_year - now_year % 100 + int(m[4])
        if year > now_year + 50:
            year -= 100
        return _seconds(year, m[3], int(m[2]), m[5], m[6], m[7])
    if m := _ASCTIME.fullmatch(text):
        return _seconds(int(m[7]), m[2], int(m[3]), m[4], m[5], m[6])
    return None


@dataclass(frozen=True, slots=True)
class Validators:
    """What identifies one version of a file."""

    etag: str            # strong: '"<mtime ns hex>-<size hex>"'
    last_modified: str   # IMF-fixdate
    mtime: int           # whole seconds, what Last-Modified says


def validators(size: int, mtime_ns: int) -> Validators:
    """ETag and Last-Modified from a file's size and modification time (``st_size``, ``st_mtime_ns``)."""
    seconds = mtime_ns // 1_000_000_000
    return Validators(f'"{mtime_ns:x}-{size:x}"', format_http_date(seconds), seconds)


# -- conditional requests and ranges ----------------------------------------------------------------

_ETAG = re.compile(r'\s*(W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')


def _etags(header: str) -> list[tuple[bool, str]] | None:
    """(weak, opaque tag) of each entity-tag in a list, or None when the list is malformed."""
    out: list[tuple[bool, str]] = []
    pos = 0
    header = header.strip()
    while pos < len(header):
        m = _ETAG.match(header, pos)
        if m is None or m.end() == pos:
            return None
        out.append((m[1] is not None, m[2]))
        pos = m.end()
        while pos < len(header) and header[pos] in " ,":
            pos += 1
    return out


def _matches(header: str, etag: str, *, strong: bool) -> bool:
    """Whether an If-Match / If-None-Match value matches `etag` ("*" matches anything)."""
    if header.strip() == "*":
        return True
    tags = _etags(header)
    if not tags:
        return False
    if strong:  # If-Match: strong comparison, a weak tag never matches
        return any(not weak and tag == etag for weak, tag in tags)
    return any(tag == etag for _, tag in tags)  # If-None-Match: weak comparison


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes `first`..`last` inclusive."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1


_RANGE_SPEC = re.compile(r"\s*(\d*)\s*-\s*(\d*)\s*")


def parse_range(header: str, size: int) -> list[ByteRange] | None:
    """The satisfiable ranges of a ``Range: bytes=...`` header for a file of `size` bytes, clipped to it.

    None: not a bytes range or malformed (the header is ignored, RFC 9110 section 14.2). An empty list:
    well formed but nothing satisfiable (answer 416).
    """
    unit, eq, specs = header.partition("=")
    if not eq or unit.strip().lower() != "bytes":
        return None
    out: list[ByteRange] = []
    parts = specs.split(",")
    for part in parts:
        if not part.strip():
            continue
        m = _RANGE_SPEC.fullmatch(part)
        if m is None or (m[1] == "" and m[2] == "") or len(m[1]) > 19 or len(m[2]) > 19:
            return None
        if m[1] == "":  # suffix: the last N bytes
            n = int(m[2])
            if n > 0 and size > 0:
                out.append(ByteRange(max(0, size - n), size - 1))
            continue
        first = int(m[1])
        if m[2] and int(m[2]) < first:
            return None
        last = int(m[2]) if m[2] else size - 1
        if first < size:
            out.append(ByteRange(first, min(last, size - 1)))
    if not any(p.strip() for p in parts):
        return None
    return out


@dataclass(frozen=True, slots=True)
class Decision:
    """How to answer: the status, the bytes of the file to send (none for 304/412/416/405, and none
    for HEAD, which still gets the Content-Length of what GET would send), and the headers."""

    status: int
    offset: int
    length: int
    headers: tuple[tuple[str, str], ...]
    body: bool

    @property
    def end(self) -> int:
        """One past the last byte to send."""
        return self.offset + self.length


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    return value if value is not None and value.strip() != "" else None


def decide(method: str, headers: Mapping[str, str], size: int, v: Validators, media_type: str, *,
           now_year: int = 2000) -> Decision:
    """The answer to `method` for a file of `size` bytes with validators `v`.

    `headers` maps lower-case request header names to their values (repeated headers joined with
    ", "). `now_year` is the current year, for two-digit years in old-style dates.
    """
    common = (("ETag", v.etag), ("Last-Modified", v.last_modified))
    if method not in ("GET", "HEAD"):
        return Decision(405, 0, 0, (("Allow", "GET, HEAD"),), False)

    if_match = _header(headers, "if-match")
    if if_match is not None:
        if not _matches(if_match, v.etag, strong=True):
            return Decision(412, 0, 0, common, False)
    else:
        since = _header(headers, "if-unmodified-since")
        when = parse_http_date(since, now_year=now_year) if since is not None else None
        if when is not None and v.mtime > when:
            return Decision(412, 0, 0, common, False)

    if_none_match = _header(headers, "if-none-match")
    if if_none_match is not None:
        if _matches(if_none_match, v.etag, strong=False):
            return Decision(304, 0, 0, common, False)
    else:
        since = _header(headers, "if-modified-since")
        when = parse_http_date(since, now_year=now_year) if since is not None else None
        if when is not None and v.mtime <= when:
            return Decision(304, 0, 0, common, False)

    body = method == "GET"
    whole = common + (("Accept-Ranges", "bytes"), ("Content-Type", media_type), ("Content-Length", str(size)))
    range_header = _header(headers, "range")
    if range_header is None or method != "GET":
        return Decision(200, 0, size, whole, body)
    if_range = _header(headers, "if-range")
    if if_range is not None and not _if_range_holds(if_range, v, now_year):
        return Decision(200, 0, size, whole, body)
    ranges = parse_range(range_header, size)
    if ranges is None or len(ranges) > 1:
        return Decision(200, 0, size, whole, body)
    if not ranges:
        return Decision(416, 0, 0, common + (("Content-Range", f"bytes */{size}"),), False)
    r = ranges[0]
    return Decision(206, r.first, r.length, common + (
        ("Accept-Ranges", "bytes"), ("Content-Type", media_type), ("Content-Length", str(r.length)),
        ("Content-Range", f"bytes {r.first}-{r.last}/{size}")), True)


def _if_range_holds(value: str, v: Validators, now_year: int) -> bool:
    """If-Range (RFC 9110 section 13.1.5): an entity-tag must match strongly, a date exactly."""
    value = value.strip()
    if value.startswith(('"', "W/")):
        return not value.startswith("W/") and value == v.etag
    when = parse_http_date(value, now_year=now_year)
    return when is not None and when == v.mtime


# -- media types ------------------------------------------------------------------------------------

_TYPES = mimetypes.MimeTypes()  # the built-in table only: no file of the machine is read
_ENCODED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz",
            "br": "application/x-brotli", "compress": "application/x-compress"}
_TEXTUAL = ("application/javascript", "application/json", "application/xml", "image/svg+xml")


def content_type(name: str) -> str:
    """Content-Type for a file called `name`; text gets ``charset=utf-8``; unknown is
    ``application/octet-stream``. A compressed file (``x.tar.gz``) is served as what it is on disk."""
    guessed, encoding = _TYPES.guess_type(posixpath.basename(name), strict=False)
    if encoding is not None:
        return _ENCODED.get(encoding, "application/octet-stream")
    if guessed is None:
        return "application/octet-stream"
    if guessed.startswith("text/") or guessed in _TEXTUAL:
        return f"{guessed}; charset=utf-8"
    return guessed
