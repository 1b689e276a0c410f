"""The reference service where the fault claims touch it: a control plane that does not answer
is a failure the model is told of, an identity provider that does not answer is a refusal, and
the reference's variants compose (the conformant ones are judged all at once)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from mutants.variants import VARIANTS
from reference_service.app import build_components
from reference_service.auth import Authenticator, Unauthorized
from reference_service.settings import Settings
from reference_service.tools import ChatContext, ToolBox
from reference_service.auth import Identity

ENV = {"CONTROL_PLANE_ENDPOINT": "http://cp.lab", "LLM_API_KEY": "sk", "OAUTH_JWKS_URL": "http://idp.lab/keys", "OAUTH_ISSUER": "http://idp.lab"}


def no_answer(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("held", request=request)


def test_a_control_plane_that_does_not_answer_is_a_failure_the_model_is_told_of():
    toolbox = ToolBox("http://cp.lab", httpx.AsyncClient(transport=httpx.MockTransport(no_answer)))
    ctx = ChatContext(Identity("u-rita", "", "token"), "org-lab", "env-prod")
    result = json.loads(asyncio.run(toolbox.execute("list_workflows", "{}", ctx)))
    assert result == {"status": None, "error": "the control plane did not answer: ReadTimeout"}


def test_an_identity_provider_that_does_not_answer_is_a_refusal():
    auth = Authenticator(Settings.from_env(ENV), httpx.AsyncClient(transport=httpx.MockTransport(no_answer)))
    with pytest.raises(Unauthorized):
        asyncio.run(auth.verify("Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.e30.c2ln"))


def test_the_conformant_variants_compose():
    c = build_components(Settings.from_env(ENV))
    for name in sorted(n for n in VARIANTS if n.startswith("benign-")):
        c = VARIANTS[name](c)
    kinds = {cls.__name__ for cls in type(c.toolbox).__mro__} | {cls.__name__ for cls in type(c.authenticator).__mro__}
    assert {"Answering", "Lenient", "Cooldown", "Strict"} <= kinds  # each one's override is still there
