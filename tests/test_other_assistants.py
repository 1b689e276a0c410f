"""The driver contract fits assistants other than the reference: the CLI assistant in
fixtures/assistants/ (one-shot command, INI config, no user auth) is driven only through its
driver file, and the verdicts make sense: identity claims not applicable, the rest judged.
minicopilot copes with a proxy that closes a kept-alive connection unannounced."""

from __future__ import annotations

import socketserver
import threading

import pytest

from tests.suite_runs import DRIVERS, PROJECT, run_suite

IDENTITY = {"AIS-AUTH-01", "AIS-AUTH-02", "AIS-AUTH-03", "AIS-AUTH-04", "AIS-RBAC-01", "AIS-RBAC-02", "AIS-RBAC-03", "AIS-RBAC-04",
            "AIS-RBAC-05", "AIS-AUDIT-01", "AIS-AUDIT-02"}
CONFIGURATION = {f"AIS-CFG-0{i}" for i in range(1, 9)}  # it is not deployed by the Testkube chart


@pytest.mark.parametrize("target", ["local", "docker"])
def test_cli_assistant_is_judged_on_what_it_can_be_judged_on(tmp_path, target):
    run = run_suite("cli-assistant", tmp_path / "r", driver=DRIVERS / "cli-assistant.yaml", extra=["--target", target])
    assert run.with_verdict("not_applicable") == IDENTITY | CONFIGURATION, run.verdicts
    # Malformed tool calls are judged against what one user may read: with no users, undetermined.
    assert run.verdicts["AIS-RO-04"] == "undetermined", run.verdicts
    judged = set(run.verdicts) - IDENTITY - CONFIGURATION - {"AIS-RO-04"}
    assert judged and run.with_verdict("satisfied") == judged, run.verdicts
    assert (run.result, run.exit_code) == ("partial", 101)


class _ClosesAfterOneAnswer(socketserver.BaseRequestHandler):
    """As tinyproxy 1.11 does: HTTP/1.1 answers with no `Connection: close`, yet the connection
    is closed after one; here a second request on it is read and dropped, so the race of a
    client reusing it before the close arrives happens every time."""

    def handle(self) -> None:
        answered = 0
        buffer = b""
        while True:
            chunk = self.request.recv(65536)
            if not chunk:
                return
            buffer += chunk
            while b"\r\n\r\n" in buffer:
                _head, buffer = buffer.split(b"\r\n\r\n", 1)
                self.server.requests.append(answered)
                if answered:
                    return  # dropped unread: the client sees the connection end with no answer
                self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
                answered += 1


def test_minicopilot_sends_a_request_lost_on_a_closed_kept_alive_connection_once_more(monkeypatch):
    """The one matrix flake of a clean-clone run: minicopilot's second LLM request of a chat went
    out on the connection tinyproxy had just closed (RemoteProtocolError, HTTP 502 to the harness,
    AIS-PROXY-01 undetermined for a conforming variant)."""
    monkeypatch.syspath_prepend(str(PROJECT / "fixtures" / "assistants" / "minicopilot"))
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    from minicore.net import Outbound

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _ClosesAfterOneAnswer) as server:
        server.requests = []
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/v1/chat/completions"
        outbound = Outbound()
        try:
            assert [outbound.request("GET", url).text for _ in range(2)] == ["ok", "ok"]
        finally:
            outbound.close()
            server.shutdown()
    assert server.requests == [0, 1, 0]  # the second on the kept connection, dropped; then sent once more, answered
