"""What the kubernetes target runs inside its pods (from the lab image): the pod's side of the
harness's exec calls. Everything the harness hands over travels as one JSON line on stdin (the
exec protocol of older clusters cannot close stdin), answers come back on stdout.

    hold                 PID 1 of a lab host's pod: reaps the programs started on it
    run                  unpack the lab's files, start a program in the background (its output
                         to a log file of the pod), print its pid
    follow NAME          stream a program's output as it comes; its exit code last, on stderr
    signal NAME SIG      signal a program's process group
    cpu NAME             CPU seconds a program used
    exec                 run a command to completion (a probe), killed with everything it
                         started at its timeout
    read PATH OFFSET     a file of the pod from OFFSET on (base64)
    gate                 init container of a witnessed pod: wait until the lab's files are
                         delivered (and the deliver exec has ended), apply the egress witness's plumbing
    witness              the witness sidecar: start the witness on this pod's own address
    hosts                write the lab's host names into the pod's /etc/hosts
    await-witness        postStart of the witness: return once it listens (the service starts after)
    await-text PATH OFFSET TEXT COUNT TIMEOUT
                         return once TEXT is written COUNT times into PATH beyond OFFSET
    hold-until-released  preStop of the witness: keep recording until the harness has drained it
    retire               the service's /tmp, for the next pod
    relay ADDRESS PORT   in the harness pod: one connection of the harness to a lab host
"""

from __future__ import annotations

import base64
import ctypes
import io
import json
import os
import select
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

POD = Path("/aislab-pod")  # the pod's own bookkeeping (an emptyDir shared by its containers)
PROGRAMS = POD / "programs"
WITNESS_READY = POD / "witness-ready"
END = "\n"
IN_MODIFY, IN_MOVED_TO, IN_CREATE = 0x2, 0x80, 0x100  # <sys/inotify.h>


def _read_request() -> dict:
    line = sys.stdin.readline()
    return json.loads(line) if line.strip() else {}


def unpack(blob: str | None, owner: int | None = None, under: str | None = None) -> None:
    """A base64 tar.gz of the lab's files, extracted at their own paths (owners and modes kept);
    `owner`: hand everything under `under` to that uid (the service's files in a chart's pod)."""
    if not blob:
        return
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(blob)), mode="r:gz") as tar:
        try:  # the harness's own files: trusted (owners and modes are the point)
            tar.extractall("/", numeric_owner=True, filter="fully_trusted")
        except TypeError:  # a Python without extraction filters (before 3.11.4)
            tar.extractall("/", numeric_owner=True)
    if owner is not None and under:
        for root, dirs, files in os.walk(under):
            for name in [*dirs, *files]:
                os.lchown(os.path.join(root, name), owner, owner)
        os.lchown(under, owner, owner)


