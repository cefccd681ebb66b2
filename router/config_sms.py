"""The `channels.sms` block: inbound webhooks, the outbound HTTP gateway, threading and limits.

Secrets are never in the file: each `*_env` field names the environment variable that holds the
secret (the generic webhook's shared HMAC secret, Twilio's auth token, the gateway's token). The
generic webhooks' secret, when its variable is unset, is generated once into
`<data_dir>/sms-webhook-secret` (mode 0600) and read from there on later starts.
"""

from __future__ import annotations

from pydantic import Field

from router.config_issues import Loc
from router.config_sections import Section

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class SmsRetryConfig(Section):
    """How an outbound message the gateway did not take is tried again (the SMS outbox's
    `router.outbox.RetryPolicy`: the pause after try n is backoff_s * 2^(n-1), capped)."""

    attempts: int = Field(6, ge=1, le=50, description="tries in all, the first one included")
    backoff_s: float = Field(
        2.0, gt=0, le=3600, description="pause before the first retry; doubled after each one"
    )
    backoff_max_s: float = Field(300.0, gt=0, le=86_400, description="longest pause")

    def _own_problems(self) -> list[tuple[Loc, str]]:
        if self.backoff_max_s < self.backoff_s:
            return [(("backoff_max_s",), "must not be below backoff_s")]
        return []


class SmsConfig(Section):
    """Text messages: webhooks from the SMS gateway in, the gateway's HTTP API out."""

    enabled: bool = Field(False, description="start the SMS adapter with `cityline serve`")
    queue: str = Field("sms", min_length=1, description="queue new SMS conversations go to")
    webhook_secret_env: str = Field(
        "CITYLINE_SMS_WEBHOOK_SECRET",
        pattern=ENV_NAME,
        description="NAME of the environment variable holding the shared secret of the generic "
        "JSON webhooks, inbound and delivery status (header X-Cityline-Signature: "
        "sha256=<hex HMAC-SHA256 of the raw body>). Unset: a secret generated once into "
        "<data_dir>/sms-webhook-secret (mode 0600) is used",
    )
    twilio_auth_token_env: str = Field(
        "CITYLINE_SMS_TWILIO_TOKEN",
        pattern=ENV_NAME,
        description="NAME of the environment variable holding the Twilio auth token that signs "
        "form posts and status callbacks (X-Twilio-Signature); unset: both are refused",
    )
    public_url: str = Field(
        "",
        description="base URL of this server as the gateway calls it (e.g. "
        "https://sms.city.example); Twilio signs this plus the webhook path. Empty: the URL of "
        "the request as received",
    )
    gateway_url: str = Field(
        "",
        description="outbound gateway endpoint: POST JSON {to, from, text, reference}; a 2xx "
        "answer may give the gateway's message id as `id` (or `sid`), which its delivery "
        "receipts name",
    )
    gateway_token_env: str = Field(
        "CITYLINE_SMS_GATEWAY_TOKEN",
        pattern=ENV_NAME,
        description="NAME of the environment variable holding the gateway's bearer token",
    )
    gateway_timeout_s: float = Field(10.0, gt=0, le=120, description="timeout of one POST")
    sender: str = Field("", description="the city's number messages are sent from")
    thread_window_s: float = Field(
        86_400.0,
        gt=0,
        le=30 * 86_400,
        description="messages from one number within this time of the previous one join its "
        "open conversation",
    )
    max_segments: int = Field(
        6, ge=1, le=20, description="longest reply, in SMS segments; longer ones are cut"
    )
    max_text_chars: int = Field(
        5_000, ge=160, le=20_000, description="longest inbound message (after assembly)"
    )
    rate_limit: int = Field(
        20, ge=1, le=10_000, description="inbound messages accepted per number per minute"
    )
    parts_timeout_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="a multi-part message still incomplete after this is taken as it is",
    )
    receipt_window_s: float = Field(
        7 * 86_400.0,
        gt=0,
        le=30 * 86_400,
        description="how long after sending a delivery receipt of a message is still taken "
        "(the link from the gateway's message id back to the message is kept this long)",
    )
    retry: SmsRetryConfig = Field(default_factory=SmsRetryConfig)
