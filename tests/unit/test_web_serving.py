"""uvicorn as the web app is served (``web.security.server_options``): each response in one write,
and responses of any shape (head then body, a streamed body, a large one) whole and in order on a
kept-alive connection."""

from __future__ import annotations

import asyncio
import http.client
from typing import Any

from bench.harness import serve
from web.serving import FLUSH_AT, CoalescingHttpToolsProtocol, _CoalescingTransport

BIG = bytes(range(256)) * (3 * FLUSH_AT // 256 + 7)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/stream":  # chunked: head, three parts, end
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b""})
        return
    body = BIG if path == "/big" else path.encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


def test_responses_come_whole_and_in_order_on_one_connection() -> None:
    with serve(app, http=CoalescingHttpToolsProtocol) as base:
        conn = http.client.HTTPConnection(base.removeprefix("http://"), timeout=10)
        try:
            for path, expected in (
                ("/a", b"/a"),
                ("/big", BIG),
                ("/stream", b"one two three"),
                ("/b", b"/b"),
            ):
                conn.request("GET", path)
                response = conn.getresponse()
                assert response.status == 200
                assert response.read() == expected
        finally:
            conn.close()


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"extra {name}"


def test_a_head_and_its_body_go_out_as_one_write() -> None:
    async def scenario() -> _Transport:
        real = _Transport()
        transport = _CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        assert real.writes == []  # the head waits for its body
        transport.write(b"ok")  # which sends both at once
        assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
        transport.write(b"alone")  # a head whose body is late: out at the end of the loop's turn
        assert len(real.writes) == 1
        await asyncio.sleep(0)
        assert real.writes[-1] == b"alone"
        transport.write(BIG)  # large: at once
        assert real.writes[-1] == BIG
        transport.write(b"last")
        transport.close()  # written before the close
        assert real.writes[-1] == b"last" and real.closed
        assert transport.get_extra_info("peername") == "extra peername"
        return real

    assert len(asyncio.run(scenario()).writes) == 4
