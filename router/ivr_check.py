"""`cityline check-config` for IVR flows: every flow of a directory, checked against the config.

Called by `router.cli.cmd_check_config` after the configuration itself passed. Problems are
printed like configuration problems, ``FILE:LINE: field: message``, one a line on stdout.

Which flows: those of ``--flows DIR``; else ``channels.voice.flows_dir`` of the configuration;
else the packaged flows (`ivr_flows/`). With the voice channel enabled, the flow that answers
the city number (``channels.voice.flow``) must be among them.

The packaged default flow is written for the packaged default configuration. When a
configuration neither enables voice nor names a flows directory, nothing will run that flow with
it, and references that do not resolve (queues, topics, languages it lacks) are no fault of the
configuration: they are summed up in a note on stderr that says how to check real flows, and
only problems of the flows themselves fail the check. Everywhere else every problem counts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from router.config_issues import ConfigIssue
from router.config_model import CitylineConfig
from router.ivr_load import check_flow_dir, default_flows_dir, format_flow_issue


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def check_flows(
    cfg: CitylineConfig,
    flows_dir: str | Path | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Check the IVR flows for `cfg` (see the module doc for which) and print the result.

    Returns the exit status: 0 when they may be used, 1 otherwise.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    voice = getattr(getattr(cfg, "channels", None), "voice", None)
    enabled = bool(getattr(voice, "enabled", False))
    configured: Path | None = getattr(voice, "flows_dir", None)
    if flows_dir is not None:
        directory, shown, strict = Path(flows_dir), str(flows_dir), True
    elif configured is not None:
        directory, strict = Path(configured), True
        shown = f"{configured} (channels.voice.flows_dir)"
    else:
        directory, shown, strict = default_flows_dir(), "packaged IVR flows", enabled

    flows, problems = check_flow_dir(directory, cfg)
    misfits: list[tuple[Path, ConfigIssue]] = []
    if not strict and problems:
        own = _own_problems(directory)
        misfits = [p for p in problems if _key(p) not in own]
        problems = [p for p in problems if _key(p) in own]
    answering = str(getattr(voice, "flow", "") or "")
    if enabled and answering and answering not in flows and not problems:
        known = ", ".join(sorted(flows)) or "none"
        problems.append(
            (directory, ConfigIssue(line=None, field="channels.voice.flow",
                                    message=f"no valid flow {answering!r} here (flows: {known})"))
        )
    for path, issue in problems:
        print(format_flow_issue(path, issue), file=out)
    if problems:
        print(f"{_plural(len(problems), 'problem')} in {shown}", file=err)
        return 1
    if misfits:
        path, issue = misfits[0]
        print(f"OK {shown}: valid, but written for another configuration", file=out)
        print(
            f"note: the packaged IVR flows do not fit this configuration "
            f"({_plural(len(misfits), 'reference')} to queues, skills or languages it does not "
            f"have, e.g. {format_flow_issue(path.name, issue)}); before enabling voice, write "
            "flows for it and check them with --flows DIR",
            file=err,
        )
        return 0
    names = ", ".join(sorted(flows))
    print(f"OK {shown}: {_plural(len(flows), 'flow')}{': ' + names if names else ''}", file=out)
    return 0


def _key(problem: tuple[Path, ConfigIssue]) -> tuple[Path, int | None, str, str]:
    path, issue = problem
    return path, issue.line, issue.field, issue.message


def _own_problems(directory: Path) -> set[tuple[Path, int | None, str, str]]:
    """Problems of the flows themselves: those found without any configuration."""
    return {_key(p) for p in check_flow_dir(directory, None)[1]}
