"""The SMS channel: gateway webhooks in, the gateway's HTTP API out (see adapter.py)."""
