"""Build the voice adapter from the configuration: what the composition root calls."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from channels.voice.adapter import VoiceAdapter
from channels.voice.ami import AmiConnection, AmiSettings
from channels.voice.holding import Holding
from router.config import CitylineConfig
from router.ivr_load import default_flows_dir, load_flows
from router.service import RoutingService
from router.waiting import wait_estimator


class VoiceConfigError(RuntimeError):
    """The voice channel is enabled but cannot be set up (no AMI secret, bad flows)."""


def build_voice_adapter(
    service: RoutingService,
    cfg: CitylineConfig,
    env: Mapping[str, str] | None = None,
    **adapter_options: Any,
) -> VoiceAdapter:
    """`adapter_options` go to VoiceAdapter (tests: `ivr_clock`, `fastagi_port`)."""
    voice = cfg.channels.voice
    env = os.environ if env is None else env
    secret = env.get(voice.ami_secret_env, "")
    if not secret:
        raise VoiceConfigError(
            f"channels.voice is enabled but the AMI secret is not set: put it in the "
            f"environment variable {voice.ami_secret_env}"
        )
    ami = AmiConnection(AmiSettings(
        host=voice.ami_host, port=voice.ami_port, username=voice.ami_username,
        secret=SecretStr(secret), action_timeout_s=voice.ami_action_timeout_s,
        ping_interval_s=voice.ami_ping_interval_s, ping_timeout_s=voice.ami_ping_timeout_s,
        reconnect_max_s=voice.ami_reconnect_max_s,
    ))
    flows = load_flows(voice.flows_dir or default_flows_dir(), cfg)
    if voice.flow not in flows:
        raise VoiceConfigError(f"channels.voice.flow {voice.flow!r} is not among {sorted(flows)}")
    holding = Holding(service, wait_estimator(service), voice.announce_every_s)
    return VoiceAdapter(service, cfg, ami, flows, holding, **adapter_options)
