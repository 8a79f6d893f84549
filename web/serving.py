"""How uvicorn serves the web app: one socket write per response.

uvicorn's httptools protocol writes a response's head as soon as the app sends it and its body when
that comes, two writes (two system calls, two TCP segments, two wake-ups of the reader on loopback)
for every response the app sends whole, as Litestar does. :class:`CoalescingHttpToolsProtocol` hands
uvicorn a transport that gathers the writes made in one turn of the event loop and writes them
together at the end of it (``bench/review_load.py``: the writes were a tenth of the web process's
time under load).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: Gathered writes this large are written at once (the transport then applies its flow control).
FLUSH_AT = 64 * 1024


class _CoalescingTransport:
    """``transport`` whose ``write`` waits for the end of the event loop's turn, so that the writes
    of that turn go out as one; everything else (and ``close``, after the writes) is the transport's."""

    __slots__ = ("_loop", "_pending", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        chunk = data if isinstance(data, bytes) else bytes(data)
        self._pending.append(chunk)
        self._size += len(chunk)
        if self._size >= FLUSH_AT:  # a large body goes out now, under the transport's flow control
            self._flush()

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        self._size = 0
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing each response (head and body) in one write."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        coalescing = _CoalescingTransport(transport, self.loop)
        super().connection_made(coalescing)  # type: ignore[arg-type]
