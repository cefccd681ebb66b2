"""The `channels.telegram` block: the bot, how updates reach us, and where new chats go.

Secrets are never in the file: `token_env` and `secret_token_env` name the environment variables
that hold the bot token and the webhook's secret token.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from router.config_issues import Loc
from router.config_sections import Section

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class TelegramConfig(Section):
    """A Telegram bot: updates in by webhook or long polling, agents' replies out."""

    enabled: bool = Field(
        False, description="start the Telegram adapter with `cityline serve` (needs the token)"
    )
    queue: str = Field("telegram", min_length=1, description="queue new Telegram chats go to")
    token_env: str = Field(
        "CITYLINE_TELEGRAM_TOKEN",
        pattern=ENV_NAME,
        description="NAME of the environment variable holding the bot token from @BotFather",
    )
    base_url: str = Field(
        "https://api.telegram.org/bot",
        min_length=1,
        description="Bot API base URL; the token is appended. Change it for a local Bot API "
        "server (or a test fake)",
    )
    mode: Literal["webhook", "polling"] = Field(
        "webhook",
        description="webhook: Telegram POSTs updates to webhook_path on our HTTP server; "
        "polling: a task long-polls getUpdates (no public URL needed)",
    )
    webhook_path: str = Field(
        "/webhooks/telegram",
        pattern=r"^/[A-Za-z0-9/_.-]*$",
        description="path of the webhook on our HTTP server",
    )
    secret_token_env: str = Field(
        "CITYLINE_TELEGRAM_SECRET",
        pattern=ENV_NAME,
        description="NAME of the environment variable holding the webhook secret token; every "
        "webhook call must carry it in X-Telegram-Bot-Api-Secret-Token (1-256 of A-Z a-z 0-9 _ -)",
    )
    public_url: str = Field(
        "",
        description="base URL of this server as Telegram calls it (https://...); when set, "
        "webhook mode registers public_url + webhook_path with setWebhook at start. Empty: the "
        "webhook is registered by the operator",
    )
    poll_timeout_s: int = Field(
        30, ge=0, le=60, description="long-polling timeout of one getUpdates call, seconds"
    )
    poll_retry_s: float = Field(
        5.0, gt=0, le=300, description="pause after a failed getUpdates before trying again"
    )
    send_attempts: int = Field(
        6, ge=1, le=100, description="tries in all to deliver one reply to a resident (Bot API "
        "429, 5xx and network errors are retried; 400 and 403 - a blocked bot - are not)"
    )
    send_backoff_s: float = Field(
        2.0, gt=0, le=3600, description="pause before the first retry of a reply; doubled each "
        "time up to 5 minutes"
    )

    def _own_problems(self) -> list[tuple[Loc, str]]:
        if self.public_url and not self.public_url.startswith("https://"):
            return [(("public_url",), "Telegram only calls https:// webhooks")]
        return []
