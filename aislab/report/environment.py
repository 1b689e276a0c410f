"""What a run was made with, so two reviewers can tell whether they ran the same suite: the
harness, the Python packages that judge, and the system tools the lab used."""

from __future__ import annotations

import importlib.metadata as md
import platform
import re
import shutil
import subprocess

# The packages whose behaviour decides verdicts or what the witnesses record.
PACKAGES = ("pytest", "pytest-bdd", "allure-pytest-bdd", "httpx", "PyJWT", "cryptography", "dnslib", "starlette",
            "uvicorn", "openai", "jsonschema", "PyYAML", "kubernetes-validate", "testcontainers", "docker", "kubernetes")
# tool: (command printing its version, the pattern of the version in it)
TOOLS = {
    "squid": (["squid", "-v"], r"Version (\S+)"),
    "tinyproxy": (["tinyproxy", "-v"], r"tinyproxy (\S+)"),
    "iptables": (["iptables", "--version"], r"v(\S+ \S+)"),
    "iproute2": (["ip", "-V"], r"iproute2-(\S+)"),
    "docker": (["docker", "version", "--format", "{{.Server.Version}}"], r"(\S+)"),
}


def _version(command: list[str], pattern: str) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(pattern, out.stdout + out.stderr) if out.returncode == 0 else None
    return found.group(1) if found else None


def environment(target: str, extra_tools: dict[str, str] | None = None) -> dict:
    tools = {name: v for name, (cmd, pat) in TOOLS.items()
             if (name != "docker" or target == "docker") and (v := _version(cmd, pat)) is not None}
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return {"python": platform.python_version(), "kernel": platform.release(), "packages": packages,
            "tools": {**tools, **(extra_tools or {})}}
