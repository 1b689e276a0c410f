"""Catches connections and records who wanted what: original destination (REDIRECT), TLS
server name, HTTP Host, method, path and body. TLS is terminated with lab-CA certificates for
whatever name the client asks, so a service that trusts the lab CA shows its payload too.

Threads and blocking sockets on purpose: the volume is tiny, and MSG_PEEK lets one listener
tell TLS from plain HTTP without consuming a byte.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable

from dnslib import DNSRecord

from aislab.world.pki import SNIContexts

SO_ORIGINAL_DST = 80
IP_TRANSPARENT = 19
IP_RECVORIGDSTADDR = 20
READ_TIMEOUT = 2.0


def original_destination(conn: socket.socket) -> tuple[str, int] | None:
    try:
        raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return None
    port, addr = struct.unpack_from("!2xH4s", raw)
    return socket.inet_ntoa(addr), port


def read_http_request(stream) -> dict:
    """Parse one HTTP/1.x request from a socket-like object; partial data is still recorded."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = stream.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    request = {"raw": data[:256].decode("latin-1")} if not lines[0].count(" ") >= 2 else {}
    if lines[0].count(" ") >= 2:
        method, path, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if ":" in line)}
        length = int(headers.get("content-length", "0") or 0)
        while len(body) < min(length, 1 << 20):
            chunk = stream.recv(65536)
            if not chunk:
                break
            body += chunk
        request = {"method": method, "path": path, "host": headers.get("host"), "headers": headers,
                   "body": body[:65536].decode("utf-8", "replace")}
    return request


class Catcher:
    """Records each connection as a dict via `record`, then answers with `respond`."""

    def __init__(self, record: Callable[[dict], None], tls: SNIContexts | None,
                 respond: Callable[[dict], tuple[int, bytes]], redirected: bool):
        self.record = record
        self.tls = tls
        self.respond = respond
        self.redirected = redirected

    def serve_tcp(self, host: str, port: int) -> socket.socket:
        sock = socket.create_server((host, port), reuse_port=False, backlog=128)
        threading.Thread(target=self._accept_loop, args=(sock,), daemon=True).start()
        return sock

    def _accept_loop(self, sock: socket.socket) -> None:
        while True:
            conn, peer = sock.accept()
            threading.Thread(target=self._handle, args=(conn, peer), daemon=True).start()

    def _handle(self, conn: socket.socket, peer) -> None:
        entry = {"time": time.time(), "proto": "tcp", "client": peer[0]}
        if self.redirected:
            dst = original_destination(conn)
            entry["dst"] = f"{dst[0]}:{dst[1]}" if dst else None
        else:
            entry["dst"] = "{}:{}".format(*conn.getsockname()[:2])
        conn.settimeout(READ_TIMEOUT)
        stream = conn
        try:
            first = conn.recv(1, socket.MSG_PEEK)
            if first == b"\x16" and self.tls is not None:
                entry["tls"] = True
                stream = self.tls.default.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
                try:
                    stream.do_handshake()
                finally:
                    entry["sni"] = self.tls.names.pop(id(stream), None)
            entry.update(read_http_request(stream) if first else {"empty": True})
            status, body = self.respond(entry)
            stream.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                           % (status, len(body), body))
        except (OSError, ssl.SSLError) as err:
            entry["error"] = f"{type(err).__name__}: {err}"
        finally:
            self.record(entry)
            try:
                stream.close()
            except OSError:
                pass

    def serve_udp(self, host: str, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)  # receives what TPROXY hands over
        sock.setsockopt(socket.SOL_IP, IP_RECVORIGDSTADDR, 1)
        sock.bind((host, port))
        threading.Thread(target=self._udp_loop, args=(sock,), daemon=True).start()
        return sock

    def _udp_loop(self, sock: socket.socket) -> None:
        while True:
            data, ancdata, _flags, peer = sock.recvmsg(65536, 1024)
            entry = {"time": time.time(), "proto": "udp", "size": len(data)}
            for level, kind, value in ancdata:
                if level == socket.SOL_IP and kind == IP_RECVORIGDSTADDR:
                    port, addr = struct.unpack_from("!2xH4s", value)
                    entry["dst"] = f"{socket.inet_ntoa(addr)}:{port}"
            try:  # most stray UDP is DNS to a hard-coded server: say which name it asked for
                entry["dns"] = str(DNSRecord.parse(data).q.qname).rstrip(".")
            except Exception:  # noqa: BLE001 - not DNS, keep the raw size only
                pass
            self.record(entry)

