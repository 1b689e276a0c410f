"""Entry point of every mock host: `python -m aislab.hosts ROLE --listen IP:PORT --state DIR`.

It binds its socket first and only then prints READY, so the lab awaits an event instead of
polling a port; the kernel queues connections until uvicorn accepts them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from pathlib import Path

import uvicorn


def build_app(role: str, state_dir: Path):
    lab = json.loads((state_dir / "lab.json").read_text())
    if role == "idp":
        from aislab.idp.app import create_app

        return create_app(state_dir, lab["issuer"])
    if role == "controlplane":
        from aislab.controlplane.app import ControlPlane
        from aislab.controlplane.rbac import Directory
        from aislab.controlplane.store import Store

        return ControlPlane(
            state_dir,
            lab["issuer"],
            lab["admin_secret"],
            Directory.load(Path(lab["users_file"])),
            Store.load(Path(lab["seed_file"]), lab["nonce"]),
        )
    if role == "llm":
        from aislab.llm.app import MockLLM

        return MockLLM(lab["llm_api_key"], lab["admin_secret"], lab["model"]).app()
    raise SystemExit(f"unknown lab host role {role!r}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="aislab.hosts")
    parser.add_argument("role")
    parser.add_argument("--listen", required=True, help="IP:PORT")
    parser.add_argument("--state", required=True, type=Path)
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    app = build_app(args.role, args.state)
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when the
    # protocol says TCP, and without it every keep-alive response stalls 40 ms (Nagle + delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    sock.listen(128)
    print("READY", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


if __name__ == "__main__":
    sys.exit(main())
