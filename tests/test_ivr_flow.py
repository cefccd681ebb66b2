"""IVR flows: the schema, checks with line numbers, `cityline check-config`, Polish public
holidays and business hours in the city's time zone."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from router import cli
from router.config import CitylineConfig, load_config
from router.holidays import easter_sunday, polish_holiday, polish_holidays
from router.ivr_flow import HoursNode, IvrFlow, MenuNode, RouteNode, TimeRange
from router.ivr_hours import hours_status, is_open
from router.ivr_load import (
    FlowsError,
    check_flow_dir,
    check_flow_file,
    default_flows_dir,
    load_flow,
    load_flows,
    parse_flow,
)

# A small valid flow: language, menu, info leaf, hours, route, closed -> callback request.
BASE = """\
name: test
languages: [pl, en]
entry: lang
nodes:
  lang:
    kind: language
    prompt: {pl: t/pl/lang, en: t/en/lang}
    choices: {"1": pl, "2": en}
    next: main
  main:
    kind: menu
    prompt: {pl: t/pl/main, en: t/en/main}
    options: {"1": waste, "2": hours}
    on_invalid: {pl: t/pl/invalid, en: t/en/invalid}
    fallback: hours
  waste:
    kind: info
    topic: waste_collection
    prompt: {pl: [t/pl/waste, t/pl/bye], en: [t/en/waste, t/en/bye]}
  hours:
    kind: hours
    week:
      mon: "08:00-18:00"
      fri: ["08:00-12:00", "13:00-18:00"]
    open: agent
    closed: closed
  agent:
    kind: route
    queue: voice-info
    topic: local_taxes
    priority: 3
    callback_offer: true
    announce_every_s: 60
  closed:
    kind: closed
    prompt: {pl: t/pl/closed, en: t/en/closed}
    callback: callback
  callback:
    kind: callback_request
    queue: voice-general
    done: {pl: t/pl/done, en: t/en/done}
"""


@pytest.fixture(scope="module")
def cfg() -> CitylineConfig:
    return load_config(None, env={})  # the packaged default city


def line_of(text: str, snippet: str, nth: int = 1) -> int:
    """1-based line of the `nth` line containing `snippet`."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if snippet in line]
    return hits[nth - 1]


def node_line(text: str, name: str) -> int:
    """Line of the node `name` (its key, two spaces in)."""
    return text.splitlines().index(f"  {name}:") + 1


def issues_of(text: str, cfg: CitylineConfig | None) -> list[tuple[int | None, str, str]]:
    flow, issues = parse_flow(text, cfg)
    assert flow is None
    return [(i.line, i.field, i.message) for i in issues]


