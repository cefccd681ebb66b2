"""What the `cityline` commands share: the common options, the configuration with the command
line's overrides, and the one-line error format.

Kept apart from router/cli.py so that the modules of single commands (router/cli_admin.py) can
use it without importing the entry point, which imports them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from router.logging_setup import LEVELS

if TYPE_CHECKING:
    from router.config import CitylineConfig


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML configuration (default: the packaged one; CITYLINE_* variables override)",
    )
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        help="Redis to use, e.g. redis://host:6379/0 (overrides REDIS_URL and redis.url)",
    )


def add_log_level(parser: argparse.ArgumentParser, default: str = "info") -> None:
    parser.add_argument("--log-level", choices=LEVELS, default=default, help=f"default {default}")


def error(message: str) -> None:
    print(f"cityline: error: {message}", file=sys.stderr)


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def format_issue(path: str | None, issue: Any) -> str:
    """`FILE:LINE: field: message`, the shape editors and CI logs link to the line."""
    where = path or "(packaged default)"
    if issue.line is not None:
        where = f"{where}:{issue.line}"
    field = f" {issue.field}:" if issue.field else ""
    return f"{where}:{field} {issue.message}"


def load_config_for(args: argparse.Namespace) -> CitylineConfig:
    """The config file (or the packaged default) with the command line's overrides applied.

    Raises `router.config.ConfigError`, which the commands report as a usage error (exit 2).
    """
    from router.config import load_config

    config = load_config(getattr(args, "config", None))
    http_updates: dict[str, Any] = {}
    if getattr(args, "host", None) is not None:
        http_updates["host"] = args.host
    if getattr(args, "port", None) is not None:
        http_updates["port"] = args.port
    updates: dict[str, Any] = {}
    if http_updates:
        updates["http"] = config.http.model_copy(update=http_updates)
    if getattr(args, "data_dir", None) is not None:
        updates["data_dir"] = Path(args.data_dir)
    return config.model_copy(update=updates) if updates else config


def config_or_exit(args: argparse.Namespace) -> CitylineConfig | int:
    """The configuration, or the exit code after its problems have been printed."""
    from router.config import ConfigError

    try:
        return load_config_for(args)
    except ConfigError as exc:
        error("the configuration is not valid:")
        for issue in exc.errors:
            print(format_issue(getattr(args, "config", None), issue), file=sys.stderr)
        return 2
    except OSError as exc:
        error(f"cannot read the configuration: {exc}")
        return 2
