"""The IVR flow schema: what a caller of the city number hears and presses before an agent.

A flow is YAML data (`ivr_flows/*.yaml`) made of named nodes; the FastAGI engine in
`channels/voice/ivr.py` walks them for one call. The schema lives in `router` because flows name
the city's queues and skills; channels import it, never the reverse.

Node kinds (the `kind` key):

* ``language``: the caller picks a language by DTMF; it sets the language of every later prompt.
* ``menu``: a prompt, DTMF -> next node, with retries on no input / an invalid key and a
  fallback node when the retries are used up.
* ``hours``: business hours per weekday in the city time zone, closed on Polish public holidays
  (`router.holidays`) and on listed dates: open -> one node, closed -> another.
* ``closed``: plays a message, then ends the call or goes on to a callback request.
* ``info`` (leaf): plays a prompt and ends; the contact counts as DEFLECTED (self-service).
* ``route`` (leaf): hands the caller to the router: queue, topic skill, priority, callback
  offer and position announcements while waiting.
* ``callback_request`` (leaf): records that the caller wants to be called back.
* ``goto``: continues at another node (to share a branch between menus).

Every model forbids unknown keys. Checks that need the whole flow or the city configuration
(targets exist, every node reachable, prompts for every language, queues and skills exist) are in
`router.ivr_checks`; loading with line numbers is in `router.ivr_load`.
"""

from __future__ import annotations

import re
from datetime import date
from itertools import pairwise
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from router.config_names import LanguageCode, QueueName, SkillName

# --------------------------------------------------------------------------------------------
# small value types

_NODE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,47}$")
# An Asterisk sound name: a path under the sounds directory without extension. No spaces or
# quotes (they would break the AGI command line) and no "..": prompts stay in the sounds tree.
_SOUND_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]{0,199}$")
_RANGE_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")

# Keys a caller can press for a choice. '#' is not one of them: GET DATA takes '#' as the end
# of input, so a '#' choice could never arrive.
DTMF_KEYS = "0123456789*"


def _node_name(value: str) -> str:
    if not _NODE_RE.fullmatch(value):
        raise ValueError(
            f"node name {value!r} is not valid: lower-case letters, digits, '_' and '-', "
            "starting with a letter, at most 48"
        )
    return value


def _sound(value: str) -> str:
    if not _SOUND_RE.fullmatch(value) or ".." in value.split("/"):
        raise ValueError(
            f"sound {value!r} is not an Asterisk sound name: letters, digits, '_', '-', '.' "
            "and '/', no spaces, no '..', no file extension needed (e.g. cityline/pl/welcome)"
        )
    return value


def _digit(value: str) -> str:
    if len(value) != 1 or value not in DTMF_KEYS:
        raise ValueError(f"{value!r} is not a key a caller can choose: one of {DTMF_KEYS}")
    return value


