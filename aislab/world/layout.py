"""Where a lab keeps its files on this machine, and who may read them.

    /var/lib/aislab/labs/<target>-<slot>/      0755
        state/     0700 root   keys (CA, IdP signing key), the admin secret, logs: the lab's own
        public/    0755        what anyone may read: the CA certificate, the proxies' configs and logs
        service/   0700 the service's user: its config files, scratch HOME, private /tmp, outputs (a tmpfs of 512 MiB)
        service-logs/ 0700 root  what the service writes to its output (a tmpfs of 256 MiB)

The service under test sees `public/` and `service/` only. Everything is removed at teardown,
and what a killed run left is removed when its slot is claimed again (or by any later run that
finds its slot's lock free).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LABS = Path(os.environ.get("AISLAB_LABS", "/var/lib/aislab/labs"))
# The service's own user where a target allows it: a uid no one else on the machine uses, so
# it can neither read the lab's files nor signal the lab's programs (the proxies run as nobody).
SERVICE_UID = 64999
# The service's own space (its files, /tmp, HOME, outputs) and its log's: set sizes, in memory.
SERVICE_SPACE, LOG_SPACE = "512m", "256m"


@dataclass(frozen=True)
class LabDirs:
    root: Path

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def public(self) -> Path:
        return self.root / "public"

    @property
    def service(self) -> Path:
        return self.root / "service"

    @property
    def tmp(self) -> Path:
        """The service's private /tmp: kept across its restarts, like a pod's emptyDir."""
        return self.service / "tmp"

    @property
    def scratch(self) -> Path:
        """`{lab.scratch_dir}`: a HOME and caches for the service."""
        return self.service / "home"

    @property
    def files(self) -> Path:
        """The driver's config files, rendered: the service's own secrets (its LLM key)."""
        return self.service / "files"

    @property
    def outputs(self) -> Path:
        """Where a one-shot assistant writes its answers (`{output_file}`)."""
        return self.service / "out"

    def instance_dirs(self, host: str) -> tuple[Path, Path]:
        """A /tmp and a HOME of its own for the service on another of its hosts (an idle
        instance): nothing one instance leaves behind can change what another does."""
        if host == "service":
            return self.tmp, self.scratch
        tmp, home = self.service / f"tmp-{host}", self.service / f"home-{host}"
        for path in (tmp, home):
            path.mkdir(mode=0o700, exist_ok=True)
            os.chown(path, SERVICE_UID, SERVICE_UID)
        tmp.chmod(0o1777)
        return tmp, home

    @property
    def service_logs(self) -> Path:
        """What the service writes to its output: root's, apart, in a space of its own."""
        return self.root / "service-logs"

    def create(self) -> "LabDirs":
        self.remove()
        for path, mode in ((self.root, 0o755), (self.state, 0o700), (self.logs, 0o700), (self.public, 0o755)):
            path.mkdir(mode=mode, parents=True, exist_ok=True)
            path.chmod(mode)
        # What the service may fill (its files, /tmp, HOME, its log) is a space of a set size, like
        # a pod's emptyDir with a sizeLimit: a service that floods its log or fills its disk fills
        # that, never the machine's disk under the lab and the report.
        for path, size, mode in ((self.service, SERVICE_SPACE, 0o700), (self.service_logs, LOG_SPACE, 0o700)):
            path.mkdir(mode=mode)
            mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode={mode:o}", "aislab-service", str(path)],
                                   capture_output=True, text=True)
            if mount.returncode != 0:
                raise OSError(f"cannot give the service a space of its own at {path}: {mount.stderr.strip()}")
        for path in (self.service, self.tmp, self.scratch, self.files, self.outputs):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chown(path, SERVICE_UID, SERVICE_UID)
        self.tmp.chmod(0o1777)  # a /tmp, as its programs expect
        return self

    def remove(self) -> None:
        for path in (self.service, self.service_logs):
            if path.is_mount():
                subprocess.run(["umount", "-l", str(path)], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def lab_dirs(kind: str, slot: int) -> LabDirs:
    return LabDirs(LABS / f"{kind}-{slot}")


def sweep_orphans(kind: str, lock_path) -> None:
    """Remove the directories of labs of this kind whose slot no run holds (killed runs)."""
    if not LABS.is_dir():
        return
    for root in LABS.glob(f"{kind}-*"):
        slot = root.name.removeprefix(f"{kind}-")
        if not slot.isdigit():
            continue
        fd = os.open(lock_path(int(slot)), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a live lab
        try:  # removed while holding its slot, so no new lab can start there meanwhile
            LabDirs(root).remove()
        finally:
            os.close(fd)
