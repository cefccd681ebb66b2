"""Bodies of the knowledge-base routes: card search, one card, "answered from a card"."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from router.knowledge import Card


class LinkView(BaseModel):
    label: str
    url: str


class CardHit(BaseModel):
    """One card found, in the language asked for (or the one it matched in)."""

    id: str
    topic: str = Field(description="the information topic (skill)")
    topic_label: str
    lang: str = Field(description="language of title and snippet")
    title: str
    snippet: str = Field(description="plain text around the first match (… marks a cut)")
    unit: str | None = Field(description="the unit (department) responsible, if any")
    links: list[LinkView]
    score: float = Field(description="relevance; higher first")


class KnowledgeResults(BaseModel):
    query: str
    lang: str | None = Field(description="the language searched first, as asked")
    topic: str | None
    fallback: bool = Field(
        description="nothing matched in `lang`, so every language was searched"
    )
    total: int = Field(description="cards matching, before the limit")
    cards: list[CardHit]


class CardView(BaseModel):
    """A whole card in one language."""

    id: str
    topic: str
    topic_label: str
    lang: str
    title: str
    answer: str = Field(description="plain text; line breaks are paragraph breaks")
    unit: str | None
    links: list[LinkView]
    keywords: list[str]
    languages: list[str] = Field(description="languages the card can be shown in")

    @classmethod
    def build(cls, card: Card, lang: str, topic_label: str) -> CardView:
        return cls(
            id=card.id, topic=card.topic, topic_label=topic_label, lang=lang,
            title=card.title.get(lang, ""), answer=card.answer.get(lang, ""), unit=card.unit,
            links=[LinkView(label=link.label.get(lang, link.url), url=link.url)
                   for link in card.links],
            keywords=list(card.keywords.get(lang, [])), languages=sorted(card.answer),
        )  # fmt: skip


class AnsweredFromRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    card_id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
                         description="the knowledge card the answer came from")


class AnsweredFrom(BaseModel):
    card_id: str
    state: Literal["connected", "wrapup"] = Field(description="the interaction's state")
    first: bool = Field(description="false when an earlier card mark was replaced")
    at_ms: int
