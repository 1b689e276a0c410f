"""An instance of the service kept alive and idle beside the scenarios for the whole run, on a
host of its own with its own witnesses, in the configuration the whole-life claims of the
telemetry opt-out and the air gap are about. What a service begins only after tens of seconds of
life or of idleness (a late heartbeat, an update check on a timer) then shows in the quick
profile too, at no cost in wall time: it starts in the background once the lab is up (niced: the
CPU is the scenarios' first), is exercised once (a chat that uses a tool, and one through the
LLM's error path), and stops when the lifetime scenarios end the service's life."""

from __future__ import annotations

import threading
import time
import uuid

from aislab.judging.exercise import chat_counts
from aislab.world.netconfig import network_env
from aislab.world.targets.base import IDLE_HOSTS, LabProcess


def configurations(lab) -> dict[str, dict[str, str]]:
    """An air-gapped install (the LLM in the lab, no proxy, DO_NOT_TRACK=true and the service's
    own switch): a telemetry opt-out and an air gap at once, so one idle instance serves both."""
    return {"idle": network_env(lab)}


class IdleInstances:
    def __init__(self, lab, script_book):
        self.lab = lab
        self.script_book = script_book
        self.processes: dict[str, LabProcess] = {}
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name="idle-instances", daemon=True)

    def start(self) -> "IdleInstances":
        self._thread.start()
        return self

    def _run(self) -> None:
        for host, overrides in configurations(self.lab).items():
            try:
                self.lab.spawn_witness(host, background=True).await_ready_line(30)
                instance = self.lab._begin_instance(overrides, host)
                self.processes[host] = self.lab.launch(host, overrides, background=True)
                instance.ready = True
                for name in ("one-tool", "provider-failure"):
                    self._exercise(host, name)
            except Exception as err:  # noqa: BLE001 - an idle instance that fails is said, never fatal
                self.errors.append(f"the idle instance on {host} could not be started and exercised: {err}")

    def _exercise(self, host: str, script: str) -> None:
        """One chat through the instance (registered with the mock LLM so that a scenario's reset
        does not forget it), counted from the lab's records of the instance's own address."""
        conversation = uuid.uuid4().hex[:12]
        self.lab.register_scripts([{**self.script_book.script(script, conversation, "env-prod"), "persist": True}])
        reader = self.lab.witnesses
        marks = {h: reader.head(h) for h in ("llm", "controlplane")}
        _, record = self.lab.converse(f"[conv:{conversation}] What can you tell me?", self.lab.token("reader"),
                                      role="control", host=host)
        ip = self.lab.target.address(host)
        llm = [r for r in reader.since("llm", marks["llm"]) if r.get("client") == ip]
        cp = [e for e in reader.since("controlplane", marks["controlplane"]) if e.get("client") == ip]
        record.counts = chat_counts(llm, cp)

    def settled(self) -> None:
        """Returns once every idle instance is started and exercised (or failed to be)."""
        self._thread.join()

    def stop(self) -> None:
        """Stop every idle instance gracefully and wait until its witnesses have recorded all."""
        self._thread.join()
        for host in IDLE_HOSTS:
            process = self.processes.pop(host, None)
            if process is not None:
                self.lab.stop_process(process)
            instance = self.lab.current(host)
            if instance is not None and instance.stopped is None:
                instance.stopped = time.time()
                self.lab.drain_witnesses(host)
        self.lab.warnings.extend(self.errors)
        self.errors.clear()