def _environment(given: dict | None) -> dict:
    """The image's environment (its PATH, PYTHONPATH) with the program's own over it, as a
    container's is."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "LANG")}
    return {**keep, **(given or {})}


def _reap() -> bool:
    """Reap every child that has ended; False once none is left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def hold() -> int:
    """Reap every orphan (programs are started detached) as it ends; SIGTERM is passed on to
    them, and the host ends once they have (half a second at most). Signals stay blocked and are
    awaited, never handled in between: a child's end cannot slip between a check and a wait."""
    if os.getpid() != 1:  # SIGTERM goes to every process it may signal: only a pod's own are
        print("hold runs as a pod's PID 1 only", file=sys.stderr)
        return 2
    signals = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    while signal.sigwait(signals) == signal.SIGCHLD:
        _reap()
    try:
        os.kill(-1, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 0.5
    while _reap() and (left := deadline - time.monotonic()) > 0:
        signal.sigtimedwait({signal.SIGCHLD}, left)
    return 0


def run() -> int:
    """Start a program detached from this exec: a monitor process (adopted by `hold`) runs it
    with its output in PROGRAMS/NAME.log and records its exit code in NAME.exit."""
    req = _read_request()
    unpack(req.get("files"))
    if req.get("hosts"):
        Path("/etc/hosts").write_text(req["hosts"])
    name = req["name"]
    PROGRAMS.mkdir(parents=True, exist_ok=True)
    for suffix in ("exit", "pid"):
        (PROGRAMS / f"{name}.{suffix}").unlink(missing_ok=True)
    told, tell = os.pipe()  # the monitor writes the program's pid into it (EOF without one: it failed)
    if os.fork():
        os.close(tell)
        with os.fdopen(told) as pipe:
            print(pipe.read() or "?")
        return 0
    os.close(told)
    os.setsid()
    if os.fork():
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    log = os.open(PROGRAMS / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for fd, target in ((devnull, 0), (log, 1), (log, 2)):
        os.dup2(fd, target)
    try:
        proc = subprocess.Popen(req["command"], env=_environment(req.get("env")), cwd=req.get("cwd") or "/",
                                start_new_session=True, stdin=subprocess.DEVNULL)
    except OSError as err:
        os.write(2, f"[lab] cannot start {req['command'][:1]}: {err}\n".encode())
        (PROGRAMS / f"{name}.pid").write_text("0")
        (PROGRAMS / f"{name}.exit").write_text("127")
        os.write(tell, b"0")
        os._exit(0)
    (PROGRAMS / f"{name}.pid").write_text(str(proc.pid))
    os.write(tell, str(proc.pid).encode())
    os.close(tell)
    code = proc.wait()
    (PROGRAMS / f"{name}.exit").write_text(str(code))
    os._exit(0)


def _changes(directory: Path) -> int:
    """An inotify descriptor that becomes readable when a file in `directory` is created,
    written or renamed into it (the standard library has no inotify; libc's three calls are all it takes)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0 or libc.inotify_add_watch(fd, str(directory).encode(), IN_CREATE | IN_MODIFY | IN_MOVED_TO) < 0:
        raise OSError(ctypes.get_errno(), f"inotify on {directory}")
    return fd


def _await(done, directory: Path, timeout: float) -> bool:
    """Whether `done()` came true within `timeout`: asked now and again at each file created or
    written in `directory`."""
    changes = _changes(directory)  # watched before the first look: no change is missed
    deadline = time.monotonic() + timeout
    try:
        while not done():
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([changes], [], [], left)[0]:
                return done()
            os.read(changes, 64 * 1024)
        return True
    finally:
        os.close(changes)


def await_text(path: str, offset: str, text: str, count: str, timeout: str) -> int:
    """Until `text` has been written COUNT times into PATH beyond OFFSET (a log line a program
    writes once it is ready again); exit code 1 at the timeout."""
    def written() -> bool:
        try:
            with open(path, "rb") as fh:
                fh.seek(int(offset))
                return fh.read().count(text.encode()) >= int(count)
        except FileNotFoundError:
            return False

    return 0 if _await(written, Path(path).parent, float(timeout)) else 1


def follow(name: str) -> int:
    log, done = PROGRAMS / f"{name}.log", PROGRAMS / f"{name}.exit"
    changes = _changes(PROGRAMS)  # watched before the first read: no write is missed
    offset = 0
    out = sys.stdout.buffer
    while True:
        finished = done.exists()
        try:
            with log.open("rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            offset += len(chunk)
            out.write(chunk)
            out.flush()
        elif finished:
            print(f"EXIT {done.read_text().strip()}", file=sys.stderr, flush=True)
            return 0
        else:
            os.read(changes, 64 * 1024)  # until a program's log grows or its exit code is written


def send_signal(name: str, sig: int) -> int:
    try:
        pid = int((PROGRAMS / f"{name}.pid").read_text())
        if pid > 0:
            os.killpg(pid, sig)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        pass
    return 0


def cpu(name: str) -> int:
    try:
        pid = int((PROGRAMS / f"{name}.pid").read_text())
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        print((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    except (FileNotFoundError, ValueError, IndexError):
        print(0.0)
    return 0


def run_to_end() -> int:
    """A short command (a probe, a one-shot chat): its stdout and stderr, and its exit code as
    this process's own; at its timeout it is killed with everything it started (exit 137)."""
    req = _read_request()
    uid = req.get("uid")
    as_user = {"user": uid, "group": uid, "extra_groups": []} if uid is not None else {}
    proc = subprocess.Popen(req["command"], env=_environment(req.get("env")), cwd=req.get("cwd") or "/",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, **as_user)
    try:
        out, err = proc.communicate(timeout=req.get("timeout", 10))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        print(json.dumps({"timeout": True}))
        return 0
    print(json.dumps({"code": proc.returncode, "stdout": out.decode(errors="replace"), "stderr": err.decode(errors="replace")}))
    return 0


def read(path: str, offset: int) -> int:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        data = b""
    sys.stdout.write(base64.b64encode(data).decode() + END)
    return 0


# --- the witnessed pod (the service's host) --------------------------------------------------------
def gate() -> int:
    """Wait for the harness to deliver the lab's files (it does so once the pod has its address),
    then give the pod the egress witness's plumbing; the witness and the service start after."""
    if not await_delivery(float(os.environ.get("AISLAB_GATE_TIMEOUT", "300"))):
        print("the harness never delivered the lab's files", file=sys.stderr)
        return 1
    plumbing = json.loads((POD / "plumbing.json").read_text())
    from aislab.world.targets.plumbing import egress_witness_plumbing

    egress_witness_plumbing([], plumbing["allowed"])
    print("plumbing applied", flush=True)
    return 0


def await_delivery(timeout: float) -> bool:
    """Until the harness's deliver has written everything and ended. The gate's exit ends its
    container, and with it an exec still running there: a deliver that had done its work but
    not yet exited came back to the harness killed (a CI failure), so its end is awaited too."""
    deadline = time.monotonic() + timeout
    marker = POD / "delivered"
    if not _await(marker.exists, POD, timeout):
        return False
    try:
        ended = os.pidfd_open(int(marker.read_text()))
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([ended], [], [], max(0.0, deadline - time.monotonic()))[0])
    finally:
        os.close(ended)


def deliver() -> int:
    """The harness's half of the gate: the files, the plumbing and the witness to run."""
    req = _read_request()
    unpack(req.get("files"))
    unpack(req.get("carried"), req.get("service_owner"), req.get("carried_under"))
    POD.mkdir(exist_ok=True)
    (POD / "plumbing.json").write_text(json.dumps(req["plumbing"]))
    (POD / "witness.json").write_text(json.dumps(req["witness"]))
    # Its pid, for the gate to await its end; renamed into place, so it is never read half written.
    (POD / "delivered.part").write_text(str(os.getpid()))
    os.replace(POD / "delivered.part", POD / "delivered")
    print("delivered")
    return 0


def witness() -> int:
    spec = json.loads((POD / "witness.json").read_text())
    own = os.environ["AISLAB_POD_IP"]
    command = [a.replace(spec["address"], own) for a in spec["command"]]
    WITNESS_READY.unlink(missing_ok=True)  # an earlier container's, in this pod
    env = {**_environment(spec.get("env")), "AISLAB_POD_IP": own, "AISLAB_READY_FILE": str(WITNESS_READY)}
    os.chdir(spec.get("cwd") or "/")
    os.execvpe(command[0], command, env)


def await_witness(timeout: float = 60) -> int:
    """Until the witness listens (it says so once its sockets are bound): the service starts after."""
    return 0 if _await(WITNESS_READY.exists, POD, timeout) else 1


def hosts() -> int:
    """The lab's host names, as every host of the local target has them in /etc/hosts (a
    proxy's reverse lookups stay off the wire)."""
    req = _read_request()
    Path("/etc/hosts").write_text(req["hosts"])
    return 0


def hold_until_released(timeout: float = 600) -> int:
    _await((POD / "released").exists, POD, timeout)
    return 0


def release() -> int:
    (POD / "released").touch()
    return 0


def retire() -> int:
    """The service's /tmp (a pod's emptyDir: kept across its restarts, as on the other targets),
    for the next pod."""
    req = _read_request()
    carried = None
    tmp = req.get("tmp")
    if tmp and os.path.isdir(tmp):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            tar.add(tmp, arcname=req["tmp_as"].lstrip("/"))
        carried = base64.b64encode(buffer.getvalue()).decode()
    sys.stdout.write(json.dumps({"carried": carried}) + END)
    return 0


COMMANDS = {
    "hold": hold, "run": run, "follow": follow, "signal": lambda name, sig: send_signal(name, int(sig)), "cpu": cpu,
    "exec": run_to_end, "read": lambda path, offset: read(path, int(offset)), "gate": gate, "deliver": deliver,
    "witness": witness, "hosts": hosts, "await-witness": await_witness, "await-text": await_text,
    "hold-until-released": hold_until_released, "release": release, "retire": retire,
    "relay": lambda address, port: _relay(address, int(port)),
}


def _relay(address: str, port: int) -> int:
    from aislab.world.targets.kubernetes.relay import relay_side

    return relay_side(address, port)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = COMMANDS.get(args[0]) if args else None
    if command is None:
        print(f"podside: unknown command {args[:1]}; one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return command(*args[1:])


if __name__ == "__main__":
    sys.exit(main())
