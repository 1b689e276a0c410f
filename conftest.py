"""Root conftest: the lab plugin and the shared steps, for the scenarios and the project tests."""

pytest_plugins = ["aislab.pytest_plugin", "aislab.lab_fixtures", "steps.common", "steps.network"]
