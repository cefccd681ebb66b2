"""Log handlers for the `cityline` command.

Only the CLI calls `configure_logging`: library modules just take `logging.getLogger(__name__)`,
so an embedding program (or pytest's caplog) keeps full control of where records go.
"""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVELS = ("debug", "info", "warning", "error", "critical")
_HANDLER_NAME = "cityline-cli"


def configure_logging(level: str = "info") -> None:
    """One stderr handler on the root logger, in the format the operators' tools parse.

    aiohttp's access log writes a line per request; health probes and Prometheus scrapes would
    drown the lifecycle lines in it, so it is shown only at `debug`.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}: choose one of {', '.join(LEVELS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    # Replace only our own handler (a second call must not print every line twice) and leave
    # any other, e.g. pytest's capture when the CLI is called in-process, where it is.
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.getLogger("aiohttp.access").setLevel(
        logging.DEBUG if numeric <= logging.DEBUG else logging.WARNING
    )
    # Python warnings (deprecations in a dependency, unclosed sockets) go to the same log
    # instead of a bare stderr line without a timestamp.
    logging.captureWarnings(True)
