"""The configuration: the packaged default, strictness, error locations, environment, secrets."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from router.config import (
    DEFAULT_CAPACITY,
    CitylineConfig,
    ConfigError,
    ConfigIssue,
    QueueConfig,
    check_config_file,
    default_config_path,
    load_config,
    reference_markdown,
)
from router.models import Channel

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
LANGS = ("pl", "en", "uk")
CYRILLIC = re.compile(r"[\u0400-\u04FF]")

# A small valid configuration; tests append to it or replace parts of it.
BASE = textwrap.dedent(
    """\
    city:
      name: Testowo
    skills:
      general:
        kind: general
        labels: {pl: Ogólne, en: General, uk: Загальні}
      taxes:
        kind: information
        labels: {pl: Podatki, en: Taxes, uk: Податки}
      lang_en:
        kind: language
        labels: {pl: Angielski, en: English, uk: Англійська}
    languages: {pl: null, en: lang_en}
    queues:
      voice-info:
        channel: voice
        skills: {general: 3}
        service_level: {target_pct: 90, threshold_s: 15}
        max_wait_s: 300
        overflow: voice-general
        escalation:
          - after_s: 30
            lower_min_level: {general: 1}
          - after_s: 60
            raise_priority: 10
      voice-general:
        channel: voice
        skills: {general: 1}
        service_level: {target_pct: 90, threshold_s: 15}
      chat:
        channel: chat
        service_level: {target_pct: 80, threshold_s: 60}
    agents:
      jan:
        name: Jan Kowalski
        skills: {general: 5, taxes: 4}
        capacity: {chat: 2}
        endpoint: PJSIP/1001
    users:
      jan: {role: agent, agent: jan}
      boss: {role: admin, password_env: BOSS_PASSWORD}
    """
)


def write(tmp_path: Path, text: str, name: str = "city.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the `occurrence`-th line containing `needle`."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) >= occurrence, f"{needle!r} not in the test YAML"
    return hits[occurrence - 1]


def issues_of(path: Path, env: dict[str, str] | None = None) -> list[ConfigIssue]:
    return check_config_file(path, env={} if env is None else env)


def by_field(issues: list[ConfigIssue]) -> dict[str, ConfigIssue]:
    return {issue.field: issue for issue in issues}


# ------------------------------------------------------------------------------------------
# the packaged default


@pytest.fixture(scope="module")
def default() -> CitylineConfig:
    return load_config(env={})


def test_default_config_loads_and_checks_clean(default: CitylineConfig) -> None:
    path = default_config_path()
    assert path.name == "default_config.yaml" and path.is_file()
    assert check_config_file(path, env={}) == []
    assert load_config(path, env={}) == default
    assert default.city.languages == ["pl", "en", "uk"]
    assert default.demo.create_demo_users is True


def test_base_fixture_is_valid(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE), env={})
    assert config.queue("voice-info").overflow == "voice-general"
    assert config.agents["jan"].capacity == {**DEFAULT_CAPACITY, Channel.chat: 2}


def test_default_service_level_targets(default: CitylineConfig) -> None:
    expected = {
        Channel.voice: (90, 15),
        Channel.chat: (80, 60),
        Channel.sms: (80, 900),
        Channel.email: (95, 86400),
    }
    seen: set[Channel] = set()
    for name, queue in default.queues.items():
        if queue.channel in expected and name != "voice-second-line":
            sl = queue.service_level
            assert (sl.target_pct, sl.threshold_s) == expected[queue.channel], name
            seen.add(queue.channel)
    assert seen == set(expected)


def test_default_queues_cover_every_channel_with_escalation_and_overflow(
    default: CitylineConfig,
) -> None:
    for name in (
        "voice-info",
        "voice-interventions",
        "voice-second-line",
        "chat",
        "sms",
        "email",
        "telegram",
        "webform",
    ):
        assert name in default.queues
    assert {q.channel for q in default.queues.values()} == set(Channel)
    voice_info = default.queue("voice-info")
    actions = [step.actions() for step in voice_info.escalation]
    assert ["lower_min_level"] in actions and ["raise_priority"] in actions
    assert ["move_to_queue"] in actions
    assert any(q.max_wait_s and q.overflow for q in default.queues.values())
    for queue in default.queues.values():
        if queue.channel == Channel.voice:
            assert queue.offer_timeout_s <= 20
            assert queue.wrapup_s > 0
    assert default.queue("voice-info").offer_timeout_s == 15
    assert default.queue("chat").offer_timeout_s == 30
    assert default.queue("email").offer_timeout_s > default.queue("chat").offer_timeout_s


def test_default_labels_have_three_languages(default: CitylineConfig) -> None:
    labelled = {
        **{f"skills.{k}": v.labels for k, v in default.skills.items()},
        **{f"queues.{k}": v.labels for k, v in default.queues.items()},
        **{f"reason_codes.{k}": v.labels for k, v in default.reason_codes.items()},
    }
    for where, labels in labelled.items():
        assert set(labels) == set(LANGS), where
        assert all(text.strip() for text in labels.values()), where
        assert CYRILLIC.search(labels["uk"]), f"{where}: the Ukrainian label is not Ukrainian"
        assert not CYRILLIC.search(labels["pl"] + labels["en"]), where


def test_default_skill_catalogue_and_reason_codes(default: CitylineConfig) -> None:
    kinds: dict[str, set[str]] = {}
    for name, skill in default.skills.items():
        kinds.setdefault(skill.kind, set()).add(name)
    assert len(kinds["information"]) >= 17  # every topic DOMAIN.md lists
    assert len(kinds["intervention"]) >= 6
    assert kinds["language"] == {"lang_en", "lang_uk"}
    assert "general" in kinds["general"]
    assert default.skills["driving_licences"].labels["pl"] == "Prawa jazdy"
    assert default.language_skill("pl") is None
    assert default.language_skill("uk") == "lang_uk"
    assert set(default.reason_codes) == {
        "break",
        "lunch",
        "training",
        "back_office",
        "meeting",
        "rona",
    }


def test_default_agents_and_users(default: CitylineConfig) -> None:
    first = [a for a in default.agents.values() if a.line == "first"]
    second = [a for a in default.agents.values() if a.line == "second"]
    assert len(first) >= 12 and len(second) >= 4
    assert all(a.endpoint.startswith("PJSIP/") for a in default.agents.values())
    assert any(a.skills.get("lang_uk", 0) >= 7 for a in first)
    agent_users = {u.agent for u in default.users.values() if u.role == "agent"}
    assert agent_users == set(default.agents)
    roles = {u.role for u in default.users.values()}
    assert {"supervisor", "admin"} <= roles


# ------------------------------------------------------------------------------------------
# strictness and error locations


def test_unknown_field_rejected_with_line_and_suggestion(tmp_path: Path) -> None:
    text = BASE.replace("    max_wait_s: 300\n", "    max_wait_s: 300\n    offer_timout_s: 5\n")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    [issue] = caught.value.errors
    assert issue.field == "queues.voice-info.offer_timout_s"
    assert issue.line == line_of(text, "offer_timout_s")
    assert "offer_timeout_s" in issue.message  # did you mean ...
    assert str(caught.value) == str(issue)


def test_unknown_top_level_section_and_password_key(tmp_path: Path) -> None:
    text = BASE.replace("city:\n", "sity:\n  x: 1\ncity:\n").replace(
        "password_env: BOSS_PASSWORD", "password: hunter2"
    )
    found = by_field(issues_of(write(tmp_path, text)))
    assert found["sity"].line == 1
    assert found["users.boss.password"].line == line_of(text, "hunter2")
    assert "environment variable" in found["users.boss.password"].message
    assert all("hunter2" not in str(issue) for issue in found.values())


def test_bad_references_reported_with_path_and_line(tmp_path: Path) -> None:
    text = (
        BASE.replace("overflow: voice-general", "overflow: voice-nowhere")
        .replace("skills: {general: 5, taxes: 4}", "skills: {general: 5, taxs: 4}")
        .replace("jan: {role: agent, agent: jan}", "jan: {role: agent, agent: janek}")
    )
    found = by_field(issues_of(write(tmp_path, text)))
    assert set(found) == {
        "queues.voice-info.overflow",
        "agents.jan.skills.taxs",
        "users.jan.agent",
    }
    assert found["queues.voice-info.overflow"].line == line_of(text, "voice-nowhere")
    assert "voice-nowhere" in found["queues.voice-info.overflow"].message
    assert found["agents.jan.skills.taxs"].line == line_of(text, "taxs: 4")
    assert "unknown skill" in found["agents.jan.skills.taxs"].message
    assert found["users.jan.agent"].line == line_of(text, "agent: janek")


def test_overflow_and_move_must_stay_in_channel_and_not_loop_to_itself(tmp_path: Path) -> None:
    text = BASE.replace("overflow: voice-general", "overflow: chat").replace(
        "        raise_priority: 10\n",
        "        raise_priority: 10\n      - after_s: 90\n        move_to_queue: voice-info\n",
    )
    found = by_field(issues_of(write(tmp_path, text)))
    assert "same channel" in found["queues.voice-info.overflow"].message
    assert "itself" in found["queues.voice-info.escalation.2.move_to_queue"].message
    assert found["queues.voice-info.escalation.2.move_to_queue"].line == line_of(
        text, "move_to_queue: voice-info"
    )


def test_multiple_errors_reported_together(tmp_path: Path) -> None:
    text = (
        BASE.replace("name: Testowo", "name: Testowo\n  timezone: Europe/Warszawa")
        .replace("overflow: voice-general", "overflow: nowhere")
        .replace("channel: chat", "channel: chat\n    priorty: 5")
        .replace("endpoint: PJSIP/1001", "endpoint: PJSIP/1001\n    line: third")
        .replace("- after_s: 60", "- after_s: 20")
    )
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env={})
    found = by_field(caught.value.errors)
    assert set(found) == {
        "city.timezone",  # type-level problems ...
        "queues.chat.priorty",
        "agents.jan.line",
        "queues.voice-info.overflow",  # ... together with reference problems
        "queues.voice-info.escalation.1.after_s",  # ... and a queue's own checks
    }
    assert all(issue.line is not None for issue in caught.value.errors)
    lines = str(caught.value).splitlines()
    assert len(lines) == 5
    assert lines == sorted(lines, key=lambda s: int(s.split()[1].rstrip(":")))  # by line


def test_escalation_steps_must_increase(tmp_path: Path) -> None:
    text = BASE.replace("- after_s: 60", "- after_s: 30")
    [issue] = issues_of(write(tmp_path, text))
    assert issue.field == "queues.voice-info.escalation.1.after_s"
    assert issue.line == line_of(text, "after_s: 30", occurrence=2)
    assert "greater" in issue.message


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (
            ("max_wait_s: 300", "max_wait_s: 45"),
            "queues.voice-info.escalation.1.after_s",
            "max_wait_s",
        ),
        (
            ("raise_priority: 10", "raise_priority: 0"),
            "queues.voice-info.escalation.1",
            "does nothing",
        ),
        (
            ("lower_min_level: {general: 1}", "lower_min_level: {general: 3}"),
            "queues.voice-info.escalation.0.lower_min_level.general",
            "does not lower",
        ),
        (
            ("lower_min_level: {general: 1}", "lower_min_level: {taxes: 1}"),
            "queues.voice-info.escalation.0.lower_min_level.taxes",
            "not required",
        ),
        (("    max_wait_s: 300\n", ""), "queues.voice-info.overflow", "max_wait_s"),
        (
            ("languages: {pl: null, en: lang_en}", "languages: {pl: null, de: lang_en}"),
            "languages.de",
            "city languages",
        ),
        (("uk: Податки}", "ua: Податки}"), "skills.taxes.labels", "uk"),
        (
            ("jan: {role: agent, agent: jan}", "jan: {role: agent}"),
            "users.jan.agent",
            "needs agent",
        ),
        (
            ("name: Testowo", "name: Testowo\n  default_language: de"),
            "city.default_language",
            "city languages",
        ),
        (
            ("name: Testowo", "name: Testowo\nrouting: {miss_pause_reason: lunch}"),
            "routing.miss_pause_reason",
            "reason_codes",
        ),
        (
            ("capacity: {chat: 2}", "capacity: {chat: 21}"),
            "agents.jan.capacity.chat",
            "less than or equal to 20",
        ),
        (("  voice-general:", "  Voice General:"), "queues.Voice General", "queue name"),
    ],
)
def test_rule_violations(tmp_path: Path, change: tuple[str, str], field: str, words: str) -> None:
    old, new = change
    assert old in BASE
    found = by_field(issues_of(write(tmp_path, BASE.replace(old, new, 1))))
    assert field in found, found
    assert words in found[field].message
    assert found[field].line is not None


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    text = BASE.replace("    name: Jan Kowalski\n", "    name: Jan Kowalski\n    name: Jan Nowak\n")
    [issue] = issues_of(write(tmp_path, text))
    assert issue.field == "agents.jan.name"
    assert issue.line == line_of(text, "Jan Nowak")
    assert "duplicate" in issue.message


def test_yaml_syntax_error_reported_with_line(tmp_path: Path) -> None:
    text = BASE.replace("  name: Testowo", "  name: [Testowo")
    path = write(tmp_path, text)
    [issue] = check_config_file(path, env={})
    assert "YAML syntax error" in issue.message
    assert issue.line is not None and 2 <= issue.line <= 4
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.errors == [issue]


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    [missing] = check_config_file(tmp_path / "absent.yaml", env={})
    assert "cannot read" in missing.message
    [listed] = issues_of(write(tmp_path, "- a\n- b\n"))
    assert listed.line == 1 and "mapping" in listed.message
    assert load_config(write(tmp_path, ""), env={}) == CitylineConfig()


def test_anchors_merge_keys_and_extension_keys(tmp_path: Path) -> None:
    text = BASE.replace(
        "agents:\n",
        "x-agent: &agent {skills: {general: 2}, capacity: {voice: 0}}\nagents:\n"
        "  ola: {<<: *agent, name: Ola}\n"
        "  '1002': {<<: *agent, name: Piotr, endpoint: PJSIP/1002}\n",
    )
    config = load_config(write(tmp_path, text), env={})
    assert config.agents["ola"].skills == {"general": 2}
    assert config.agents["ola"].capacity[Channel.voice] == 0
    assert config.agents["1002"].endpoint == "PJSIP/1002"


# ------------------------------------------------------------------------------------------
# environment and secrets


def test_env_overrides_are_applied_and_typed(tmp_path: Path) -> None:
    env = {
        "REDIS_URL": "redis://:s3cr3t-pass@redis.example:6379/2",
        "CITYLINE_HTTP__PORT": "9000",
        "CITYLINE_ROUTING__SHORT_ABANDON_S": "3",
        "CITYLINE_ROUTING__BLENDING__TEXT_DURING_VOICE": "true",
        "CITYLINE_QUEUES__CHAT__MAX_WAIT_S": "600",
        "CITYLINE_DATA_DIR": "/var/lib/cityline",
        "CITYLINE_REDIS_SERVER": "/usr/bin/redis-server",  # a tool's variable, not config
        "PATH": "/usr/bin",
    }
    config = load_config(write(tmp_path, BASE), env=env)
    assert config.redis.url is not None
    assert config.redis.url_value() == env["REDIS_URL"]
    assert config.http.port == 9000 and isinstance(config.http.port, int)
    assert config.routing.short_abandon_s == 3.0
    assert isinstance(config.routing.short_abandon_s, float)
    assert config.routing.blending.text_during_voice is True
    assert config.queue("chat").max_wait_s == 600
    assert config.data_dir == Path("/var/lib/cityline")
    untouched = load_config(write(tmp_path, BASE), env={})
    assert untouched.http.port == 8080 and untouched.redis.url is None


def test_env_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYLINE_HTTP__PORT", "9100")
    assert load_config(write(tmp_path, BASE)).http.port == 9100
    monkeypatch.setenv("CITYLINE_HTTP__PORT", "nine")
    [issue] = check_config_file(write(tmp_path, BASE))
    assert issue.field == "http.port"


def test_bad_env_values_name_the_variable(tmp_path: Path) -> None:
    env = {
        "CITYLINE_HTTP__PORT": "99999",
        "CITYLINE_HTP__HOST": "0.0.0.0",
        "CITYLINE_ROUTING__MISS_PAUSE_REASON": "coffee",
        "CITYLINE_HTTP__PROT": "1",
    }
    found = by_field(issues_of(write(tmp_path, BASE), env=env))
    assert set(found) == {"http.port", "htp.host", "routing.miss_pause_reason", "http.prot"}
    for field, issue in found.items():
        assert issue.line is None, field
        assert issue.message.startswith("env CITYLINE_"), field
    assert "CITYLINE_HTTP__PORT" in found["http.port"].message
    assert "'http'" in found["htp.host"].message  # did you mean


def test_secrets_never_printed(tmp_path: Path) -> None:
    secret = "s3cr3t-pass"
    config = load_config(write(tmp_path, BASE), env={"REDIS_URL": f"redis://:{secret}@h:6379/0"})
    for text in (repr(config), str(config), repr(config.redis), config.model_dump_json()):
        assert secret not in text
    assert secret in config.redis.url_value()
    user = config.users["boss"]
    assert user.initial_password({}) is None
    password = user.initial_password({"BOSS_PASSWORD": "correct horse"})
    assert password is not None and "correct horse" not in repr(password)
    assert password.get_secret_value() == "correct horse"


def test_redis_password_in_the_file_is_rejected(tmp_path: Path) -> None:
    text = BASE + "redis:\n  url: redis://:hunter2@db:6379/0\n"
    [issue] = issues_of(write(tmp_path, text))
    assert issue.field == "redis.url" and issue.line == line_of(text, "hunter2")
    assert "REDIS_URL" in issue.message and "hunter2" not in str(issue)
    ok = BASE + "redis:\n  url: redis://db:6379/0\n"
    assert issues_of(write(tmp_path, ok)) == []


def test_password_env_must_be_a_variable_name(tmp_path: Path) -> None:
    text = BASE.replace("password_env: BOSS_PASSWORD", "password_env: 'Tr0ub4dor&3'")
    [issue] = issues_of(write(tmp_path, text))
    assert issue.field == "users.boss.password_env"
    assert "Tr0ub4dor" not in str(issue)


# ------------------------------------------------------------------------------------------
# helpers and the model API


def test_helpers(default: CitylineConfig) -> None:
    assert isinstance(default.queue("chat"), QueueConfig)
    with pytest.raises(KeyError, match="voice-info"):
        default.queue("no-such-queue")
    with pytest.raises(KeyError, match="de"):
        default.language_skill("de")
    profile = default.agents["anna.nowak"].profile("anna.nowak")
    assert profile.id == "anna.nowak" and profile.endpoint == "PJSIP/1001"
    assert profile.capacity == default.agents["anna.nowak"].capacity


def test_model_validation_outside_the_loader_is_just_as_strict() -> None:
    with pytest.raises(ValueError, match="unknown queue"):
        CitylineConfig.model_validate(
            {
                "queues": {
                    "q": {
                        "channel": "chat",
                        "service_level": {"target_pct": 80, "threshold_s": 60},
                        "max_wait_s": 10,
                        "overflow": "elsewhere",
                    }
                }
            }
        )
    config = CitylineConfig()
    with pytest.raises(ValueError):
        config.http.port = 70000  # assignments are validated too


# ------------------------------------------------------------------------------------------
# documentation


def test_every_field_documented_and_reference_in_sync() -> None:
    from router import config as module

    for model in (
        module.CitylineConfig,
        module.CityConfig,
        module.RedisConfig,
        module.HttpConfig,
        module.RoutingConfig,
        module.BlendingConfig,
        module.StatsConfig,
        module.SkillConfig,
        module.ReasonCode,
        module.QueueConfig,
        module.ServiceLevel,
        module.EscalationStep,
        module.AgentConfig,
        module.UserConfig,
        module.DemoConfig,
    ):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
    reference = reference_markdown()
    doc = DOCS.read_text(encoding="utf-8")
    begin, end = "<!-- BEGIN GENERATED REFERENCE -->", "<!-- END GENERATED REFERENCE -->"
    embedded = doc.split(begin, 1)[1].split(end, 1)[0].strip()
    assert embedded == reference.strip(), (
        "docs/configuration.md is out of date: paste the output of `python -m router.config` "
        "between the markers"
    )
    for heading in ("`queues.<queue>.escalation[]`", "`agents.<agent id>`", "`routing.blending`"):
        assert heading in reference
