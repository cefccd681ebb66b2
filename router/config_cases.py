"""The `cases:` block: what intervention reports become (router.cases).

A case is a service request (a pothole, a broken street lamp) with a number the resident can
quote, a responsible unit (a department: its members are second-line agents), a status history
and a due date from its category's resolution target. Categories are the skills of kind
`intervention`; each has a rule naming its unit and target, or falls to `default_unit`.

`cases_problems` checks what this block names elsewhere (skills, agents, city languages); the
root model calls it with the other sections, like `router.config_checks`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from router.config_issues import Loc
from router.config_names import AgentId, Labels, SkillName
from router.config_sections import Section

_UNIT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")


def _unit_name(value: str) -> str:
    if not _UNIT_RE.fullmatch(value):
        raise ValueError(
            f"unit name {value!r} is not valid: lower-case letters, digits, '_' and '-', "
            "starting with a letter or digit, at most 48"
        )
    return value


UnitName = Annotated[str, AfterValidator(_unit_name)]

# Statuses a case goes through; the transitions are enforced by queues/lua/case_status.lua.
CaseStatusName = Literal["open", "assigned", "in_progress", "completed", "rejected", "duplicate"]
NoticeStatus = Literal["open", "assigned", "in_progress", "completed", "rejected"]


class UnitConfig(Section):
    """A unit (department) responsible for cases: its members work them."""

    labels: Labels = Field(description="display name per language; every city language needed")
    members: list[AgentId] = Field(
        default_factory=list,
        description="agent ids of the unit's second-line agents: they see its cases and change "
        "their status (supervisors and admins may too)",
    )
    email: str = Field("", max_length=320, description="the unit's own mailbox (shown to staff)")


class CategoryRule(Section):
    """Who handles one intervention category, and how fast."""

    unit: UnitName = Field(description="unit responsible for new cases of the category")
    resolution_target_hours: float = Field(
        72.0, gt=0, le=24 * 366, description="due date of a new case: created + this many hours"
    )


class CasesConfig(Section):
    """Cases: units, category rules, duplicate detection and notices to residents."""

    number_prefix: str = Field(
        "Z",
        pattern=r"^[A-Z]{1,3}$",
        description="case numbers are PREFIX-YEAR-SEQUENCE, e.g. Z-2026-000123: distinct from "
        "interaction references (2026-000123), short enough to quote on the phone",
    )
    units: dict[UnitName, UnitConfig] = Field(
        default_factory=dict, description="unit id -> unit; empty: cases are off (422 "
        "cases_disabled)"
    )
    categories: dict[SkillName, CategoryRule] = Field(
        default_factory=dict,
        description="intervention skill -> unit and resolution target; every intervention "
        "skill needs one unless default_unit is set",
    )
    default_unit: UnitName | None = Field(
        None, description="unit of categories without a rule (null: every category needs one)"
    )
    default_resolution_target_hours: float = Field(
        72.0, gt=0, le=24 * 366, description="resolution target of categories without a rule"
    )
    duplicate_radius_m: float = Field(
        50.0, gt=0, le=10_000,
        description="an open case of the same category this close (metres) is a likely "
        "duplicate of a new report",
    )
    duplicate_window_hours: float = Field(
        72.0, gt=0, le=24 * 366,
        description="... if it was reported at most this many hours ago",
    )
    public_url: str = Field(
        "", max_length=200, pattern=r"^(https?://[^\s/]+(/[^\s]*)?)?$",
        description="the site's public address (https://kontakt.example.pl): notices then link "
        "the case's status page, PUBLIC_URL/cases/<number>; empty: they give the number only",
    )
    notify_on: list[NoticeStatus] = Field(
        default_factory=lambda: ["open", "completed", "rejected"],
        description="statuses of which the residents who reported (and linked duplicates) are "
        "told on the channel they used; `open`: when the case is made (or their report linked "
        "to it), with its number (a resident in a live web chat is shown the number and the "
        "status link there whatever this says)",
    )

    @property
    def enabled(self) -> bool:
        return bool(self.units)

    def rule(self, category: str) -> CategoryRule | None:
        """Unit and target of `category` (the default unit's when it has no rule)."""
        found = self.categories.get(category)
        if found is not None:
            return found
        if self.default_unit is not None:
            return CategoryRule(unit=self.default_unit,
                                resolution_target_hours=self.default_resolution_target_hours)
        return None

    def _own_problems(self) -> list[tuple[Loc, str]]:
        problems: list[tuple[Loc, str]] = []
        for name, rule in self.categories.items():
            if rule.unit not in self.units:
                problems.append((("categories", name, "unit"), f"unknown unit {rule.unit!r}"))
        if self.default_unit is not None and self.default_unit not in self.units:
            problems.append((("default_unit",), f"unknown unit {self.default_unit!r}"))
        return problems


def cases_problems(
    cases: CasesConfig | None,
    *,
    city_languages: Iterable[str] | None,
    skills: Mapping[str, object | None] | None,
    agents: Mapping[str, object | None] | None,
) -> list[tuple[Loc, str]]:
    """What the cases block names elsewhere and does not resolve (locations from the root)."""
    if cases is None:
        return []
    problems: list[tuple[Loc, str]] = []
    langs = list(city_languages or [])
    for unit_id, unit in cases.units.items():
        missing = [lang for lang in langs if lang not in unit.labels]
        if missing:
            problems.append((("cases", "units", unit_id, "labels"),
                             f"no label for city language(s) {', '.join(missing)}"))
        if agents is not None:
            for i, member in enumerate(unit.members):
                if member not in agents:
                    problems.append((("cases", "units", unit_id, "members", i),
                                     f"unknown agent {member!r}"))
    if skills is None:
        return problems
    interventions = {
        name for name, skill in skills.items()
        if skill is not None and getattr(skill, "kind", None) == "intervention"
    }
    for name in cases.categories:
        if name not in skills:
            problems.append((("cases", "categories", name),
                             f"unknown skill {name!r} (not in the skills catalogue)"))
        elif skills[name] is not None and name not in interventions:
            problems.append((("cases", "categories", name),
                             f"skill {name!r} is not of kind intervention"))
    if cases.enabled and cases.default_unit is None:
        for name in sorted(interventions - set(cases.categories)):
            problems.append((("cases", "categories"),
                             f"intervention {name!r} has no rule (add one or set default_unit)"))
    return problems
