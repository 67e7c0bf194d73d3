"""Demo and test helpers: a local stand-in for the OpenAI and Anthropic HTTP APIs."""
