"""pytest glue of the configuration family: the chart and values options, the customer's
deployment rendered once per session (a broken input stops the run with exit code 1, never a
verdict), the family not applicable without --chart, and render-then-run for the driver."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from aislab.deployment import ConfigurationError
from aislab.deployment.helm import Chart
from aislab.deployment.intent import DEPLOYMENTS
from aislab.deployment.rendering import Deployment
from aislab.deployment.runenv import chart_env
from aislab.deployment.values import Values
from aislab.judging.configuration import SECRET_ENV
from aislab.judging.verdict import NOT_APPLICABLE
from aislab.suite.plugin import SESSION, claim_ids

FAMILY = "configuration"
DEPLOYMENT = pytest.StashKey[Deployment]()


def pytest_addoption(parser):
    group = parser.getgroup("aislab-configuration", "deployment configuration (Helm values)")
    group.addoption("--chart", default=None, help="the AI service's Helm chart: a directory, or repo/name with --chart-version")
    group.addoption("--chart-version", default=None, help="version of a repository chart")
    group.addoption("--values", action="append", default=[], help="values file, repeatable, merged as helm merges them")
    group.addoption("--release", default="testkube-ai-service", help="release name given to helm")
    group.addoption("--namespace", default="testkube", help="namespace given to helm")
    group.addoption("--deployment", default=None, help=f"what the customer intends: {'|'.join(DEPLOYMENTS)} (default: inferred)")


def open_deployment(config) -> Deployment:
    given = config.getoption("--deployment")
    if given is not None and given not in DEPLOYMENTS:
        raise ConfigurationError(f"--deployment {given}: unknown; use one of {', '.join(DEPLOYMENTS)}")
    chart = Chart.open(config.getoption("--chart"), config.getoption("--release"), config.getoption("--namespace"),
                       config.getoption("--chart-version"))
    values = Values.read([Path(v) for v in config.getoption("--values")])
    if values.disabled():
        raise ConfigurationError("the values set testkube-ai-service.enabled: false: the umbrella chart deploys no AI service to judge")
    return Deployment.render(chart, values, given)


@pytest.hookimpl(trylast=True)  # after the main plugin has made the session (and loaded the driver)
def pytest_configure(config):
    s = config.stash.get(SESSION, None)
    if s is None:
        return
    try:
        if config.getoption("--values") and not config.getoption("--chart"):
            raise ConfigurationError("--values without --chart: give the chart the values are for")
        if config.getoption("--chart"):
            config.stash[DEPLOYMENT] = open_deployment(config)
            # Literal keys the values wrote into the manifests are secrets, wherever they show.
            s.redactor.extra.update(config.stash[DEPLOYMENT].secrets(SECRET_ENV))
        spec = s.driver.service.env_from_chart
        if spec is not None:
            if DEPLOYMENT not in config.stash:
                raise ConfigurationError(f"driver {s.driver.path} takes the service's env from the chart: give --chart and --values")
            s.driver = with_chart_env(s.driver, config.stash[DEPLOYMENT])
    except ConfigurationError as err:
        pytest.exit(f"cannot start: {err}", returncode=1)


def with_chart_env(driver, deployment: Deployment):
    spec = driver.service.env_from_chart
    made = chart_env(deployment, spec.container or deployment.chart.name, spec.values, driver.service.env)
    service = dataclasses.replace(driver.service, env=made.env, withheld_env=made.withheld)
    return dataclasses.replace(driver, service=service)


def pytest_collection_modifyitems(config, items):
    if config.getoption("--chart"):
        return
    s = config.stash[SESSION]
    for item in items:
        if any(s.family(c) == FAMILY for c in claim_ids(item)):
            item.add_marker(pytest.mark.skip(reason=f"{NOT_APPLICABLE} no --chart given: the configuration family judges the "
                                                    "Helm chart rendered with your values (--chart DIR --values FILE)"))


@pytest.fixture(scope="session")
def deployment(request) -> Deployment:
    return request.config.stash[DEPLOYMENT]




def pytest_report_header(config):
    deployment = config.stash.get(DEPLOYMENT, None)
    if deployment is not None:
        i = deployment.intent
        return [f"configuration: {deployment.describe()}; deployment {i.kind} ({i.how})"]
    return None
