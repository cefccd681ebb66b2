"""The knowledge base: card files and their checks, the search, the API, and first-contact
resolution from a card in the statistics (router/knowledge.py, router/http/api/knowledge.py,
queues/lua/kb_answer.lua, router/stats_fold.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from queues.keys import Keys
from router.cli import main as cli_main
from router.config import CitylineConfig, default_config_path, load_config
from router.dispatcher import Dispatcher
from router.knowledge import (
    Card,
    KnowledgeBase,
    KnowledgeError,
    attach,
    check_knowledge_dir,
    default_knowledge_dir,
    fold,
    load_knowledge,
    snippet,
)
from router.stats import INTERVAL_MS, StatsAggregator
from router.stats_figures import QueueFigures
from tests.api_helpers import ApiHarness, error_of
from tests.routing_fixtures import CONFIG
from tests.stats_events import (
    Events,
    complete,
    connect,
    enterqueue,
    local_ms,
    transfer,
    wrapupend,
)

LANGS = ("pl", "en", "uk")


@pytest.fixture(scope="module")
def city() -> CitylineConfig:
    """The packaged example city, which the packaged cards are written for."""
    return load_config(default_config_path(), env={})


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


GOOD = """\
    cards:
      - id: licence
        topic: driving_licences
        title: {pl: Prawo jazdy, en: Driving licence, uk: Посвідчення водія}
        answer: {pl: Odpowiedź., en: Answer., uk: Відповідь.}
        links:
          - label: {pl: Strona, en: Page, uk: Сторінка}
            url: https://www.nowygrod.example.pl/x
    """


def problems_of(directory: Path, cfg: CitylineConfig) -> list[str]:
    _cards, problems = check_knowledge_dir(directory, cfg)
    return [f"{path.name}:{i.line}: {i.field}: {i.message}" for path, i in problems]


# --- the packaged cards ---------------------------------------------------------------------


def test_packaged_cards_fit_the_packaged_city(city: CitylineConfig) -> None:
    base = load_knowledge(city)
    topics = {card.topic for card in base.cards}
    information = {n for n, s in city.skills.items() if s.kind == "information"}
    assert topics <= information and len(topics) >= 12
    for card in base.cards:
        assert set(card.title) == set(card.answer) == set(LANGS), card.id
        assert all(link.url.startswith("https://") for link in card.links)
        assert all(set(link.label) == set(LANGS) for link in card.links)
        # Ukrainian text is Ukrainian: no Russian-only letters
        assert not set("ыэъё") & set(card.answer["uk"].lower()), card.id
    assert len({c.id for c in base.cards}) == len(base.cards)
    assert base.card("driving-licence-first").unit is None  # no such unit in cases.units yet
    assert base.card("waste-collection-schedule").unit == "sanitation"


def test_packaged_cards_under_another_configuration_keep_what_fits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = load_config(CONFIG, env={})  # pl and en only, one information topic: taxes
    skills = dict(cfg.skills)
    skills["driving_licences"] = skills["taxes"].model_copy(
        update={"labels": {"pl": "Prawa jazdy", "en": "Driving licences"}}
    )
    cfg = cfg.model_copy(update={"skills": skills})
    base = load_knowledge(cfg)
    assert {c.id for c in base.cards} == {"driving-licence-first", "driving-licence-renewal"}
    assert all(set(c.answer) == {"pl", "en"} for c in base.cards)  # uk left out, not an error
    assert "packaged cards left out" in caplog.text
    # the city's own cards must all fit: the same directory named explicitly is checked strictly
    with pytest.raises(KnowledgeError, match="language 'uk' is not served"):
        load_knowledge(cfg, default_knowledge_dir())


# --- checks -----------------------------------------------------------------------------------


def test_a_valid_file_loads(tmp_path: Path, city: CitylineConfig) -> None:
    write(tmp_path, "a.yaml", GOOD)
    base = load_knowledge(city.model_copy(update={"knowledge": city.knowledge.model_copy(
        update={"dir": tmp_path})}))
    assert [c.id for c in base.cards] == ["licence"]


def test_a_missing_language_is_reported_at_its_line(tmp_path: Path, city: CitylineConfig):
    write(tmp_path, "a.yaml", GOOD.replace(", uk: Відповідь.", ""))
    assert problems_of(tmp_path, city) == [
        "a.yaml:5: cards.0.answer: the uk text is missing (every city language is needed: "
        "pl, en, uk)"
    ]


def test_bad_topics(tmp_path: Path, city: CitylineConfig) -> None:
    write(tmp_path, "a.yaml", GOOD.replace("driving_licences", "driving_licenses"))
    (problem,) = problems_of(tmp_path, city)
    assert problem.startswith("a.yaml:3: cards.0.topic: unknown topic 'driving_licenses' "
                              "(information topics: building_permits, ")
    write(tmp_path, "a.yaml", GOOD.replace("driving_licences", "road_damage"))
    assert problems_of(tmp_path, city) == [
        "a.yaml:3: cards.0.topic: skill 'road_damage' is of kind intervention, not an "
        "information topic"
    ]


@pytest.mark.parametrize(
    "url", ["http://www.nowygrod.example.pl/x", "javascript:alert(1)", "https://", "ftp://x.pl"]
)
def test_links_must_be_https(tmp_path: Path, city: CitylineConfig, url: str) -> None:
    write(tmp_path, "a.yaml", GOOD.replace("https://www.nowygrod.example.pl/x", url))
    (problem,) = problems_of(tmp_path, city)
    assert problem.startswith("a.yaml:8: cards.0.links.0.url: ")
    assert "is not an https:// address" in problem


def test_other_problems(tmp_path: Path, city: CitylineConfig) -> None:
    write(tmp_path, "a.yaml", GOOD.replace("        links:", "        unit: nowhere\n        "
                                           "colour: red\n        links:"))
    assert problems_of(tmp_path, city) == ["a.yaml:7: cards.0.colour: unknown setting 'colour'"]
    write(tmp_path, "a.yaml", GOOD.replace("        links:",
                                           "        unit: nowhere\n        links:"))
    (problem,) = problems_of(tmp_path, city)
    assert problem.startswith("a.yaml:6: cards.0.unit: unknown unit 'nowhere' (cases.units: ")
    write(tmp_path, "a.yaml", GOOD.replace("uk: Відповідь.", "uk: Відповідь., de: Antwort."))
    assert problems_of(tmp_path, city) == [
        "a.yaml:5: cards.0.answer.de: language 'de' is not served (city languages: pl, en, uk)"
    ]
    write(tmp_path, "a.yaml", GOOD)
    write(tmp_path, "b.yaml", GOOD)
    assert problems_of(tmp_path, city) == [
        "b.yaml:2: cards.0.id: card 'licence' is already defined in a.yaml"
    ]
    (tmp_path / "b.yaml").write_text("", encoding="utf-8")
    assert problems_of(tmp_path, city) == ["b.yaml:None: : the file is empty"]
    (tmp_path / "b.yaml").write_text("cards: [\n", encoding="utf-8")
    assert "YAML syntax error" in problems_of(tmp_path, city)[0]
    (tmp_path / "b.yaml").unlink()
    write(tmp_path, "a.yaml", GOOD.replace("id: licence", "id: Licence!"))
    (problem,) = problems_of(tmp_path, city)
    assert problem.startswith("a.yaml:2: cards.0.id: card id 'Licence!' is not valid")


def test_check_knowledge_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], city: CitylineConfig
) -> None:
    assert cli_main(["check-knowledge"]) == 0
    assert capsys.readouterr().out.startswith(f"OK {default_knowledge_dir()}: ")
    write(tmp_path, "a.yaml", GOOD.replace("https://", "http://"))
    assert cli_main(["check-knowledge", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert out.out.startswith(f"{tmp_path / 'a.yaml'}:8: cards.0.links.0.url: ")
    assert "1 problem in" in out.err


# --- search -----------------------------------------------------------------------------------


def test_folding_ignores_case_and_polish_accents_but_keeps_ukrainian_letters() -> None:
    assert fold("Zażółć GĘŚLĄ jaźń, ŁÓDŹ") == "zazolc gesla jazn, lodz"
    assert fold("Їжак й Ґанок") == "їжак й ґанок"
    assert fold("сім’ї don't") == "сімї dont"


@pytest.fixture(scope="module")
def base(city: CitylineConfig) -> KnowledgeBase:
    return load_knowledge(city)


def ids(result: object) -> list[str]:
    return [h.card.id for h in result.hits]  # type: ignore[attr-defined]


def test_search_ranks_title_hits_first_and_matches_word_prefixes(base: KnowledgeBase) -> None:
    found = base.search("prawo jazdy", lang="pl")
    assert ids(found)[:2] == ["driving-licence-first", "driving-licence-renewal"]
    assert found.hits[0].matched == 2 and not found.fallback
    assert ids(base.search("prawo jaz", lang="pl"))[:2] == ids(found)[:2]  # typed so far
    assert ids(base.search("wycinka drzew", lang="pl"))[0] == "tree-felling-permit"


def test_search_ignores_accents_and_case(base: KnowledgeBase) -> None:
    assert ids(base.search("SLUB", lang="pl"))[0] == "civil-registry-marriage"
    assert ids(base.search("zgubiony dowod", lang="pl"))[0] == "id-card-application"
    assert ids(base.search("ПОСВІДЧЕННЯ ВОДІЯ", lang="uk"))[:2] == [
        "driving-licence-first", "driving-licence-renewal"]


def test_search_falls_back_to_every_language(base: KnowledgeBase) -> None:
    found = base.search("zameldowanie", lang="en")
    assert found.fallback and ids(found)[0] == "residence-registration"
    assert found.hits[0].lang == "en"  # shown in the language asked for
    anywhere = base.search("вирубка")  # no language given: every one, shown in the one matched
    assert not anywhere.fallback and ids(anywhere) == ["tree-felling-permit"]
    assert anywhere.hits[0].lang == "uk"
    assert base.search("qqqxyz", lang="pl").hits == []


def test_title_outranks_answer_text(city: CitylineConfig) -> None:
    def card(card_id: str, title: str, answer: str) -> Card:
        return Card.model_validate({
            "id": card_id, "topic": "local_taxes",
            "title": {lang: title for lang in LANGS}, "answer": {lang: answer for lang in LANGS},
        })  # fmt: skip

    base = KnowledgeBase(
        [card("body", "Inne", "Tu jest mowa o psach."), card("title", "Podatek od psa", "Nic.")],
        city,
    )
    assert ids(base.search("psa", lang="pl")) == ["title", "body"]
    assert ids(base.search("psa", lang="pl", topic="zoning")) == []
    assert ids(base.search("", lang="pl", topic="local_taxes")) == ["body", "title"]
    assert base.search("", lang="pl", limit=1).total == 2


def test_snippets() -> None:
    text = "Pierwsze zdanie o niczym. " * 5 + "Tu jest prawo jazdy i więcej słów. " * 5
    cut = snippet(text, ["jazdy"], size=60)
    assert cut.startswith("…Tu jest prawo jazdy") and cut.endswith("…") and len(cut) <= 62
    assert snippet("krótko", ["x"]) == "krótko"
    assert snippet(text, [], size=40).startswith("Pierwsze zdanie")


# --- the API ----------------------------------------------------------------------------------

CARDS = """\
    cards:
      - id: dog-tax
        topic: taxes
        title: {pl: Podatek od psa, en: Dog tax}
        answer: {pl: Płaci się do 15 marca., en: It is due by 15 March.}
        keywords: {pl: [pies, opłata]}
        links:
          - label: {pl: Formularz, en: Form}
            url: https://example.pl/pies
    """


@pytest.fixture
def kb_api(api: ApiHarness, tmp_path: Path) -> ApiHarness:
    write(tmp_path / "cards", "taxes.yaml", CARDS)
    attach(api.service, load_knowledge(api.cfg, tmp_path / "cards"))
    return api


async def test_search_and_read_cards_over_the_api(kb_api: ApiHarness) -> None:
    agent = await kb_api.session("anna", "agent", "a1")
    resp = await agent.get("/knowledge", params={"q": "psa", "lang": "en"})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["fallback"] is True and body["total"] == 1
    (hit,) = body["cards"]
    assert (hit["id"], hit["lang"], hit["title"], hit["topic_label"]) == (
        "dog-tax", "en", "Dog tax", "Taxes")
    assert hit["links"] == [{"label": "Form", "url": "https://example.pl/pies"}]
    resp = await agent.get("/knowledge/dog-tax", params={"lang": "pl"})
    card = await resp.json()
    assert (card["title"], card["answer"], card["keywords"]) == (
        "Podatek od psa", "Płaci się do 15 marca.", ["pies", "opłata"])
    assert card["languages"] == ["en", "pl"]
    assert (await agent.get("/knowledge/dog-tax")).status == 200  # the default language

    resp = await agent.get("/knowledge/cat-tax")
    assert resp.status == 404 and (await error_of(resp))["code"] == "unknown_card"
    for params in ({"lang": "uk"}, {"topic": "roads"}, {"limit": "0"}, {"limit": "x"},
                   {"q": "x" * 201}):
        resp = await agent.get("/knowledge", params=params)
        assert resp.status == 422, params
        assert (await error_of(resp))["details"][0]["loc"][0] == "query"


async def test_who_may_search(kb_api: ApiHarness) -> None:
    supervisor = await kb_api.bearer("maria", "supervisor")
    assert (await supervisor.get("/knowledge", params={"q": "pies"})).status == 200
    admin = await kb_api.bearer("root", "admin")
    assert (await admin.get("/knowledge/dog-tax")).status == 200
    intake = await kb_api.bearer("portal", "intake")
    assert (await intake.get("/knowledge")).status == 403
    client = await kb_api.client()
    assert (await client.get("/api/v1/knowledge")).status == 401


async def _connected_chat(api: ApiHarness, dispatcher: Dispatcher) -> tuple[str, object]:
    intake = await api.bearer("portal", "intake")
    resp = await intake.post("/interactions", {"channel": "chat", "queue": "chat"})
    ix = (await resp.json())["id"]
    anna = await api.session("anna", "agent", "a1")
    assert (await anna.post("/agents/a1/login", {"ready": True})).status == 200
    assert await dispatcher.match_round() == 1
    return ix, anna


async def test_answered_from_a_card(
    kb_api: ApiHarness, dispatcher: Dispatcher, redis: aioredis.Redis
) -> None:
    ix, anna = await _connected_chat(kb_api, dispatcher)
    path = f"/agents/a1/interactions/{ix}/answered-from"
    resp = await anna.post(path, {"card_id": "dog-tax"})  # offered, not yet accepted
    assert resp.status == 409 and (await error_of(resp))["code"] == "invalid_state"
    assert (await anna.post(f"/agents/a1/interactions/{ix}/accept")).status == 200

    resp = await anna.post(path, {"card_id": "cat-tax"})
    assert resp.status == 404 and (await error_of(resp))["code"] == "unknown_card"
    assert (await anna.post(path, {"card": "dog-tax"})).status == 422
    bartek = await kb_api.session("bartek", "agent", "a2")
    resp = await bartek.post(f"/agents/a2/interactions/{ix}/answered-from", {"card_id": "dog-tax"})
    assert resp.status == 403
    assert not await _kb_events(redis)  # refusals leave no trace

    resp = await anna.post(path, {"card_id": "dog-tax"})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (body["state"], body["first"]) == ("connected", True)
    ix_hash = await kb_api.ix(ix)
    assert (ix_hash["kb_card"], ix_hash["kb_agent"]) == ("dog-tax", "a1")
    assert (await anna.post(f"/agents/a1/interactions/{ix}/complete")).status == 200
    resp = await anna.post(path, {"card_id": "dog-tax"})  # in wrap-up: still allowed
    assert (await resp.json())["state"] == "wrapup" and (await resp.json())["first"] is False
    fields = await _kb_events(redis)
    assert [(f["card"], f["during"], f["first"], f["transfers"]) for f in fields] == [
        ("dog-tax", "connected", "1", "0"), ("dog-tax", "wrapup", "0", "0")]
    assert (await anna.post(f"/agents/a1/interactions/{ix}/wrapup-end")).status == 200
    resp = await anna.post(path, {"card_id": "dog-tax"})  # closed: too late
    assert resp.status in (403, 409)

    agg = StatsAggregator(redis, Keys(), kb_api.cfg)
    while await agg.fold_once():
        pass
    now = int(ix_hash["connected_ms"])
    totals = await redis.hgetall(Keys().stats_interval(now - now % INTERVAL_MS, "all"))
    assert (totals["handled"], totals["first_contact_resolved"], totals["kb_resolved"]) == (
        "1", "1", "1")


async def _kb_events(redis: aioredis.Redis) -> list[dict[str, str]]:
    # read as the stream has them: KBANSWER is not a member of router.models.EventType (yet)
    return [f for _id, f in await redis.xrange("cl:events") if f.get("ev") == "KBANSWER"]


# --- statistics: first-contact resolution from the knowledge base ---------------------------

T0 = local_ms("2026-03-10T10:00:00")
S = 1000


def kbanswer(t: int, ix: str, queue: str, agent: str, *, during: str = "connected",
             first: bool = True, transfers: int = 0, card: str = "dog-tax") -> dict[str, str]:
    return {"ev": "KBANSWER", "t": str(t), "queue": queue, "ix": ix, "agent": agent,
            "channel": "voice", "card": card, "during": during, "transfers": str(transfers),
            "first": "1" if first else "0"}


async def test_kb_resolved_counts_contacts_answered_from_a_card_and_never_transferred(
    redis: aioredis.Redis,
) -> None:
    cfg = load_config(CONFIG, env={})
    stream, keys, t = Events(redis), Keys(), T0
    await stream.add_all(
        # a: marked while connected, never transferred -> FCR and from the knowledge base
        enterqueue(t, "a", "voice"),
        connect(t + 1 * S, "a", "voice", "a1", 1 * S),
        kbanswer(t + 2 * S, "a", "voice", "a1"),
        # b: marked, then transferred: neither
        enterqueue(t + 3 * S, "b", "voice"),
        connect(t + 4 * S, "b", "voice", "a1", 1 * S),
        kbanswer(t + 5 * S, "b", "voice", "a1"),
        transfer(t + 6 * S, "b", "voice", "a1", "voice-vip", talk_ms=2 * S),
        enterqueue(t + 6 * S, "b", "voice-vip", first=False),
        # c: no card at all -> FCR only
        enterqueue(t + 7 * S, "c", "voice"),
        connect(t + 8 * S, "c", "voice", "a2", 1 * S),
        # d: marked during wrap-up (after COMPLETE), never transferred -> counted then, once
        enterqueue(t + 9 * S, "d", "chat"),
        connect(t + 10 * S, "d", "chat", "a1", 1 * S),
    )
    agg = StatsAggregator(redis, keys, cfg)
    while await agg.fold_once(max_events=3):  # the marks and the ends in different batches
        pass
    await stream.add_all(
        complete(t + 20 * S, "a", "voice", "a1", 1 * S, 18 * S),
        connect(t + 21 * S, "b", "voice-vip", "a3", 15 * S, total_wait_ms=16 * S),
        kbanswer(t + 22 * S, "b", "voice-vip", "a3", first=False, transfers=1),
        complete(t + 30 * S, "b", "voice-vip", "a3", 15 * S, 9 * S),
        complete(t + 31 * S, "c", "voice", "a2", 1 * S, 23 * S),
        complete(t + 32 * S, "d", "chat", "a1", 1 * S, 22 * S),
        kbanswer(t + 33 * S, "d", "chat", "a1", during="wrapup"),
        kbanswer(t + 34 * S, "d", "chat", "a1", during="wrapup", first=False),
        wrapupend(t + 40 * S, "d", "chat", "a1", 7 * S),
    )
    later = StatsAggregator(redis, keys, cfg)  # another process, state from Redis
    while await later.fold_once():
        pass
    iv = t - t % INTERVAL_MS
    total = {k: int(v) for k, v in (await redis.hgetall(keys.stats_interval(iv, "all"))).items()}
    assert (total["handled"], total["first_contact_resolved"], total["kb_resolved"]) == (4, 3, 2)
    figures = QueueFigures.from_counters(total)  # what cityline stats, the report, the wall show
    assert (figures.kb_resolved, figures.kb_rate, figures.kb_fcr_share) == (2, 0.5, 2 / 3)
    a1 = await redis.hgetall(keys.stats_interval(iv, "a:a1"))
    assert a1["kb_resolved"] == "2"
    assert not await redis.hexists(keys.stats_interval(iv, "a:a3"), "kb_resolved")
    assert not await redis.keys("cl:st:ix:*")  # every contact ended: no state left behind


async def test_the_queue_log_export_keeps_kbanswer_as_a_cityline_verb(
    redis: aioredis.Redis,
) -> None:
    import io

    from router.queue_log import export_queue_log

    cfg = load_config(CONFIG, env={})
    await Events(redis).add_all(kbanswer(T0, "a", "voice", "a1"))
    out = io.StringIO()
    assert await export_queue_log(redis, Keys(), cfg, None, out) == 1
    assert out.getvalue() == f"{T0 // 1000}|a|voice|Agent/a1|KBANSWER|dog-tax|connected|0|1\n"
    out = io.StringIO()
    assert await export_queue_log(redis, Keys(), cfg, None, out, include_cityline=False) == 0


async def test_bad_cards_stop_the_start_before_anything_runs(
    tmp_path: Path, redis_url: str
) -> None:
    from router.main import Cityline, StartupError

    cfg = load_config(CONFIG, env={})
    write(tmp_path / "cards", "a.yaml", GOOD)  # topic driving_licences: not in this config
    cfg = cfg.model_copy(update={
        "knowledge": cfg.knowledge.model_copy(update={"dir": tmp_path / "cards"}),
        "data_dir": tmp_path, "http": cfg.http.model_copy(update={"port": 0}),
    })  # fmt: skip
    city = Cityline(cfg, redis_url=redis_url, channels=False)
    with pytest.raises(StartupError, match=r"(?s)knowledge cards cannot be used:.*a\.yaml:3: "
                       r"cards\.0\.topic: unknown topic 'driving_licences'"):
        await city.start()
    assert city.redis is None  # nothing was started
    await city.stop()
