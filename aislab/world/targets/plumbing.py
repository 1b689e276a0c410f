"""The egress witness's plumbing on the service's host, the same on every backend: only the
way into that host's network namespace differs (`ip netns exec NS`, `nsenter -t PID -n`)."""

from __future__ import annotations

import subprocess

from aislab.world.targets.base import SERVICE_V6, WITNESS_TCP, WITNESS_UDP, LabError


def _run(in_netns: list[str], command: list[str], stdin: str | None = None) -> None:
    proc = subprocess.run([*in_netns, *command], input=stdin, capture_output=True, text=True)
    if proc.returncode != 0:
        raise LabError(f"`{' '.join([*in_netns, *command])}` failed: {proc.stderr.strip()}\n{stdin or ''}")


def egress_witness_plumbing(in_netns: list[str], allowed: list[str]) -> None:
    """Give the service's host default routes (IPv4 and IPv6) into a dead end and hand every
    attempt that is not to `allowed` (lab infrastructure, IPv4 only) to the witness, which
    records it. The host is dual-stack on purpose: an attempt over IPv6 is witnessed like one
    over IPv4, not silently refused."""
    # IPv6 on, and unprivileged ICMP echo sockets as Docker allows every container (a service may
    # ping without privileges, so the packet witness must be there to see it). Set only what
    # differs: a pod's /proc/sys is read-only (the kubernetes target asks for these in its spec).
    wanted = {"net.ipv6.conf.all.disable_ipv6": "0", "net.ipv6.conf.default.disable_ipv6": "0",
              "net.ipv6.conf.lo.disable_ipv6": "0", "net.ipv4.ping_group_range": "0 2147483647"}
    now = subprocess.run([*in_netns, "sysctl", "-n", *wanted], capture_output=True, text=True).stdout.splitlines()
    if [" ".join(v.split()) for v in now] != list(wanted.values()):
        _run(in_netns, ["sysctl", "-qw", *(f"{k}={v}" for k, v in wanted.items())])
    _run(in_netns, ["ip", "-batch", "-"], "\n".join([
        # No ARP or neighbour discovery on the dead end: a packet of any protocol is sent onto it
        # at once (and so seen by the packet witness), instead of waiting for a neighbour that never answers.
        "link add dead0 type veth peer name dead1", "link set dead0 arp off up", "link set dead1 up",
        "route replace default dev dead0",
        # UDP is marked and routed to lo for TPROXY (below).
        "rule add fwmark 1 lookup 100", "route add local 0.0.0.0/0 dev lo table 100", ""]))
    _run(in_netns, ["ip", "-6", "-batch", "-"], "\n".join([
        # A global (ULA) address makes applications use IPv6 at all (getaddrinfo's AI_ADDRCONFIG).
        f"addr add {SERVICE_V6}/64 dev dead0 nodad", "route replace default dev dead0",
        "rule add fwmark 1 lookup 100", "route add local ::/0 dev lo table 100", ""]))
    # TCP: REDIRECT, the witness reads SO_ORIGINAL_DST. UDP: REDIRECT would hide the original
    # destination, so mark it, route it to lo and TPROXY it (IP_RECVORIGDSTADDR keeps it).
    for tables, loopback, returns in (
        ("iptables-restore", "127.0.0.1", ["-A OUTPUT -d 127.0.0.0/8 -j RETURN"] + [f"-A OUTPUT -d {ip}/32 -j RETURN" for ip in allowed]),
        ("ip6tables-restore", "::1", ["-A OUTPUT -d ::1/128 -j RETURN"]),
    ):
        rules = ["*nat", *returns, f"-A OUTPUT -p tcp -j REDIRECT --to-ports {WITNESS_TCP}", "COMMIT",
                 "*mangle", *returns, "-A OUTPUT -p udp -j MARK --set-mark 1",
                 f"-A PREROUTING -i lo -p udp -m mark --mark 1 -j TPROXY --on-ip {loopback} --on-port {WITNESS_UDP} --tproxy-mark 1",
                 "COMMIT", ""]
        _run(in_netns, [tables], "\n".join(rules))
