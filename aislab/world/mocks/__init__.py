"""The mocks the service talks to: identity provider, Testkube control plane, LLM."""
