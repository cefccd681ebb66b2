"""Static checks of the Asterisk configuration shipped in asterisk_conf/.

No Asterisk runs here: a small parser of Asterisk's configuration syntax (written below, so the
checks depend on nothing but PyYAML) reads the files, and the tests check what cityline relies
on: the contexts and extensions it Redirects and Originates into exist and accept the names it
uses, the ring time is not a variable Dial() clears, AMI gives Timestamps and admits only
cityline, every agent's endpoint in the example config is a phone in pjsip.conf, and no real
secret is committed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "asterisk_conf"
PLACEHOLDER = "CHANGE_ME"


# --------------------------------------------------------------------------------------------
# A parser of Asterisk's configuration syntax (the subset these files may use)


class ConfError(ValueError):
    pass


@dataclass
class Section:
    name: str
    line: int
    is_template: bool = False
    templates: list[str] = field(default_factory=list)
    entries: list[tuple[str, str, int]] = field(default_factory=list)  # key, value, line

    def get(self, key: str) -> list[str]:
        return [v for k, v, _ in self.entries if k == key]

    def one(self, key: str) -> str:
        values = self.get(key)
        assert len(values) == 1, f"[{self.name}] (line {self.line}): {key} = {values}"
        return values[0]


_HEADER = re.compile(r"^\[(?P<name>[^\]]+)\](?:\((?P<opts>[^)]*)\))?$")


def _strip_comment(line: str) -> str:
    """Drop a ';' comment; '\\;' is a literal semicolon."""
    out = []
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line) and line[i + 1] == ";":
            out.append(";")
            i += 2
            continue
        if ch == ";":
            break
        out.append(ch)
        i += 1
    return "".join(out).strip()


def parse_conf(text: str, source: str = "<text>") -> list[Section]:
    """Sections in file order: `[name]`, `[name](!)`, `[name](tmpl,...)`, `[name](!,tmpl)`;
    `key = value` and `key => value` lines; `;` comments and `;-- ... --;` block comments.
    Anything else is an error (so a typo fails the tests instead of being skipped)."""
    sections: list[Section] = []
    in_block = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw
        if in_block:
            if "--;" not in line:
                continue
            line = line.split("--;", 1)[1]
            in_block = False
        if ";--" in line:
            before, after = line.split(";--", 1)
            if "--;" in after:
                line = before + after.split("--;", 1)[1]
            else:
                line, in_block = before, True
        line = _strip_comment(line)
        if not line:
            continue
        if line.startswith("#"):
            raise ConfError(f"{source}:{lineno}: directive not expected here: {line}")
        m = _HEADER.match(line)
        if m:
            sec = Section(m["name"].strip(), lineno)
            for opt in (o.strip() for o in (m["opts"] or "").split(",") if o.strip()):
                if opt == "!":
                    sec.is_template = True
                else:
                    sec.templates.append(opt)
            sections.append(sec)
            continue
        if not sections:
            raise ConfError(f"{source}:{lineno}: setting outside a section: {line}")
        if "=" not in line:
            raise ConfError(f"{source}:{lineno}: not 'key = value': {line}")
        key, value = line.split("=", 1)
        if value.startswith(">"):
            value = value[1:]
        key = key.strip()
        if not key:
            raise ConfError(f"{source}:{lineno}: empty key: {line}")
        sections[-1].entries.append((key, value.strip(), lineno))
    if in_block:
        raise ConfError(f"{source}: unterminated ;-- block comment")
    return sections


def load(name: str) -> list[Section]:
    path = CONF / name
    return parse_conf(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))


def resolve(sections: list[Section], sec: Section) -> list[tuple[str, str]]:
    """A section's settings with its templates' settings first (as Asterisk applies them)."""
    out: list[tuple[str, str]] = []
    index = sections.index(sec)
    for tmpl_name in sec.templates:
        earlier = [s for s in sections[:index] if s.name == tmpl_name]
        if not earlier:
            raise ConfError(
                f"[{sec.name}] line {sec.line}: template {tmpl_name!r} not defined before"
            )
        out.extend(resolve(sections, earlier[-1]))
    out.extend((k, v) for k, v, _ in sec.entries)
    return out


def objects(sections: list[Section], type_: str) -> dict[str, dict[str, list[str]]]:
    """Non-template PJSIP objects of one type: name -> key -> values (templates applied)."""
    found: dict[str, dict[str, list[str]]] = {}
    for sec in sections:
        if sec.is_template:
            continue
        settings: dict[str, list[str]] = {}
        for k, v in resolve(sections, sec):
            settings.setdefault(k, []).append(v)
        if settings.get("type", [None])[-1] == type_:
            assert sec.name not in found, f"two {type_} objects named {sec.name}"
            found[sec.name] = settings
    return found


# --------------------------------------------------------------------------------------------
# Dialplan model


@dataclass
class Step:
    exten: str
    prio: int
    label: str | None
    app: str
    args: str
    line: int


def split_args(args: str) -> list[str]:
    """Split an application's arguments on the commas that are not inside (), [] or ${}."""
    parts, depth, cur = [], 0, []
    for ch in args:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


