"""Real corporate proxies as lab hosts (Debian's tinyproxy and squid), each with an accepting
port and a refusing port, and parsers that turn their access logs into records."""

from __future__ import annotations

import datetime
import os
import pwd
import re
from dataclasses import dataclass
from pathlib import Path

PROXIES = ("tinyproxy", "squid")
PORTS = {"tinyproxy": (8888, 8889), "squid": (3128, 3129)}  # (accepting, refusing)


@dataclass
class ProxySpec:
    name: str
    command: list[str]
    log: Path
    ports: tuple[int, int]


def tinyproxy(workdir: Path, ip: str, clients: str) -> list[ProxySpec]:
    """Two tinyproxy processes: one that forwards for `clients` (the lab's network, a CIDR), one
    that refuses every client (403)."""
    specs = []
    for port, allow, label in ((PORTS["tinyproxy"][0], clients, "accept"), (PORTS["tinyproxy"][1], "127.0.0.1", "refuse")):
        log = workdir / f"tinyproxy-{label}.log"
        conf = workdir / f"tinyproxy-{label}.conf"
        conf.write_text(
            f"User nobody\nGroup nogroup\nPort {port}\nListen {ip}\nTimeout 15\nLogFile \"{log}\"\n"
            f"LogLevel Connect\nMaxClients 64\nAllow {allow}\nConnectPort 443\nConnectPort 80\nDisableViaHeader Yes\n"
        )
        log.touch()
        _give_to(log, "nobody")
        specs.append(ProxySpec(f"tinyproxy-{label}", ["tinyproxy", "-d", "-c", str(conf)], log, (port, port)))
    return specs


def squid(workdir: Path, ip: str, dns_ip: str) -> list[ProxySpec]:
    """One squid with two ports; the one named `refuse` denies everything (403)."""
    accept, refuse = PORTS["squid"]
    log = workdir / "squid-access.log"
    conf = workdir / "squid.conf"
    conf.write_text("\n".join([
        f"http_port {ip}:{accept}",
        f"http_port {ip}:{refuse} name=refuse",
        "acl refusing myportname refuse",
        "acl SSL_ports port 443",
        "http_access deny refusing",
        "http_access allow all",
        "cache deny all",
        "logformat lab %ts.%03tu %>a %rm %ru %>Hs %Ss",
        f"access_log stdio:{log} lab",
        f"cache_log {workdir / 'squid-cache.log'}",
        f"pid_filename {workdir / 'squid.pid'}",
        f"coredump_dir {workdir}",
        f"dns_nameservers {dns_ip}",
        "strip_query_terms off",
        "shutdown_lifetime 0 seconds",
        "",
    ]))
    log.touch()
    (workdir / "squid-cache.log").touch()
    for path in (log, workdir / "squid-cache.log"):
        _give_to(path, "proxy")
    return [ProxySpec("squid", ["squid", "-N", "-f", str(conf)], log, (accept, refuse))]


def _give_to(path: Path, user: str) -> None:
    """Proxies drop root; their log files must stay writable to the user they become."""
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


TINY_TIME = re.compile(r"^\w+\s+(?P<stamp>\w{3} +\d+ [\d:.]+) \[")
TINY_CONNECT = re.compile(r"\[\d+\]: Connect \(file descriptor (?P<fd>\d+)\): (?P<client>[\d.]+)")
TINY_REQUEST = re.compile(r"Request \(file descriptor (?P<fd>\d+)\): (?P<method>[A-Z]+) (?P<url>\S+) HTTP")
SQUID_LINE = re.compile(r"^(?P<time>[\d.]+) (?P<client>[\d.]+) (?P<method>[A-Z]+) (?P<url>\S+) (?P<status>\d+) (?P<result>\S+)")


def parse_log(kind: str, text: str) -> list[dict]:
    """Access-log lines as {client, method, url, t (epoch seconds)[, status]}."""
    records = []
    if kind == "squid":
        for line in text.splitlines():
            m = SQUID_LINE.match(line)
            if m and "squid-internal-mgr" not in m.group("url"):  # the harness's own look at open tunnels
                records.append({"proxy": "squid", **m.groupdict(), "t": float(m.group("time"))})
        return records
    clients: dict[str, str] = {}  # file descriptor -> client: concurrent connections interleave
    client = None
    for line in text.splitlines():
        c = TINY_CONNECT.search(line)
        if c:
            client = clients[c.group("fd")] = c.group("client")
        r = TINY_REQUEST.search(line)
        at = {"t": _tinyproxy_time(line)} if TINY_TIME.match(line) else {}
        if r:
            records.append({"proxy": "tinyproxy", "client": clients.get(r.group("fd")), "method": r.group("method"),
                            "url": r.group("url"), **at})
        elif "Access denied" in line or "denied" in line.lower():
            records.append({"proxy": "tinyproxy", "client": client, "method": None, "url": None, "status": "403", "line": line.strip(), **at})
    return records


def _tinyproxy_time(line: str) -> float:
    """tinyproxy stamps lines in local time without a year: this year's, unless that is ahead."""
    stamp = TINY_TIME.match(line).group("stamp")
    now = datetime.datetime.now()
    when = datetime.datetime.strptime(f"{now.year} {' '.join(stamp.split())}", "%Y %b %d %H:%M:%S.%f")
    if when > now + datetime.timedelta(days=1):  # logged last year, read just after New Year
        when = when.replace(year=now.year - 1)
    return when.timestamp()


def parse_squid_active(text: str) -> list[dict]:
    """Squid logs a CONNECT tunnel only when it closes; its cache manager lists the open ones."""
    records = []
    for block in text.split("\n\n"):
        fields = dict(re.findall(r"^\s*(remote|uri|logType)[: ]\s*(\S+)", block, re.M))
        if "uri" in fields and "squid-internal-mgr" not in fields["uri"]:
            method = "CONNECT" if fields.get("logType") == "TCP_TUNNEL" else None
            records.append({"proxy": "squid", "client": fields.get("remote", "").rsplit(":", 1)[0],
                            "method": method, "url": fields["uri"], "status": "open", "result": fields.get("logType")})
    return records
