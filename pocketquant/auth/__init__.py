"""API keys and who makes a request."""
