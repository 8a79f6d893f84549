"""How uvicorn serves the web app: one socket write per response.

uvicorn's httptools protocol writes a response's head as soon as the app sends it and its body when
that comes, two writes (two system calls, two TCP segments, two wake-ups of the reader on loopback)
for every response the app sends whole, as Litestar does. :class:`CoalescingHttpToolsProtocol` hands
uvicorn a transport that keeps a response's head until its body comes (at most to the end of the
event loop's turn) and writes them together (``bench/review_load.py``: the writes were a tenth of
the web process's time under load).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: A write this large goes out at once (the transport then applies its flow control).
FLUSH_AT = 64 * 1024


class _CoalescingTransport:
    """``transport`` whose ``write`` keeps a small write (a response's head) until the next one (its
    body), or at most to the end of the event loop's turn, and writes them as one; everything else
    (and ``close``, after the writes) is the transport's."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        chunk = data if isinstance(data, bytes) else bytes(data)
        if self._pending:  # the body after its head: both go out now, no later than the body alone would
            self._pending.append(chunk)
            self._flush()
            return
        if len(chunk) >= FLUSH_AT:  # large: out now, under the transport's flow control
            self._transport.write(chunk)
            return
        self._pending.append(chunk)  # a head: waits for its body, at most to the end of this turn
        self._loop.call_soon(self._flush)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
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
