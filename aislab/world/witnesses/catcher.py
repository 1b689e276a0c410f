"""Catches connections and records who wanted what: original destination (REDIRECT or TPROXY,
IPv4 and IPv6), TLS server name, HTTP Host, method, path, headers and body. TLS is terminated
with lab-CA certificates for whatever name the client asks, so a service that trusts the lab CA
shows its payload too.

Threads and blocking sockets on purpose: the volume is tiny, and MSG_PEEK lets one listener
tell TLS from plain HTTP without consuming a byte.
"""

from __future__ import annotations

import fcntl
import socket
import ssl
import termios
import struct
import threading
import time
from collections.abc import Callable

from dnslib import DNSRecord

from aislab.world.pki import SNIContexts
from aislab.world.witnesses.records import Recorder

SO_ORIGINAL_DST = 80  # also IP6T_SO_ORIGINAL_DST, at level SOL_IPV6
IP_TRANSPARENT, IPV6_TRANSPARENT = 19, 75
IP_RECVORIGDSTADDR, IPV6_RECVORIGDSTADDR = 20, 74
READ_TIMEOUT = 2.0
# The harness connects straight to the witness with this line to learn that every connection
# queued before it has been accepted (the accept queue is FIFO): a drain, not a wait.
SENTINEL = b"AISLAB-SENTINEL "


def _sockaddr(family: int, raw: bytes) -> str:
    """A kernel sockaddr (as getsockopt and recvmsg hand it over) as `ip:port` or `[ip6]:port`."""
    if family == socket.AF_INET6:
        port, = struct.unpack_from("!H", raw, 2)
        return _address(socket.inet_ntop(socket.AF_INET6, raw[8:24]), port)
    port, addr = struct.unpack_from("!2xH4s", raw)
    return _address(socket.inet_ntoa(addr), port)


def original_destination(conn: socket.socket) -> str | None:
    """Where a REDIRECTed connection was going, as `ip:port` (`[ip6]:port` for IPv6)."""
    v6 = conn.family == socket.AF_INET6
    try:
        raw = conn.getsockopt(socket.IPPROTO_IPV6 if v6 else socket.SOL_IP, SO_ORIGINAL_DST, 28 if v6 else 16)
    except OSError:
        return None
    return _sockaddr(conn.family, raw)


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
    if lines[0].count(" ") < 2:
        return {"raw": data[:256].decode("latin-1")}
    method, path, _ = lines[0].split(" ", 2)
    raw_headers = [[k.strip().lower(), v.strip()] for k, _, v in (line.partition(":") for line in lines[1:] if ":" in line)]
    headers = {}
    for k, v in raw_headers:
        headers.setdefault(k, v)
    length = int(headers.get("content-length", "0") or 0)
    while len(body) < min(length, 1 << 20):
        chunk = stream.recv(65536)
        if not chunk:
            break
        body += chunk
    return {"method": method, "path": path, "host": headers.get("host"), "headers": headers, "rawHeaders": raw_headers,
            "body": body[:65536].decode("utf-8", "replace")}


class Catcher:
    """Records each connection or datagram in `records`, then answers with `respond`."""

    def __init__(self, records: Recorder, tls: SNIContexts | None, respond: Callable[[dict], tuple[int, bytes]],
                 redirected: bool, harness_ip: str | None = None):
        self.records = records
        self.tls = tls
        self.respond = respond
        self.redirected = redirected
        self.harness_ip = harness_ip

    def serve_tcp(self, host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=128, dualstack_ipv6=False)
        threading.Thread(target=self._accept_loop, args=(sock,), daemon=True).start()
        return sock

    def _accept_loop(self, sock: socket.socket) -> None:
        while True:
            conn, peer = sock.accept()
            # Counted from the accept on, so "nothing pending" means every record is complete.
            flight = self.records.in_flight()
            flight.__enter__()
            threading.Thread(target=self._handle, args=(conn, peer, flight), daemon=True).start()

    def _handle(self, conn: socket.socket, peer, flight) -> None:
        entry = {"t": time.time(), "proto": "tcp", "client": peer[0], "ip": 6 if conn.family == socket.AF_INET6 else 4}
        entry["dst"] = original_destination(conn) if self.redirected else _address(*conn.getsockname()[:2])
        conn.settimeout(READ_TIMEOUT)
        stream = conn
        try:
            first = conn.recv(len(SENTINEL), socket.MSG_PEEK)
            if peer[0] == self.harness_ip and first == SENTINEL:
                entry = {"t": entry["t"], "sentinel": conn.recv(256).decode("latin-1").split()[-1]}
                return
            if first[:1] == b"\x16" and self.tls is not None:
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
            self.records.add(entry)
            flight.__exit__(None, None, None)
            try:
                stream.close()
            except OSError:
                pass

    def serve_udp(self, host: str, port: int) -> socket.socket:
        v6 = ":" in host
        sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
        # Receives what TPROXY hands over, and keeps each datagram's original destination.
        sock.setsockopt(socket.IPPROTO_IPV6 if v6 else socket.SOL_IP, IPV6_TRANSPARENT if v6 else IP_TRANSPARENT, 1)
        sock.setsockopt(socket.IPPROTO_IPV6 if v6 else socket.SOL_IP, IPV6_RECVORIGDSTADDR if v6 else IP_RECVORIGDSTADDR, 1)
        sock.bind((host, port))
        # A datagram still in the socket is pending too: the harness waits for it to be read.
        self.records.queued.append(lambda: int.from_bytes(fcntl.ioctl(sock, termios.FIONREAD, b"\0\0\0\0"), "little"))
        threading.Thread(target=self._udp_loop, args=(sock,), daemon=True).start()
        return sock

    def _udp_loop(self, sock: socket.socket) -> None:
        while True:
            data, ancdata, _flags, peer = sock.recvmsg(65536, 1024)
            entry = {"t": time.time(), "proto": "udp", "client": peer[0], "size": len(data),
                     "ip": 6 if sock.family == socket.AF_INET6 else 4, "payload": data[:512].decode("latin-1")}
            for level, kind, value in ancdata:
                if (level, kind) in ((socket.SOL_IP, IP_RECVORIGDSTADDR), (socket.IPPROTO_IPV6, IPV6_RECVORIGDSTADDR)):
                    entry["dst"] = _sockaddr(sock.family, value)
            try:  # most stray UDP is DNS to a hard-coded server: say which name it asked for
                question = DNSRecord.parse(data).q
                entry["dns"] = str(question.qname).rstrip(".")
                entry["dnsType"] = question.qtype
            except Exception:  # noqa: BLE001 - not DNS: the payload is kept as it came
                pass
            self.records.add(entry)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def send_sentinel(address: tuple[str, int], ident: str, timeout: float = 3.0) -> None:
    """Queue a sentinel connection behind everything the witness has not accepted yet."""
    with socket.create_connection(address, timeout=timeout) as s:
        s.sendall(SENTINEL + ident.encode() + b"\n")
