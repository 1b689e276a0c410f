"""Backends of the one lab topology. Scenarios never know which one they run on."""

from aislab.world.targets.base import LabError, Target, make_target

__all__ = ["LabError", "Target", "make_target"]
