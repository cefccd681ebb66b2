"""The knowledge base over the API: search cards, read one, mark an answer as taken from a card.

Search parameters are query-string parameters (GET): `q` (the words, at most 200 characters;
empty lists the cards), `lang` (a city language: searched first and shown; default the city's
default language for display and every language searched), `topic` (an information topic),
`limit` (1..100, default `knowledge.max_results`). A bad parameter is 422 validation_error with
`details` naming it, like a bad body.

"Answered from a card" (KBANSWER) is recorded by queues/lua/kb_answer.lua while the agent holds
the interaction (connected or in wrap-up); the statistics count the contact as resolved from the
knowledge base when it is never transferred (`kb_resolved`, docs/statistics.md).
"""

from __future__ import annotations

from aiohttp import web

from queues import errors as store_errors
from router.errors import NotFound, from_store
from router.http.api.schemas_knowledge import (
    AnsweredFrom,
    AnsweredFromRequest,
    CardHit,
    CardView,
    KnowledgeResults,
    LinkView,
)
from router.http.api.table import Call
from router.http.api.validation import ApiError
from router.knowledge import MAX_QUERY_CHARS, Card, KnowledgeBase, knowledge_for


def _bad_param(name: str, message: str) -> ApiError:
    return ApiError(422, "validation_error", f"bad query parameter {name}: {message}",
                    details=[{"loc": ["query", name], "msg": message}])


def _lang(request: web.Request, base: KnowledgeBase) -> str | None:
    lang = request.query.get("lang") or None
    if lang is not None and lang not in base.languages:
        raise _bad_param("lang", f"not a city language ({', '.join(base.languages)})")
    return lang


def _topic_label(base: KnowledgeBase, topic: str, lang: str) -> str:
    return base.topic_labels.get(topic, {}).get(lang, topic)


def _card(base: KnowledgeBase, card_id: str) -> Card:
    card = base.card(card_id)
    if card is None:
        raise NotFound(f"no knowledge card {card_id!r}", code="unknown_card")
    return card


async def search_knowledge(call: Call) -> KnowledgeResults:
    base = knowledge_for(call.service)
    query = call.request.query
    q = query.get("q", "")
    if len(q) > MAX_QUERY_CHARS:
        raise _bad_param("q", f"at most {MAX_QUERY_CHARS} characters")
    lang = _lang(call.request, base)
    topic = query.get("topic") or None
    if topic is not None and topic not in base.topic_labels:
        raise _bad_param("topic", "not an information topic")
    limit = base.max_results
    if "limit" in query:
        try:
            limit = int(query["limit"])
        except ValueError:
            raise _bad_param("limit", "not a whole number") from None
        if not 1 <= limit <= 100:
            raise _bad_param("limit", "between 1 and 100")
    found = base.search(q, lang=lang, topic=topic, limit=limit)
    cards = [
        CardHit(id=h.card.id, topic=h.card.topic, topic_label=_topic_label(base, h.card.topic,
                h.lang), lang=h.lang, title=h.card.title.get(h.lang, h.card.id),
                snippet=h.snippet, unit=h.card.unit,
                links=[LinkView(label=link.label.get(h.lang, link.url), url=link.url)
                       for link in h.card.links], score=h.score)
        for h in found.hits
    ]  # fmt: skip
    return KnowledgeResults(query=q, lang=lang, topic=topic, fallback=found.fallback,
                            total=found.total, cards=cards)


async def get_card(call: Call) -> CardView:
    base = knowledge_for(call.service)
    card = _card(base, call.param("card_id"))
    lang = base.text_language(_lang(call.request, base))
    return CardView.build(card, lang, _topic_label(base, card.topic, lang))


async def answered_from(call: Call) -> AnsweredFrom:
    body: AnsweredFromRequest = call.body
    agent_id, ix_id = call.param("agent_id"), call.param("ix_id")
    call.service.profile(agent_id)  # 404 unknown_agent
    await call.service.interaction_for(agent_id, ix_id)  # 404, or 403 when another agent's
    _card(knowledge_for(call.service), body.card_id)
    try:
        at_ms, first, state = await call.service.store.kb_answer(ix_id, agent_id, body.card_id)
    except store_errors.StoreError as exc:
        raise from_store(exc) from None
    return AnsweredFrom(card_id=body.card_id, state=state, first=first,  # type: ignore[arg-type]
                        at_ms=at_ms)
