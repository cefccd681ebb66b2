"""The `channels.webform` block: the resident's web form and its JSON twin at /api/v1/requests.

The CSRF secret is never in the file: `csrf_secret_env` names the environment variable that holds
it. Without it a random secret is made per process (and a warning logged): forms then only verify
on the process that issued them, and every restart invalidates the forms residents have open.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from router.config_sections import Section

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"

PhotoType = Literal["jpeg", "png", "webp"]


class WebformConfig(Section):
    """The web form: category, description, place, optional photo, contact for the answer."""

    enabled: bool = Field(True, description="serve the web form with `cityline serve`")
    queue: str = Field("webform", min_length=1, description="queue new form requests go to")
    max_photo_bytes: int = Field(
        5 * 1024 * 1024,
        ge=1024,
        le=50 * 1024 * 1024,
        description="largest photo accepted (413 over it); http.max_body_bytes must leave room "
        "for it, or the whole request is refused first",
    )
    photo_types: list[PhotoType] = Field(
        default_factory=lambda: ["jpeg", "png", "webp"],
        min_length=1,
        description="photo formats accepted, recognised by their content (magic bytes), never "
        "by the type or file name the browser declares",
    )
    rate_limit_per_ip: int = Field(
        10, ge=1, le=10_000, description="submissions accepted per client IP address per minute"
    )
    csrf_secret_env: str = Field(
        "CITYLINE_WEBFORM_CSRF_SECRET",
        pattern=ENV_NAME,
        description="NAME of the environment variable holding the secret that signs the form's "
        "CSRF tokens; unset: a random secret per process (a warning is logged)",
    )
    csrf_max_age_s: int = Field(
        7200, ge=60, le=7 * 86_400, description="how long a served form may be submitted, seconds"
    )
