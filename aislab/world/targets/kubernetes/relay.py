"""The harness's way into a cluster whose pod network this machine cannot route to: every
connection the harness makes to a lab host (a mock's admin port, the service's chat port, the
witness) goes through a local port and an exec into the lab's `harness` pod, which connects
from there. So the harness has an address of its own on the lab's network, as on every target,
and needs nothing of the cluster beyond what a lab already does (exec): no port-forward (whose
connections arrive on the pod's loopback, where the lab's programs do not listen), no API-server
proxy.

Bytes travel base64-encoded, a line at a time (the exec protocol of older clusters cannot close
stdin: an empty line says the harness's side is done)."""

from __future__ import annotations

import base64
import socket
import threading

import httpx

CHUNK = 48 * 1024


class Relay:
    """Local ports, one per lab host's address and port, relayed through the harness pod."""

    def __init__(self, open_exec, podside: list[str]):
        self._open_exec = open_exec  # command -> a live exec stream (kubernetes WSClient) in the harness pod
        self._podside = podside
        self._ports: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()
        self._listeners: list[socket.socket] = []

    def reach(self, address: str, port: int) -> tuple[str, int]:
        with self._lock:
            if (address, port) not in self._ports:
                listener = socket.create_server(("127.0.0.1", 0))
                self._listeners.append(listener)
                self._ports[(address, port)] = listener.getsockname()[1]
                threading.Thread(target=self._accept, args=(listener, address, port), daemon=True,
                                 name=f"relay-{address}:{port}").start()
            return "127.0.0.1", self._ports[(address, port)]

    def close(self) -> None:
        for listener in self._listeners:
            listener.close()

    def _accept(self, listener: socket.socket, address: str, port: int) -> None:
        while True:
            try:
                local, _ = listener.accept()
            except OSError:
                return  # closed at teardown
            threading.Thread(target=self._pump, args=(local, address, port), daemon=True).start()

    def _pump(self, local: socket.socket, address: str, port: int) -> None:
        try:
            ws = self._open_exec([*self._podside, "relay", address, str(port)])
        except Exception:  # noqa: BLE001 - the lab is going: the harness's side just closes
            local.close()
            return
        done = threading.Event()

        def outbound() -> None:  # this machine -> the lab host
            try:
                while data := local.recv(CHUNK):
                    ws.write_stdin(base64.b64encode(data).decode() + "\n")
                ws.write_stdin("\n")
            except Exception:  # noqa: BLE001 - the lab host's side closed first: nothing more to send
                pass

        threading.Thread(target=outbound, daemon=True).start()
        buffered = ""
        try:
            while ws.is_open() and not done.is_set():
                ws.update(timeout=1)
                if ws.peek_stdout():
                    buffered += ws.read_stdout()
                    *lines, buffered = buffered.split("\n")
                    for line in lines:
                        local.sendall(base64.b64decode(line))
        except OSError:
            pass
        finally:
            ws.close()
            try:
                local.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            local.close()


class RelayTransport(httpx.BaseTransport):
    """httpx's own transport, connecting where `reach` says (the Host header stays the lab's)."""

    def __init__(self, reach):
        self._reach = reach
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host, port = self._reach(request.url.host, request.url.port or 80)
        request.url = request.url.copy_with(host=host, port=port)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def relay_side(address: str, port: int) -> int:
    """In the harness pod (podside relay): connect to the lab host, copy stdin's lines to it and
    its bytes to stdout, as lines."""
    import sys

    try:
        remote = socket.create_connection((address, port), timeout=10)
    except OSError as err:
        print(f"relay: cannot reach {address}:{port}: {err}", file=sys.stderr)
        return 1
    remote.settimeout(None)

    def inbound() -> None:
        for line in sys.stdin:
            line = line.strip()
            if not line:
                break
            remote.sendall(base64.b64decode(line))
        try:
            remote.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    threading.Thread(target=inbound, daemon=True).start()
    out = sys.stdout
    while data := remote.recv(CHUNK):
        out.write(base64.b64encode(data).decode() + "\n")
        out.flush()
    remote.close()
    return 0
