"""The lab: one topology (IdP, control plane, LLM, the service under test) on any target,
with the harness's handles on it: tokens, chats, journals, resets."""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
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
from aislab.world.targets.base import (ADMIN_PORTS, HOSTS, IDLE_HOSTS, MOCKS, OUTSIDE_NAMES, OUTSIDE_V6, PORTS, SERVICE_HOSTS, WITNESS_TCP, WITNESS_UDP,
                                       LabError, LabProcess, Sandbox, Target)
from aislab.world.witnesses.reader import RECORDING_HOSTS, WitnessReader, witness_host

FIXTURES = PROJECT / "fixtures"


class PreflightError(LabError):
    """The service cannot even be started as its driver says: a broken input, never a verdict."""
ORG_ID = "org-lab"


class ClientPool:
    """httpx.Clients, each used by one thread at a time and handed back after the call: the
    harness talks to the lab from many threads at once, and httpcore's shared pool can close a
    connection it has just handed to another thread (encode/httpcore#1110: the request then reads
    a closed socket, EBADF, or hangs). Pooled, not one per thread: threads come and go with each
    executor, and a client per thread kept their connections (on a cluster reached through the
    relay, an exec each) open for the whole run."""

    def __init__(self, transport=lambda: None, **options):
        self._transport, self._options = transport, options  # a transport per client too: each has its own pool
        self._idle: list[httpx.Client] = []
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()

    def _acquire(self) -> httpx.Client:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            client = httpx.Client(transport=self._transport(), **self._options)
            self._clients.append(client)
            return client

    def request(self, *args, **kw) -> httpx.Response:
        client = self._acquire()
        try:
            return client.request(*args, **kw)
        finally:
            with self._lock:
                self._idle.append(client)

    def get(self, url, **kw) -> httpx.Response:
        return self.request("GET", url, **kw)

    def post(self, url, **kw) -> httpx.Response:
        return self.request("POST", url, **kw)

    def close(self) -> None:
        with self._lock:
            for client in self._clients:
                client.close()
            self._clients.clear()
            self._idle.clear()


@dataclass
class ServiceInstance:
    """One run of the service under test (for a one-shot assistant: one configuration period).
    Everything recorded between its start and the next instance's start is attributed to it:
    its start-up, its chats, its idle time, its shutdown."""

    number: int
    config: dict[str, str]  # the env that decides its network claims (opt-outs, proxies, LLM URL)
    started: float
    stopped: float | None = None
    host: str = "service"
    ready: bool = False  # it reached readiness (a one-shot assistant's period never does: its chats run it)

    def as_evidence(self) -> dict:
        return {"number": self.number, "host": self.host, "config": self.config, "started": self.started,
                "stopped": self.stopped, "ready": self.ready}


@dataclass
class LabProgram:
    """A program the lab runs (a mock, a witness, a proxy) and how to start it (again)."""

    name: str
    starter: Callable[[], LabProcess]
    process: LabProcess | None = None

    def start(self) -> "LabProgram":
        self.process = self.starter()
        return self

    def trouble(self) -> str | None:
        """Why it cannot serve: it died or stopped (SIGSTOP, a debugger), or None."""
        if self.process is None or not self.process.alive():
            return f"died (exit {self.process.wait(0) if self.process else '?'})"
        return "stalled (stopped)" if self.process.stalled() else None


