"""The configuration family in whole runs: a broken input stops the run (exit 1, a clear
message, no verdict); without --chart the family is not applicable and says why; a literal key
found in the values survives nowhere; and render-then-run: the security page's own telemetry
snippet, rendered by a chart that ignores extraEnvVars, makes AIS-TELEM-01 violated against the
reference service, while the additionalEnvVars form satisfies it."""

from __future__ import annotations

import re
import tarfile

import pytest

from aislab.report.conformance import EXIT_HARNESS_FAILED
from tests.suite_runs import DRIVERS, PROJECT, run_suite

CHART = str(PROJECT / "fixtures" / "charts" / "testkube-ai-service")
VALUES = PROJECT / "fixtures" / "values"
CFG = ["--claims", "configuration"]


def broken_chart(tmp_path):
    chart = tmp_path / "broken"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: broken\nversion: 0.1.0\n")
    (chart / "templates" / "x.yaml").write_text('{{ required "llmApi.url must be set" .Values.llmApi }}\n')
    return str(chart)


def bad_yaml(tmp_path):
    path = tmp_path / "values.yaml"
    path.write_text("testkube-ai-service:\n  llmApi: {url: http://x\n")
    return str(path)


@pytest.mark.parametrize("args, driver, message", [
    (lambda t: ["--chart", str(t / "absent")], "reference.yaml", "no chart directory there"),
    (lambda t: ["--chart", broken_chart(t)], "reference.yaml", "helm could not render .*llmApi.url must be set"),
    (lambda t: ["--chart", CHART, "--values", bad_yaml(t)], "reference.yaml", r"values.yaml:3:1: not valid YAML"),
    (lambda t: ["--chart", CHART, "--deployment", "on-the-moon"], "reference.yaml", "--deployment on-the-moon: unknown"),
    (lambda t: ["--chart", "kubeshop/testkube-ai-service", "--chart-version", "1.20.3"], "reference.yaml", "helm pull failed"),
    (lambda t: [], "reference-chart.yaml", "takes the service's env from the chart: give --chart"),
], ids=["no-chart", "helm-error", "yaml-error", "unknown-deployment", "repository-offline", "chart-driver-without-chart"])
def test_a_broken_input_is_an_error_never_a_verdict(tmp_path, args, driver, message):
    run = run_suite("broken-input", tmp_path / "r", driver=DRIVERS / driver, extra=CFG + args(tmp_path), expect_no_report=True)
    assert run.exit_code == EXIT_HARNESS_FAILED and run.verdicts == {}, run.output
    assert re.search(message, run.output, re.DOTALL), run.output


def test_without_a_chart_the_family_is_not_applicable_and_says_why(tmp_path):
    run = run_suite("no-chart", tmp_path / "r", extra=CFG)
    assert set(run.verdicts.values()) == {"not_applicable"} and len(run.verdicts) == 8, run.verdicts
    assert "no --chart given" in (tmp_path / "r" / "conformance-report.json").read_text()


def test_a_literal_key_in_the_values_is_redacted_everywhere(tmp_path):
    report = tmp_path / "r"
    run = run_suite("literal-key", report, extra=CFG + ["--chart", CHART, "--values", str(VALUES / "bad" / "literal-key.yaml"),
                                                        "--alluredir", str(report / "allure-results"), "--junitxml", str(report / "junit.xml")])
    assert run.with_verdict("violated") == {"AIS-CFG-04"}, run.verdicts
    secret = b"sk-proj-aislab-literal-0123456789abcdef"
    leaks = [p for p in report.rglob("*") if p.is_file() and secret in p.read_bytes()]
    with tarfile.open(report / "conformance-bundle.tar.gz") as tar:
        leaks += [m.name for m in tar.getmembers() if m.isfile() and secret in tar.extractfile(m).read()]
    assert not leaks, leaks
    manifests = next(report.glob("evidence/*literal*/rendered-manifests.json")).read_text()
    assert "<redacted-llm_api_key-literal>" in manifests


@pytest.mark.parametrize("values, verdict", [("page/telemetry.yaml", "violated"), ("good/telemetry-off.yaml", "satisfied")])
def test_render_then_run_the_page_snippet_breaks_the_opt_out(tmp_path, values, verdict):
    run = run_suite("render-then-run", tmp_path / "r", driver=DRIVERS / "reference-chart.yaml",
                    extra=["--claims", "AIS-TELEM-01", "--chart", CHART, "--values", str(VALUES / values)])
    assert run.verdicts == {"AIS-TELEM-01": verdict}, run.output
