"""Witnesses that record what the service tries: egress witness, outside collector, DNS sinkhole."""
