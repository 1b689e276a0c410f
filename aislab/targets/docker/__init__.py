"""The docker backend: the lab's hosts as containers (testcontainers), images built locally."""

from aislab.targets.docker.target import DockerTarget

__all__ = ["DockerTarget"]
