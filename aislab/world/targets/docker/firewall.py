"""Host firewall rules that close a lab network: a docker `internal` network still reaches the
host through its bridge's gateway address, and outside connects hang instead of failing.

Every rule carries the lab's comment, so teardown, and the next start after a crash, find and
remove exactly those rules.
"""

from __future__ import annotations

import subprocess

from aislab.world.targets.base import LabError


def _iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["iptables", "-w", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise LabError(f"`iptables {' '.join(args)}` failed: {proc.stderr.strip()}")
    return proc


def close(bridge: str, subnet: str, tag: str) -> None:
    mark = ["-m", "comment", "--comment", tag]
    # Inserted in reverse: the ESTABLISHED accept ends up first, so the harness, which connects
    # into the lab from the host, still gets its answers.
    _iptables("-I", "INPUT", "-i", bridge, *mark, "-j", "REJECT")
    _iptables("-I", "INPUT", "-i", bridge, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", *mark, "-j", "ACCEPT")
    _iptables("-I", "DOCKER-USER", "-i", bridge, "!", "-d", subnet, *mark, "-j", "REJECT")


def _tagged(prefix: str):
    """(chain, rule, tag) of every lab rule whose tag starts with `prefix`."""
    for chain in ("INPUT", "DOCKER-USER"):
        for rule in _iptables("-S", chain, check=False).stdout.splitlines():
            words = rule.split()
            if "--comment" in words:
                tag = words[words.index("--comment") + 1].strip('"')
                if tag.startswith(prefix):
                    yield chain, rule, tag


def remove(tag: str) -> None:
    for _chain, rule, found in list(_tagged(tag)):
        if found == tag:
            _iptables(*("-D" + rule[2:]).split(), check=False)


def tags(prefix: str) -> set[str]:
    """Tags of the lab rules present (teardown must leave none of its own)."""
    return {tag for _chain, _rule, tag in _tagged(prefix)}
