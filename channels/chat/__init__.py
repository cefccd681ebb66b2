"""The resident web chat: a page at /chat and its WebSocket protocol at /chat/ws."""
