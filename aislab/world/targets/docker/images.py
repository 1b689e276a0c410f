"""The lab's images, built locally, deterministically, and only when their inputs change.

- `aislab/lab:<inputs>`: Python with the lab's runtime packages, the project (mocks, witness,
  reference service, mutants, fixtures) and Debian's tinyproxy and squid. Every lab host runs
  it, and so does a driver that names a command instead of an image.
- `aislab/reference-service:<inputs>` (also `:latest`): the reference as a shippable image, for
  drivers that name an image, as the vendor's does.

Everything a build installs is fetched on the host first (pinned wheels, Debian packages) and
the build runs with `--network=none`. The tag is a hash of every input, so an existing tag means
nothing changed and nothing is built. The base image is a setting (AISLAB_BASE_IMAGE); when it
is neither present nor pullable, one is made from this machine's Debian files (hostbase).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from packaging.requirements import Requirement

from aislab import PROJECT
from aislab.world.targets.docker import hostbase
from aislab.world.targets.docker.engine import ImageError, image_exists, image_id, run

CACHE = Path(os.environ.get("AISLAB_CACHE", PROJECT / ".cache"))
DEFAULT_BASE = "python:3.11-slim-bookworm"
RUNTIME = ("httpx", "starlette", "uvicorn", "openai", "PyJWT", "cryptography", "PyYAML", "dnslib")
PROXY_BINARIES = ("tinyproxy", "squid")
# The egress witness's plumbing, applied inside a pod by the kubernetes target (plumbing.py).
PLUMBING_BINARIES = ("ip", "xtables-nft-multi", "sysctl")
PLUMBING_PACKAGES = ("iproute2", "iptables", "procps")
PROXY_DATA_PACKAGES = ("squid-common", "squid-langpack")  # config defaults, error pages
SOURCES = ("aislab", "reference_service", "mutants", "fixtures")

LAB_DOCKERFILE = """\
ARG BASE
FROM ${BASE}
# Debian's proxies, unpacked without maintainer scripts (they would want users and services);
# --keep-directory-symlink keeps the base's merged-/usr links.
COPY debs /tmp/debs
RUN for deb in /tmp/debs/*.deb; do [ -e "$deb" ] || continue; \\
      dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C / || exit 1; done \\
 && rm -rf /tmp/debs \\
 && for t in iptables ip6tables; do for s in "" -restore -save; do \\
      [ -e /usr/sbin/$t-nft$s ] && ln -sf $t-nft$s /usr/sbin/$t$s; done; done
COPY wheels /tmp/wheels
RUN python3 -m venv /opt/venv \\
 && /opt/venv/bin/pip install -q --no-index --no-cache-dir --disable-pip-version-check --find-links /tmp/wheels -r /tmp/wheels/requirements.txt \\
 && rm -rf /tmp/wheels
COPY src /opt/aislab
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PYTHONPATH=/opt/aislab PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /opt/aislab
"""

REFERENCE_DOCKERFILE = """\
ARG LAB
FROM ${LAB}
EXPOSE 9090
ENTRYPOINT ["python", "-m", "reference_service"]
"""


def resolve_base(name: str | None = None, log=print) -> str:
    """The configured base if it is here or can be pulled; otherwise a base made from host files."""
    name = name or os.environ.get("AISLAB_BASE_IMAGE") or DEFAULT_BASE
    if image_exists(name):
        return name
    pulled = subprocess.run(["docker", "pull", "-q", name], capture_output=True, text=True)
    if pulled.returncode == 0:
        return name
    # No registry (like the machines this was written on): a base from this machine's packages.
    return hostbase.build(log)


def runtime_pins() -> list[str]:
    """The runtime packages and their whole dependency closure, pinned to what this venv runs."""
    pins: dict[str, str] = {}
    todo = [Requirement(r) for r in RUNTIME]
    while todo:
        req = todo.pop()
        dist = md.distribution(req.name)
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in pins:
            continue
        pins[key] = dist.version
        for line in dist.requires or []:
            dep = Requirement(line)
            if dep.marker is None or dep.marker.evaluate({"extra": ""}):
                todo.append(dep)
    return sorted(f"{k}=={v}" for k, v in pins.items())


def fetch_wheels(pins: list[str], into: Path) -> None:
    store = CACHE / "wheels"
    store.mkdir(parents=True, exist_ok=True)

    def stored() -> dict[str, Path]:
        by_pin = {}
        for wheel in store.glob("*.whl"):
            name, version = wheel.name.split("-")[:2]
            by_pin[f"{name.lower()}=={version}"] = wheel
        return by_pin

    def key(pin: str) -> str:  # wheel file names normalise - and . in project names to _
        name, version = pin.split("==")
        return f"{name.replace('-', '_').replace('.', '_').lower()}=={version}"

    have = stored()
    if any(key(p) not in have for p in pins):
        run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
              "--only-binary=:all:", "-d", str(store), *pins])
        have = stored()
    into.mkdir()
    for pin in pins:
        if key(pin) not in have:
            raise ImageError(f"no wheel for {pin} in {store} after pip download")
        shutil.copy2(have[key(pin)], into / have[key(pin)].name)
    (into / "requirements.txt").write_text("\n".join(pins) + "\n")


def _base_packages(base: str) -> set[str]:
    """What the base image has installed; kept per image ID (asking costs a container)."""
    record = CACHE / "base-packages" / image_id(base).replace(":", "-")
    if not record.exists():
        out = run(["docker", "run", "--rm", "--network", "none", base, "dpkg-query", "-W", "-f", "${Package}\n"]).stdout
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(out)
    return set(record.read_text().split())


def _owning_packages(paths: list[str]) -> set[str]:
    """Debian packages that own these files (under either name merged /usr gives them)."""
    candidates = set()
    for path in paths:
        real = os.path.realpath(path)
        candidates |= {real, real.removeprefix("/usr")}
    out = subprocess.run(["dpkg-query", "-S", *sorted(candidates)], capture_output=True, text=True).stdout
    return {line.split(":", 1)[0].split(",")[0] for line in out.splitlines() if ": " in line}


def proxy_packages() -> list[str]:
    """The proxies' packages and the ones owning every library their binaries load: exactly what
    running them needs (the recursive Depends closure would drag in systemd and perl)."""
    binaries = [shutil.which(b) for b in (*PROXY_BINARIES, *PLUMBING_BINARIES)]
    if None in binaries:
        raise ImageError("the lab image is made from this machine's tinyproxy, squid, iproute2, iptables and procps "
                         "packages: apt-get install tinyproxy squid iproute2 iptables procps (make setup does)")
    ldd = run(["ldd", *binaries]).stdout
    libs = [part for line in ldd.splitlines() for part in line.split() if part.startswith("/")]
    return sorted(_owning_packages([*binaries, *libs]) | set(PROXY_DATA_PACKAGES))


def fetch_debs(base: str, into: Path) -> None:
    """The proxies' packages the base lacks, as .deb files."""
    have = _base_packages(base)
    need = [p for p in proxy_packages() if p not in have]
    # Candidate versions (installed ones may no longer be downloadable); apt-get download names
    # files pkg_version_arch.deb with the epoch's colon as %3a.
    stanzas = run(["apt-cache", "show", "--no-all-versions", *need]).stdout.strip().split("\n\n")
    files = {}
    for stanza in stanzas:
        f = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line.startswith(" "))
        files[f"{f['Package']}_{f['Version'].replace(':', '%3a')}_{f['Architecture']}.deb"] = f"{f['Package']}={f['Version']}"
    store = CACHE / "debs"
    store.mkdir(parents=True, exist_ok=True)
    os.chmod(store, 0o777)  # apt drops to user _apt to download
    missing = [spec for name, spec in files.items() if not (store / name).exists()]
    if missing:
        run(["apt-get", "download", "-q", *missing], cwd=store)
    into.mkdir()
    for name in sorted(files):
        shutil.copy2(store / name, into / name)


def _base_identity(base: str) -> str:
    """A host-made base is named after its package versions, and re-importing it gives a new
    image ID (import time): its name is its identity. Any other base: its image ID."""
    return base if base.startswith(hostbase.REPOSITORY + ":") else image_id(base)


def _copy_sources(into: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        shutil.copytree(PROJECT / name, into / name, ignore=ignore)


def _digest(context: Path, *extra: str) -> str:
    h = hashlib.sha256("\0".join(extra).encode())
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(context)).encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:12]


def _build(context: Path, tag: str, args: dict[str, str]) -> None:
    cmd = ["docker", "build", "--network=none", "-q", "-t", tag]
    for k, v in args.items():
        cmd += ["--build-arg", f"{k}={v}"]
    run([*cmd, str(context)], env={**os.environ, "DOCKER_BUILDKIT": "0"})


def ensure_images(base: str | None = None, log=print, exact: bool = False) -> dict[str, str]:
    """Tags of the lab and reference-service images, built if their inputs changed. Labs that
    start together (the mutant matrix) wait for one build instead of racing.

    Hashing every input costs about a second per lab start, so a lab start first compares a
    cheap fingerprint (settings, pins, installed proxy versions, source sizes and mtimes) with
    the last exact check; `exact` (make docker-images) always does the full check."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "images.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = CACHE / "images.json"
        fingerprint = _fingerprint(base)
        if not exact and record.exists():
            last = json.loads(record.read_text())
            if last.get("fingerprint") == fingerprint and image_exists(last["lab"]) and image_exists(last["reference"]):
                return {**last, "built": []}
        tags = _ensure_images(base, log)
        record.write_text(json.dumps({**tags, "fingerprint": fingerprint}))
        return tags


def _fingerprint(base: str | None) -> str:
    versions = subprocess.run(["dpkg-query", "-W", *PROXY_BINARIES, *PROXY_DATA_PACKAGES, "tinyproxy-bin", *PLUMBING_PACKAGES],
                              capture_output=True, text=True).stdout
    files = sorted(p for name in SOURCES for p in (PROJECT / name).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    stats = [f"{p.relative_to(PROJECT)}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
    setting = base or os.environ.get("AISLAB_BASE_IMAGE") or DEFAULT_BASE
    return _digest_text(setting, LAB_DOCKERFILE, REFERENCE_DOCKERFILE, *runtime_pins(), versions, *stats)


def _ensure_images(base: str | None, log) -> dict[str, str]:
    t0 = time.monotonic()
    base = resolve_base(base, log)
    with tempfile.TemporaryDirectory(prefix="aislab-image-") as tmp:
        context = Path(tmp)
        (context / "Dockerfile").write_text(LAB_DOCKERFILE)
        fetch_wheels(runtime_pins(), context / "wheels")
        fetch_debs(base, context / "debs")
        _copy_sources(context / "src")
        lab = f"aislab/lab:{_digest(context, _base_identity(base))}"
        built = []
        if not image_exists(lab):
            _build(context, lab, {"BASE": base})
            built.append(lab)
    reference = f"aislab/reference-service:{_digest_text(REFERENCE_DOCKERFILE, lab)}"
    if not image_exists(reference):
        with tempfile.TemporaryDirectory(prefix="aislab-image-") as tmp:
            (Path(tmp) / "Dockerfile").write_text(REFERENCE_DOCKERFILE)
            _build(Path(tmp), reference, {"LAB": lab})
        built.append(reference)
    run(["docker", "tag", reference, "aislab/reference-service:latest"])
    log(f"images: {lab}, {reference} from {base} ({'built ' + ', '.join(built) if built else 'cached'}; {time.monotonic() - t0:.1f}s)")
    return {"lab": lab, "reference": reference, "base": base, "built": built}


def _digest_text(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the docker target's images (only what changed).")
    parser.add_argument("--base", help=f"base image (default: $AISLAB_BASE_IMAGE or {DEFAULT_BASE})")
    parser.add_argument("--json", action="store_true", help="print the tags as JSON")
    args = parser.parse_args(argv)
    try:
        tags = ensure_images(args.base, log=lambda m: print(m, file=sys.stderr), exact=True)
    except ImageError as err:
        print(f"images: {err}", file=sys.stderr)
        return 1
    print(json.dumps(tags) if args.json else "\n".join(f"{k}: {v}" for k, v in tags.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
