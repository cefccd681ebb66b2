"""``Action: Command``: the few CLI commands a router might run, formatted like Asterisk 22.

command-output.txt (surprise 32): ``Response: Success``, ``Message: Command output follows``,
one ``Output:`` line per CLI line with trailing spaces kept, and for an unknown command
``Response: Error`` with the same Message and a ``No such command`` output line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.fakes.channel import Channel
    from tests.fakes.pbx import Pbx


CHANNEL_BUCKETS = 1567  # AST_NUM_CHANNEL_BUCKETS


def ast_str_case_hash(text: str) -> int:
    """Asterisk's ast_str_case_hash (djb2 over the lower-cased name, in a C int)."""
    value = 5381
    for char in text.lower().encode():
        value = (value * 33 ^ char) & 0xFFFFFFFF
    if value >= 1 << 31:
        value -= 1 << 32
    return abs(value)


def hash_order(channels: list[Channel]) -> list[Channel]:
    """The order Asterisk lists channels in: its channels container walked bucket by bucket
    (surprise 8: not creation order, ;1 and ;2 mixed). With Asterisk's own hash and bucket
    count this gives exactly the orders of coreshowchannels.txt and command-output.txt."""
    index = {id(chan): n for n, chan in enumerate(channels)}
    return sorted(
        channels,
        key=lambda chan: (ast_str_case_hash(chan.name) % CHANNEL_BUCKETS, index[id(chan)]),
    )


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def timestr(seconds: int) -> str:
    parts = []
    for size, name in ((604800, "week"), (86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            parts.append(_plural(seconds // size, name))
            seconds %= size
    if seconds or not parts:
        parts.append(_plural(seconds, "second"))
    return ", ".join(parts)


def run(pbx: Pbx, command: str) -> tuple[bool, list[str]]:
    """(known command, output lines)."""
    words = command.split()
    lowered = [word.lower() for word in words]
    if lowered[:3] == ["core", "show", "channels"]:
        return True, _show_channels(pbx)
    if lowered[:3] == ["core", "show", "uptime"]:
        up = timestr(int(pbx.clock() - pbx.boot_time))
        return True, [f"System uptime: {up}", f"Last reload: {up}"]
    if lowered[:2] == ["dialplan", "show"] and len(words) > 2:
        return True, _dialplan_show(pbx, words[2])
    if lowered[:2] == ["queue", "show"]:
        return True, _queue_show(pbx, words[2] if len(words) > 2 else "")
    if lowered[:3] == ["core", "show", "version"]:
        return True, ["Asterisk 22.10.1 built by cityline-fake"]
    hint = " ".join(words[:2])
    return False, [
        f"No such command '{command}' (type 'core show help {hint}' for other possible commands)"
    ]


def _show_channels(pbx: Pbx) -> list[str]:
    fmt = "{:<64.64} {:<32.32} {:<7.7} {:<30.30}"
    lines = [fmt.format("Channel", "Location", "State", "Application(Data)")]
    live = hash_order(pbx.live_channels())
    for chan in live:
        location = f"{chan.exten}@{chan.context}:{chan.priority}"
        lines.append(
            fmt.format(chan.name, location, chan.state_desc, f"{chan.app}({chan.appdata})")
        )
    calls = len({chan.linkedid for chan in live})
    lines.append(f"{_plural(len(live), 'active channel')}")
    lines.append(f"{_plural(calls, 'active call')}")
    lines.append(f"{_plural(pbx.calls_processed, 'call')} processed")
    return lines


def _dialplan_show(pbx: Pbx, name: str) -> list[str]:
    ctx = pbx.dialplan.contexts.get(name)
    if ctx is None:
        return [f"There is no existence of '{name}' context"]
    lines = [f"[ Context '{name}' created by 'pbx_config' ]"]
    priorities = 0
    for pattern, ext in ctx.extensions.items():
        first = True
        for prio in sorted(ext.steps):
            app, data = ext.steps[prio]
            head = f"'{pattern}' =>" if first else ""
            where = f"extensions.conf:{ext.lines.get(prio, 0)}"
            lines.append(f"  {head:<17} {f'{prio}. {app}({data})':<45} [{where}]")
            first = False
            priorities += 1
        lines.append("")
    count = len(ctx.extensions)
    prio_word = "priority" if priorities == 1 else "priorities"
    lines.append(f"-= {_plural(count, 'extension')} ({priorities} {prio_word}) in 1 context. =-")
    return lines


def _queue_show(pbx: Pbx, name: str) -> list[str]:
    lines: list[str] = []
    for queue in pbx.queues.queues.values():
        if name and queue.name != name:
            continue
        lines.append(
            f"{queue.name} has 0 calls (max unlimited) in '{queue.strategy}' strategy "
            "(0s holdtime, 0s talktime), W:0, C:0, A:0, SL:0.0%, SL2:0.0% within 0s"
        )
        lines.append("   Members: ")
        since = int(pbx.clock() - pbx.boot_time)
        for member in queue.members:
            state = "Not in use" if member.status == 1 else "In use"
            lines.append(
                f"      {member.name} ({member.interface}) (ringinuse disabled) ({state}) "
                f"has taken no calls yet (login was {since} secs ago)"
            )
        lines.append("   No Callers")
        lines.append("")
    return lines or [f"No such queue: {name}."]
