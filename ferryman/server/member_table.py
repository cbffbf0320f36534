"""The shared member table in memory: created by the master, mapped by every worker.

The table is an anonymous memory file (``memfd_create``) mapped shared; its descriptor is inherited by
the workers, so nothing is left in /dev/shm when a process dies. The byte layout and the merge rule are
`ferryman.core.member_slots`; this module maps the memory, serialises writers with a POSIX record lock
on the file (per process, so it also excludes processes that share the descriptor) and keeps each
process's view (`SharedMembers`): which local `Member` object reads which slot, and what it last saw.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ferryman.core import member_slots as slots
from ferryman.core.health import State
from ferryman.core.member_slots import SlotHealth

_GEN = slots.GENERATION.unpack_from
_GEN_AT = slots.GENERATION_OFFSET


class MemberTable:
    """One mapping of the shared table (see the module docstring)."""

    def __init__(self, fd: int, capacity: int, mm: mmap.mmap) -> None:
        self.fd = fd
        self.capacity = capacity
        self.mm = mm

    @classmethod
    def create(cls, capacity: int = slots.DEFAULT_CAPACITY) -> MemberTable:
        """A fresh table (every slot healthy and enabled).

        Raises:
            OSError: the memory cannot be created or mapped (the message says why).
        """
        fd = os.memfd_create("ferryman-members", 0)  # closed on exec unless passed on: the workers get it
        try:
            size = slots.table_size(capacity)
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError:
            os.close(fd)
            raise
        slots.init_header(mm, capacity)
        return cls(fd, capacity, mm)

    @classmethod
    def attach(cls, fd: int) -> MemberTable:
        """Map the table a master created and passed on as `fd`.

        Raises:
            OSError: it cannot be mapped. ValueError: `fd` does not hold a member table.
        """
        size = os.fstat(fd).st_size
        mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        _, capacity = slots.read_header(mm)
        if slots.table_size(capacity) > size:
            raise ValueError(f"member table of {size} bytes is too small for its {capacity} slots")
        return cls(fd, capacity, mm)

    def generation(self) -> int:
        return slots.read_generation(self.mm)

    @contextlib.contextmanager
    def _writing(self, slot: int) -> Iterator[None]:
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        try:
            seq = slots.read_seq(self.mm, slot) | 1  # odd: readers wait for the end of this write
            slots.write_seq(self.mm, slot, seq)
            yield
            slots.write_seq(self.mm, slot, seq + 1)
            slots.bump_generation(self.mm)
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def write_health(self, slot: int, health: SlotHealth) -> int:
        """Publish a member's health; returns the slot's new sequence number."""
        with self._writing(slot):
            slots.write_health(self.mm, slot, health)
        return slots.read_seq(self.mm, slot)

    def write_status(self, slot: int, status: str) -> None:
        with self._writing(slot):
            slots.write_status(self.mm, slot, status)

    def reset(self, slot: int, status: str) -> None:
        """Give a slot to a new member: healthy, with `status`."""
        with self._writing(slot):
            slots.write_health(self.mm, slot, SlotHealth(State.HEALTHY, 0.0, 0.0, 0, 0))
            slots.write_status(self.mm, slot, status)

    def read(self, slot: int) -> tuple[int, SlotHealth, str]:
        """(sequence number, health, status) of a slot, consistent (a seqlock read)."""
        mm = self.mm
        while True:
            seq = slots.read_seq(mm, slot)
            if seq & 1:
                continue  # a writer is inside; it holds the lock only for a few stores
            health, status = slots.read_slot(mm, slot)
            if slots.read_seq(mm, slot) == seq:
                return seq, health, status

    def read_seq(self, slot: int) -> int:
        return slots.read_seq(self.mm, slot)

    def close(self) -> None:
        with contextlib.suppress(BufferError, ValueError):
            self.mm.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)


class SharedMembers:
    """One process's view of the table: its own `Member` objects, each bound to a slot by name.

    `sync` is what the hot path calls before every member choice: one 8-byte read when nothing changed.
    `publish` is what a process calls when one of its members changed state (a `Transition`).
    """

    def __init__(self, table: MemberTable, slot_of: Mapping[tuple[str, str], int],
                 members: Mapping[tuple[str, str], Any]) -> None:
        self.table = table
        self._mm = table.mm
        self._slot_of = {key: slot_of[key] for key in members if key in slot_of}
        self._bound = [(slot_of[key], m) for key, m in members.items() if key in slot_of]
        self._seen: dict[int, int] = {}
        self._gen = -1

    def sync(self) -> None:
        """Adopt what other processes changed since the last call (cheap when nothing did)."""
        if _GEN(self._mm, _GEN_AT)[0] != self._gen:
            self.refresh()

    def refresh(self) -> None:
        table = self.table
        self._gen = table.generation()
        seen = self._seen
        for slot, member in self._bound:
            if seen.get(slot) == table.read_seq(slot):
                continue
            seq, health, status = table.read(slot)
            seen[slot] = seq
            health.apply(member.health)
            member.status = status

    def publish(self, member: Any) -> None:
        """Write `member`'s health to its slot, for every other process to adopt."""
        slot = self._slot_of.get((member.pool.name, member.name))
        if slot is not None:
            self._seen[slot] = self.table.write_health(slot, SlotHealth.of(member.health))

    def slots(self) -> Iterable[tuple[int, Any]]:
        return list(self._bound)
