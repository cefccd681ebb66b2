"""extensions.conf for the fake PBX: the parser, pattern matching and ${...}/$[...] expansion.

The fake runs a real dialplan text, by default the one the captures were made with
(`CAPTURE_DIALPLAN`, ../shared/asterisk/capture-config/extensions.conf), so the events come out
in the order Asterisk's applications produce them. A test may load another file (the project's
asterisk_conf/extensions.conf) as long as it uses the applications and functions the fake knows
(tests/fakes/apps.py); `Dialplan.set_extension` replaces one extension (an agent's phone).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from tests.fakes.dialplan_expr import Expander

CAPTURE_DIALPLAN = r"""
[general]
static = yes
writeprotect = yes
clearglobalvars = no

[globals]
AGI_URL = agi://127.0.0.1:4573/ivr

[city]
exten => 311,1,NoOp(City 311 call from ${CALLERID(all)} on ${CHANNEL})
 same => n,Answer()
 same => n,Set(CDR(userfield)=city311)
 same => n,AGI(${AGI_URL})
 same => n,NoOp(AGI returned AGISTATUS=${AGISTATUS})
 same => n(hold),MusicOnHold(default,600)
 same => n,Wait(600)
 same => n,Hangup()

exten => 312,1,NoOp(City 312 (queue) call from ${CALLERID(all)})
 same => n,Answer()
 same => n,AGI(${AGI_URL})
 same => n,Queue(cityq,,,,600)
 same => n,Hangup()

exten => _X.,1,NoOp(City generic call to ${EXTEN} from ${CALLERID(all)})
 same => n,Answer()
 same => n,AGI(${AGI_URL})
 same => n,NoOp(AGI returned AGISTATUS=${AGISTATUS})
 same => n,MusicOnHold(default,600)
 same => n,Wait(600)
 same => n,Hangup()

exten => h,1,NoOp(city hangup ${CHANNEL} cause ${HANGUPCAUSE})

[agents]
exten => agent1,1,NoOp(Agent 1 phone on ${CHANNEL})
 same => n,Answer()
 same => n,Wait(30)
 same => n,Hangup()
exten => agent2,1,NoOp(Agent 2 phone on ${CHANNEL})
 same => n,Answer()
 same => n,Wait(30)
 same => n,Hangup()
exten => agent3,1,NoOp(Agent 3 phone on ${CHANNEL})
 same => n,Answer()
 same => n,Wait(30)
 same => n,Hangup()
exten => agent4,1,NoOp(Agent 4 phone on ${CHANNEL})
 same => n,Answer()
 same => n,Wait(30)
 same => n,Hangup()
exten => agent5,1,NoOp(Agent 5 phone on ${CHANNEL})
 same => n,Answer()
 same => n,Wait(30)
 same => n,Hangup()

[resident]
exten => s,1,NoOp(Fake resident leg ${CHANNEL})
 same => n,Wait(600)
 same => n,Hangup()

[default]
exten => s,1,Hangup()

[cityline-connect]
exten => _[a-z].,1,NoOp(Connect ${CHANNEL} to agent ${EXTEN} ringtime ${RINGTIME})
 same => n,Dial(Local/${EXTEN}@agents,${RINGTIME})
 same => n,NoOp(Dial to ${EXTEN} ended DIALSTATUS=${DIALSTATUS})
 same => n,MusicOnHold(default,600)
 same => n,Hangup()

[agents]
exten => agentquick,1,NoOp(Quick agent phone on ${CHANNEL})
 same => n,Answer()
 same => n,Wait(3)
 same => n,Hangup()
exten => noanswer,1,NoOp(Agent phone that never answers ${CHANNEL})
 same => n,Ringing()
 same => n,Wait(60)
 same => n,Hangup()
