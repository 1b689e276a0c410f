"""Lab machinery of the ai-service conformance harness, by role:

- `world/`: the world the service lives in: the lab (`lab.py`), its hosts, mocks (IdP, control
  plane, LLM), witnesses (egress witness, outside collector, DNS sinkhole), proxies and targets;
- `judging/`: observations, checks and verdicts;
- `report/`: evidence, the conformance report, waivers and the bundle;
- `driver/`: the contract that says how to start and chat with any service;
- `suite/`: the pytest plugin and fixtures that tie them together.
"""

from pathlib import Path

__version__ = "0.2.0"
PROJECT = Path(__file__).resolve().parent.parent
