"""The channels section: one block per channel adapter, each off until configured.

A new channel is one module in `channels/` plus one block here (DESIGN.md). Secrets are never in
the file: a block names the environment variable that holds its secret.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from router.config_chat import ChatConfig
from router.config_email import EmailConfig
from router.config_sections import Section
from router.config_sms import SmsConfig
from router.config_telegram import TelegramConfig
from router.config_webform import WebformConfig

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class VoiceConfig(Section):
    """The city number through Asterisk: AMI for call control, FastAGI for the IVR."""

    enabled: bool = Field(False, description="start the voice adapter with `cityline serve`")
    ami_host: str = Field("127.0.0.1", min_length=1, description="Asterisk manager host")
    ami_port: int = Field(5038, ge=1, le=65535, description="Asterisk manager port")
    ami_username: str = Field(
        "cityline", min_length=1, description="the manager.conf user cityline logs in as"
    )
    ami_secret_env: str = Field(
        "CITYLINE_AMI_SECRET",
        pattern=ENV_NAME,
        description="NAME of the environment variable holding that user's secret",
    )
    ami_action_timeout_s: float = Field(
        5.0, gt=0, le=60, description="longest wait for the answer to one AMI action"
    )
    ami_ping_interval_s: float = Field(
        5.0, gt=0, le=300, description="a Ping is sent this often to notice a dead connection"
    )
    ami_ping_timeout_s: float = Field(
        3.0, gt=0, le=60, description="a Ping unanswered this long means the link is half-open"
    )
    ami_reconnect_max_s: float = Field(
        30.0, gt=0, le=600, description="longest pause between reconnection attempts"
    )
    fastagi_host: str = Field(
        "127.0.0.1", min_length=1, description="address the FastAGI (IVR) server listens on"
    )
    fastagi_port: int = Field(4573, ge=0, le=65535, description="FastAGI port (0 = any free)")
    fastagi_max_sessions: int = Field(
        1000, ge=1, le=100_000, description="calls in the IVR or on hold at once, at most"
    )
    flows_dir: Path | None = Field(
        None, description="directory of IVR flow files (null: the packaged ivr_flows/)"
    )
    flow: str = Field("city", min_length=1, description="the flow that answers the city number")
    connect_context: str = Field(
        "cityline-connect", description="dialplan context a waiting caller is moved to so it "
        "rings an agent (extensions.conf)"
    )
    callback_context: str = Field(
        "cityline-callback", description="dialplan context of callbacks: the agent first, then "
        "the resident"
    )
    announce_every_s: float = Field(
        30.0, gt=0, le=3600,
        description="position and estimated wait are announced this often while waiting "
        "(an IVR route may set its own)",
    )


class ChannelsConfig(Section):
    """Channel adapters."""

    voice: VoiceConfig = Field(default_factory=VoiceConfig, description="the phone")
    sms: SmsConfig = Field(default_factory=SmsConfig, description="text messages")
    email: EmailConfig = Field(default_factory=EmailConfig, description="e-mail")
    chat: ChatConfig = Field(default_factory=ChatConfig, description="the web chat")
    webform: WebformConfig = Field(default_factory=WebformConfig, description="the web form")
    telegram: TelegramConfig = Field(default_factory=TelegramConfig, description="Telegram bot")
