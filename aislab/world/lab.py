"""The lab: one topology (IdP, control plane, LLM, the service under test) on any target,
with the harness's handles on it: tokens, chats, journals, resets."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from aislab import PROJECT
from aislab.world.witnesses.records import ADMIN_HEADER
from aislab.world.mocks.controlplane.rbac import Directory
from aislab.driver.client import ChatExchange, run_cli_chat, send_chat
from aislab.driver.model import Driver, render
from aislab.world.mocks.idp.tokens import SigningKey, TokenFactory, attacker_certificate, jwks_document
from aislab.world import proxies
from aislab.world.layout import SERVICE_UID
from aislab.world.pki import CA, write_private
from aislab.world.targets.base import (HOSTS, MOCKS, OUTSIDE_NAMES, OUTSIDE_V6, PORTS, WITNESS_TCP, WITNESS_UDP, LabError,
                                       LabProcess, Sandbox, Target)
from aislab.world.witnesses.reader import WitnessReader

FIXTURES = PROJECT / "fixtures"
ORG_ID = "org-lab"


@dataclass
class ServiceInstance:
    """One run of the service under test (for a one-shot assistant: one configuration period).
    Everything recorded between its start and the next instance's start is attributed to it:
    its start-up, its chats, its idle time, its shutdown."""

    number: int
    config: dict[str, str]  # the env that decides its network claims (opt-outs, proxies, LLM URL)
    started: float
    stopped: float | None = None

    def as_evidence(self) -> dict:
        return {"number": self.number, "config": self.config, "started": self.started, "stopped": self.stopped}


@dataclass
class Lab:
    target: Target
    driver: Driver
    fixtures: Path = FIXTURES
    timings: dict[str, float] = field(default_factory=dict)
    service: LabProcess | None = None
    service_overrides: dict[str, str] = field(default_factory=dict)
    life: list[ServiceInstance] = field(default_factory=list)

    def __post_init__(self):
        self.admin_secret = secrets.token_urlsafe(24)
        self.llm_api_key = "sk-lab-" + secrets.token_urlsafe(24)
        self.nonce = secrets.token_hex(4)
        self.service_token = ""  # minted in up(), with the lab's signing key
        self._values: dict[str, str] | None = None
        self.directory = Directory.load(self.fixtures / "lab" / "users.yaml")
        self.seed = yaml.safe_load((self.fixtures / "lab" / "seed.yaml").read_text())
        self.http = httpx.Client(trust_env=False, timeout=30)  # never the service's proxy settings
        self.witnesses = WitnessReader(self.http, self.url, self.admin_secret)
        self.dirs = self.target.dirs.create()
        self.state_dir = self.dirs.state
        # Proxies drop root: their configs and logs are public (nothing secret is in them).
        self.proxy_dir = self.dirs.public / "proxies"
        self.proxy_dir.mkdir(mode=0o755)
        self.proxy_logs: dict[str, Path] = {}
        self.proxy_offsets: dict[str, int] = {}
        self.sandbox: Sandbox | None = None  # how the service runs: decided once its command is known
        self.warnings: list[str] = []  # what a reviewer should know about this run (shown in the report)
        self.chats: list[bool] = []  # per chat sent, whether the service answered at all
        self.deaths = 0  # times the service exited on its own

    def __repr__(self) -> str:
        # Shown as a step argument in the Allure drill-down: short, no paths, no secrets.
        return f"Lab({self.target!r}, {self.driver!r})"

    # --- addresses ---------------------------------------------------------------------
    def url(self, host: str) -> str:
        if host == "witness":  # the witness lives on the service's host
            return f"http://{self.target.address('service')}:{PORTS['witness']}"
        return f"http://{self.target.address(host)}:{PORTS.get(host) or self.driver.service.port}"

    def proxy_url(self, kind: str, refusing: bool = False) -> str:
        return f"http://{self.target.address(kind)}:{proxies.PORTS[kind][1 if refusing else 0]}"

    @property
    def issuer(self) -> str:
        return self.url("idp")

    @property
    def service_url(self) -> str:
        return self.url("service")

    def values(self) -> dict[str, str]:
        """The driver's placeholders, filled. Fixed once the lab's token is minted, so kept."""
        if self._values is None or not self.service_token:
            self._values = self._compute_values()
        return dict(self._values)

    def _compute_values(self) -> dict[str, str]:
        vals = {
            "python": self.target.python,
            "lab.idp.url": self.url("idp"),
            "lab.idp.issuer": self.issuer,
            "lab.idp.jwks_url": self.url("idp") + "/keys",
            "lab.idp.discovery_url": self.url("idp") + "/.well-known/openid-configuration",
            "lab.controlplane.url": self.url("controlplane"),
            "lab.llm.url": self.url("llm") + "/v1",
            "lab.llm.api_key": self.llm_api_key,
            "lab.llm.model": "lab-model",
            "lab.org_id": ORG_ID,
            "lab.service_token": self.service_token,
            "lab.service.port": str(self.driver.service.port),
            "lab.ca_file": str(self.dirs.public / "ca.pem"),
            "lab.scratch_dir": str(self.dirs.scratch),
            "project": self.target.project,
        }
        vals.update({f"file:{name}": str(self.dirs.files / name) for name in self.driver.files})
        # The driver was checked when loaded: every env: placeholder it has is set.
        vals.update({f"env:{name}": value for name, value in os.environ.items()})
        return vals

    # --- bring-up ----------------------------------------------------------------------
    def up(self) -> "Lab":
        t0 = time.monotonic()
        # The hosts first: a target may learn their addresses only by making them (pods), and
        # everything written below names them.
        self.target.create()
        self.timings.update(self.target.timings)
        key = SigningKey.generate()
        self.tokens = TokenFactory(key, self.issuer, attacker_base=self.url("idp"))
        self.service_token = self.tokens.mint(self.directory.user_for("svc-ai-assistant"), exp=int(time.time()) + 86400)
        (self.state_dir / "jwks.json").write_text(json.dumps(jwks_document(key)))
        key.save(self.state_dir / "idp-signing-key.pem")  # as an IdP keeps it: the service must never read it
        # Key material the issuer never published, served where header-injection tokens point.
        (self.state_dir / "attacker-jwks.json").write_text(json.dumps(jwks_document(self.tokens.rogue_key)))
        (self.state_dir / "attacker-cert.pem").write_bytes(attacker_certificate(self.tokens.rogue_key))
        CA.create().save(self.state_dir)
        shutil.copy(self.state_dir / "ca.pem", self.dirs.public / "ca.pem")
        addr = self.target.address
        dns_names = {f"{h}.lab": addr(h) for h in HOSTS if h != "harness"}
        dns_names.update({name: addr(host) for name, host in OUTSIDE_NAMES.items()})
        lab_json = self.state_dir / "lab.json"
        lab_json.touch(mode=0o600)
        lab_json.write_text(json.dumps({
            "issuer": self.issuer,
            "admin_secret": self.admin_secret,
            "llm_api_key": self.llm_api_key,
            "model": "lab-model",
            "nonce": self.nonce,
            "users_file": str(self._share(self.fixtures / "lab" / "users.yaml")),
            "seed_file": str(self._share(self.fixtures / "lab" / "seed.yaml")),
            "provider_names": sorted(n for n, h in OUTSIDE_NAMES.items() if h == "provider"),
            "dns_names": dns_names,
            "dns_names_v6": {name: OUTSIDE_V6[host] for name, host in OUTSIDE_NAMES.items()},
            "outside_ip": addr("outside"),
            "outside_v6": OUTSIDE_V6["outside"],
            "harness_ip": addr("harness"),
            "service_ip": addr("service"),
            # The proxies are given IPv4 answers only; the service's host (dual-stack) AAAA too.
            "v4_only": [addr(h) for h in proxies.PROXIES],
            "witness_tcp_port": WITNESS_TCP,
            "witness_udp_port": WITNESS_UDP,
        }))
        self._render_driver_files()
        self.timings["network"] = time.monotonic() - t0
        t1 = time.monotonic()
        procs = [self._spawn_lab_host(host, host, f"{addr(host)}:{PORTS[host]}") for host in MOCKS]
        procs.append(self._spawn_lab_host("service", "witness", f"{addr('service')}:{PORTS['witness']}", net_admin=True))
        proxy_procs = self._spawn_proxies()
        with ThreadPoolExecutor(len(procs) + len(proxy_procs)) as pool:
            waits = [pool.submit(p.await_ready_line, 15) for p in procs]
            waits += [pool.submit(self._await_port, p, ip, port) for p, ip, port in proxy_procs]
            for w in waits:
                w.result()
        self.timings["mocks"] = time.monotonic() - t1
        self.start_service()
        self.timings["lab_up"] = time.monotonic() - t0
        return self

    def _render_driver_files(self) -> None:
        """Config files the driver templates with the lab's addresses and secrets: the service's
        own, so its user's alone."""
        values = self.values()
        for name, template in self.driver.files.items():
            path = self.dirs.files / name
            write_private(path, render(template, values, f"files.{name}").encode())
            os.chown(path, SERVICE_UID, SERVICE_UID)

    def _share(self, path: Path) -> Path:
        """A copy in the state directory, which every host of every target sees."""
        copy = self.state_dir / path.name
        copy.write_bytes(path.read_bytes())
        return copy

    def _spawn_lab_host(self, host: str, role: str, listen: str, net_admin: bool = False) -> LabProcess:
        return self.target.spawn(
            host,
            [self.target.python, "-m", "aislab.world.hosts", role, "--listen", listen, "--state", str(self.state_dir)],
            self._base_env(),
            self.dirs.logs / f"{role}.log",
            announces=True,
            net_admin=net_admin,
        )

    def _spawn_proxies(self) -> list[tuple[LabProcess, str, int]]:
        addr = self.target.address
        specs = {"tinyproxy": proxies.tinyproxy(self.proxy_dir, addr("tinyproxy"), addr("harness").rsplit(".", 1)[0]),
                 "squid": proxies.squid(self.proxy_dir, addr("squid"), addr("dns"))}
        started = []
        for kind, group in specs.items():
            for spec in group:
                proc = self.target.spawn(kind, spec.command, self._base_env(), self.dirs.logs / f"{spec.name}.log")
                self.proxy_logs[spec.name] = spec.log
                started += [(proc, addr(kind), port) for port in sorted(set(spec.ports))]
        return started

    def _await_port(self, proc: LabProcess, ip: str, port: int, timeout: float = 10) -> None:
        """For programs that announce nothing: connect until the port accepts, or the program dies."""

        def probe() -> str | None:
            with socket.socket() as s:
                s.settimeout(0.5)
                return None if s.connect_ex((ip, port)) == 0 else "refused"

        _await_ready(proc, probe, timeout, f"{ip}:{port} open")

    def _base_env(self) -> dict[str, str]:
        return {**self.target.process_env(), "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}

    def service_env(self, overrides: dict[str, str] | None = None) -> dict[str, str]:
        env = render(self.driver.service.env, self.values(), "service.env")
        # What the customer's values ask for and their chart drops stays dropped, as in their cluster.
        overrides = {k: v for k, v in (overrides or {}).items() if k not in self.driver.service.withheld_env}
        # Its HOME is its scratch directory unless the driver says otherwise: never the harness's.
        return {**self._base_env(), "HOME": str(self.dirs.scratch), **env, **overrides}

    def service_sandbox(self, command: list[str]) -> Sandbox:
        """Its own user where its command allows (said in the report where it does not)."""
        if self.sandbox is None:
            uid = SERVICE_UID if self.target.may_run_as(SERVICE_UID, command) else None
            if uid is None:
                self.warnings.append(f"the service ran as root in its sandbox: an unprivileged user cannot execute {command[0]} "
                                     "(its state, the lab's keys and the Docker socket stayed out of its sight)")
            self.sandbox = Sandbox(self.dirs, uid, keep=(self.target.project,))
        return self.sandbox

    def start_service(self, overrides: dict[str, str] | None = None) -> None:
        self.service_overrides = dict(overrides or {})
        self.proxy_offsets = {name: self.target.file_size(name.split("-")[0], path) for name, path in self.proxy_logs.items()}
        self._begin_instance()
        if self.driver.chat.mode == "cli":  # nothing long-running: every chat starts the assistant afresh
            return
        t0 = time.monotonic()
        spec = self.driver.service
        command = render(list(spec.command), self.values(), "service.command") if spec.command is not None else None
        self.service = self.target.spawn(
            "service", command, self.service_env(overrides), self.dirs.logs / "service.log", image=spec.image,
            sandbox=self.service_sandbox(command or [spec.image or ""]),
        )
        self._await_service()
        self.timings["service_start"] = time.monotonic() - t0

    def _begin_instance(self) -> None:
        env = self.service_env(self.service_overrides)
        net = self.driver.network
        decisive = {"DO_NOT_TRACK", *net.telemetry_off_env, net.llm_url_env,
                    *(v for k in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY") for v in (k, k.lower()))}
        config = {k: env[k] for k in sorted(decisive) if k in env}
        self.life.append(ServiceInstance(len(self.life) + 1, config, time.time()))

    def _await_service(self) -> None:
        ready = self.driver.service.ready

        def probe() -> str | None:
            try:
                status = self.http.get(self.service_url + ready.path, timeout=1).status_code
            except httpx.TransportError as err:
                return type(err).__name__
            return None if status == ready.status else f"HTTP {status}"

        _await_ready(self.service, probe, ready.timeout, f"GET {ready.path} answering {ready.status}")

    def restart_service(self, overrides: dict[str, str] | None = None, new_window: bool = True) -> None:
        self.stop_service()
        # Only now, with the old instance gone and its last words recorded, do the windows
        # start afresh: nothing it sent on its way out is blamed on the new one, and the new
        # one's start-up is all recorded. (A restart within a scenario keeps its window.)
        if new_window:
            self.reset_witnesses()
        self.start_service(overrides)
        self.timings["service_restarts"] = self.timings.get("service_restarts", 0) + 1

    def ensure_service(self, overrides: dict[str, str] | None = None, fresh: bool = False) -> None:
        """Run the service with exactly these overrides of its driver env (fresh: restart anyway,
        so that its start-up is observed)."""
        overrides = overrides or {}
        self.notice_exit()
        if fresh or overrides != self.service_overrides or not self.service_running():
            self.restart_service(overrides)

    def notice_exit(self) -> None:
        """A service that exited on its own is noticed and said (it is restarted when next needed)."""
        if self.service is not None and not self.service.alive() and self.life[-1].stopped is None:
            self.deaths += 1
            self.life[-1].stopped = time.time()
            self.warnings.append(f"the service (instance {self.life[-1].number}) exited with code {self.service.wait(0)} "
                                 "during the run and was restarted; its log is in service.log")

    def service_running(self) -> bool:
        return self.driver.chat.mode == "cli" or bool(self.service and self.service.alive() and self.life and self.life[-1].stopped is None)

    def stop_service(self) -> None:
        """Stop the running instance gracefully (its shutdown is part of its life) and wait
        until the witnesses have recorded everything it did."""
        if self.service is not None:
            if self.service.alive():
                self.timings["service_cpu"] = self.timings.get("service_cpu", 0.0) + self.service.cpu_seconds()
            self.service.stop()
            self.target.processes.remove(self.service)
            self.service = None
        if self.life and self.life[-1].stopped is None:
            self.life[-1].stopped = time.time()
            self.drain_witnesses()

    def drain_witnesses(self) -> None:
        """Wait until everything the service has sent so far is completely recorded."""
        self.witnesses.drain((self.target.address("service"), WITNESS_TCP))

    def down(self) -> None:
        """Tear the lab down and delete its state (keys, secrets, logs): what a report keeps
        was copied out, redacted, before."""
        try:
            self.stop_service()
        finally:
            self.http.close()
            self.target.destroy()  # the lab's directories go with it

    def redaction_secrets(self) -> dict[str, str]:
        """Every secret the lab knows of: its own, and what the driver marks secret in the service's env."""
        secrets = {"llm-api-key": self.llm_api_key, "lab-admin-secret": self.admin_secret}
        if self.service_token:  # the service's env can be rendered only once the lab is up
            env = self.service_env()
            secrets.update({f"env-{name}": env.get(name, "") for name in self.driver.secret_env})
        return secrets

    # --- harness handles ---------------------------------------------------------------
    def user(self, persona: str) -> dict:
        return self.directory.user_for(persona)

    def token(self, persona: str, variant: str | None = None) -> str:
        user = self.user(persona)
        return self.tokens.bad(variant, user) if variant else self.tokens.mint(user)

    def chat(self, prompt: str, token: str | None, environment: str = "env-prod", user: str | None = None) -> ChatExchange:
        values = {**self.values(), "prompt": prompt, "environment": environment}
        if token is not None:
            values["user.token"] = token
        if self.driver.chat.mode == "cli":
            command = render(list(self.driver.chat.command), {**values, "output_file": "-"}, "chat.command")
            exchange = run_cli_chat(self.target, self.driver.chat, values, self.service_env(self.service_overrides), user,
                                    self.dirs.outputs, self.dirs.logs / "service.log", self.service_sandbox(command))
        else:
            exchange = send_chat(self.http, self.service_url, self.driver.chat, values, user)
        self.timings["chat_wall"] = self.timings.get("chat_wall", 0.0) + exchange.seconds
        self.chats.append(exchange.answered)
        return exchange

    def _admin(self, method: str, host: str, path: str, **kw) -> httpx.Response:
        response = self.http.request(method, self.url(host) + path, headers={ADMIN_HEADER: self.admin_secret}, **kw)
        if response.status_code != 200:
            raise LabError(f"lab admin {method} {host}{path} -> {response.status_code}: {response.text[:300]}")
        return response

    def reset(self) -> None:
        """A fresh control plane (seed state, empty audit log) and LLM scripts, and new windows
        on every witness; what the witnesses recorded before stays part of the lab's life."""
        self._admin("POST", "controlplane", "/_lab/reset")
        self._admin("POST", "llm", "/_lab/reset")
        self.reset_witnesses()

    def reset_witnesses(self) -> None:
        """Open new windows on every recording host. The proxies' logs are read from the
        service's last start instead: a tunnel it opened then and keeps alive is logged only once."""
        self.witnesses.mark_all()

    def await_records(self, host: str, predicate, timeout: float) -> list[dict]:
        """Records of `host` once one satisfies `predicate`, or all of them at the deadline."""
        self.await_condition(lambda: any(predicate(r) for r in self.records(host)), timeout)
        return self.records(host)

    def await_condition(self, condition, timeout: float) -> bool:
        """Look again until `condition()` holds or the deadline passes; say which."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() >= deadline:
                return False
            threading.Event().wait(0.05)  # back-off between looks at the witnesses
        return True

    def idle(self, seconds: float) -> None:
        """An observation window in which the harness does nothing and the witnesses listen."""
        threading.Event().wait(seconds)

    def records(self, host: str) -> list[dict]:
        """What a recording host saw in the current window (see RECORDING_HOSTS)."""
        return self.witnesses.since_mark(host)

    def proxy_records(self, whole_life: bool = False) -> list[dict]:
        """Access-log lines the proxies wrote since the service last started (or ever), parsed,
        and the tunnels squid has open now."""
        out = []
        for name, path in self.proxy_logs.items():
            text = self.target.read_file(name.split("-")[0], path, 0 if whole_life else self.proxy_offsets.get(name, 0))
            text = text.decode("utf-8", "replace")
            out += [{**r, "instance": name} for r in proxies.parse_log(name.split("-")[0], text)]
        active = self.http.get(f"{self.proxy_url('squid')}/squid-internal-mgr/active_requests")
        out += [{**r, "instance": "squid"} for r in proxies.parse_squid_active(active.text)]
        return out

    def register_scripts(self, scripts: list[dict]) -> None:
        for host in ("llm", "provider"):  # whichever the service is pointed at
            self._admin("POST", host, "/_lab/scripts", json=scripts)

    def cp_journal(self) -> list[dict]:
        return self.records("controlplane")

    def llm_requests(self) -> list[dict]:
        return self.records("llm")

    def cp_digest(self) -> str:
        """A hash of the control plane's whole state: any change a request made shows in it."""
        return self._admin("GET", "controlplane", "/_lab/state").json()["digest"]

    def cp_canaries(self) -> set[str]:
        return set(self._admin("GET", "controlplane", "/_lab/canaries").json())

    def audit_log(self) -> list[dict]:
        """The audit log as a customer reads it: the real endpoint, as an organization owner."""
        response = self.http.get(
            f"{self.url('controlplane')}/organizations/{ORG_ID}/audit",
            params={"pageSize": 10000},
            headers={"Authorization": f"Bearer {self.token('owner')}"},
        )
        if response.status_code != 200:
            raise LabError(f"audit log read failed: {response.status_code} {response.text[:300]}")
        return response.json()["items"]

    def cp_get(self, path: str, token: str, method: str = "GET", **kw) -> httpx.Response:
        return self.http.request(method, self.url("controlplane") + path, headers={"Authorization": f"Bearer {token}"}, **kw)


def _await_ready(proc: LabProcess, probe, timeout: float, wanted: str) -> None:
    """Probe until `probe()` returns None (ready) or the process dies; a failure shows its log.
    The wait on the process doubles as the pause between probes and as exit detection."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        last = probe()
        if last is None:
            return
        code = proc.wait(0.05)
        if code is None:
            continue
        raise LabError(f"{proc.name} exited with code {code} before it was ready; its log:\n{proc.tail()}")
    raise LabError(f"{proc.name} not ready within {timeout:.0f}s ({wanted}; last: {last}); its log:\n{proc.tail()}")
