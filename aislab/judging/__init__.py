"""Judging: observations of what the witnesses saw, the checks of each claim, verdicts."""
