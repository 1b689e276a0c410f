"""How a scenario ends. Only a Violation makes a claim `violated`; anything else that goes
wrong (the lab, a missing positive control) makes it `undetermined`, never `satisfied`."""

from __future__ import annotations

NOT_APPLICABLE = "not applicable:"
# Not applicable by what the service was seen doing (no telemetry, no tools): stands only where
# the service was seen doing the work (the exercise control), else it is undetermined.
NOT_APPLICABLE_OBSERVED = f"{NOT_APPLICABLE} as observed,"


class Violation(AssertionError):
    """Observed evidence contradicts the claim."""


class Undetermined(Exception):
    """The evidence is incomplete: e.g. a positive control did not show the witness could see."""


def violation_if(condition: bool, message: str) -> None:
    if condition:
        raise Violation(message)


def undetermined_unless(condition: bool, message: str) -> None:
    if not condition:
        raise Undetermined(message)


def violations_first(*checks) -> list:
    """Run every check (a callable); a Violation stops at once, an Undetermined waits until all
    have run, so that an incomplete piece of evidence never hides an observed contradiction
    another check would find. Returns what each returned."""
    results, pending = [], None
    for check in checks:
        try:
            results.append(check())
        except Undetermined as why:
            pending = pending or why
            results.append(None)
    if pending is not None:
        raise pending
    return results


def not_applicable_as_observed(reason: str) -> None:
    import pytest

    pytest.skip(f"{NOT_APPLICABLE_OBSERVED} {reason}")
