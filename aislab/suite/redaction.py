"""Redaction as things are written: the run's one redactor (every secret the lab knows, every
token it minted, what the deployment's values wrote in clear) and an Allure writer that uses it,
so a run killed at any moment leaves no secret in clear under the report directory."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import pytest
from allure_commons import hookimpl
from allure_commons.logger import AllureFileLogger
from attr import asdict

from aislab.report.evidence import Pending, Redactor


class SessionRedactor:
    """Call it for the redactor as of now: it learns the lab's secrets once the lab is up, and
    each token the lab mints, as they come (building every token's forms anew each time would
    cost seconds)."""

    def __init__(self, session):
        self.session = session
        self.extra: dict[str, str] = {}  # secrets from elsewhere (a deployment's literal keys)
        self._redactor = Redactor()
        self._lab = None
        self._tokens = 0
        self._extra = 0

    def __call__(self) -> Redactor:
        lab = self.session.lab
        if lab is not None and getattr(lab, "tokens", None) is not None:
            if self._lab is not lab:
                self._lab, self._tokens = lab, 0
                for name, value in lab.redaction_secrets().items():
                    self._redactor.add(name, value)
            self._redactor.add_tokens(lab.tokens.minted[self._tokens:])
            self._tokens = len(lab.tokens.minted)
        if len(self.extra) != self._extra:
            for name, value in self.extra.items():
                self._redactor.add(name, value)
            self._extra = len(self.extra)
        return self._redactor


SHOWN = 400  # characters of a step's parameter in the drill-down
TOKEN_TAIL = re.compile(r"[A-Za-z0-9_.~%+/=-]+$")


class _Shown:
    """A parameter as Allure shows it (it writes an object's repr)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


@pytest.hookimpl
def _step_parameters_in_brief(self, request, feature, scenario, step, step_func, step_func_args):
    """A step's parameters in the drill-down, each cut to SHOWN characters: Allure writes the repr
    of every fixture a step takes, and a whole-life judgement's (every witness record, 8 MB) was
    written, and redacted, with each of its results. The evidence attachments hold it all."""
    from allure_commons.utils import represent
    from allure_pytest_bdd.steps import process_gherkin_step_args

    def brief(name, value):
        shown = "" if name in ("docstring", "datatable") else represent(value)
        if len(shown) <= SHOWN:
            return value
        # Cut where no secret can be cut in two: a token's head alone would pass the redactor.
        return _Shown(f"{TOKEN_TAIL.sub('', shown[:SHOWN])}... ({len(shown)} characters: see the evidence)")

    process_gherkin_step_args(self.lifecycle, request.node, step, step_func, {k: brief(k, v) for k, v in step_func_args.items()})


class RedactingFileLogger(AllureFileLogger):
    """Allure's own file writer, redacting every result and attachment before it reaches disk."""

    def __init__(self, report_dir, redactor: SessionRedactor, clean: bool = False):
        super().__init__(report_dir, clean)
        self.redactor = redactor

    @classmethod
    def install(cls, redactor: SessionRedactor) -> None:
        """Make allure-pytest-bdd write through this logger (it builds its logger in its own
        pytest_configure, which runs after this plugin's)."""
        import allure_pytest_bdd.plugin
        from allure_pytest_bdd.pytest_bdd_listener import PytestBDDListener

        allure_pytest_bdd.plugin.AllureFileLogger = lambda report_dir, clean=False: cls(report_dir, redactor, clean)
        PytestBDDListener.pytest_bdd_before_step_call = _step_parameters_in_brief

    def _write(self, name: str, data: bytes) -> None:
        tmp = self._report_dir / f"{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, self._report_dir / name)

    def _report_item(self, item):
        text = json.dumps(asdict(item, filter=lambda _, v: v or v is False), ensure_ascii=False)
        self._write(item.file_pattern.format(prefix=uuid.uuid4()), self.redactor().text(text).encode())

    @hookimpl
    def report_attached_file(self, source, file_name):
        self.report_attached_data(Path(source).read_bytes(), file_name)

    @hookimpl
    def report_attached_data(self, body, file_name):
        if isinstance(body, Pending):  # evidence, redacted by the evidence writer: the copy follows it there
            body.then(lambda data: self._write(file_name, data))
            return
        data = body.encode() if isinstance(body, str) else body
        try:
            data = self.redactor().text(data.decode()).encode()
        except UnicodeDecodeError:
            pass  # not text: nothing of ours to find in it
        self._write(file_name, data)
