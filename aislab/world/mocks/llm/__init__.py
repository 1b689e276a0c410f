"""Scripted, deterministic, adversarial mock LLM speaking the OpenAI chat-completions API."""
