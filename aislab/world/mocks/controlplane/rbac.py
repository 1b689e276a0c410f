"""The RBAC model of TESTKUBE.md section 4, as pure functions over the users fixture."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROLES = ("none", "read", "run", "write", "admin")
ORG_ROLES = ("owner", "admin", "member", "biller", "org-wide-read")


def rank(role: str | None) -> int:
    return ROLES.index(role or "none")


def weaker(a: str, b: str) -> str:
    return a if rank(a) <= rank(b) else b


def stronger(*roles: str) -> str:
    return max(roles, key=rank, default="none")


@dataclass(frozen=True)
class Principal:
    sub: str
    email: str
    org_role: str
    env_roles: dict = field(default_factory=dict)
    group_roles: dict = field(default_factory=dict)
    max_role: str | None = None
    kind: str = "user"

    def env_role(self, env_id: str) -> str:
        if self.org_role in ("owner", "admin"):
            role = "admin"
        elif self.org_role == "org-wide-read":
            role = "read"
        elif self.org_role == "member":
            role = self.env_roles.get(env_id, "none")
        else:  # biller: billing only, no resources
            role = "none"
        return self._capped(role)

    def resource_role(self, env_id: str, group_id: str | None) -> str:
        role = self.env_role(env_id)
        if group_id is None or self.org_role in ("owner", "admin", "org-wide-read"):
            return role
        return weaker(role, self._capped(self.group_roles.get(group_id, "none")))

    def can(self, need: str, env_id: str, group_id: str | None = None) -> bool:
        return rank(self.resource_role(env_id, group_id)) >= rank(need) > 0

    def sees_group(self, group_id: str) -> bool:
        if self.org_role in ("owner", "admin", "org-wide-read"):
            return True
        return rank(self._capped(self.group_roles.get(group_id, "none"))) > 0

    def is_org_admin(self) -> bool:
        return self.org_role in ("owner", "admin") and self.max_role in (None, "admin")

    def _capped(self, role: str) -> str:
        return weaker(role, self.max_role) if self.max_role else role


class Directory:
    """Who is who in the lab organization (teams folded into each member's grants)."""

    def __init__(self, data: dict):
        teams = data.get("teams", {})
        self.personas: dict[str, str] = data.get("personas", {})
        self.users: dict[str, dict] = {u["sub"]: u for u in data["users"]}
        self.crowd_of: dict[str, str] = {}  # sub of a crowd user -> the persona whose grants it has
        for user, persona in self._crowd(data.get("crowd")):
            self.users[user["sub"]] = user
            self.crowd_of[user["sub"]] = persona
        self._principals = {sub: self._principal(u, teams) for sub, u in self.users.items()}

    def _crowd(self, spec: dict | None) -> list[tuple[dict, str]]:
        """Users of the scale scenario: each has one persona's grants under a subject (and an
        email) of its own, the personas taken in turn."""
        crowd = []
        for i in range((spec or {}).get("size", 0)):
            persona = spec["like"][i % len(spec["like"])]
            template = self.users[self.personas[persona]]
            local, _, domain = template["email"].partition("@")
            crowd.append(({**template, "sub": f"{template['sub']}-c{i:02d}", "email": f"{local}+c{i:02d}@{domain}"}, persona))
        return crowd

    def crowd(self) -> list[tuple[dict, str]]:
        """The crowd's users, each with the persona whose grants it has."""
        return [(self.users[sub], persona) for sub, persona in self.crowd_of.items()]

    @classmethod
    def load(cls, path: Path) -> "Directory":
        return cls(yaml.safe_load(path.read_text()))

    @staticmethod
    def _principal(user: dict, teams: dict) -> Principal:
        if user["org_role"] not in ORG_ROLES:
            raise ValueError(f"user {user['sub']}: unknown org_role {user['org_role']!r}")
        env_roles = dict(user.get("env_roles", {}))
        group_roles = dict(user.get("group_roles", {}))
        for team in user.get("teams", []):
            for target, grants in (("env_roles", env_roles), ("group_roles", group_roles)):
                for key, role in teams[team].get(target, {}).items():
                    grants[key] = stronger(grants.get(key, "none"), role)
        return Principal(
            sub=user["sub"],
            email=user.get("email", ""),
            org_role=user["org_role"],
            env_roles=env_roles,
            group_roles=group_roles,
            max_role=user.get("max_role"),
            kind=user.get("kind", "user"),
        )

    def principal(self, sub: str) -> Principal | None:
        return self._principals.get(sub)

    def user_for(self, persona_or_sub: str) -> dict:
        sub = self.personas.get(persona_or_sub, persona_or_sub)
        if sub not in self.users:
            raise KeyError(f"no lab user or persona named {persona_or_sub!r}")
        return self.users[sub]
