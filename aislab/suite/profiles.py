"""Scenarios that run only in the certification profile (tag `@certification`: the scale
scenario). In any other profile they are reported not applicable, with the reason and the option
that runs them: never a pass, and the claims they carry are judged by their other scenarios."""

from __future__ import annotations

import pytest

from aislab.judging.verdict import NOT_APPLICABLE

CERTIFICATION = "certification"


def pytest_configure(config):
    config.addinivalue_line("markers", f"{CERTIFICATION}: runs only with --profile {CERTIFICATION} (the scale scenario); "
                                       "reported not applicable in any other profile")


def pytest_collection_modifyitems(config, items):
    profile = config.getoption("--profile", CERTIFICATION)
    if profile == CERTIFICATION:
        return
    for item in items:
        if item.get_closest_marker(CERTIFICATION) is not None:
            item.add_marker(pytest.mark.skip(reason=f"{NOT_APPLICABLE} in the {profile} profile: this scenario runs only with "
                                                    f"--profile {CERTIFICATION}"))
