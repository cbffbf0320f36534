"""Flow control pairing a client transport with a backend transport (ferryman/server/flow.py)."""

from __future__ import annotations

from ferryman.server.flow import PAUSE_BUFFER, PAUSE_PIPELINE, PAUSE_UPLOAD, Flow


class Transport:
    def __init__(self) -> None:
        self.reading = True
        self.closing = False

    def pause_reading(self) -> None:
        assert self.reading, "paused twice"
        self.reading = False

    def resume_reading(self) -> None:
        assert not self.reading, "resumed while reading"
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing


def test_the_client_is_read_again_only_when_no_reason_holds_it():
    client = Transport()
    flow = Flow(client)  # type: ignore[arg-type]
    assert flow.hold_client(PAUSE_PIPELINE) and not client.reading
    assert not flow.hold_client(PAUSE_UPLOAD)
    assert not flow.release_client(PAUSE_PIPELINE) and not client.reading
    assert not flow.release_client(PAUSE_BUFFER)  # never held for it
    assert flow.release_client(PAUSE_UPLOAD) and client.reading


def test_a_full_client_buffer_stops_reading_the_backend_until_it_drains():
    client, backend = Transport(), Transport()
    flow = Flow(client)  # type: ignore[arg-type]
    flow.attach(backend)  # type: ignore[arg-type]
    assert flow.client_buffer_full() and not backend.reading
    assert flow.client_buffer_drained() and backend.reading


def test_a_backend_attached_while_the_client_is_full_starts_paused_and_is_resumed_on_detach():
    client, first, second = Transport(), Transport(), Transport()
    flow = Flow(client)  # type: ignore[arg-type]
    flow.client_buffer_full()
    flow.attach(first)  # type: ignore[arg-type]
    assert not first.reading
    flow.detach(first)  # type: ignore[arg-type]
    assert first.reading  # back to its pool readable: an idle close or stray byte is noticed
    first.closing = True
    flow.attach(second)  # type: ignore[arg-type]
    assert not second.reading
    assert flow.client_buffer_drained() and second.reading