@dataclass
class ChatRecord:
    """One chat the harness sent, and what the lab's records say the service did for it."""

    role: str  # "judged": a chat the scenario judges; "control": a positive control or warm-up
    token: str  # "valid", "bad" or "none"
    instance: int  # the service instance (a one-shot assistant: its configuration period)
    host: str
    status: int  # the service's word (shown, never required)
    succeeded: bool
    ran: bool  # the service was there to answer (a one-shot command found and started; HTTP: any answer)
    started: float
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def reached_llm(self) -> bool:
        return self.counts.get("llm-requests", 0) > 0


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
        self.witness_secret = secrets.token_urlsafe(24)  # the witnesses beside the service: their own
        self.llm_api_key = "sk-lab-" + secrets.token_urlsafe(24)
        self.nonce = secrets.token_hex(4)
        self.service_token = ""  # minted in up(), with the lab's signing key
        self._values: dict[str, str] | None = None
        self.directory = Directory.load(self.fixtures / "lab" / "users.yaml")
        self.seed = yaml.safe_load((self.fixtures / "lab" / "seed.yaml").read_text())
        # Never the service's proxy settings; through the target's way to its hosts (on a cluster
        # whose pods this machine cannot route to, a relay); a lab host that does not answer in
        # seconds has died or stalls. (The lab's hosts keep idle connections longer than httpx
        # does: none is reused as its server closes it.)
        client = functools.partial(ClientPool, self.target.http_transport, trust_env=False, timeout=httpx.Timeout(10, connect=3))
        self.http = client()
        # The service under test gets a fresh connection for every request: its keep-alive is its
        # own (gunicorn's 2 s, say), and one that closes a connection just after answering on it
        # (uvicorn after an app error: Starlette's 500 goes out keep-alive) would make the next
        # chat fail on the harness's reuse, not on anything the service did.
        self.service_http = client(limits=httpx.Limits(max_keepalive_connections=0))
        self.witnesses = WitnessReader(self.http, self.admin_url, self.secret_of)
        self.dirs = self.target.dirs.create()
        self.state_dir = self.dirs.state
        # Proxies drop root: their configs and logs are public (nothing secret is in them).
        self.proxy_dir = self.dirs.public / "proxies"
        self.proxy_dir.mkdir(mode=0o755)
        self.proxy_logs: dict[str, Path] = {}
        self.proxy_offsets: dict[str, int] = {}
        self.sandbox: Sandbox | None = None  # how the service runs: decided once its command is known
        self.warnings: list[str] = []  # what a reviewer should know about this run (shown in the report)
        self.chat_records: list[ChatRecord] = []  # every chat sent, and what the lab saw the service do for it
        self._chat_clock, self._chats_in_flight, self._busy_since = threading.Lock(), 0, 0.0
        self.idle_seconds = 0.0  # time the service idled under observation, all scenarios together
        self.deaths = 0  # times the service exited on its own
        self.idle_instances = None  # aislab.world.idle.IdleInstances, when the run judges whole lives
        self.programs: dict[str, LabProgram] = {}
        self.losses: list[str] = []  # lab programs started afresh: what they had recorded is gone

    def __repr__(self) -> str:
        # Shown as a step argument in the Allure drill-down: short, no paths, no secrets.
        return f"Lab({self.target!r}, {self.driver!r})"

    # --- addresses ---------------------------------------------------------------------
    def url(self, host: str) -> str:
        """A lab host's main (or admin) URL. The witnesses live on the service's hosts:
        `witness` and `packets` on the main one, `witness:HOST` and `packets:HOST` on the others."""
        kind, _, on = host.partition(":")
        if kind == "witness":
            return f"http://{self.target.address(on or 'service')}:{PORTS['witness']}"
        if kind == "packets":
            return self.url(f"witness:{on or 'service'}") + "/packets"
        if host in SERVICE_HOSTS:
            return f"http://{self.target.address(host)}:{self.driver.service.port}"
        return f"http://{self.target.address(host)}:{PORTS[host]}"

    def admin_url(self, host: str) -> str:
        """Where a lab host's records and `/_lab/` endpoints are: its main URL, or the admin
        port of a host whose main port the lab can take down (the IdP)."""
        if host in ADMIN_PORTS:
            return f"http://{self.target.address(host)}:{ADMIN_PORTS[host]}"
        return self.url(host)

    def secret_of(self, host: str) -> str:
        return self.witness_secret if host.partition(":")[0] in ("witness", "packets") else self.admin_secret

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
            "witness_secret": self.witness_secret,
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
            "service_ips": [addr(h) for h in SERVICE_HOSTS],
            # Every lab host but the service's gets IPv4 answers only: a service host is dual-stack
            # (its address may move: a pod per instance on Kubernetes, so it is named by the others').
            "v4_only": [addr(h) for h in HOSTS if h not in SERVICE_HOSTS],
            "witness_tcp_port": WITNESS_TCP,
            "witness_udp_port": WITNESS_UDP,
        }))
        self._render_driver_files()
        self.timings["network"] = time.monotonic() - t0
        t1 = time.monotonic()
        # Every lab program, and how to start it again should it die or stall (heal).
        self.programs = {host: LabProgram(host, lambda h=host: self._ready(self._spawn_lab_host(h, h, f"{addr(h)}:{PORTS[h]}")))
                         for host in MOCKS}
        # The idle instance's witness starts with it, in the background.
        self.programs["witness"] = LabProgram("witness", lambda: self._ready(self.spawn_witness("service")))
        for kind, spec in self._proxy_specs():
            self.programs[spec.name] = LabProgram(spec.name, lambda k=kind, sp=spec: self._start_proxy(k, sp))
        with ThreadPoolExecutor(len(self.programs)) as pool:
            list(pool.map(LabProgram.start, self.programs.values()))
        self.timings["mocks"] = time.monotonic() - t1
        self.preflight()
        self.start_service()
        self.timings["lab_up"] = time.monotonic() - t0
        return self

    def preflight(self) -> None:
        """Before any scenario: the driver's command (or a one-shot assistant's chat command) can
        run inside the service's sandbox, seen from inside it; otherwise every chat would fail for
        a reason that has nothing to do with the service, and its silence would prove nothing."""
        spec, values = self.driver.service, {**self.values(), "prompt": "preflight", "environment": "env-prod",
                                             "user.token": "preflight", "output_file": str(self.dirs.outputs / "preflight")}
        if self.driver.chat.mode == "cli":
            where, command = "chat.command", render(list(self.driver.chat.command), values, "chat.command")
        elif spec.command is not None and spec.image is None:
            where, command = "service.command", render(list(spec.command), values, "service.command")
        else:
            return  # an image brings its own program
        problems = self.target.unrunnable(command, self.service_sandbox(command))
        if problems:
            raise PreflightError(f"the driver's {where} cannot run inside the service's sandbox: " + "; ".join(problems))

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

    def _spawn_lab_host(self, host: str, role: str, listen: str, net_admin: bool = False, background: bool = False) -> LabProcess:
        return self.target.spawn(
            host,
            [self.target.python, "-m", "aislab.world.hosts", role, "--listen", listen, "--state", str(self.state_dir)],
            self._base_env(),
            self.dirs.logs / (f"{role}.log" if host in (role, "service") else f"{role}-{host}.log"),
            announces=True,
            net_admin=net_admin,
            background=background,
        )

    def spawn_witness(self, host: str, background: bool = False) -> LabProcess:
        """The egress and packet witnesses beside the service on one of its hosts."""
        return self._spawn_lab_host(host, "witness", f"{self.target.address(host)}:{PORTS['witness']}", net_admin=True, background=background)

    def _proxy_specs(self) -> list[tuple[str, proxies.ProxySpec]]:
        addr = self.target.address
        specs = {"tinyproxy": proxies.tinyproxy(self.proxy_dir, addr("tinyproxy"), self.target.lab_network()),
                 "squid": proxies.squid(self.proxy_dir, addr("squid"), addr("dns"))}
        return [(kind, spec) for kind, group in specs.items() for spec in group]

    def _start_proxy(self, kind: str, spec: proxies.ProxySpec) -> LabProcess:
        proc = self.target.spawn(kind, spec.command, self._base_env(), self.dirs.logs / f"{spec.name}.log")
        self.proxy_logs[spec.name] = spec.log
        for port in sorted(set(spec.ports)):
            self._await_port(proc, self.target.address(kind), port)
        return proc

    @staticmethod
    def _ready(proc: LabProcess) -> LabProcess:
        proc.await_ready_line(15)
        return proc

    def _await_port(self, proc: LabProcess, ip: str, port: int, timeout: float = 10) -> None:
        """For programs that announce nothing: connect until the port accepts, or the program dies."""

        def probe() -> str | None:
            with socket.socket() as s:
                s.settimeout(0.5)
                return None if s.connect_ex(self.target.reach(ip, port)) == 0 else "refused"

        _await_ready(proc, probe, timeout, f"{ip}:{port} open")

    def _base_env(self) -> dict[str, str]:
        return {**self.target.process_env(), "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}

    def service_env(self, overrides: dict[str, str] | None = None, host: str = "service") -> dict[str, str]:
        env = render(self.driver.service.env, self.values(), "service.env")
        # What the customer's values ask for and their chart drops stays dropped, as in their cluster.
        overrides = {k: v for k, v in (overrides or {}).items() if k not in self.driver.service.withheld_env}
        # Its HOME is its scratch directory unless the driver says otherwise: never the harness's.
        home = str(self.dirs.instance_dirs(host)[1])
        return {**self._base_env(), "HOME": home, **env, **overrides}

    def service_sandbox(self, command: list[str], host: str = "service") -> Sandbox:
        """Its own user where its command allows (said in the report where it does not); on each
        of its hosts its own /tmp."""
        if self.sandbox is None:
            uid = SERVICE_UID if self.target.may_run_as(SERVICE_UID, command) else None
            if uid is None:
                self.warnings.append(f"the service ran as root in its sandbox: an unprivileged user cannot execute {command[0]} "
                                     "(its state, the lab's keys and the Docker socket stayed out of its sight)")
            self.sandbox = Sandbox(self.dirs, uid, keep=(self.target.project, *self.driver.service.keep_in_sight))
        return self.sandbox if host == "service" else replace(self.sandbox, tmp=self.dirs.instance_dirs(host)[0])

    def start_service(self, overrides: dict[str, str] | None = None) -> None:
        self.service_overrides = dict(overrides or {})
        self.proxy_offsets = {name: self.target.file_size(name.split("-")[0], path) for name, path in self.proxy_logs.items()}
        instance = self._begin_instance(self.service_overrides)
        if self.driver.chat.mode == "cli":  # nothing long-running: every chat starts the assistant afresh
            return
        t0 = time.monotonic()
        self.service = self.launch("service", self.service_overrides)
        instance.ready = True
        self.timings["service_start"] = time.monotonic() - t0
        # The floor of a run (aislab.bench): every start-up as the service spends it.
        self.timings["service_starts_total"] = self.timings.get("service_starts_total", 0.0) + self.timings["service_start"]

    def launch(self, host: str, overrides: dict[str, str], background: bool = False) -> LabProcess:
        """Start the service on one of its hosts and wait until it is ready."""
        spec = self.driver.service
        command = render(list(spec.command), self.values(), "service.command") if spec.command is not None else None
        process = self.target.spawn(
            host, command, self.service_env(overrides, host), self.dirs.service_logs / ("service.log" if host == "service" else f"service-{host}.log"),
            image=spec.image, sandbox=self.service_sandbox(command or [spec.image or ""], host), background=background,
        )
        self._await_service(process, host)
        return process

    def _begin_instance(self, overrides: dict[str, str], host: str = "service") -> ServiceInstance:
        env = self.service_env(overrides, host)
        net = self.driver.network
        decisive = {"DO_NOT_TRACK", *net.telemetry_off_env, net.llm_url_env,
                    *(v for k in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY") for v in (k, k.lower()))}
        config = {k: env[k] for k in sorted(decisive) if k in env}
        instance = ServiceInstance(len(self.life) + 1, config, time.time(), host=host)
        self.life.append(instance)
        return instance

    def current(self, host: str = "service") -> ServiceInstance | None:
        """The latest instance on a host (the running one, unless it was stopped)."""
        return next((i for i in reversed(self.life) if i.host == host), None)

    def _await_service(self, process: LabProcess, host: str) -> None:
        ready = self.driver.service.ready
        url = self.url(host) + ready.path

        def probe() -> str | None:
            try:
                status = self.service_http.get(url, timeout=1).status_code
            except httpx.TransportError as err:
                return type(err).__name__
            return None if status == ready.status else f"HTTP {status}"

        _await_ready(process, probe, ready.timeout, f"GET {ready.path} answering {ready.status}")

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

    def heal(self) -> list[str]:
        """Start afresh every lab program that died or stalls, and say so: what a recording host
        kept before is lost with it, so the whole life is no longer on record (`losses`)."""
        healed = []
        for program in self.programs.values():
            why = program.trouble()
            if why is None:
                continue
            if program.process is not None:
                program.process.signal(signal.SIGKILL)
                program.process.wait(10)
                self.target.processes.remove(program.process)
                program.process = None  # a start that fails leaves it dead, not the old one again
            program.start()
            self.witnesses.forget(program.name)
            healed.append(f"the lab's {program.name} {why} at {time.strftime('%H:%M:%S')} and was started afresh")
            if program.name in RECORDING_HOSTS:  # (a proxy's log is on disk: nothing of it is lost)
                self.losses.append(healed[-1])
        self.warnings += healed
        return healed

    def troubled(self) -> list[str]:
        """The lab programs that cannot serve now, and why."""
        return [f"the lab's {p.name} {why}" for p in self.programs.values() if (why := p.trouble())]

    def notice_exit(self) -> None:
        """A service that exited on its own is noticed and said (it is restarted when next needed)."""
        instance = self.current()
        if self.service is not None and not self.service.alive() and instance.stopped is None:
            self.deaths += 1
            instance.stopped = time.time()
            self.warnings.append(f"the service (instance {instance.number}) exited with code {self.service.wait(0)} "
                                 "during the run and was restarted; its log is in service.log")

    def service_running(self) -> bool:
        instance = self.current()
        return self.driver.chat.mode == "cli" or bool(self.service and self.service.alive() and instance and instance.stopped is None)

    def stop_service(self) -> None:
        """Stop the running instance gracefully (its shutdown is part of its life) and wait
        until the witnesses have recorded everything it did."""
        if self.service is not None:
            t0 = time.monotonic()
            self.stop_process(self.service)
            # The floor of a run (aislab.bench): every stop as the service spends it (its graceful
            # shutdown, which a restart cannot skip: the next instance needs its port).
            self.timings["service_stops_total"] = self.timings.get("service_stops_total", 0.0) + time.monotonic() - t0
            self.service = None
        instance = self.current()
        if instance and instance.stopped is None:
            instance.stopped = time.time()
            self.drain_witnesses()

    def stop_process(self, process: LabProcess) -> None:
        if process.alive():
            self.timings["service_cpu"] = self.timings.get("service_cpu", 0.0) + process.cpu_seconds()
        process.stop()
        self.target.processes.remove(process)

    def settle_idle_instances(self) -> None:
        """Wait until the instance kept idle is started and exercised: a fault the lab injects
        for a scenario (the identity provider down) is not meant for it."""
        if self.idle_instances is not None:
            self.idle_instances.settled()

    def end_life(self) -> None:
        """The end of the service's life on every host: each instance stopped, its last words recorded."""
        self.stop_service()
        if self.idle_instances is not None:
            self.idle_instances.stop()

    def drain_witnesses(self, host: str = "service") -> None:
        """Wait until everything the service has sent so far from a host is completely recorded."""
        self.witnesses.drain(self.target.reach(self.target.address(host), WITNESS_TCP), witness_host(host))

    def down(self) -> None:
        """Tear the lab down and delete its state (keys, secrets, logs): what a report keeps
        was copied out, redacted, before."""
        try:
            self.end_life()
        finally:
            self.http.close()
            self.service_http.close()
            self.target.destroy()  # the lab's directories go with it

    def redaction_secrets(self) -> dict[str, str]:
        """Every secret the lab knows of: its own, and what the driver marks secret in the service's env."""
        secrets = {"llm-api-key": self.llm_api_key, "lab-admin-secret": self.admin_secret, "lab-witness-secret": self.witness_secret}
        if self.service_token:  # the service's env can be rendered only once the lab is up
            env = self.service_env()
            secrets.update({f"env-{name}": env.get(name, "") for name in self.driver.secret_env})
        return secrets

    # --- harness handles ---------------------------------------------------------------
    def user(self, persona: str) -> dict:
        return self.directory.user_for(persona)

    def identity(self, persona: str) -> set[str]:
        """Every name the user goes by (what a header naming them may carry)."""
        return _names(self.user(persona))

    def people(self) -> dict[str, set[str]]:
        """Every person of the lab (not the API tokens), by subject, with the names they go by."""
        return {u["sub"]: _names(u) for u in self.directory.users.values() if u.get("kind") != "api-token"}

    def token(self, persona: str, variant: str | None = None) -> str:
        user = self.user(persona)
        return self.tokens.bad(variant, user) if variant else self.tokens.mint(user)

    def token_kind(self, token: str | None) -> str:
        if token is None:
            return "none"
        return "valid" if token in self.tokens.minted else "bad"

    def chat(self, prompt: str, token: str | None, environment: str = "env-prod", user: str | None = None,
             role: str = "judged") -> ChatExchange:
        return self.converse(prompt, token, environment, user, role)[0]

    def converse(self, prompt: str, token: str | None, environment: str = "env-prod", user: str | None = None,
                 role: str = "judged", host: str = "service", patience: float = 0.0) -> tuple[ChatExchange, ChatRecord]:
        """A chat, and its record: to which instance it went, with which kind of token, and (once
        the caller has read its window) what the service did for it. `patience`: seconds the chat
        may take beyond the driver's chat timeout (a chat into a fault the lab holds)."""
        started = time.time()
        exchange = self._send_chat(prompt, token, environment, user, host, patience)
        ran = exchange.answered and not (self.driver.chat.mode == "cli" and exchange.exit_code in (126, 127))
        instance = self.current(host)
        record = ChatRecord(role, self.token_kind(token), instance.number if instance else 0, host,
                            exchange.status, exchange.succeeded, ran, started)
        self.chat_records.append(record)
        return exchange, record

    def _send_chat(self, prompt: str, token: str | None, environment: str, user: str | None, host: str,
                   patience: float = 0.0) -> ChatExchange:
        with self._chat_clock:  # the floor counts the time some chat is in flight, once however many are
            if self._chats_in_flight == 0:
                self._busy_since = time.monotonic()
            self._chats_in_flight += 1
        try:
            return self._exchange(prompt, token, environment, user, host, patience)
        finally:
            with self._chat_clock:
                self._chats_in_flight -= 1
                if self._chats_in_flight == 0:
                    self.timings["chat_wall"] = self.timings.get("chat_wall", 0.0) + time.monotonic() - self._busy_since

    def _exchange(self, prompt: str, token: str | None, environment: str, user: str | None, host: str, patience: float) -> ChatExchange:
        values = {**self.values(), "prompt": prompt, "environment": environment}
        spec = replace(self.driver.chat, timeout=self.driver.chat.timeout + patience) if patience else self.driver.chat
        if token is not None:
            values["user.token"] = token
        if self.driver.chat.mode == "cli":
            command = render(list(self.driver.chat.command), {**values, "output_file": "-"}, "chat.command")
            exchange = run_cli_chat(self.target, spec, values, self.service_env(self.service_overrides), user,
                                    self.dirs.outputs, self.dirs.service_logs / "service.log", self.service_sandbox(command))
        else:
            exchange = send_chat(self.service_http, self.url(host), spec, values, user)
        return exchange

    def _admin(self, method: str, host: str, path: str, **kw) -> httpx.Response:
        try:
            response = self.http.request(method, self.admin_url(host) + path, headers={ADMIN_HEADER: self.admin_secret}, **kw)
        except httpx.TransportError as err:
            raise LabError.silent(host, err) from None
        if response.status_code != 200:
            raise LabError(f"lab admin {method} {host}{path} -> {response.status_code}: {response.text[:300]}")
        return response

    def reset(self) -> None:
        """A fresh control plane (seed state, empty audit log, no injected faults, the IdP's own
        keys), LLM scripts (no held answers) and identity provider (up, its own keys), and new
        windows on every witness; what the witnesses recorded before stays part of the lab's life."""
        list(self.witnesses.pool.map(lambda host: self._admin("POST", host, "/_lab/reset"), ("controlplane", "llm", "idp")))
        self.reset_witnesses()

    def witness_probe(self, name: str) -> None:
        """The witnesses' positive control, sent from inside the service's host (aislab.world.witnesses.probe)."""
        response = self.http.post(self.url("witness") + "/_lab/probe", params={"name": name},
                                  headers={ADMIN_HEADER: self.witness_secret}, timeout=20)
        if response.status_code != 200:
            raise LabError(f"the witness's probe failed: {response.status_code} {response.text[:300]}")

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
        self.idle_seconds += seconds
        self.timings["idle_total"] = self.idle_seconds

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
        try:
            active = self.http.get(f"{self.proxy_url('squid')}/squid-internal-mgr/active_requests")
        except httpx.TransportError as err:
            raise LabError.silent("squid", err) from None
        out += [{**r, "instance": "squid"} for r in proxies.parse_squid_active(active.text)]
        return out

    def life_records(self) -> dict[str, dict[str, list[dict]]]:
        """Everything the recording hosts kept for the lab's whole life, by the service host that
        did it: its own witnesses, and what the shared hosts recorded from its address (through
        a proxy, only the main host goes: the idle instances use none)."""
        whole = {h: self.witnesses.whole_life(h) for h in ("dns", "outside", "provider", "llm")}
        idle = {self.target.address(h) for h in IDLE_HOSTS}
        out = {"service": {"witness": self.witnesses.whole_life("witness"), "packets": self.witnesses.whole_life("packets"),
                           "dns": [q for q in whole["dns"] if q.get("client") not in idle], "outside": whole["outside"],
                           "provider": [r for r in whole["provider"] if r.get("client") not in idle],
                           "llm": [r for r in whole["llm"] if r.get("client") == self.target.address("service")],
                           "proxy": self.proxy_records(whole_life=True)}}
        for host in {i.host for i in self.life} & set(IDLE_HOSTS):  # only where an idle instance (and its witness) ran
            ip = self.target.address(host)
            out[host] = {"witness": self.witnesses.whole_life(f"witness:{host}"), "packets": self.witnesses.whole_life(f"packets:{host}"),
                         **{kind: [r for r in whole[kind] if r.get("client") == ip] for kind in ("dns", "provider", "llm")}}
        return out

    def register_scripts(self, scripts: list[dict]) -> None:
        # Whichever LLM the service is pointed at (both asked at once).
        list(self.witnesses.pool.map(lambda host: self._admin("POST", host, "/_lab/scripts", json=scripts), ("llm", "provider")))

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


def _names(user: dict) -> set[str]:
    return {str(user[k]) for k in ("sub", "email", "name") if user.get(k)}


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
