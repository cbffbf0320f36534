"""The layout of the shared member table: one fixed-size slot per pool member, plain bytes.

Theory of operation. With several worker processes, what every worker must agree on about a member
lives in one table of shared memory: its health state (`ferryman.core.health`: resting until when,
held down, slow-start ramp) and its administrative status (enabled, drain, disabled...). The master
assigns each ``(pool, member)`` name a slot and keeps it across reloads for names that stay. A
process that changes a member's state writes the member's slot and then bumps the table's
*generation*; every process compares the generation with the one it last saw once per request (one
8-byte read) and only when it moved re-reads the slots whose sequence number changed.

Each slot is guarded by a sequence number (a seqlock): a writer makes it odd, writes the fields,
makes it even again; a reader that sees an odd number, or a different number after reading, reads
again. Writers are serialised by the I/O layer (a lock on the table's file); readers never wait.

This module holds only the byte layout and the merge rule; the mapping and locking live in
``ferryman.server.member_table``.

Layout (little-endian)::

    header  0  magic  u32 | version u32 | generation u64 | capacity u32 | pad to 64 bytes
    slot i  64 + 32*i: seq u32 | state u8 | status u8 | pad u16 | until f64 | ramp_start f64
                       | streak u32 | ejections u32

Times are monotonic seconds (``CLOCK_MONOTONIC``), the same clock in every process of one machine.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ferryman.core.health import MemberHealth, State

if TYPE_CHECKING:  # pragma: no cover - any buffer will do: bytes, bytearray, memoryview, mmap
    from _typeshed import ReadableBuffer as Buffer, WriteableBuffer as WritableBuffer

MAGIC = 0x46524D54  # "FRMT"
VERSION = 1
HEADER = struct.Struct("<IIQI")
HEADER_SIZE = 64
GENERATION_OFFSET = 8
GENERATION = struct.Struct("<Q")
SEQ = struct.Struct("<I")
BYTE = struct.Struct("<B")
STATE_OFFSET = 4   # the health state byte
STATUS_OFFSET = 5  # the administrative status byte, written on its own by the master
BODY = struct.Struct("<ddII")  # until, ramp_start, streak, ejections
BODY_OFFSET = 8
SLOT_SIZE = 32

#: Slots a table has unless more are needed: every member of a large deployment, with room to add.
DEFAULT_CAPACITY = 1024

_STATE_CODES: tuple[State, ...] = (State.HEALTHY, State.RESTING, State.PROBATION, State.HELD_DOWN,
                                   State.RECOVERING)
_STATE_CODE = {s: i for i, s in enumerate(_STATE_CODES)}
STATUSES: tuple[str, ...] = ("enabled", "disabled", "drain", "hot-standby", "stopped")
_STATUS_CODE = {s: i for i, s in enumerate(STATUSES)}


@dataclass(frozen=True, slots=True)
class SlotHealth:
    """A member's shared health fields (see `MemberHealth.shared`)."""

    state: State
    until: float
    ramp_start: float
    streak: int
    ejections: int

    @classmethod
    def of(cls, health: MemberHealth) -> SlotHealth:
        """The fields to publish for `health`."""
        return cls(*health.shared())

    def apply(self, health: MemberHealth) -> None:
        """Merge rule: the slot is the last decision any process took, so it replaces the local state."""
        health.adopt(self.state, self.until, self.ramp_start, self.streak, self.ejections)


def table_size(capacity: int) -> int:
    """Bytes of a table with `capacity` slots."""
    return HEADER_SIZE + SLOT_SIZE * capacity


def slot_offset(slot: int) -> int:
    return HEADER_SIZE + SLOT_SIZE * slot


def init_header(buf: "WritableBuffer", capacity: int) -> None:
    """Write a fresh header (generation 0) into zeroed memory; zeroed slots read as healthy, enabled."""
    HEADER.pack_into(buf, 0, MAGIC, VERSION, 0, capacity)


