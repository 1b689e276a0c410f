"""Lab machinery of the ai-service conformance harness: mocks, targets, driver, report."""

__version__ = "0.1.0"
