"""Root conftest: the lab plugin and the shared steps, for the scenarios and the project tests."""

pytest_plugins = ["aislab.suite.plugin", "aislab.suite.configuration", "aislab.suite.exercising", "aislab.suite.reporting", "aislab.suite.fixtures", "aislab.suite.profiles", "steps.common", "steps.network"]
