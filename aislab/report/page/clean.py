"""Text the harness wrote, made fit for a page that leaves the machine: no absolute path of the
machine that ran it (a path in the project becomes relative, any other one its file name) and
no memory address of a Python object. Evidence excerpts are not passed through here: they are
what the witnesses saw on the wire and are shown verbatim."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from aislab import PROJECT

# Absolute paths under the roots where a machine keeps its own files. Not preceded by a word
# character, a dot, a colon or a slash, so URL paths (http://host/tmp/x) and request lines'
# paths that start elsewhere (/api/v1/chat) are left alone.
MACHINE_PATH = re.compile(r"(?<![\w.:/~-])/(?:home|root|tmp|var|usr|opt|srv|mnt|media|run|Users|private|nix)(?:/[^\s'\"<>,;()\[\]{}]*)?")
ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def path(value: str) -> str:
    """A file's path as the page shows it: relative to the project, else its name."""
    pure = PurePosixPath(value)
    if not pure.is_absolute():
        return value
    return str(pure.relative_to(PROJECT)) if pure.is_relative_to(PROJECT) else pure.name


def text(value: str) -> str:
    value = value.replace(f"{PROJECT}/", "")
    value = MACHINE_PATH.sub(lambda m: PurePosixPath(m.group(0)).name or m.group(0), value)
    return ADDRESS.sub("", value)