exten => busy,1,Busy(10)
exten => congested,1,Congestion(10)
"""

Step = tuple[str, str]  # (application, raw data)


@dataclass
class Extension:
    pattern: str
    steps: dict[int, Step] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    lines: dict[int, int] = field(default_factory=dict)  # priority -> line in the file
    last: int = 0


@dataclass
class Context:
    name: str
    extensions: dict[str, Extension] = field(default_factory=dict)
    includes: list[str] = field(default_factory=list)


_LINE_RE = re.compile(r"^(exten|same)\s*=>?\s*(.*)$", re.IGNORECASE)
_PRIO_RE = re.compile(r"^(n|\d+)(?:\((\w+)\))?$")


class Dialplan:
    def __init__(self) -> None:
        self.contexts: dict[str, Context] = {}
        self.globals: dict[str, str] = {}

    @classmethod
    def parse(cls, text: str, env: Mapping[str, str] | None = None) -> Dialplan:
        plan = cls()
        section = ""
        current: Extension | None = None
        for lineno, raw in enumerate(text.splitlines(), start=1):
            line = _strip_comment(raw).strip()
            if not line:
                continue
            if line.startswith("[") and "]" in line:
                section = line[1 : line.index("]")]
                current = None
                if section not in ("general", "globals"):
                    plan.contexts.setdefault(section, Context(section))
                continue
            if section == "general":
                continue
            if section == "globals":
                key, _, value = line.replace("=>", "=", 1).partition("=")
                plan.globals[key.strip()] = value.strip()
                continue
            if line.lower().startswith("include"):
                plan.contexts[section].includes.append(line.split(">", 1)[1].strip())
                continue
            match = _LINE_RE.match(line)
            if not match:
                continue
            kind, rest = match.group(1).lower(), match.group(2)
            if kind == "exten":
                pattern, _, rest = rest.partition(",")
                current = plan._extension(section, pattern.strip())
            if current is None:
                raise ValueError(f"'same =>' before any 'exten =>': {raw!r}")
            prio_text, _, app_text = rest.partition(",")
            plan._add_step(current, prio_text.strip(), app_text.strip(), lineno)
        # [globals] values are expanded once, when the dialplan is loaded, as Asterisk does
        expander = Expander(lambda name: plan.globals.get(name), env or {})
        plan.globals = {key: expander.expand(value) for key, value in plan.globals.items()}
        return plan

    def _extension(self, context: str, pattern: str) -> Extension:
        ctx = self.contexts.setdefault(context, Context(context))
        return ctx.extensions.setdefault(pattern, Extension(pattern))

    @staticmethod
    def _add_step(ext: Extension, prio_text: str, app_text: str, lineno: int) -> None:
        match = _PRIO_RE.match(prio_text)
        if not match:
            return  # "hint" and the like: not steps
        prio = ext.last + 1 if match.group(1) == "n" else int(match.group(1))
        if match.group(2):
            ext.labels[match.group(2)] = prio
        app, _, data = app_text.partition("(")
        if data.endswith(")"):
            data = data[:-1]
        ext.steps[prio] = (app.strip(), data)
        ext.lines[prio] = lineno
        ext.last = prio

    def set_extension(self, context: str, exten: str, steps: list[Step]) -> None:
        """Replace (or add) one extension, e.g. an agent's phone with a test-chosen behaviour."""
        ext = Extension(exten)
        for number, step in enumerate(steps, start=1):
            ext.steps[number] = step
            ext.last = number
        ctx = self.contexts.setdefault(context, Context(context))
        ctx.extensions = {exten: ext, **{k: v for k, v in ctx.extensions.items() if k != exten}}

    # --- lookups -----------------------------------------------------------------------------
    def match(
        self, context: str, exten: str, seen: frozenset[str] = frozenset()
    ) -> Extension | None:
        ctx = self.contexts.get(context)
        if ctx is None or context in seen:
            return None
        if exten in ctx.extensions:
            return ctx.extensions[exten]
        for pattern, ext in ctx.extensions.items():
            if pattern.startswith("_") and pattern_matches(pattern, exten):
                return ext
        for included in ctx.includes:
            found = self.match(included, exten, seen | {context})
            if found is not None:
                return found
        return None

    def step(self, context: str, exten: str, priority: int) -> Step | None:
        ext = self.match(context, exten)
        return None if ext is None else ext.steps.get(priority)

    def exists(self, context: str, exten: str, priority: int = 1) -> bool:
        return self.step(context, exten, priority) is not None

    def resolve_priority(self, context: str, exten: str, priority: int | str) -> int | None:
        if isinstance(priority, int) or str(priority).isdigit():
            return int(priority)
        ext = self.match(context, exten)
        return None if ext is None else ext.labels.get(str(priority))


def _strip_comment(line: str) -> str:
    out = []
    escaped = False
    for char in line:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ";":
            break
        else:
            out.append(char)
    return "".join(out)


def pattern_matches(pattern: str, exten: str) -> bool:
    return re.fullmatch(_pattern_regex(pattern[1:]), exten) is not None


def _pattern_regex(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        char = body[i]
        if char in "xX":
            out.append("[0-9]")
        elif char in "zZ":
            out.append("[1-9]")
        elif char in "nN":
            out.append("[2-9]")
        elif char == ".":
            out.append(".+")
        elif char == "!":
            out.append(".*")
        elif char == "[":
            end = body.index("]", i)
            out.append("[" + body[i + 1 : end].replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def split_args(data: str, sep: str = ",") -> list[str]:
    """Split application data at `sep`, not inside parentheses or quotes (ast_app_separate_args)."""
    args, buf, depth, quoted = [], [], 0, False
    for char in data:
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth = max(0, depth - 1)
        if char == sep and depth == 0 and not quoted:
            args.append("".join(buf))
            buf = []
        else:
            buf.append(char)
    args.append("".join(buf))
    return args
