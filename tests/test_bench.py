"""`make bench`'s comparison of profiles: the certification profile's own scenarios (the scale
scenarios) are told by what the quick run of the same suite did not run, whatever their names."""

from __future__ import annotations

from aislab.bench import profile_only


def test_the_certification_only_scenarios_are_those_the_quick_run_lacks():
    quick = {"steps/test_audit.py::test_users_chatting_at_the_same_moment": 0.5, "steps/test_air_gap.py::test_whole_life": 1.0}
    certification = {**{n: s * 3 for n, s in quick.items()}, "steps/test_audit.py::test_fifty_users_of_mixed_roles": 88.2}
    assert profile_only(certification, quick) == {"steps/test_audit.py::test_fifty_users_of_mixed_roles": 88.2}
    assert profile_only(quick, quick) == {}
