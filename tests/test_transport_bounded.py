"""Response bodies are read with a bound (pyinfra_iis.transport.bounded): an announced or a
streamed body above the limit is refused after at most the limit, a normal one is untouched."""

from __future__ import annotations

import socket
import threading

import pytest
import requests

from pyinfra_iis.transport.bounded import BoundedAdapter
from pyinfra_iis.transport.errors import ResponseTooLarge


def serve_once(reply_head: bytes, body_blocks: int, block: bytes = b"x" * 65536) -> tuple[int, list[int]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    sent = [0]

    def run() -> None:
        conn, _ = sock.accept()
        try:
            conn.recv(65536)
            conn.sendall(reply_head)
            for _ in range(body_blocks):
                conn.sendall(block)
                sent[0] += len(block)
        except OSError:
            pass
        finally:
            conn.close()
            sock.close()

    threading.Thread(target=run, daemon=True).start()
    return sock.getsockname()[1], sent


def session(limit: int) -> requests.Session:
    s = requests.Session()
    s.mount("http://", BoundedAdapter(limit, "web01:5985"))
    return s


def test_a_small_body_is_read_as_usual() -> None:
    port, _ = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 65536\r\nConnection: close\r\n\r\n", 1)
    assert len(session(100_000).post(f"http://127.0.0.1:{port}/wsman", data=b"x").content) == 65536


def test_an_announced_oversize_is_refused_before_reading() -> None:
    port, sent = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 268435456\r\nConnection: close\r\n\r\n", 0)
    with pytest.raises(ResponseTooLarge, match="web01:5985.*announced 268435456"):
        session(100_000).post(f"http://127.0.0.1:{port}/wsman", data=b"x")


def test_a_streamed_oversize_stops_at_the_limit() -> None:
    # No Content-Length: the body runs until the connection closes (4 MiB offered).
    port, sent = serve_once(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", 64)
    with pytest.raises(ResponseTooLarge, match="more than 100000 bytes"):
        session(100_000).post(f"http://127.0.0.1:{port}/wsman", data=b"x")
