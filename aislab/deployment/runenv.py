"""Render, then run: the service's env taken from the ai-service container of the rendered
chart, with the lab's endpoints given to helm as values overrides (as a customer's `--set`).

Driver placeholders (`{lab.controlplane.url}`) would not survive helm (a template may write a
value unquoted, and `{...}` is YAML), so they travel through helm as plain tokens and are
restored afterwards; the lab fills them as in any driver."""

from __future__ import annotations

import re
from dataclasses import dataclass

from aislab.deployment.rendering import Deployment, find_container, parse
from aislab.deployment.values import ConfigurationError, merge
from aislab.driver.model import PLACEHOLDER

TOKEN = re.compile(r"aislabph(\d+)x")
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
# The customer's intent is read per group: asking for any of them means configuring the group.
GROUPS = (("DO_NOT_TRACK",), PROXY_VARS)


@dataclass(frozen=True)
class ChartEnv:
    env: dict[str, str]  # with driver placeholders, as service.env
    withheld: tuple[str, ...]  # asked for by the values, dropped by the chart: no scenario may set them


def chart_env(deployment: Deployment, container: str, overrides: dict, supplied: dict[str, str]) -> ChartEnv:
    names: list[str] = []

    def tokenise(value):
        if isinstance(value, dict):
            return {k: tokenise(v) for k, v in value.items()}
        if isinstance(value, list):
            return [tokenise(v) for v in value]
        if isinstance(value, str):
            return PLACEHOLDER.sub(lambda m: names.append(m.group(1)) or f"aislabph{len(names) - 1}x", value)
        return value

    values = merge(deployment.values.for_chart(), tokenise(overrides))
    found = find_container(parse(deployment.chart.template(values)), container)
    if found is None:
        raise ConfigurationError(f"service.env_from_chart.container: no container named {container} in the rendered chart")
    env: dict[str, str] = {}
    for name, entry in found.env.items():
        if name in PROXY_VARS:
            # The customer's proxy and its exemptions name hosts of their network, not the lab's:
            # the proxy scenarios put the lab's own in their place, the others run without.
            continue
        if "valueFrom" in entry:
            # A Secret or ConfigMap of the customer's cluster: the lab supplies its own value.
            if name not in supplied:
                raise ConfigurationError(f"the chart takes {name} from {entry['valueFrom']}; the lab cannot read your cluster: "
                                         f"give its value in the driver's service.env.{name}")
            continue
        env[name] = TOKEN.sub(lambda m: "{" + names[int(m.group(1))] + "}", str(entry.get("value", "")))
        if supplied.get(name, env[name]) != env[name]:
            raise ConfigurationError(f"service.env.{name} would override the value the chart renders; with env_from_chart "
                                     "service.env only supplies what the cluster would (Secret values) and the lab's own extras")
    asked = deployment.asked(tuple(n for group in GROUPS for n in group))
    withheld = [n for group in GROUPS if set(group) & set(asked) for n in group if n not in found.env]
    return ChartEnv({**env, **supplied}, tuple(withheld))
