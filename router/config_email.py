"""Settings of the e-mail channel: our SMTP server, what it accepts, the smarthost it sends
acknowledgements and agents' replies through, and how those are retried.

Not wired into `ChannelsConfig` here: the adapter takes an `EmailConfig` directly.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from router.config_issues import Loc
from router.config_sections import Section

MIB = 1024 * 1024


def _lower_all(value: object) -> object:
    if isinstance(value, list):
        return [v.strip().lower() if isinstance(v, str) else v for v in value]
    if isinstance(value, dict):
        return {k.strip().lower() if isinstance(k, str) else k: v for k, v in value.items()}
    return value


class AttachmentLimits(Section):
    """Attachments kept on disk; anything beyond a limit is dropped (and noted), never stored."""

    max_file_bytes: int = Field(5 * MIB, ge=0, description="largest attachment kept")
    max_message_bytes: int = Field(10 * MIB, ge=0, description="attachments kept per message")
    max_count: int = Field(10, ge=0, description="attachments kept per message")


class SmarthostConfig(Section):
    """The SMTP relay our outgoing mail goes through (the city's mail server)."""

    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(25, ge=1, le=65535)
    username: str = Field("", description="empty: no SMTP AUTH")
    password_env: str = Field(
        "", description="NAME of the environment variable holding the password (never the "
        "password itself)"
    )
    starttls: bool = Field(False, description="upgrade the connection with STARTTLS")
    timeout_s: float = Field(30.0, gt=0)


class EmailRetryConfig(Section):
    """How mail the smarthost did not take is tried again (acknowledgements, agents' replies,
    web form answers). Kept in Redis, so a restart carries on; the agent sees "retrying"."""

    attempts: int = Field(20, ge=1, le=100, description="tries in all, the first one included")
    backoff_s: float = Field(
        5.0, gt=0, le=3600, description="pause before the first retry; doubled after each one"
    )
    backoff_max_s: float = Field(
        900.0, gt=0, le=86_400,
        description="longest pause (the defaults keep trying for about three hours)",
    )

    def _own_problems(self) -> list[tuple[Loc, str]]:
        if self.backoff_max_s < self.backoff_s:
            return [(("backoff_max_s",), "must not be below backoff_s")]
        return []


class EmailConfig(Section):
    """The e-mail channel: `aiosmtpd` in our loop; mail only for the city's own addresses."""

    enabled: bool = False
    host: str = Field("127.0.0.1", description="address our SMTP server listens on")
    port: int = Field(2525, ge=0, le=65535, description="0: any free port (tests)")
    hostname: str = Field("", description="name in the SMTP greeting; empty: the first domain")
    domains: list[str] = Field(
        default_factory=list,
        description="domains whose every mailbox is accepted (into the e-mail channel's "
        "first queue), e.g. miasto.example.pl",
    )
    addresses: dict[str, str] = Field(
        default_factory=dict,
        description="mailbox -> queue, e.g. kontakt@miasto.example.pl: email",
    )
    max_message_bytes: int = Field(10 * MIB, gt=0, description="larger mail is refused (552)")
    max_recipients: int = Field(20, ge=1, description="RCPT commands per message")
    max_connections: int = Field(50, ge=1, description="concurrent SMTP connections")
    starttls_cert: Path | None = Field(None, description="PEM certificate: offer STARTTLS")
    starttls_key: Path | None = Field(None, description="PEM private key of starttls_cert")
    attachments: AttachmentLimits = Field(default_factory=AttachmentLimits)
    smarthost: SmarthostConfig = Field(default_factory=SmarthostConfig)
    from_address: str = Field(
        "", description="From of acknowledgements and replies; empty: the first address"
    )
    ack: bool = Field(True, description="acknowledge new mail with its reference number")
    retry: EmailRetryConfig = Field(default_factory=EmailRetryConfig)

    _lower_domains = field_validator("domains", "addresses", mode="before")(
        lambda value: _lower_all(value)
    )

    def _own_problems(self) -> list[tuple[Loc, str]]:
        problems: list[tuple[Loc, str]] = []
        if (self.starttls_cert is None) != (self.starttls_key is None):
            problems.append((("starttls_cert",), "give both starttls_cert and starttls_key"))
        for mailbox in self.addresses:
            if "@" not in mailbox:
                problems.append((("addresses", mailbox), "not an e-mail address"))
        if self.enabled and not (self.addresses or self.domains):
            problems.append((("addresses",), "the e-mail channel accepts no address"))
        return problems

    @property
    def sender(self) -> str:
        """The From address of our mail."""
        if self.from_address:
            return self.from_address
        if self.addresses:
            return next(iter(self.addresses))
        return f"noreply@{self.domains[0]}" if self.domains else "noreply@localhost"

    @property
    def mail_domain(self) -> str:
        """Right-hand side of our Message-IDs and the greeting's default name."""
        return self.sender.rpartition("@")[2] or "localhost"
