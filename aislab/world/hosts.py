"""Entry point of every lab host: `python -m aislab.world.hosts ROLE --listen IP:PORT --state DIR`.

Each binds its sockets first and only then prints READY, so the lab awaits an event instead of
polling a port; the kernel queues connections until the server accepts them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from aislab.world.witnesses.records import Recorder


def listen(host: str, port: int) -> socket.socket:
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when the
    # protocol says TCP, and without it every keep-alive response stalls 40 ms (Nagle + delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def server_config(app, **extra) -> uvicorn.Config:
    """uvicorn's settings for every lab host. Idle keep-alive connections stay open far longer
    than any client keeps them (httpx: 5 s): with uvicorn's default, also 5 s, a client reusing a
    connection just as the server closes it reads "disconnected without a response"."""
    return uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=300, **extra)


def archive(records: Recorder, path: Path) -> None:
    """A witness on a new host for the same service host (a new pod on Kubernetes) starts from
    everything the one before it recorded: record numbers run on, the whole life stays readable."""
    if path.exists():
        for entry in json.loads(path.read_text()):
            records.add(entry)


def probe_route(records: Recorder):
    """POST /_lab/probe?name=N: the witness sends its positive control from inside the host."""
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from aislab.world.witnesses import probe

    async def endpoint(request):
        if not records.authorized(request):
            return JSONResponse({"error": "lab admin secret required"}, 403)
        await run_in_threadpool(probe.send, request.query_params["name"])
        return JSONResponse({"sent": True})

    return Route("/_lab/probe", endpoint, methods=["POST"])


def records_app(records: Recorder) -> Starlette:
    return Starlette(routes=records.routes())


def serve(apps: list[tuple[object, socket.socket, dict]]) -> None:
    """Run one uvicorn server per (app, socket, extra config) in one event loop; an entry that
    is already a server (it has `serve(sockets=...)`, like the IdP's switchable port) runs as
    it is. When one ends (a signal), the others are told to end too."""
    servers = [app if hasattr(app, "should_exit") else
               uvicorn.Server(server_config(app, **extra))
               for app, _sock, extra in apps]

    async def main():
        tasks = [asyncio.ensure_future(s.serve(sockets=[sock])) for s, (_a, sock, _e) in zip(servers, apps)]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for s in servers:
            s.should_exit = True
        await asyncio.gather(*tasks)

    asyncio.run(main())


def run(role: str, host: str, port: int, state: Path) -> list[tuple[object, socket.socket, dict]]:
    lab = json.loads((state / "lab.json").read_text())
    if role == "idp":
        from aislab.world.mocks.idp.app import IdentityProvider, SwitchablePort
        from aislab.world.targets.base import ADMIN_PORTS

        # The main port can go down (a real refused connection); the admin port stays up.
        idp = IdentityProvider(state, lab["issuer"], Recorder(lab["admin_secret"]))
        idp.main = SwitchablePort(idp.main_app(), host, port, listen)
        return [(idp.admin_app(), listen(host, ADMIN_PORTS["idp"]), {}), (idp.main, listen(host, port), {})]
    if role == "controlplane":
        from aislab.world.mocks.controlplane.app import ControlPlane
        from aislab.world.mocks.controlplane.rbac import Directory
        from aislab.world.mocks.controlplane.store import Store

        cp = ControlPlane(state, lab["issuer"], lab["admin_secret"], Directory.load(Path(lab["users_file"])),
                          Store.load(Path(lab["seed_file"]), lab["nonce"]))
        return [(cp, listen(host, port), {})]
    if role in ("llm", "provider"):
        from aislab.world.mocks.llm.app import MockLLM

        app = MockLLM(lab["llm_api_key"], lab["admin_secret"], lab["model"]).app()
        apps = [(app, listen(host, port), {})]
        if role == "provider":  # the third-party provider also speaks TLS, under its public names
            from aislab.world.pki import CA, write_private

            cert, key = CA.load(state).issue(*lab["provider_names"], host)
            (state / "provider.pem").write_bytes(cert)
            write_private(state / "provider.key", key)
            apps.append((app, listen(host, 443), {"ssl_certfile": str(state / "provider.pem"), "ssl_keyfile": str(state / "provider.key")}))
        return apps
    if role in ("witness", "outside"):
        from aislab.world.witnesses.catcher import Catcher
        from aislab.world.pki import CA, SNIContexts

        # The witness on a service's host answers to its own secret: the service shares that host,
        # and may read its traffic (CAP_NET_RAW, as in any container), so never the mocks' secret.
        records = Recorder(lab["witness_secret"] if role == "witness" else lab["admin_secret"])
        if role == "witness":
            archive(records, state / "witness-archive.json")
        certs = state / f"certs-{role}-{host}"  # per process: the witnesses and the collector start at once
        certs.mkdir(mode=0o700, exist_ok=True)
        tls = SNIContexts(CA.load(state), certs, "outside.lab")
        if role == "witness":  # inside the service's host: catches what ip(6)tables redirect
            catcher = Catcher(records, tls, lambda e: (502, b'{"error": "blocked by the lab egress witness"}'),
                              redirected=True, harness_ip=lab["harness_ip"])
            for any_address, loopback in (("0.0.0.0", "127.0.0.1"), ("::", "::1")):
                catcher.serve_tcp(any_address, lab["witness_tcp_port"])
                catcher.serve_udp(loopback, lab["witness_udp_port"])
            from starlette.routing import Mount

            from aislab.world.witnesses.packets import PacketWitness

            packets = Recorder(lab["witness_secret"])
            archive(packets, state / "packets-archive.json")
            PacketWitness(packets).start()
            app = Starlette(routes=[*records.routes(), Mount("/packets", routes=packets.routes()), probe_route(records)])
            return [(app, listen(host, port), {})]
        else:  # the outside world's catch-all: telemetry collectors and anything else
            catcher = Catcher(records, tls, lambda e: (200, b"{}"), redirected=False)
            catcher.serve_tcp(host, 443)
            catcher.serve_tcp(host, 80)
        return [(records_app(records), listen(host, port), {})]
    if role == "dns":
        from aislab.world.witnesses.dnssink import SinkholeResolver, serve as serve_dns

        records = Recorder(lab["admin_secret"])
        resolver = SinkholeResolver(lab["dns_names"], lab["outside_ip"], records.add, v4_only=frozenset(lab["v4_only"]),
                                    names_v6=lab["dns_names_v6"], default_v6=lab["outside_v6"])
        serve_dns(host, resolver)
        return [(records_app(records), listen(host, port), {})]
    raise SystemExit(f"unknown lab host role {role!r}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="aislab.world.hosts")
    parser.add_argument("role")
    parser.add_argument("--listen", required=True, help="IP:PORT of the host's main (or admin) server")
    parser.add_argument("--state", required=True, type=Path)
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    apps = run(args.role, host, int(port), args.state)
    print("READY", flush=True)
    if ready_file := os.environ.get("AISLAB_READY_FILE"):  # for those who cannot read our output (a pod's postStart)
        Path(ready_file).touch()
    serve(apps)


if __name__ == "__main__":
    sys.exit(main())
