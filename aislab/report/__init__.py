"""The conformance report: per claim, a verdict from its scenarios' outcomes."""
