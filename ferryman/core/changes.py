"""When watched files have changed and settled: the rule behind reloading on a certificate change.

The I/O layer polls the files a configuration read (certificates, keys, CAs, htpasswd files) and hands
their signatures here: any value that changes when a file is rewritten or replaced, such as
``(inode, size, mtime)``, or None for a file that is missing. A change counts once the signatures have
stayed the same for `settle` seconds, so a file written in several steps (a key, then its certificate; a
``cp`` that truncates first) is read once, whole. A change is reported once: after `changed` names the files,
the settled signatures are the new reference, whatever the reload made of them, so a file that cannot be
used is refused once, not at every poll, and the next change is reported again.

Pure: the signatures and the time (seconds, monotonic) are passed in.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping


class SettledChange:
    """Reports a change of watched files once it has settled (see the module docstring)."""

    __slots__ = ("settle", "_reference", "_last", "_since")

    def __init__(self, signatures: Mapping[str, Hashable], settle: float = 1.0) -> None:
        self.settle = settle
        self._reference = dict(signatures)   # what the configuration in effect was read from
        self._last = self._reference         # what the last poll saw
        self._since: float | None = None     # when the last poll's signatures first appeared

    @property
    def paths(self) -> list[str]:
        """The watched files."""
        return list(self._reference)

    def changed(self, signatures: Mapping[str, Hashable], now: float) -> list[str]:
        """One poll. Once per settled change, the files whose signature differs from the reference
        (which they then become); otherwise an empty list."""
        if signatures != self._last:
            self._last = dict(signatures)
            self._since = now
            return []
        if self._since is None or now - self._since < self.settle:
            return []
        self._since = None
        changed = [p for p, sig in self._last.items() if self._reference.get(p) != sig]
        changed += [p for p in self._reference if p not in self._last]
        self._reference = self._last
        return changed

    @property
    def pending(self) -> bool:
        """A change was seen and has not settled (or not been reported) yet."""
        return self._since is not None
