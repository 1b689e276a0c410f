"""DNS sinkhole: answers every name (the lab's map first, the outside collector otherwise) and
records every query, so a name looked up is evidence even when no connection follows.

The service's hosts are dual-stack, so they are also given AAAA answers for names outside the lab:
addresses in the IPv6 documentation range that only its egress witness can receive, so an
attempt over IPv6 is witnessed like one over IPv4. The other lab hosts (the proxies) get IPv4
only: they are the ones named (`v4_only`), since a service host's address may move (a pod per
instance on Kubernetes).
"""

from __future__ import annotations

from collections.abc import Callable

from dnslib import AAAA, QTYPE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class SinkholeResolver(BaseResolver):
    def __init__(self, names: dict[str, str], default_ip: str, record: Callable[[dict], dict],
                 v4_only: frozenset[str] = frozenset(), names_v6: dict[str, str] | None = None, default_v6: str | None = None):
        self.names = {k.lower().rstrip("."): v for k, v in names.items()}
        self.default_ip = default_ip
        self.record = record
        self.v4_only = frozenset(v4_only)
        self.names_v6 = {k.lower().rstrip("."): v for k, v in (names_v6 or {}).items()}
        self.default_v6 = default_v6

    def resolve(self, request, handler):
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        client = handler.client_address[0]
        self.record({"client": client, "name": name, "type": qtype})
        reply = request.reply()
        if qtype == "A":
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(self.names.get(name, self.default_ip)), ttl=5))
        elif qtype == "AAAA" and client not in self.v4_only and not name.endswith(".lab") and self.default_v6:
            address = self.names_v6.get(name, self.default_v6)
            reply.add_answer(RR(request.q.qname, QTYPE.AAAA, rdata=AAAA(address), ttl=5))
        return reply  # other types: no data, so clients go on at once


def serve(address: str, resolver: SinkholeResolver) -> list[DNSServer]:
    quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data")
    servers = [DNSServer(resolver, address=address, port=53, logger=quiet, tcp=tcp) for tcp in (False, True)]
    for server in servers:
        server.start_thread()
    return servers