def edit(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


# --- the schema -------------------------------------------------------------------------------


def test_base_flow_is_valid(cfg: CitylineConfig) -> None:
    flow, issues = parse_flow(BASE, cfg)
    assert issues == []
    assert flow is not None and flow.name == "test" and flow.start_language == "pl"
    main = flow.nodes["main"]
    assert isinstance(main, MenuNode) and main.retries == 2 and main.timeout_s == 5.0
    hours = flow.nodes["hours"]
    assert isinstance(hours, HoursNode)
    assert hours.week.on(4) == [TimeRange(480, 720), TimeRange(780, 1080)]
    assert hours.week.on(5) == [] and hours.holidays == "pl"
    agent = flow.nodes["agent"]
    assert isinstance(agent, RouteNode) and agent.callback_offer and agent.announce_every_s == 60
    # one sound or a list of sounds
    assert flow.nodes["waste"].prompt["en"] == ["t/en/waste", "t/en/bye"]  # type: ignore[union-attr]
    assert flow.nodes["lang"].prompt["pl"] == ["t/pl/lang"]  # type: ignore[union-attr]


def test_packaged_city_flow_fits_the_default_config(cfg: CitylineConfig) -> None:
    flows = load_flows(default_flows_dir(), cfg)
    assert list(flows) == ["city"]
    city = flows["city"]
    assert city.languages == ["pl", "en", "uk"]
    kinds = {node.kind for node in city.nodes.values()}
    assert kinds >= {"language", "menu", "hours", "closed", "info", "route", "callback_request"}
    info = [n for n in city.nodes.values() if n.kind == "info"]
    assert len(info) >= 2
    routes = {n.queue for n in city.nodes.values() if isinstance(n, RouteNode)}
    assert routes == {"voice-info", "voice-interventions"}
    lang = city.nodes[city.entry]
    assert lang.kind == "language" and lang.choices == {"1": "pl", "2": "en", "3": "uk"}  # type: ignore[union-attr]


def test_unknown_setting_is_reported_at_its_line_with_a_hint(cfg: CitylineConfig) -> None:
    text = edit("    fallback: hours\n", "    fallback: hours\n    timout_s: 3\n")
    [(line, field, message)] = issues_of(text, cfg)
    assert line == line_of(text, "timout_s")
    assert field == "nodes.main.timout_s"
    assert "did you mean 'timeout_s'" in message


def test_dangling_target_and_unreachable_node(cfg: CitylineConfig) -> None:
    text = edit('options: {"1": waste, "2": hours}', 'options: {"1": waste, "2": hourz}')
    text = edit("    fallback: hours\n", "    fallback: agent\n", text)
    found = issues_of(text, cfg)
    assert (line_of(text, "hourz"), "nodes.main.options.2",
            "no node called 'hourz' (nodes: agent, callback, closed, hours, lang, main, waste)"
            ) in found
    unreachable = [f for f in found if "cannot be reached" in f[2]]
    assert [(f[0], f[1]) for f in unreachable] == [
        (node_line(text, "hours"), "nodes.hours"),
        (node_line(text, "closed"), "nodes.closed"),
        (node_line(text, "callback"), "nodes.callback"),
    ]


def test_goto_loop_that_never_waits_is_refused(cfg: CitylineConfig) -> None:
    text = BASE + "  a:\n    kind: goto\n    target: b\n  b:\n    kind: goto\n    target: a\n"
    text = edit('"2": hours}', '"2": hours, "3": a}', text)
    found = issues_of(text, cfg)
    assert found == [
        (node_line(text, "a"), "nodes.a",
         "these nodes loop without waiting for the caller: a -> b -> a"),
    ]


def test_prompts_need_every_language_of_the_flow(cfg: CitylineConfig) -> None:
    text = edit("prompt: {pl: t/pl/closed, en: t/en/closed}", "prompt: {pl: t/pl/closed}")
    text = edit("done: {pl: t/pl/done, en: t/en/done}",
                "done: {pl: t/pl/done, en: t/en/done, uk: t/uk/done}", text)
    found = issues_of(text, cfg)
    assert (line_of(text, "t/pl/closed"), "nodes.closed.prompt",
            "no sounds for language(s) en") in found
    assert (line_of(text, "t/uk/done"), "nodes.callback.done.uk",
            "'uk' is not one of the flow's languages (pl, en)") in found
    assert len(found) == 2


def test_references_to_the_configuration(cfg: CitylineConfig) -> None:
    text = edit("queue: voice-info", "queue: chat")
    text = edit("topic: local_taxes", "topic: lang_uk", text)
    text = edit("topic: waste_collection", "topic: garbage", text)
    text = edit("queue: voice-general", "queue: voice-nowhere", text)
    text = edit("languages: [pl, en]", "languages: [pl, en, de]", text)
    found = issues_of(text, cfg)
    voice = "voice-general, voice-info, voice-interventions, voice-second-line"
    assert (line_of(text, "queue: chat"), "nodes.agent.queue",
            f"queue 'chat' serves chat, not voice (voice queues: {voice})") in found
    assert (line_of(text, "voice-nowhere"), "nodes.callback.queue",
            f"unknown queue 'voice-nowhere' (voice queues: {voice})") in found
    assert (line_of(text, "topic: lang_uk"), "nodes.agent.topic",
            "'lang_uk' is a language skill: the caller's language choice adds it, a topic "
            "names the matter") in found
    assert (line_of(text, "garbage"), "nodes.waste.topic",
            "unknown skill 'garbage' (not in the skills catalogue)") in found
    assert (2, "languages.2", "'de' is not a city language (pl, en, uk)") in found
    # without a configuration the flow itself is fine apart from the language nobody can choose
    assert issues_of(text, None) == [
        (2, "languages", "language(s) de can never be chosen: add them to the choices of a "
         "language node"),
        (line_of(text, "t/pl/lang"), "nodes.lang.prompt", "no sounds for language(s) de"),
    ] + [
        (line_of(text, snippet), f"nodes.{node}.{field}", "no sounds for language(s) de")
        for snippet, node, field in (
            ("t/pl/main", "main", "prompt"), ("t/pl/invalid", "main", "on_invalid"),
            ("t/pl/waste", "waste", "prompt"), ("t/pl/closed", "closed", "prompt"),
            ("t/pl/done", "callback", "done"),
        )
    ]


def test_schema_errors_do_not_hide_other_problems(cfg: CitylineConfig) -> None:
    text = edit("    kind: goto\n", "", BASE + "  spare:\n    kind: goto\n    target: nowhere\n")
    text = edit("kind: hours", "kind: hourz", text)
    text = edit('"08:00-18:00"', '"18:00-08:00"', text)
    text = edit("topic: waste_collection", "topic: garbage", text)
    found = issues_of(text, cfg)
    kinds = ", ".join(["language", "menu", "hours", "closed", "info", "route",
                       "callback_request", "goto"])
    assert found == [
        # the valid nodes are still checked on their own
        (line_of(text, "garbage"), "nodes.waste.topic",
         "unknown skill 'garbage' (not in the skills catalogue)"),
        (line_of(text, "kind: hourz"), "nodes.hours.kind",
         f"unknown node kind 'hourz' (kinds: {kinds})"),
        (node_line(text, "spare"), "nodes.spare", f"a node needs kind: one of {kinds}"),
    ]


def test_bad_values_are_reported_at_their_lines() -> None:
    text = edit('"08:00-18:00"', '"18:00-08:00"')
    text = edit('["08:00-12:00", "13:00-18:00"]', '["08:00-12:00", "11:00-18:00"]', text)
    text = edit('choices: {"1": pl, "2": en}', 'choices: {"1": pl, "#": en}', text)
    text = edit("prompt: {pl: t/pl/main, en: t/en/main}",
                'prompt: {pl: t/pl/main, en: "t/en/main menu"}', text)
    text = edit("priority: 3", "priority: 11", text)
    found = issues_of(text, None)
    assert [(line, field) for line, field, _ in found] == [
        (line_of(text, '"#": en'), "nodes.lang.choices.#"),
        (line_of(text, "main menu"), "nodes.main.prompt.en.0"),
        (line_of(text, "18:00-08:00"), "nodes.hours.week.mon.0"),
        (line_of(text, "11:00-18:00"), "nodes.hours.week.fri"),
        (line_of(text, "priority: 11"), "nodes.agent.priority"),
    ]
    messages = [message for _, _, message in found]
    assert "'#' is not a key a caller can choose" in messages[0]
    assert "not an Asterisk sound name" in messages[1]
    assert "ends before it starts" in messages[2]
    assert messages[3] == "08:00-12:00 and 11:00-18:00 overlap"


def test_yaml_problems_keep_their_line() -> None:
    text = edit("    next: main\n", "    next: main\n    next: main\n")
    [(line, field, message)] = issues_of(text, None)
    assert (line, field) == (line_of(text, "next: main", nth=2), "nodes.lang.next")
    assert message == "duplicate key (first given on line 9); only one value would be used"
    broken = edit("  main:\n", "  main\n")
    [(line, _, message)] = issues_of(broken, None)
    assert message.startswith("YAML syntax error") and line is not None


def test_a_directory_of_flows(tmp_path: Path, cfg: CitylineConfig) -> None:
    (tmp_path / "a.yaml").write_text(BASE)
    (tmp_path / "b.yml").write_text(BASE)  # the same name again
    (tmp_path / "notes.txt").write_text("not a flow")
    flows, problems = check_flow_dir(tmp_path, cfg)
    assert list(flows) == ["test"]
    assert [(p.name, i.line, i.field, i.message) for p, i in problems] == [
        ("b.yml", 1, "name", "flow 'test' is already defined in a.yaml"),
    ]
    with pytest.raises(FlowsError) as caught:
        load_flows(tmp_path, cfg)
    assert str(caught.value) == f"{tmp_path / 'b.yml'}:1: name: flow 'test' is already " \
        "defined in a.yaml"
    assert isinstance(load_flow(tmp_path / "a.yaml", cfg), IvrFlow)
    assert check_flow_file(tmp_path / "missing.yaml")[0].message.startswith("cannot read")


# --- cityline check-config --------------------------------------------------------------------


@pytest.fixture
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


DEFAULT_CONFIG = Path(cli.__file__).with_name("default_config.yaml")


@pytest.mark.usefixtures("_restore_logging")
def test_check_config_checks_the_packaged_flows(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", str(DEFAULT_CONFIG)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"OK {DEFAULT_CONFIG}:")
    assert out[1] == "OK packaged IVR flows: 1 flow: city"


@pytest.mark.usefixtures("_restore_logging")
def test_check_config_with_flows_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "test.yaml").write_text(BASE)
    assert cli.main(["check-config", str(DEFAULT_CONFIG), "--flows", str(flows)]) == 0
    assert capsys.readouterr().out.splitlines()[1] == f"OK {flows}: 1 flow: test"

    bad = edit("queue: voice-info", "queue: email")
    bad = edit("    fallback: hours\n", "    fallback: hours\n    retries: 20\n", bad)
    (flows / "test.yaml").write_text(bad)
    assert cli.main(["check-config", str(DEFAULT_CONFIG), "--flows", str(flows)]) == 1
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    path = flows / "test.yaml"
    assert out[1:] == [
        f"{path}:{line_of(bad, 'retries: 20')}: nodes.main.retries: Input should be less than "
        "or equal to 9",
        f"{path}:{line_of(bad, 'queue: email')}: nodes.agent.queue: queue 'email' serves email, "
        "not voice (voice queues: voice-general, voice-info, voice-interventions, "
        "voice-second-line)",
    ]
    assert f"2 problems in {flows}" in captured.err


@pytest.mark.usefixtures("_restore_logging")
def test_packaged_flows_do_not_fail_another_citys_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a city without the default's queues and languages: the packaged flow is not theirs
    config = tmp_path / "small.yaml"
    config.write_text(
        "city: {languages: [pl]}\n"
        "skills:\n  tax: {kind: information, labels: {pl: Podatki}}\n"
        "queues:\n  phone:\n    channel: voice\n"
        "    service_level: {target_pct: 90, threshold_s: 15}\n"
    )
    assert cli.main(["check-config", str(config)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[1] == (
        "OK packaged IVR flows: valid, but written for another configuration"
    )
    assert "note: the packaged IVR flows do not fit this configuration" in captured.err
    assert "--flows DIR" in captured.err
    # the same flows named explicitly: every problem counts
    assert cli.main(["check-config", str(config), "--flows", str(default_flows_dir())]) == 1
    out = capsys.readouterr().out
    assert "city.yaml:" in out and "unknown queue 'voice-info'" in out
    # ... and so it does once the city turns voice on: the packaged flow would answer calls
    config.write_text(config.read_text() + "channels: {voice: {enabled: true}}\n")
    assert cli.main(["check-config", str(config)]) == 1
    captured = capsys.readouterr()
    assert "unknown queue 'voice-info'" in captured.out and "problems in packaged" in captured.err


@pytest.mark.usefixtures("_restore_logging")
def test_the_answering_flow_must_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "test.yaml").write_text(BASE)
    config = tmp_path / "city.yaml"
    text = DEFAULT_CONFIG.read_text()
    assert text.count("    enabled: false") == 1 and text.count("    flow: city") == 1
    config.write_text(
        text.replace("    enabled: false", "    enabled: true")
        .replace("    flow: city", f"    flow: city\n    flows_dir: {flows}")
    )
    assert cli.main(["check-config", str(config)]) == 1
    assert capsys.readouterr().out.splitlines()[1:] == [
        f"{flows}: channels.voice.flow: no valid flow 'city' here (flows: test)"
    ]
    config.write_text(config.read_text().replace("    flow: city", "    flow: test"))
    assert cli.main(["check-config", str(config)]) == 0
    assert capsys.readouterr().out.splitlines()[1] == (
        f"OK {flows} (channels.voice.flows_dir): 1 flow: test"
    )


# --- Polish public holidays ---------------------------------------------------------------------


def test_easter() -> None:
    assert [easter_sunday(y) for y in (2024, 2025, 2026, 2027, 2038, 2285)] == [
        date(2024, 3, 31), date(2025, 4, 20), date(2026, 4, 5), date(2027, 3, 28),
        date(2038, 4, 25), date(2285, 3, 22),  # the latest and the earliest possible dates
    ]


def _fixed(year: int) -> set[date]:
    days = {(1, 1), (1, 6), (5, 1), (5, 3), (8, 15), (11, 1), (11, 11), (12, 24), (12, 25),
            (12, 26)}
    return {date(year, m, d) for m, d in days}


@pytest.mark.parametrize(
    ("year", "movable"),
    [
        # Easter Sunday, Easter Monday, Pentecost, Corpus Christi
        (2025, [date(2025, 4, 20), date(2025, 4, 21), date(2025, 6, 8), date(2025, 6, 19)]),
        (2026, [date(2026, 4, 5), date(2026, 4, 6), date(2026, 5, 24), date(2026, 6, 4)]),
        (2027, [date(2027, 3, 28), date(2027, 3, 29), date(2027, 5, 16), date(2027, 5, 27)]),
    ],
)
def test_polish_holidays(year: int, movable: list[date]) -> None:
    days = polish_holidays(year)
    assert set(days) == _fixed(year) | set(movable)
    assert len(days) == 14
    assert list(days) == sorted(days)
    assert days[movable[1]] == "Poniedziałek Wielkanocny"
    assert days[movable[3]] == "Boże Ciało"
    assert days[date(year, 12, 24)] == "Wigilia Bożego Narodzenia"


def test_holiday_law_changes() -> None:
    assert date(2024, 12, 24) not in polish_holidays(2024)  # Christmas Eve only from 2025
    assert date(2025, 12, 24) in polish_holidays(2025)
    assert date(2010, 1, 6) not in polish_holidays(2010)  # Epiphany only from 2011
    assert date(2011, 1, 6) in polish_holidays(2011)
    assert polish_holiday(date(2026, 4, 6)) == "Poniedziałek Wielkanocny"
    assert polish_holiday(date(2026, 4, 7)) is None
    with pytest.raises(ValueError, match="1990"):
        polish_holidays(1989)


# --- business hours ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def office(cfg: CitylineConfig) -> HoursNode:
    node = load_flows(default_flows_dir(), cfg)["city"].nodes["consultant_hours"]
    assert isinstance(node, HoursNode)
    return node


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("instant", "expected", "why"),
    [
        # winter time, UTC+1: 08:00 local is 07:00 UTC
        (utc(2026, 3, 27, 6, 59), False, "outside opening hours (fri 07:59)"),
        (utc(2026, 3, 27, 7, 0), True, "open fri 08:00-18:00"),
        (utc(2026, 3, 27, 16, 59), True, "open fri 08:00-18:00"),
        (utc(2026, 3, 27, 17, 0), False, "outside opening hours (fri 18:00)"),
        # Sunday 29 March 2026: clocks go forward at 02:00; closed anyway (weekend)
        (utc(2026, 3, 29, 9, 0), False, "outside opening hours (sun 11:00)"),
        # Monday after the change, summer time UTC+2: 08:00 local is 06:00 UTC
        (utc(2026, 3, 30, 5, 59), False, "outside opening hours (mon 07:59)"),
        (utc(2026, 3, 30, 6, 0), True, "open mon 08:00-18:00"),
        (utc(2026, 3, 30, 15, 59), True, "open mon 08:00-18:00"),
        (utc(2026, 3, 30, 16, 0), False, "outside opening hours (mon 18:00)"),
        # back to winter time on Sunday 25 October 2026; Monday 26th opens at 07:00 UTC
        (utc(2026, 10, 26, 6, 30), False, "outside opening hours (mon 07:30)"),
        (utc(2026, 10, 26, 7, 0), True, "open mon 08:00-18:00"),
        # the Friday before, still summer time: 18:00 local is 16:00 UTC
        (utc(2026, 10, 23, 16, 0), False, "outside opening hours (fri 18:00)"),
        # public holidays on working days
        (utc(2026, 4, 6, 10, 0), False, "public holiday: Poniedziałek Wielkanocny"),
        (utc(2026, 6, 4, 10, 0), False, "public holiday: Boże Ciało"),
        (utc(2025, 12, 24, 10, 0), False, "public holiday: Wigilia Bożego Narodzenia"),
        (utc(2026, 12, 24, 10, 0), False, "public holiday: Wigilia Bożego Narodzenia"),
        (utc(2027, 3, 29, 10, 0), False, "public holiday: Poniedziałek Wielkanocny"),
        (utc(2026, 12, 23, 10, 0), True, "open wed 08:00-18:00"),
        # 23:30 UTC on 31 December is already New Year's Day in Warsaw
        (utc(2026, 12, 31, 23, 30), False, "public holiday: Nowy Rok"),
    ],
)
def test_business_hours_in_warsaw(
    office: HoursNode, instant: datetime, expected: bool, why: str
) -> None:
    status = hours_status(office, instant, "Europe/Warsaw")
    assert (status.open, status.reason) == (expected, why)
    assert is_open(office, instant, "Europe/Warsaw") is expected


def test_hours_follow_the_wall_clock_on_the_day_of_the_change(cfg: CitylineConfig) -> None:
    flow = parse_flow(
        edit('      mon: "08:00-18:00"\n', '      sun: "01:00-04:00"\n'), cfg
    )[0]
    assert flow is not None
    node = flow.nodes["hours"]
    assert isinstance(node, HoursNode)
    # 29 March 2026: 00:30 UTC = 01:30 CET (open); 01:00 UTC = 03:00 CEST (open: 02:00-03:00
    # does not exist that night); 02:00 UTC = 04:00 CEST (closed)
    assert is_open(node, utc(2026, 3, 29, 0, 30), "Europe/Warsaw")
    assert is_open(node, utc(2026, 3, 29, 1, 0), "Europe/Warsaw")
    assert not is_open(node, utc(2026, 3, 29, 2, 0), "Europe/Warsaw")
    # 25 October 2026: 01:00-04:00 local lasts four hours (02:00-03:00 twice)
    assert is_open(node, utc(2026, 10, 24, 23, 0), "Europe/Warsaw")  # 01:00 CEST
    assert is_open(node, utc(2026, 10, 25, 1, 30), "Europe/Warsaw")  # 02:30 CET, the second
    assert not is_open(node, utc(2026, 10, 25, 3, 0), "Europe/Warsaw")  # 04:00 CET


def test_closed_dates_and_holidays_switch(cfg: CitylineConfig) -> None:
    text = edit("    open: agent\n",
                "    holidays: none\n    closed_dates: [2026-05-04]\n    open: agent\n")
    text = edit('      mon: "08:00-18:00"\n',
                '      mon: "08:00-18:00"\n      thu: "08:00-18:00"\n', text)
    flow = parse_flow(text, cfg)[0]
    assert flow is not None
    node = flow.nodes["hours"]
    assert isinstance(node, HoursNode)
    assert is_open(node, utc(2026, 6, 4, 10, 0), "Europe/Warsaw")  # Corpus Christi ignored
    assert hours_status(node, utc(2026, 5, 4, 10, 0), "Europe/Warsaw").reason == (
        "closed on 2026-05-04"
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        is_open(node, datetime(2026, 5, 4, 10, 0), "Europe/Warsaw")