_STEP = re.compile(
    r"^(?P<prio>n|\d+)(?:\((?P<label>[^)]*)\))?,"  # priority and optional (label)
    r"(?P<app>[A-Za-z_][A-Za-z0-9_]*)(?:\((?P<args>.*)\))?$"  # App(args)
)


def dialplan(sections: list[Section]) -> dict[str, dict[str, list[Step]]]:
    """context -> extension -> its priorities, from `exten =>` and `same =>` lines."""
    contexts: dict[str, dict[str, list[Step]]] = {}
    for sec in sections:
        if sec.name in ("general", "globals"):
            continue
        ctx = contexts.setdefault(sec.name, {})
        current: str | None = None
        for key, value, line in sec.entries:
            if key == "exten":
                current, rest = value.split(",", 1)
                current = current.strip()
            elif key == "same":
                assert current is not None, f"line {line}: same => before any exten =>"
                rest = value
            else:
                raise ConfError(f"[{sec.name}] line {line}: unexpected {key!r} in a context")
            m = _STEP.match(rest.strip())
            assert m, f"line {line}: cannot read priority/application in {rest!r}"
            steps = ctx.setdefault(current, [])
            if m["prio"] == "n":
                assert steps, f"line {line}: priority n without a priority 1 before it"
                prio = steps[-1].prio + 1
            else:
                prio = int(m["prio"])
            steps.append(Step(current, prio, m["label"], m["app"], m["args"] or "", line))
    return contexts


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = [], 1  # skip the leading '_'
    while i < len(pattern):
        ch = pattern[i]
        if ch in "Xx":
            out.append("[0-9]")
        elif ch in "Zz":
            out.append("[1-9]")
        elif ch in "Nn":
            out.append("[2-9]")
        elif ch == ".":
            out.append(".+")
        elif ch == "!":
            out.append(".*")
        elif ch == "[":
            end = pattern.index("]", i)
            body = pattern[i + 1 : end]
            out.append("[" + "".join("\\" + c if c in "\\^]" else c for c in body) + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out))


def exten_matches(exten: str, dialled: str) -> bool:
    if exten.startswith("_"):
        return _pattern_regex(exten).fullmatch(dialled) is not None
    return exten == dialled


def find_exten(ctx: dict[str, list[Step]], dialled: str) -> list[Step] | None:
    """The extension Asterisk would run: an exact name first, else a matching pattern."""
    if dialled in ctx:
        return ctx[dialled]
    for name, steps in ctx.items():
        if name.startswith("_") and exten_matches(name, dialled):
            return steps
    return None


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def ext_sections() -> list[Section]:
    return load("extensions.conf")


@pytest.fixture(scope="module")
def plan(ext_sections: list[Section]) -> dict[str, dict[str, list[Step]]]:
    return dialplan(ext_sections)


