"""The packet witness, beside the connection witness on a service's host: every packet the host
sends that iptables does not hand to the connection witness (ICMP, ICMPv6, IGMP, any raw IP
protocol), and every TCP connection attempt (SYN) to a lab host, read off one AF_PACKET socket
on all of the host's interfaces. The connection witness sees TCP and UDP leaving the
infrastructure; this one sees every other protocol, and attempts to reach a lab host that no
server would record (a proxy that is down: nothing listens, so nothing else knows it was tried).

Loopback is left out: what goes there stays on the host (and the connection witness's own
intercepts travel it)."""

from __future__ import annotations

import fcntl
import select
import socket
import struct
import termios
import threading
import time

from aislab.world.witnesses.records import Recorder

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
# What the kernel sends on an IPv6 link by itself (multicast listener reports and queries,
# neighbour and router discovery): never the service's doing.
KERNEL_ICMPV6 = {130, 131, 132, 133, 134, 135, 136, 137, 143}
IPV6_EXTENSIONS = {0, 43, 44, 60}  # hop-by-hop, routing, fragment, destination options
TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58
NAMES = {ICMP: "icmp", ICMPV6: "icmpv6", 2: "igmp"}


def _ipv6_payload(packet: bytes) -> tuple[int, bytes]:
    """The upper-layer protocol and payload, past any extension headers."""
    proto, offset = packet[6], 40
    while proto in IPV6_EXTENSIONS and len(packet) >= offset + 8:
        proto, offset = packet[offset], offset + (8 if proto == 44 else (packet[offset + 1] + 1) * 8)
    return proto, packet[offset:]


def parse(packet: bytes) -> dict | None:
    """A record for an outgoing IP packet worth one, else None."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 20:
        family, proto, payload = socket.AF_INET, packet[9], packet[(packet[0] & 0xF) * 4:]
        dst = socket.inet_ntop(family, packet[16:20])
    elif version == 6 and len(packet) >= 40:
        family, (proto, payload) = socket.AF_INET6, _ipv6_payload(packet)
        dst = socket.inet_ntop(family, packet[24:40])
    else:
        return None
    ip = 4 if family == socket.AF_INET else 6
    if proto == TCP:
        if len(payload) < 14 or payload[13] & 0x12 != 0x02:  # a SYN without ACK: a new attempt
            return None
        port, = struct.unpack_from("!H", payload, 2)
        return {"proto": "tcp-syn", "ip": ip, "dst": f"[{dst}]:{port}" if ip == 6 else f"{dst}:{port}"}
    if proto == UDP:
        return None  # the connection witness's (every UDP datagram is handed to it)
    if proto == ICMPV6 and payload[:1] and payload[0] in KERNEL_ICMPV6:
        return None
    entry = {"proto": NAMES.get(proto, f"ip-{proto}"), "ip": ip, "dst": dst, "size": len(packet)}
    if proto in (ICMP, ICMPV6) and payload[:1]:
        entry["type"] = payload[0]
    entry["payload"] = payload[:512].decode("latin-1")  # what it carried: content, an install id
    return entry


class PacketWitness:
    def __init__(self, records: Recorder):
        self.records = records
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        # A packet still in the socket is pending: the harness waits until it is read.
        self.records.queued.append(lambda: int.from_bytes(fcntl.ioctl(self.sock, termios.FIONREAD, b"\0\0\0\0"), "little"))

    def start(self) -> "PacketWitness":
        threading.Thread(target=self._loop, name="packet-witness", daemon=True).start()
        return self

    def _loop(self) -> None:
        while True:
            select.select([self.sock], [], [])
            with self.records.in_flight():  # entered while the packet is still queued: never a gap
                data, (ifname, _proto, pkttype, *_rest) = self.sock.recvfrom(65536)
                entry = parse(data) if pkttype == PACKET_OUTGOING and ifname != "lo" else None
                if entry is not None:
                    self.records.add({"t": time.time(), "dev": ifname, **entry})