def _one_or_more(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


NodeName = Annotated[str, AfterValidator(_node_name)]
FlowName = Annotated[str, AfterValidator(_node_name)]
SoundName = Annotated[str, AfterValidator(_sound)]
Digit = Annotated[str, AfterValidator(_digit)]
# One sound or several played in a row (e.g. ["cityline/pl/welcome", "cityline/pl/menu"]).
Sounds = Annotated[list[SoundName], BeforeValidator(_one_or_more), Field(min_length=1)]
# A prompt: the sounds of each language of the flow. Languages are checked by router.ivr_checks.
Prompt = dict[LanguageCode, Sounds]
Seconds = Annotated[float, Field(gt=0, le=60)]
Retries = Annotated[int, Field(ge=0, le=9)]


class TimeRange(NamedTuple):
    """Opening time within one day, minutes after midnight (end 1440 = "24:00")."""

    start: int
    end: int

    def __str__(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _time_range(value: Any) -> Any:
    if isinstance(value, TimeRange):
        return value
    if not isinstance(value, str):
        raise ValueError('opening hours are written "HH:MM-HH:MM", e.g. "08:00-18:00"')
    m = _RANGE_RE.fullmatch(value)
    if m is None:
        raise ValueError(f'{value!r} is not "HH:MM-HH:MM", e.g. "08:00-18:00"')
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
        raise ValueError(f"{value!r} is not a time of day (00:00..24:00)")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if end <= start:
        raise ValueError(
            f"{value!r} ends before it starts; a range cannot pass midnight (split it in two days)"
        )
    return TimeRange(start, end)


def _day_ranges(value: Any) -> Any:
    if value is None or value == "closed":
        return []
    return _one_or_more(value)


def _no_overlap(ranges: list[TimeRange]) -> list[TimeRange]:
    ordered = sorted(ranges)
    for before, after in pairwise(ordered):
        if after.start < before.end:
            raise ValueError(f"{before} and {after} overlap")
    return ordered


DayHours = Annotated[
    list[Annotated[TimeRange, BeforeValidator(_time_range)]],
    BeforeValidator(_day_ranges),
    AfterValidator(_no_overlap),
]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # date.weekday() order

# --------------------------------------------------------------------------------------------
# nodes


class _Strict(BaseModel):
    # Unknown keys are errors (a misspelt `timout_s` must not silently become the default).
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Node(_Strict):
    description: str = Field("", description="free text for whoever maintains the flow")

    def targets(self) -> dict[str, str]:
        """The nodes this one can continue at: field path -> node name."""
        return {}

    @property
    def waits_for_caller(self) -> bool:
        """Whether the node waits for a key (a loop through it cannot spin by itself)."""
        return False


class LanguageNode(_Node):
    """The caller chooses the language of the rest of the call."""

    kind: Literal["language"]
    prompt: Prompt = Field(
        description="one prompt per language, played one after another in the order of "
        "`choices` (each in its own language: 'for English press 2')"
    )
    choices: dict[Digit, LanguageCode] = Field(min_length=1, description="key -> language")
    timeout_s: Seconds = Field(5.0, description="seconds to wait for a key after the prompt")
    retries: Retries = Field(1, description="prompt repeats after no input or an invalid key")
    default: LanguageCode | None = Field(
        None,
        description="language kept when the retries are used up (default: the flow's "
        "default language)",
    )
    next: NodeName = Field(description="node after the choice")

    def targets(self) -> dict[str, str]:
        return {"next": self.next}

    @property
    def waits_for_caller(self) -> bool:
        return True


class MenuNode(_Node):
    """A prompt and a DTMF choice."""

    kind: Literal["menu"]
    prompt: Prompt = Field(description="what the caller hears (the options)")
    options: dict[Digit, NodeName] = Field(min_length=1, description="key -> next node")
    timeout_s: Seconds = Field(5.0, description="seconds to wait for a key after the prompt")
    retries: Retries = Field(
        2, description="prompt repeats after no input or an invalid key, then the fallback"
    )
    on_invalid: Prompt | None = Field(None, description="played after a key that is no option")
    on_timeout: Prompt | None = Field(None, description="played when no key was pressed")
    fallback: NodeName = Field(description="node when the retries are used up")

    def targets(self) -> dict[str, str]:
        found = {f"options.{key}": node for key, node in self.options.items()}
        found["fallback"] = self.fallback
        return found

    @property
    def waits_for_caller(self) -> bool:
        return True


class WeekHours(_Strict):
    """Opening hours per weekday, in the city's local time; a missing day is closed."""

    mon: DayHours = Field(default_factory=list)
    tue: DayHours = Field(default_factory=list)
    wed: DayHours = Field(default_factory=list)
    thu: DayHours = Field(default_factory=list)
    fri: DayHours = Field(default_factory=list)
    sat: DayHours = Field(default_factory=list)
    sun: DayHours = Field(default_factory=list)

    def on(self, weekday: int) -> list[TimeRange]:
        """Ranges of `weekday` (0 = Monday, as `date.weekday()`)."""
        ranges: list[TimeRange] = getattr(self, WEEKDAYS[weekday])
        return ranges


class HoursNode(_Node):
    """Open or closed now? Local wall-clock time of the city; holidays are closed all day."""

    kind: Literal["hours"]
    week: WeekHours = Field(
        description='opening hours per weekday: mon: "08:00-18:00" or a list of ranges; '
        "a day not given is closed"
    )
    holidays: Literal["pl", "none"] = Field(
        "pl", description="pl: closed on Polish public holidays; none: holidays are normal days"
    )
    closed_dates: list[date] = Field(
        default_factory=list, description="more days closed all day (e.g. a bridge day)"
    )
    open: NodeName = Field(description="node when open")
    closed: NodeName = Field(description="node when closed")

    def targets(self) -> dict[str, str]:
        return {"open": self.open, "closed": self.closed}


class ClosedNode(_Node):
    """The office is closed: a message, then the end of the call or a callback request."""

    kind: Literal["closed"]
    prompt: Prompt = Field(description="the closed message (opening hours...)")
    callback: NodeName | None = Field(
        None,
        description="a callback_request node to continue at; absent: the call ends after "
        "the message",
    )

    def targets(self) -> dict[str, str]:
        return {"callback": self.callback} if self.callback else {}


class InfoNode(_Node):
    """A self-service answer: plays the prompt and ends; the contact counts as DEFLECTED."""

    kind: Literal["info"]
    topic: SkillName = Field(description="skill (information topic) the answer is about")
    prompt: Prompt = Field(description="the answer, ending with a goodbye")


class RouteNode(_Node):
    """Hands the caller to the router: the call waits in Asterisk for an agent."""

    kind: Literal["route"]
    queue: QueueName = Field(description="a voice queue")
    topic: SkillName | None = Field(
        None, description="skill the agent needs besides the queue's (the matter chosen)"
    )
    priority: int = Field(0, ge=0, le=10, description="added priority 0..10 (as the intake API)")
    callback_offer: bool = Field(
        False, description="while waiting, offer 'press 1 to be called back, keeping your place'"
    )
    announce_every_s: int | None = Field(
        None,
        ge=10,
        le=3600,
        description="announce position and estimated wait every this many seconds; "
        "null = no announcements",
    )
    prompt: Prompt | None = Field(None, description="played before the hand-over")


class CallbackRequestNode(_Node):
    """Records a callback request into a queue: the caller's number, or one they key in."""

    kind: Literal["callback_request"]
    queue: QueueName = Field(description="a voice queue that gets the callback request")
    topic: SkillName | None = Field(None, description="skill of the matter, if known")
    confirm: Prompt | None = Field(
        None,
        description="'press 1 to be called back': the request is only made when the caller "
        "presses confirm_digit; absent: made at once",
    )
    confirm_digit: Digit = Field("1", description="the key that confirms")
    timeout_s: Seconds = Field(5.0, description="seconds to wait for a key")
    retries: Retries = Field(1, description="repeats of confirm / enter_number")
    enter_number: Prompt | None = Field(
        None,
        description="asks for a phone number when the caller ID is hidden or not a valid "
        "number; absent: such calls end without a request",
    )
    done: Prompt = Field(description="confirmation played after the request is recorded")


class GotoNode(_Node):
    """Continue at another node."""

    kind: Literal["goto"]
    target: NodeName = Field(description="the node to continue at")

    def targets(self) -> dict[str, str]:
        return {"target": self.target}


Node = Annotated[
    LanguageNode
    | MenuNode
    | HoursNode
    | ClosedNode
    | InfoNode
    | RouteNode
    | CallbackRequestNode
    | GotoNode,
    Field(discriminator="kind"),
]

NODE_KINDS: dict[str, type[_Node]] = {
    "language": LanguageNode,
    "menu": MenuNode,
    "hours": HoursNode,
    "closed": ClosedNode,
    "info": InfoNode,
    "route": RouteNode,
    "callback_request": CallbackRequestNode,
    "goto": GotoNode,
}
LEAF_KINDS = frozenset({"info", "route", "callback_request"})


class IvrFlow(_Strict):
    """One IVR flow: named nodes, walked from `entry`."""

    name: FlowName = Field(
        description="the flow's name; Asterisk selects it by the AGI URL path "
        "(agi://cityline:4573/<name>)"
    )
    description: str = Field("", description="free text")
    languages: list[LanguageCode] = Field(
        min_length=1,
        description="languages the flow has prompts in; every prompt gives sounds for each. "
        "Each must be a city language",
    )
    default_language: LanguageCode | None = Field(
        None,
        description="language before (or without) a language choice; default: the first of "
        "`languages`",
    )
    entry: NodeName = Field(description="the first node")
    nodes: dict[NodeName, Node] = Field(min_length=1, description="node name -> node")

    @property
    def start_language(self) -> str:
        """The language a call starts in."""
        return self.default_language or self.languages[0]

    def node(self, name: str) -> _Node:
        """The node called `name` (KeyError for a flow that was not checked)."""
        return self.nodes[name]