def read_header(buf: "Buffer") -> tuple[int, int]:
    """(generation, capacity) of a table.

    Raises:
        ValueError: the memory does not hold a table of this version.
    """
    magic, version, generation, capacity = HEADER.unpack_from(buf, 0)
    if magic != MAGIC or version != VERSION:
        raise ValueError(f"not a ferryman member table of version {VERSION} (magic {magic:#x}, version {version})")
    return generation, capacity


def read_seq(buf: "Buffer", slot: int) -> int:
    """The slot's sequence number: odd while a writer is inside it."""
    seq: int = SEQ.unpack_from(buf, slot_offset(slot))[0]
    return seq


def write_seq(buf: "WritableBuffer", slot: int, seq: int) -> None:
    SEQ.pack_into(buf, slot_offset(slot), seq & 0xFFFFFFFF)


def write_health(buf: "WritableBuffer", slot: int, h: SlotHealth) -> None:
    """Write the health fields of slot `slot`, leaving its status byte alone."""
    off = slot_offset(slot)
    BYTE.pack_into(buf, off + STATE_OFFSET, _STATE_CODE[h.state])
    BODY.pack_into(buf, off + BODY_OFFSET, h.until, h.ramp_start, h.streak & 0xFFFFFFFF,
                   h.ejections & 0xFFFFFFFF)


def write_status(buf: "WritableBuffer", slot: int, status: str) -> None:
    """Write the status byte of slot `slot`; raises KeyError for a status not in `STATUSES`."""
    BYTE.pack_into(buf, slot_offset(slot) + STATUS_OFFSET, _STATUS_CODE[status])


def read_slot(buf: "Buffer", slot: int) -> tuple[SlotHealth, str]:
    """The health fields and status of slot `slot` (a zeroed slot: healthy, enabled).

    Raises:
        ValueError: an unknown state code (memory that is not a member table).
    """
    off = slot_offset(slot)
    code = BYTE.unpack_from(buf, off + STATE_OFFSET)[0]
    status = BYTE.unpack_from(buf, off + STATUS_OFFSET)[0]
    if code >= len(_STATE_CODES):
        raise ValueError(f"unknown member state code {code}")
    until, ramp_start, streak, ejections = BODY.unpack_from(buf, off + BODY_OFFSET)
    return (SlotHealth(_STATE_CODES[code], until, ramp_start, streak, ejections),
            STATUSES[status] if status < len(STATUSES) else STATUSES[0])


def read_generation(buf: "Buffer") -> int:
    generation: int = GENERATION.unpack_from(buf, GENERATION_OFFSET)[0]
    return generation


def bump_generation(buf: "WritableBuffer") -> int:
    """Add one to the table's generation (the writer holds the table's lock); returns the new one."""
    generation = (read_generation(buf) + 1) & 0xFFFFFFFFFFFFFFFF
    GENERATION.pack_into(buf, GENERATION_OFFSET, generation)
    return generation


def assign_slots(previous: Mapping[tuple[str, str], int], names: Iterable[tuple[str, str]],
                 capacity: int, reserved: Iterable[int] = ()) -> dict[tuple[str, str], int]:
    """Slots for `names`: a name that had one keeps it; a new name gets the lowest slot nobody uses,
    neither a kept name nor one in `reserved` (slots of names that left but that processes still
    running may write: they are reused only once those processes are gone).

    Raises:
        ValueError: more names than the table has slots.
    """
    names = list(dict.fromkeys(names))
    out = {n: previous[n] for n in names if n in previous}
    used = set(out.values()) | set(reserved)
    free = (i for i in range(capacity) if i not in used)
    for n in names:
        if n not in out:
            slot = next(free, None)
            if slot is None:
                raise ValueError(f"the member table has {capacity} slots, too few for {len(names)} members "
                                 f"(plus {len(used) - len(out)} still in use by stopping workers); "
                                 "restart ferryman to make a larger one")
            out[n] = slot
    return out
