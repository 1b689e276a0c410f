"""The docker backend: the lab's hosts as containers (testcontainers), images built locally."""

from aislab.world.targets.docker.target import DockerTarget

__all__ = ["DockerTarget"]
