"""What a security reviewer and a CI gate get from a run: exit codes, waivers, selection,
the JUnit claim properties, the evidence bundle with its manifest, and redaction everywhere."""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from aislab.report.conformance import EXIT_CONFORMANT, EXIT_HARNESS_FAILED, EXIT_INCOMPLETE, EXIT_VIOLATED
from aislab.report.waivers import WaiverError, load_waivers
from tests.suite_runs import DRIVERS, run_suite

JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")


def write_waivers(tmp_path: Path, expires: datetime.date) -> Path:
    path = tmp_path / "waivers.yaml"
    path.write_text(yaml.safe_dump({"waivers": [{
        "claim": "AIS-AUTH-02", "justification": "vendor fix due in 1.21", "owner": "sec-review@lab.example", "expires": expires.isoformat()}]}))
    return path


def test_a_violation_exits_100_and_a_waiver_turns_it_into_waived(tmp_path):
    plain = run_suite("violated", tmp_path / "plain", mutant="exp-not-checked", extra=["--claims", "AIS-AUTH-02"])
    assert (plain.verdicts, plain.exit_code) == ({"AIS-AUTH-02": "violated"}, EXIT_VIOLATED)
    waived = run_suite("waived", tmp_path / "waived", mutant="exp-not-checked",
                       extra=["--claims", "AIS-AUTH-02", "--waivers", str(write_waivers(tmp_path, datetime.date.today() + datetime.timedelta(days=30)))])
    report = json.loads((tmp_path / "waived" / "conformance-report.json").read_text())
    (claim,) = report["claims"]
    assert (claim["verdict"], claim["observed"], claim["waiver"]["owner"]) == ("waived", "violated", "sec-review@lab.example")
    assert claim["scenarios"], "a waived claim still runs"
    assert (waived.result, waived.exit_code) == ("conformant", EXIT_CONFORMANT)


def test_an_expired_waiver_is_ignored_with_a_warning(tmp_path):
    run = run_suite("expired", tmp_path / "r", mutant="exp-not-checked",
                    extra=["--claims", "AIS-AUTH-02", "--waivers", str(write_waivers(tmp_path, datetime.date(2020, 1, 1)))])
    assert (run.verdicts, run.exit_code) == ({"AIS-AUTH-02": "violated"}, EXIT_VIOLATED)
    assert "expired on 2020-01-01: ignored" in run.output


def test_broken_waiver_files_name_the_field(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump({"waivers": [{"claim": "AIS-AUTH-02", "justification": "x", "owner": "o", "expires": "soon"}]}))
    with pytest.raises(WaiverError, match=r"waivers\[0\]\.expires"):
        load_waivers(path, {"AIS-AUTH-02"})
    path.write_text(yaml.safe_dump({"waivers": [{"claim": "AIS-NOPE-01", "justification": "x", "owner": "o", "expires": "2030-01-01"}]}))
    with pytest.raises(WaiverError, match="not in claims.yaml"):
        load_waivers(path, {"AIS-AUTH-02"})


def test_selection_by_id_glob_and_family_and_junit_properties(tmp_path):
    run = run_suite("selected", tmp_path / "r", extra=["--claims", "AIS-RBAC-0[14],audit", "--junitxml", str(tmp_path / "junit.xml")])
    assert set(run.verdicts) == {"AIS-RBAC-01", "AIS-RBAC-04", "AIS-AUDIT-01", "AIS-AUDIT-02"}
    assert run.exit_code == EXIT_CONFORMANT
    cases = ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")
    props = {(p.get("name"), p.get("value")) for case in cases for p in case.iter("property")}
    assert {("claim", "AIS-RBAC-04"), ("claim", "AIS-AUDIT-02"), ("nist-800-53", "AU-10")} <= props


def test_incomplete_runs_exit_101_and_broken_labs_exit_1(tmp_path):
    partial_driver = tmp_path / "auth-only.yaml"
    partial_driver.write_text(yaml.safe_dump({"extends": str(DRIVERS / "reference.yaml"), "families": ["authentication"]}))
    partial = run_suite("partial", tmp_path / "p", driver=partial_driver, extra=["--claims", "AIS-AUTH-01,audit"])
    assert (partial.result, partial.exit_code) == ("partial", EXIT_INCOMPLETE)
    dead_driver = tmp_path / "dead.yaml"
    dead_driver.write_text(yaml.safe_dump({"extends": str(DRIVERS / "reference.yaml"), "service": {"command": ["{python}", "-c", "raise SystemExit(2)"]}}))
    dead = run_suite("dead", tmp_path / "d", driver=dead_driver, extra=["--claims", "AIS-AUTH-01"])
    assert dead.exit_code == EXIT_HARNESS_FAILED and dead.verdicts == {"AIS-AUTH-01": "undetermined"}


def test_bundle_has_a_true_manifest_and_no_secret_survives(tmp_path, monkeypatch):
    planted = "planted-s3cret-7d1c0ffee"
    monkeypatch.setenv("PLANTED", planted)
    driver = tmp_path / "leaky.yaml"
    boot = ("import os, runpy, sys\n"
            "print('boot', os.environ['PLANTED_SECRET'], os.environ['LLM_API_KEY'], os.environ['TK_SERVICE_TOKEN'],"
            " 'proxy http://ops:hunter2@proxy.corp:3128', flush=True)\n"
            "sys.argv = ['reference_service']; runpy.run_module('reference_service', run_name='__main__')\n")
    driver.write_text(yaml.safe_dump({
        "extends": str(DRIVERS / "reference.yaml"),
        "secret_env": ["LLM_API_KEY", "TK_SERVICE_TOKEN", "PLANTED_SECRET"],
        "service": {"command": ["{python}", "-c", boot], "env": {"PLANTED_SECRET": "{env:PLANTED}"}},
    }))
    run_suite("leaky", tmp_path / "r", driver=driver, extra=["--claims", "authentication", "--alluredir", str(tmp_path / "r" / "allure-results")])
    with tarfile.open(tmp_path / "r" / "conformance-bundle.tar.gz") as tar:
        files = {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers()}
    manifest = json.loads(files.pop("manifest.json"))
    assert {f["path"] for f in manifest["files"]} == set(files)
    assert all(hashlib.sha256(files[f["path"]]).hexdigest() == f["sha256"] for f in manifest["files"])
    assert "service.log" in files and any(n.startswith("allure-results/") for n in files) and any(n.startswith("evidence/") for n in files)
    assert b"boot <redacted-env-PLANTED_SECRET> <redacted-llm-api-key> <redacted-env-TK_SERVICE_TOKEN> proxy http://ops:<redacted>@" in files["service.log"]
    # The report directory as the user keeps it (the HTML report is rendered from it) too.
    on_disk = {str(p.relative_to(tmp_path / "r")): p.read_bytes() for p in (tmp_path / "r").rglob("*")
               if p.is_file() and p.name != "conformance-bundle.tar.gz"}
    assert any(n.startswith("allure-results/") for n in on_disk)
    for name, data in {**files, **{f"disk:{n}": d for n, d in on_disk.items()}}.items():
        text = data.decode(errors="replace")
        assert planted not in text and "hunter2" not in text, name
        assert not re.search(r"sk-lab-[A-Za-z0-9_-]{8,}", text), name
        assert not JWT.search(text), f"a JWT survived in {name}"
