"""DNS sinkhole: answers every name (the lab's map first, the outside collector otherwise) and
records every query, so a name looked up is evidence even when no connection follows."""

from __future__ import annotations

import time
from collections.abc import Callable

from dnslib import QTYPE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class SinkholeResolver(BaseResolver):
    def __init__(self, names: dict[str, str], default_ip: str, record: Callable[[dict], None]):
        self.names = {k.lower().rstrip("."): v for k, v in names.items()}
        self.default_ip = default_ip
        self.record = record

    def resolve(self, request, handler):
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        self.record({"time": time.time(), "client": handler.client_address[0], "name": name, "type": qtype})
        reply = request.reply()
        if qtype == "A":  # AAAA and the rest: no data, so clients fall back to IPv4 at once
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(self.names.get(name, self.default_ip)), ttl=5))
        return reply


def serve(address: str, names: dict[str, str], default_ip: str, record: Callable[[dict], None]) -> list[DNSServer]:
    resolver = SinkholeResolver(names, default_ip, record)
    quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data")
    servers = [DNSServer(resolver, address=address, port=53, logger=quiet, tcp=tcp) for tcp in (False, True)]
    for server in servers:
        server.start_thread()
    return servers
