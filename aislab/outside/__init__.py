"""The fake outside world: the egress witness, the telemetry collector, the LLM provider."""
