"""The customer's deployment as the Helm chart would produce it: their values files read and
merged as helm does, the chart rendered by the real helm binary, the ai-service container found
in the manifests, and the keys the chart never reads found by rendering again without each."""

from aislab.deployment.values import ConfigurationError

__all__ = ["ConfigurationError"]
