"""The evidence bundle: one tar.gz per run with the report, JUnit, Allure results, every
evidence file and the service's log, each text redacted once more, and a manifest of hashes."""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import tarfile
import time
from pathlib import Path

from aislab.report.evidence import Redactor

BUNDLE = "conformance-bundle.tar.gz"
LOCK = ".aislab-run.lock"  # the run's hold on its report directory (aislab.suite.plugin)
TEXT_SUFFIXES = {".json", ".xml", ".log", ".txt", ".yaml", ".yml", ".html", ".csv"}


class BusyError(RuntimeError):
    """Another run holds the report directory."""


def claim_directory(report_dir: Path) -> int:
    """Hold a report directory for one run (an flock on its lock file, naming the pid) and empty
    it of everything an earlier run left. Returns the lock's descriptor: the hold lasts as long."""
    report_dir.mkdir(parents=True, exist_ok=True)
    lock = report_dir / LOCK
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = lock.read_text().strip() or "?"
        os.close(fd)
        raise BusyError(f"--report-dir {report_dir}: in use by another run (pid {owner}); wait for it or give another --report-dir") from None
    for old in report_dir.iterdir():
        if old.name != lock.name:
            shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _redacted(path: Path, redactor: Redactor) -> bytes:
    data = path.read_bytes()
    if path.suffix in TEXT_SUFFIXES or "allure-results" in path.parts:
        try:
            return redactor.text(data.decode()).encode()
        except UnicodeDecodeError:
            pass
    return data


def redact_in_place(paths: list[Path], redactor: Redactor) -> None:
    """Redact what a tool wrote on its own, whole, at the end (files, or every file of a
    directory): pytest's JUnit file quotes failure messages as they are."""
    for path in (f for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file() and f.name != BUNDLE):
        data = _redacted(path, redactor)
        if data != path.read_bytes():
            path.write_bytes(data)


def write_bundle(report_dir: Path, report: dict, redactor: Redactor) -> Path:
    # Belt and braces: whatever a tool wrote, no secret leaves in the bundle.
    members = [(str(p.relative_to(report_dir)), _redacted(p, redactor))
               for p in sorted(p for p in report_dir.rglob("*") if p.is_file() and p.name not in (BUNDLE, LOCK))]
    manifest = {
        "apiVersion": "ais.bundle/v1alpha1",
        "run": {"harness": report["harness"], "driver": report["driver"], "started": report["started"],
                "finished": report["finished"], "result": report["result"]},
        "files": [{"path": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)} for name, data in members],
    }
    members.append(("manifest.json", json.dumps(manifest, indent=1).encode()))
    target = report_dir / BUNDLE
    with tarfile.open(target, "w:gz", compresslevel=6) as tar:  # zlib's default: the last levels cost seconds, not bytes
        for name, data in members:
            info = tarfile.TarInfo(f"conformance-bundle/{name}")
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
            tar.addfile(info, io.BytesIO(data))
    return target
