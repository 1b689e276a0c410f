"""Redaction done once: a redactor's output is a fixed point (so a text it hands back is not
scanned again), a secret learned later is still found in a text it had passed, evidence written
by the evidence writer (redacted, hashed, its Allure copy the same bytes, a failure named with its
scenario), and a step's long parameter is cut in the drill-down where no token can be cut in two."""

from __future__ import annotations

import base64
from types import SimpleNamespace

import allure_pytest_bdd.steps
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

import hashlib
import json

import aislab.report.evidence
from aislab.report.evidence import EvidenceSink, EvidenceWriter, Redactor
from aislab.suite.redaction import SHOWN, _step_parameters_in_brief

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
USER = jwt.encode({"sub": "u-rita", "aud": "testkube", "pad": "x" * 40}, KEY, algorithm="RS256")
LATER = jwt.encode({"sub": "u-otto", "aud": "testkube"}, KEY, algorithm="RS256")


def leaky_text(token: str) -> str:
    payload, signature = token.split(".")[1:]
    return "\n".join([
        f"Authorization: Bearer {token}", f"b64={base64.b64encode(b'xx' + token.encode()).decode()}",
        f"hex={token.encode().hex()}", f"payload alone {payload}", f"signature alone {signature}",
        "proxy http://ops:hunter2-secret@proxy.lab:3128", "api key sk-lab-0123456789abcdef0123", "short pw Zq81xk",
    ])


def test_a_redactors_output_is_a_fixed_point_and_a_second_pass_is_not_a_scan():
    redactor = Redactor({"llm-api-key": "sk-lab-0123456789abcdef0123", "pw": "Zq81xk"}, [USER])
    once = redactor.text(leaky_text(USER))
    assert "eyJ" not in once and "hunter2" not in once and "sk-lab" not in once and "Zq81xk" not in once
    assert Redactor({"llm-api-key": "sk-lab-0123456789abcdef0123", "pw": "Zq81xk"}, [USER])._redact(once) == once
    scans = []
    redactor._redact = lambda text: scans.append(text) or text
    assert redactor.text(once) == once and not scans  # handed back: known clean


def test_a_secret_learned_later_is_found_in_a_text_passed_before():
    redactor = Redactor({}, [USER])
    text = f"later: {base64.b64encode(LATER.encode()).decode()}"
    passed = redactor.text(text)
    redactor.add_tokens([LATER])
    assert redactor.text(passed) != passed and "u-otto" in redactor.text(passed)
    redactor.add("planted", "PLANTED-0123456789abcdef")
    assert redactor.text("PLANTED-0123456789abcdef") == "<redacted-planted>"


def test_a_long_step_parameter_is_cut_where_no_token_is_cut_in_two(monkeypatch):
    seen = {}
    monkeypatch.setattr(allure_pytest_bdd.steps, "process_gherkin_step_args", lambda lifecycle, item, step, func, args: seen.update(args))
    records = [{"n": n, "authorization": f"Bearer {USER}"} for n in range(1000)]
    chat = SimpleNamespace(user="reader")
    _step_parameters_in_brief(SimpleNamespace(lifecycle=None), SimpleNamespace(node=None), None, None, None, None,
                              {"records": records, "chat": chat, "docstring": "d" * 2000, "persona": "reader"})
    shown = repr(seen["records"])
    assert len(shown) < SHOWN + 80 and shown.endswith("characters: see the evidence)") and str(len(repr(records))) in shown
    head = shown[: shown.index("...")]
    assert not head.endswith(tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))  # no token's head at the cut
    assert seen["chat"] is chat and seen["docstring"] == "d" * 2000 and seen["persona"] == "reader"  # short ones, and Allure's own, as they are


def test_evidence_is_written_redacted_hashed_and_copied_for_allure_and_a_failure_is_named(tmp_path, monkeypatch):
    copies = []
    monkeypatch.setattr(aislab.report.evidence.allure, "attach", lambda body, **_: body.then(copies.append))
    writer, redactor = EvidenceWriter(), Redactor({}, [USER])
    sink = EvidenceSink(tmp_path, "evidence/s1", redactor, writer, "steps/x.py::s1")
    payload = {"authorization": f"Bearer {USER}"}
    entry = sink.attach("controlplane-journal", payload)
    payload["authorization"] = "changed after the scenario"  # the text is what the scenario saw when it ended
    assert writer.drain() == {}
    written = (tmp_path / entry["path"]).read_bytes()
    assert entry["sha256"] == hashlib.sha256(written).hexdigest() and copies == [written]
    assert "eyJ" not in written.decode() and "redacted-jwt sub=u-rita" in json.loads(written)["authorization"]

    (tmp_path / "taken").write_text("a file where the evidence directory would go")
    broken = EvidenceSink(tmp_path / "taken", "evidence/s2", redactor, writer, "steps/x.py::s2")
    entry = broken.attach("llm-requests", [])
    failed = writer.drain()
    assert set(failed) == {"steps/x.py::s2"} and "NotADirectoryError" in failed["steps/x.py::s2"] and entry["sha256"] is None
    assert writer.drain() == {}  # said once
