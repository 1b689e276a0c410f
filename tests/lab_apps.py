"""In-process instances of the mock hosts for unit tests (no namespaces needed)."""

from __future__ import annotations

import json
from pathlib import Path

from aislab.world.mocks.controlplane.app import ControlPlane
from aislab.world.mocks.controlplane.rbac import Directory
from aislab.world.mocks.controlplane.store import Store
from aislab.world.mocks.idp.tokens import SigningKey, TokenFactory, jwks_document

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ISSUER = "http://idp.lab:5556"
ADMIN_SECRET = "test-admin-secret"


def control_plane(tmp_path: Path) -> tuple[ControlPlane, TokenFactory, Directory]:
    key = SigningKey.generate()
    (tmp_path / "jwks.json").write_text(json.dumps(jwks_document(key)))
    directory = Directory.load(FIXTURES / "lab" / "users.yaml")
    store = Store.load(FIXTURES / "lab" / "seed.yaml", "n0nce")
    return ControlPlane(tmp_path, ISSUER, ADMIN_SECRET, directory, store), TokenFactory(key, ISSUER), directory
