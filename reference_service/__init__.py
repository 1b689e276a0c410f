"""Reference ai-service: a conforming stand-in for the closed-source Testkube AI Assistant.

It keeps the real service's trust boundaries (TESTKUBE.md section 7): the user's token in, the
user's token out to the control plane, the LLM key only to the LLM, nothing else on the wire.
"""

__version__ = "0.1.0"
