"""reapi: an OpenAI-compatible LLM API gateway with exact prepaid billing."""

__version__ = "0.1.0"