@pytest.fixture(scope="module")
def pjsip() -> list[Section]:
    return load("pjsip.conf")


@pytest.fixture(scope="module")
def city_config() -> dict:
    return yaml.safe_load((ROOT / "router" / "default_config.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def code_tokens(sections: list[Section]) -> list[tuple[str, int]]:
    """Every identifier in the settings (comments are already gone), with its line."""
    return [
        (tok, line)
        for sec in sections
        for key, value, line in sec.entries
        for tok in re.findall(r"[A-Za-z0-9_]+", f"{key} {value}")
    ]


# --------------------------------------------------------------------------------------------
# The parser itself


def test_parser_reads_asterisk_syntax() -> None:
    text = """
;-- a block
comment --;
[general]
static = yes ; trailing comment
[tmpl](!)
type = endpoint
context = a\\;b
[1001](tmpl)
aors => 1001
[ctx]
exten => 1,1,NoOp(x)
 same => n(lbl),Hangup()
"""
    secs = parse_conf(text)
    assert [s.name for s in secs] == ["general", "tmpl", "1001", "ctx"]
    assert secs[0].one("static") == "yes"
    assert secs[1].is_template and secs[2].templates == ["tmpl"]
    assert resolve(secs, secs[2]) == [("type", "endpoint"), ("context", "a;b"), ("aors", "1001")]
    steps = dialplan([secs[3]])["ctx"]["1"]
    assert [(s.prio, s.label, s.app) for s in steps] == [(1, None, "NoOp"), (2, "lbl", "Hangup")]


@pytest.mark.parametrize(
    "bad",
    [
        "key = value before any section",
        "[s]\njust words",
        "[s]\n#include other.conf",
        "[s]\n;-- open",
    ],
)
def test_parser_rejects_what_asterisk_would_not_read_as_intended(bad: str) -> None:
    with pytest.raises(ConfError):
        parse_conf(bad)


def test_pattern_matching_follows_asterisk() -> None:
    assert exten_matches("_48XXXXXXXXX", "48221234567")
    assert not exten_matches("_48XXXXXXXXX", "4822123456")
    assert exten_matches("_+X.", "+48601234567")
    assert exten_matches("_[0-9A-Za-z].", "anna.nowak")
    assert not exten_matches("_[0-9A-Za-z].", "h")  # '.' needs at least one more character
    assert exten_matches("311", "311") and not exten_matches("311", "3110")


@pytest.mark.parametrize(
    "name",
    sorted(str(p.relative_to(CONF)) for p in CONF.rglob("*.conf")),
)
def test_every_conf_file_parses(name: str) -> None:
    assert load(name), f"{name} has no sections"


# --------------------------------------------------------------------------------------------
# extensions.conf


def test_entry_points_cityline_uses_exist(plan, city_config) -> None:
    """Every (context, exten) that calls arrive at, or that cityline Redirects/Originates into,
    runs something at priority 1 (Asterisk refuses a Redirect/Originate to a missing one)."""
    agents = city_config["agents"]
    voice_queues = [q for q, c in city_config["queues"].items() if c.get("channel") == "voice"]
    wanted: list[tuple[str, str]] = [
        ("city", "311"),
        ("city", "48221234567"),  # the DID as the operator delivers it
        ("city", "+48221234567"),
        ("city", "221234567"),
        ("cityline-callback", "+48601234567"),  # Exten = the resident's E.164 number
        ("cityline-callback", "s"),  # ... or s with CB_NUMBER
        ("cityline-hold", "s"),
        ("cityline-fallback", "ivr"),
        ("cityline-fallback", "hold"),
        ("agent-phones", "311"),
    ]
    for agent_id, agent in agents.items():
        wanted.append(("cityline-connect", agent_id))
        wanted.append(("cityline-connect", agent["endpoint"].split("/", 1)[1]))
    wanted += [("cityline-hold", q) for q in voice_queues]
    for context in ("city", "cityline-connect", "cityline-hold", "cityline-callback"):
        wanted.append((context, "h"))
    missing = []
    for context, exten in wanted:
        steps = find_exten(plan.get(context, {}), exten)
        if steps is None or steps[0].prio != 1:
            missing.append(f"{context},{exten},1")
    assert not missing, f"not in extensions.conf: {missing}"


def _goto_target(step: Step, context: str) -> tuple[str, str | None, str]:
    """(context, exten or None for 'this extension', priority or label) of a Goto."""
    parts = [p.strip() for p in split_args(step.args)]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        return context, parts[0], parts[1]
    return context, None, parts[0]


def test_every_goto_lands_somewhere(plan) -> None:
    problems = []
    for context, extens in plan.items():
        for exten, steps in extens.items():
            for step in steps:
                targets: list[str] = []
                if step.app == "Goto":
                    targets = [step.args]
                elif step.app == "GotoIf":
                    branches = step.args.split("?", 1)[1]
                    targets = [t for t in split_args(branches.replace(":", ",")) if t]
                for target in targets:
                    step_t = Step(exten, 0, None, "Goto", target, step.line)
                    ctx_name, ext_name, prio = _goto_target(step_t, context)
                    if "${" in ctx_name or (ext_name and "${" in ext_name):
                        continue  # computed at run time (e.g. ${EXTEN:1}); checked elsewhere
                    ctx = plan.get(ctx_name)
                    dest = (
                        steps if ext_name is None else (find_exten(ctx, ext_name) if ctx else None)
                    )
                    ok = dest is not None and (
                        any(s.prio == int(prio) for s in dest)
                        if prio.isdigit()
                        else any(s.label == prio for s in dest)
                    )
                    if not ok:
                        problems.append(f"line {step.line}: {step.app}({step.args}) -> {target}")
    assert not problems, problems


def test_no_variable_named_ringtime(ext_sections) -> None:
    """Dial() clears RINGTIME (its own output variable) when it starts: the ring time must
    travel as ROUTE_RINGTIME (CAPTURES.md, surprise 18)."""
    hits = [line for tok, line in code_tokens(ext_sections) if tok.lstrip("_") == "RINGTIME"]
    assert not hits, f"RINGTIME used on line(s) {hits}; use ROUTE_RINGTIME"


def test_connect_rings_route_endpoint_without_g(plan) -> None:
    ctx = plan["cityline-connect"]
    steps = find_exten(ctx, "anna.nowak")
    dials = [s for s in steps if s.app == "Dial"]
    assert len(dials) == 1, dials
    args = split_args(dials[0].args)
    assert args[0] == "${ROUTE_ENDPOINT}" and args[1] == "${ROUTE_RINGTIME}", args
    options = re.sub(r"\([^)]*\)", "", args[2]) if len(args) > 2 else ""
    assert "g" not in options, "with g the caller would stay in the dialplan after the talk"
    # after an unanswered ring the caller goes back to cityline's hold loop
    later = [s for s in steps if s.prio > dials[0].prio and s.app == "AGI"]
    assert later and later[0].args.split(",")[0].endswith("/hold"), later


def test_agi_calls_reach_cityline_and_fall_back(plan) -> None:
    paths: dict[str, set[str]] = {}
    for context, extens in plan.items():
        for steps in extens.values():
            for i, step in enumerate(steps):
                if step.app != "AGI":
                    continue
                url = split_args(step.args)[0]
                m = re.fullmatch(r"agi://\$\{CITYLINE_AGI_HOST\}:\$\{CITYLINE_AGI_PORT\}/(.+)", url)
                assert m, f"line {step.line}: AGI not at cityline's FastAGI server: {url}"
                paths.setdefault(context, set()).add(m[1])
                nxt = steps[i + 1] if i + 1 < len(steps) else None
                if context != "cityline-fallback":
                    # cityline unreachable: never just run off the end (that hangs up)
                    assert nxt is not None and nxt.app == "Goto", f"line {step.line}"
                    assert nxt.args.startswith("cityline-fallback,"), f"line {nxt.line}"
    assert paths["city"] == {"ivr"}
    assert paths["cityline-connect"] == {"hold"}
    assert paths["cityline-hold"] == {"hold"}


def test_city_number_answers_and_sets_the_language(plan) -> None:
    for dialled in ("311", "48221234567"):
        apps = [s.app for s in find_exten(plan["city"], dialled)]
        assert apps.index("Answer") < apps.index("AGI"), apps
        assert any(
            s.app == "Set" and s.args.startswith("CHANNEL(language)=")
            for s in find_exten(plan["city"], dialled)
        )


def test_globals_default_to_a_local_cityline(ext_sections) -> None:
    (glob,) = [s for s in ext_sections if s.name == "globals"]
    host = glob.one("CITYLINE_AGI_HOST")
    assert "${ENV(CITYLINE_AGI_HOST)}" in host and host.endswith(":127.0.0.1)}"), host
    assert glob.one("CITYLINE_AGI_PORT").endswith(":4573)}")
    for name in ("CITYLINE_DEFAULT_LANGUAGE", "CITYLINE_MOH_CLASS", "CITYLINE_TRUNK"):
        assert glob.one(name), name


def test_callback_dials_the_resident_through_the_trunk(plan) -> None:
    steps = find_exten(plan["cityline-callback"], "+48601234567")
    dials = [s for s in steps if s.app == "Dial"]
    assert len(dials) == 1
    assert re.fullmatch(r"PJSIP/.*\$\{EXTEN:1\}@\$\{CITYLINE_TRUNK\}", split_args(dials[0].args)[0])
    s_steps = plan["cityline-callback"]["s"]
    assert any("CB_NUMBER" in s.args for s in s_steps)


# --------------------------------------------------------------------------------------------
# manager.conf (and the Docker variant)


def _compose_cityline_ip(compose: dict) -> str:
    return compose["services"]["cityline"]["networks"]["default"]["ipv4_address"]


@pytest.mark.parametrize("name", ["manager.conf", "docker/manager.conf"])
def test_manager_admits_only_cityline_with_timestamps(name: str, compose: dict) -> None:
    sections = load(name)
    names = [s.name for s in sections]
    assert names == ["general", "cityline"], names
    general, user = sections
    assert general.one("enabled") == "yes"
    assert general.one("timestampevents") == "yes"
    assert general.one("port") == "5038"
    assert user.one("secret") == PLACEHOLDER, "a real AMI secret must not be in git"
    rules = [(k, v) for k, v, _ in user.entries if k in ("deny", "permit")]
    assert rules[0] == ("deny", "0.0.0.0/0.0.0.0"), "refuse everyone first (last match wins)"
    permits = {v for k, v in rules[1:] if k == "permit"}
    assert all(k == "permit" for k, _ in rules[1:])
    if name == "manager.conf":
        assert general.one("bindaddr") == "127.0.0.1"
        assert permits == {"127.0.0.1/255.255.255.255"}
    else:
        assert permits == {f"{_compose_cityline_ip(compose)}/255.255.255.255"}
    read = set(user.one("read").split(","))
    write = set(user.one("write").split(","))
    assert {"call"} <= read and {"call", "originate", "reporting"} <= write
    assert not ({"all", "command", "config", "system"} & write), write
    assert "all" not in read


def test_docker_manager_matches_the_main_one_except_the_network() -> None:
    main = {s.name: s for s in load("manager.conf")}
    docker = {s.name: s for s in load("docker/manager.conf")}
    for sec, ignored in (("general", {"bindaddr"}), ("cityline", {"permit"})):
        a = [(k, v) for k, v, _ in main[sec].entries if k not in ignored]
        b = [(k, v) for k, v, _ in docker[sec].entries if k not in ignored]
        assert a == b, sec


# --------------------------------------------------------------------------------------------
# pjsip.conf


def test_every_agent_endpoint_is_a_phone(pjsip, plan, city_config) -> None:
    endpoints = objects(pjsip, "endpoint")
    auths = objects(pjsip, "auth")
    aors = objects(pjsip, "aor")
    missing = []
    for agent_id, agent in city_config["agents"].items():
        tech, _, name = agent["endpoint"].partition("/")
        assert tech == "PJSIP", agent["endpoint"]
        ep = endpoints.get(name)
        if ep is None:
            missing.append(f"{agent_id}: no endpoint [{name}]")
            continue
        assert ep["context"][-1] in plan, f"[{name}] context {ep['context'][-1]} not in dialplan"
        assert ep.get("direct_media", ["yes"])[-1] == "no", f"[{name}] media must stay in Asterisk"
        assert ep["auth"][-1] in auths, f"[{name}] auth {ep['auth']}"
        assert PLACEHOLDER in auths[ep["auth"][-1]]["password"][-1]
        assert ep["aors"][-1] in aors, f"[{name}] aors {ep['aors']}"
    assert not missing, missing


def test_no_real_password_in_pjsip(pjsip) -> None:
    for sec in pjsip:
        for key, value, line in sec.entries:
            if key in ("password", "md5_cred", "secret"):
                assert PLACEHOLDER in value, f"pjsip.conf line {line}: a real {key}?"


def test_transport_and_contexts(pjsip, plan) -> None:
    transports = objects(pjsip, "transport")
    assert any(
        t["protocol"][-1] == "udp" and t["bind"][-1].endswith(":5060") for t in transports.values()
    ), transports
    for sec in pjsip:  # templates too: the trunk template's context must exist as well
        for key, value, line in sec.entries:
            if key == "context":
                assert value in plan, f"pjsip.conf line {line}: context {value} not in dialplan"


# --------------------------------------------------------------------------------------------
# the other files


def test_music_on_hold_class_exists(ext_sections) -> None:
    (glob,) = [s for s in ext_sections if s.name == "globals"]
    classes = {s.name: s for s in load("musiconhold.conf")}
    moh = classes[glob.one("CITYLINE_MOH_CLASS")]
    assert moh.one("mode") == "files" and moh.one("directory")


def test_modules_needed_by_the_dialplan_are_not_kept_out() -> None:
    (mods,) = load("modules.conf")
    noload = {v.removesuffix(".so") for v in mods.get("noload")}
    needed = {
        "pbx_config",
        "res_pjsip",
        "chan_pjsip",
        "res_agi",
        "app_dial",
        "res_musiconhold",
        "app_playback",
        "app_exec",
        "app_echo",
        "func_env",
        "func_logic",
        "func_channel",
        "func_callerid",
    }
    assert mods.one("autoload") == "yes"
    assert not (needed & noload), needed & noload
    # [globals] calls ENV() and IF() when the dialplan loads: they must be loaded first
    preload = {v.removesuffix(".so") for v in mods.get("preload")}
    assert {"func_env", "func_logic"} <= preload, preload


def test_compose_runs_this_configuration(compose) -> None:
    asterisk = compose["services"]["asterisk"]
    volumes = [str(v) for v in asterisk["volumes"]]
    assert any(v.startswith("./asterisk_conf:/etc/asterisk") for v in volumes), volumes
    assert any(
        v.startswith("./asterisk_conf/docker/manager.conf:/etc/asterisk/manager.conf")
        for v in volumes
    ), volumes
    ports = [str(p) for p in asterisk["ports"]]
    assert "5060:5060/udp" in ports
    assert not any("5038" in p for p in ports), "AMI must not be published"
    (rtp,) = load("rtp.conf")
    rtp_range = f"{rtp.one('rtpstart')}-{rtp.one('rtpend')}"
    assert f"{rtp_range}:{rtp_range}/udp" in ports, (rtp_range, ports)
    assert asterisk["environment"]["CITYLINE_AGI_HOST"] == "cityline"
    subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"]
    prefix = subnet.rsplit(".", 1)[0] + "."
    assert _compose_cityline_ip(compose).startswith(prefix), subnet
