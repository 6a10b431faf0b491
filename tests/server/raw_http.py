"""A raw-socket HTTP/1.1 client for the server tier: what a misbehaving client sends."""

from __future__ import annotations

import json
import socket

BODY = json.dumps(
    {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8], "data": [0.25] * 8}]}
).encode()


class RawClient:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before a full response: {self.buffer!r}")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed mid-body")
            self.buffer += chunk
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def closed_by_peer(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def post(path: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def _poll(client: RawClient) -> bytes | None:
    """Without waiting: what the server has sent (b"" once it has closed), or None."""
    timeout = client.sock.gettimeout()
    client.sock.settimeout(0)
    try:
        return client.sock.recv(65536)
    except BlockingIOError:
        return None
    except ConnectionResetError:
        return b""
    finally:
        client.sock.settimeout(timeout)


def peer_has_closed(client: RawClient) -> bool:
    """Without waiting: has the server closed this connection?"""
    return _poll(client) == b""


def peer_has_closed_or_answered(client: RawClient) -> bool:
    """Without waiting: has the server closed or sent something (kept for read_response)?"""
    chunk = _poll(client)
    if chunk is None:
        return False
    client.buffer += chunk
    return True
