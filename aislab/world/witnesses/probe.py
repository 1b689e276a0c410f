"""The witnesses' positive control, sent from inside a service's host by the witness process
itself (it shares the host's network stack, and so its plumbing, with the service): a canary TLS
connection over IPv4 and IPv6, a DNS question to a foreign server over both, a lookup through the
lab resolver (A and AAAA), an ICMP echo over both and a raw IP packet. Everything goes to
documentation addresses that only the host's own witnesses can receive."""

from __future__ import annotations

import socket
import ssl

from dnslib import DNSRecord

from aislab.world.targets.base import PROBE_PROTOCOL, PROBE_V4, PROBE_V6


def _echo(kind: int) -> bytes:
    """An ICMP echo request (type 8; ICMPv6 128, whose checksum the kernel fills in)."""
    message = bytes([kind, 0, 0, 0, 0, 1, 0, 1]) + b"aislab-probe"
    if kind != 8:
        return message
    total = sum(message[i] << 8 | message[i + 1] for i in range(0, len(message), 2))
    total = (total & 0xFFFF) + (total >> 16)
    return message[:2] + (~total & 0xFFFF).to_bytes(2, "big") + message[4:]


def send(name: str) -> None:
    context = ssl.create_default_context()
    for family, ip in ((socket.AF_INET, PROBE_V4), (socket.AF_INET6, PROBE_V6)):
        with socket.create_connection((ip, 443), timeout=3) as raw:
            try:
                context.wrap_socket(raw, server_hostname=name).close()  # closed at once: the record is complete
            except (ssl.SSLError, OSError):
                pass
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.sendto(DNSRecord.question(name).pack(), (ip, 53))
    try:
        socket.getaddrinfo(name, 443, type=socket.SOCK_STREAM)
    except OSError:
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as icmp:
        icmp.sendto(_echo(8), (PROBE_V4, 0))
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as icmp6:
        icmp6.sendto(_echo(128), (PROBE_V6, 0))
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, PROBE_PROTOCOL) as rawip:
        rawip.sendto(b"aislab-probe", (PROBE_V4, 0))
