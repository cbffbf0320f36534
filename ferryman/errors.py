"""The one exception tree of ferryman.

Two families, after h11: a `ConfigError` is the operator's to fix before anything starts; an
`HttpError` is a peer's fault found while serving, and carries the status to answer with.
"""

from __future__ import annotations

from dataclasses import dataclass


class FerrymanError(Exception):
    """Base of every error ferryman raises on purpose."""


# -- configuration -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a configuration file: where it is and what would be valid.

    `level` is "error" (nothing starts) or "warning" (a trap that still runs; printed
    ``file:line: key: warning: ...``).
    """

    file: str
    line: int | None
    key: str
    message: str
    level: str = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        message = f"warning: {self.message}" if self.level == "warning" else self.message
        return f"{where}: {self.key}: {message}" if self.key else f"{where}: {message}"


class ConfigError(FerrymanError):
    """The configuration is invalid; `issues` lists every problem found in one pass."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


# -- HTTP, from a peer ---------------------------------------------------------------------------


class HttpError(FerrymanError):
    """A request or response broke HTTP; `status` is what the client should get."""

    status: int = 400

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status


class BadRequest(HttpError):
    """The client's request is malformed or ambiguous: answer 400 and close."""

    status = 400


class PathRejected(HttpError):
    """The request path cannot be normalised safely (dot segments above root, %2F, NUL...)."""

    status = 400


class UpstreamError(FerrymanError):
    """A backend failed; subclasses say how, which decides retry and status."""

    status = 502


class UpstreamConnectError(UpstreamError):
    """The backend could not be reached: the request provably never reached it."""

    status = 503


class UpstreamTimeout(UpstreamError):
    """The backend did not answer or stalled within the configured timeout."""

    status = 504


class UpstreamProtocolError(UpstreamError):
    """The backend's response is malformed or ambiguous: 502 and close that connection."""

    status = 502


class NoMemberAvailable(FerrymanError):
    """Every member of the pool is unusable (down, disabled or in error): answer 503."""

    status = 503
