"""The docker target's images: made from a base that exists here, tagged by a hash of their
inputs, so that unchanged inputs build nothing and changed ones build a new tag."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest

from aislab.world.targets.docker import hostbase, images


@pytest.fixture(scope="module")
def tags():
    return images.ensure_images(log=lambda m: None, exact=True)


def test_unchanged_inputs_build_nothing(tags):
    again = images.ensure_images(log=lambda m: None, exact=True)
    assert again["built"] == [] and (again["lab"], again["reference"]) == (tags["lab"], tags["reference"])


def test_a_changed_source_gives_a_new_lab_tag(tags, tmp_path, monkeypatch):
    for name in images.SOURCES:
        shutil.copytree(images.PROJECT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(images, "PROJECT", tmp_path)
    touched = images.ensure_images(log=lambda m: None, exact=True)
    assert touched["built"] == [] and touched["lab"] == tags["lab"]  # a copy, same bytes: same tag
    mark = f"# changed {uuid.uuid4().hex}"  # new every run: an image left by an earlier run cannot answer
    with (tmp_path / "fixtures" / "lab" / "seed.yaml").open("a") as fh:
        fh.write(f"\n{mark}\n")
    changed = images.ensure_images(log=lambda m: None, exact=True)
    try:
        assert changed["lab"] != tags["lab"] and changed["lab"] in changed["built"]
        seed = subprocess.run(["docker", "run", "--rm", "--network", "none", changed["lab"], "tail", "-n1",
                               "/opt/aislab/fixtures/lab/seed.yaml"], capture_output=True, text=True).stdout
        assert seed.strip() == mark
    finally:
        monkeypatch.undo()
        images.ensure_images(log=lambda m: None, exact=True)  # :latest back on the project's own reference
        # Only now is the changed reference image unreferenced, so both go.
        removed = subprocess.run(["docker", "rmi", changed["reference"], changed["lab"]], capture_output=True, text=True)
        assert removed.returncode == 0, removed.stderr


def test_lab_image_has_the_runtimes_and_the_proxies(tags):
    probe = ("squid -v | head -n1; tinyproxy -v; "
             "python -c 'import aislab.world.hosts, reference_service, mutants, openai, uvicorn, dnslib; print(\"imports ok\")'")
    out = subprocess.run(["docker", "run", "--rm", "--network", "none", tags["lab"], "sh", "-c", probe],
                         capture_output=True, text=True)
    assert "Squid Cache" in out.stdout and "tinyproxy" in out.stdout and "imports ok" in out.stdout, out


def test_host_made_base_is_a_debian_image_with_python(tags):
    base = hostbase.build(log=lambda m: None)
    assert base.startswith(hostbase.REPOSITORY + ":host-")
    out = subprocess.run(["docker", "run", "--rm", "--network", "none", base, "sh", "-c",
                          "python3 -c 'import ssl, venv, ensurepip; print(ssl.OPENSSL_VERSION)'; dpkg-query -W python3; "
                          "test -L /bin && test -d /tmp && echo layout-ok"], capture_output=True, text=True)
    assert "OpenSSL" in out.stdout and "python3\t" in out.stdout and "layout-ok" in out.stdout, out
