"""`python -m reference_service`: serve on PORT (default 9090), plain HTTP."""

from __future__ import annotations

import logging
import os

import uvicorn

from reference_service.app import build_components, create_app
from reference_service.settings import Settings


def serve(components_factory=build_components) -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    app = create_app(components_factory(settings))
    uvicorn.run(app, host="0.0.0.0", port=settings.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    serve()
