"""The RBAC model of TESTKUBE.md section 4, role by role."""

import pytest

from aislab.world.mocks.controlplane.rbac import Directory
from tests.lab_apps import FIXTURES

D = Directory.load(FIXTURES / "lab" / "users.yaml")


@pytest.mark.parametrize("persona, env, group, expected", [
    ("owner", "env-prod", "grp-ledger", "admin"),
    ("admin", "env-stage", None, "admin"),
    ("maxrole-capped admin", "env-prod", "grp-payments", "read"),   # maxRole caps admins too
    ("no-access member", "env-prod", None, "none"),
    ("reader", "env-prod", None, "read"),
    ("reader", "env-stage", None, "none"),
    ("runner", "env-prod", "grp-payments", "run"),                  # less permissive of env and group
    ("resource-group-limited member", "env-prod", None, "write"),
    ("resource-group-limited member", "env-prod", "grp-payments", "read"),
    ("resource-group-limited member", "env-prod", "grp-ledger", "none"),
    ("team member", "env-stage", None, "run"),                        # granted through team-qa
    ("team member", "env-stage", "grp-payments", "read"),
    ("biller", "env-prod", None, "none"),
    ("assistant service account", "env-stage", "grp-ledger", "read"),
])
def test_effective_role(persona, env, group, expected):
    principal = D.principal(D.user_for(persona)["sub"])
    assert principal.resource_role(env, group) == expected


def test_unknown_persona_is_a_clear_error():
    with pytest.raises(KeyError, match="no lab user or persona"):
        D.user_for("nobody")


def test_the_crowd_has_its_personas_grants_under_subjects_of_its_own():
    crowd = D.crowd()
    assert len(crowd) == 50 and len({u["sub"] for u, _ in crowd}) == 50 and len({u["email"] for u, _ in crowd}) == 50
    for user, persona in crowd:
        template = D.principal(D.user_for(persona)["sub"])
        member = D.principal(user["sub"])
        assert member.sub != template.sub and user["sub"].startswith(template.sub + "-c")
        for env in ("env-prod", "env-stage", "env-sandbox"):
            for group in (None, "grp-payments", "grp-ledger"):
                assert member.resource_role(env, group) == template.resource_role(env, group), (user["sub"], env, group)
    assert len({persona for _, persona in crowd}) == 10  # mixed roles and resource groups
