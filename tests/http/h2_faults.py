"""A scripted HTTP/2 server for fault tests: cleartext h2 (prior knowledge) on a loopback port, in the test
process. `h2` plays the server's state machine; each scenario may also write raw bytes past it (garbage, a
GOAWAY, a RST_STREAM, a TCP reset) so the client sees exactly the fault under test.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable

import h2.config
import h2.connection
import h2.events
import h2.exceptions

__all__ = ["H2FaultServer", "Scenario", "abort_with_reset", "frame", "goaway", "respond", "rst_stream", "start_body"]

# A scenario answers one request: (server, state machine, writer, stream id). It may return early.
Scenario = Callable[["H2FaultServer", h2.connection.H2Connection, asyncio.StreamWriter, int], Awaitable[None]]


def frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    """One raw HTTP/2 frame (RFC 9113 section 4.1)."""
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream_id) + payload


def goaway(last_stream_id: int, error_code: int) -> bytes:
    return frame(0x7, 0, 0, struct.pack(">II", last_stream_id, error_code))


def rst_stream(stream_id: int, error_code: int) -> bytes:
    return frame(0x3, 0, stream_id, struct.pack(">I", error_code))


def abort_with_reset(writer: asyncio.StreamWriter) -> None:
    """Close the TCP connection with RST instead of FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class H2FaultServer:
    """Runs `scenario` for every request; counts connections and requests."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.connections = 0
        self.requests = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> H2FaultServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for writer in list(self._writers):
            writer.close()  # the handlers see the end of their connection and return
        for _ in range(100):
            if not self._writers:
                break
            await asyncio.sleep(0.01)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                try:
                    events = conn.receive_data(data)
                except h2.exceptions.ProtocolError:
                    return  # the client gave up on a connection this scenario broke
                for event in events:
                    if isinstance(event, h2.events.RequestReceived):
                        self.requests += 1
                        task = asyncio.ensure_future(self.scenario(self, conn, writer, event.stream_id))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                if not writer.is_closing():
                    writer.write(conn.data_to_send())
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


def respond(conn: h2.connection.H2Connection, writer: asyncio.StreamWriter, stream_id: int, body: bytes,
            headers: list[tuple[bytes, bytes]] | None = None) -> None:  # fmt: skip
    """A whole well-formed response."""
    conn.send_headers(stream_id, [(b":status", b"200"), (b"content-length", str(len(body)).encode()),
                                  *(headers or [])])  # fmt: skip
    conn.send_data(stream_id, body, end_stream=True)
    writer.write(conn.data_to_send())


def start_body(conn: h2.connection.H2Connection, writer: asyncio.StreamWriter, stream_id: int,
               announced: int = 100_000, first: bytes = b"x" * 1000) -> None:  # fmt: skip
    """The head of a response and the first bytes of its body, the rest never comes."""
    conn.send_headers(stream_id, [(b":status", b"200"), (b"content-length", str(announced).encode())])
    conn.send_data(stream_id, first)
    writer.write(conn.data_to_send())
