"""The packaged knowledge cards of the example city (YAML data, read by router/knowledge.py)."""
