"""The few docker and system commands the image builders share."""

from __future__ import annotations

import subprocess

from aislab.world.targets.base import LabError


class ImageError(LabError):
    """An image could not be made (a lab failure, never a verdict)."""


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, **({"text": True} | kw))
    if proc.returncode != 0:
        err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode(errors="replace")
        raise ImageError(f"`{' '.join(cmd[:6])}{' ...' if len(cmd) > 6 else ''}` failed:\n{err.strip()[-3000:]}")
    return proc


def image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def image_id(tag: str) -> str:
    return run(["docker", "image", "inspect", "-f", "{{.Id}}", tag]).stdout.strip()
