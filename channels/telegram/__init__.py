"""The Telegram channel: a python-telegram-bot Application embedded in our loop (see adapter.py)."""
