"""The first line's knowledge base: information cards, their checks, and the search over them.

A card answers one question of residents about one information topic (a skill of kind
`information`): a title and an answer in every city language, the unit (department) responsible
when there is one, links, and keywords in any city language. Cards are YAML data files (``*.yaml``
with a top-level ``cards:`` list), packaged in the `knowledge` package directory or in the
directory `knowledge.dir` names, and are read with the configuration's line-marking reader, so a
problem is reported as ``FILE:LINE: field: message`` like configuration problems.

The search is an in-memory inverted index built once at start (the cards are a few hundred at
most): words are folded (case, and Polish/Latin accents: ą→a, ł→l; Cyrillic is kept as it is, so
Ukrainian й and ї stay distinct), and a query word matches every indexed word it is a prefix of.
A query word of 5 or more letters also matches, weaker, words sharing all but its last letter,
which catches most Polish inflection ("prawo" finds "prawa"). Title hits weigh most, then
keywords, then the topic's name, then the answer text. The query's language is searched first;
when nothing there matches, every language is. Each query word costs one binary search in the
sorted vocabulary plus the words it actually matches.
"""

from __future__ import annotations

import bisect
import logging
import re
import unicodedata
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from router.config_issues import ConfigIssue, Loc, clean_loc, dotted
from router.config_names import LanguageCode, SkillName
from router.config_yaml import Document

if TYPE_CHECKING:
    from router.config import CitylineConfig

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 2_000_000  # a card file is a few dozen kilobytes; refuse a runaway file
FILE_SUFFIXES = (".yaml", ".yml")
MAX_QUERY_CHARS = 200
SNIPPET_CHARS = 180

_CARD_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_UNIT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")


def _card_id(value: str) -> str:
    if not _CARD_ID_RE.fullmatch(value):
        raise ValueError(
            f"card id {value!r} is not valid: lower-case letters, digits, '_' and '-', starting "
            "with a letter or digit, at most 64"
        )
    return value


def _unit_id(value: str) -> str:
    if not _UNIT_RE.fullmatch(value):
        raise ValueError(
            f"unit {value!r} is not valid: lower-case letters, digits, '_' and '-', starting "
            "with a letter or digit, at most 48"
        )
    return value


def _https_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} is not an https:// address (links must be https)")
    return value


CardId = Annotated[str, AfterValidator(_card_id)]
UnitId = Annotated[str, AfterValidator(_unit_id)]
HttpsUrl = Annotated[str, Field(max_length=2000), AfterValidator(_https_url)]
Title = Annotated[str, Field(min_length=1, max_length=160)]
AnswerText = Annotated[str, Field(min_length=1, max_length=4000)]
LinkLabel = Annotated[str, Field(min_length=1, max_length=120)]
Keyword = Annotated[str, Field(min_length=1, max_length=80)]


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class CardLink(_Data):
    """A web page with more: its label per language and its https address."""

    label: dict[LanguageCode, LinkLabel] = Field(description="label per city language")
    url: HttpsUrl


class Card(_Data):
    """One information card."""

    id: CardId = Field(description="unique across all card files")
    topic: SkillName = Field(description="the information topic (a skill of kind information)")
    unit: UnitId | None = Field(None, description="the unit (department) responsible")
    title: dict[LanguageCode, Title] = Field(description="the question, per city language")
    answer: dict[LanguageCode, AnswerText] = Field(description="the answer, per city language")
    links: list[CardLink] = Field(default_factory=list, max_length=10)
    keywords: dict[LanguageCode, list[Keyword]] = Field(
        default_factory=dict, description="words residents use, per language (any of them)"
    )


class CardFile(_Data):
    """The shape of one card file."""

    cards: list[Card] = Field(min_length=1)


class KnowledgeError(Exception):
    """Cards that cannot be used. `problems` lists (file, issue) pairs; str() shows one a line
    as ``FILE:LINE: field: message``."""

    def __init__(self, problems: list[tuple[Path, ConfigIssue]]) -> None:
        self.problems = problems
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(format_issue(path, issue) for path, issue in self.problems)


def format_issue(path: Path | str, issue: ConfigIssue) -> str:
    where = f"{path}:{issue.line}" if issue.line is not None else str(path)
    field = f" {issue.field}:" if issue.field else ""
    return f"{where}:{field} {issue.message}"


def default_knowledge_dir() -> Path:
    """The packaged cards: the `knowledge` package directory (shipped as package data)."""
    return Path(str(resources.files("knowledge")))


def knowledge_dir(cfg: CitylineConfig) -> Path:
    return cfg.knowledge.dir if cfg.knowledge.dir is not None else default_knowledge_dir()


# --- checks against the configuration ------------------------------------------------------------


def _units(cfg: CitylineConfig) -> set[str] | None:
    """The configured units (the `cases.units` block), or None when there are none to check."""
    cases = getattr(cfg, "cases", None)
    units = getattr(cases, "units", None)
    return set(units) if units else None


def card_problems(card: Card, cfg: CitylineConfig) -> list[tuple[Loc, str]]:
    """What is wrong with a card that is well-formed on its own, against the configuration."""
    found: list[tuple[Loc, str]] = []
    skill = cfg.skills.get(card.topic)
    topics = sorted(n for n, s in cfg.skills.items() if s.kind == "information")
    if skill is None:
        found.append((("topic",), f"unknown topic {card.topic!r} (information topics: "
                      f"{', '.join(topics) or 'none'})"))
    elif skill.kind != "information":
        found.append((("topic",), f"skill {card.topic!r} is of kind {skill.kind}, not an "
                      "information topic"))
    units = _units(cfg)
    if card.unit is not None and units is not None and card.unit not in units:
        found.append((("unit",), f"unknown unit {card.unit!r} (cases.units: "
                      f"{', '.join(sorted(units))})"))
    langs = list(cfg.city.languages)
    served = ", ".join(langs)

    def texts(loc: Loc, given: Mapping[str, Any], required: bool = True) -> None:
        for lang in given:
            if lang not in langs:
                found.append(((*loc, lang), f"language {lang!r} is not served (city "
                              f"languages: {served})"))
        if required:
            for lang in langs:
                if lang not in given:
                    found.append((loc, f"the {lang} text is missing (every city language is "
                                  f"needed: {served})"))

    texts(("title",), card.title)
    texts(("answer",), card.answer)
    texts(("keywords",), card.keywords, required=False)
    for i, link in enumerate(card.links):
        texts(("links", i, "label"), link.label)
    return found


# --- reading files ------------------------------------------------------------------------------


def fit_card(card: Card, cfg: CitylineConfig) -> Card | None:
    """`card` without the languages the city does not serve, or None when it does not fit the
    configuration even so (unknown topic or unit, a city language missing)."""
    langs = set(cfg.city.languages)

    def keep(texts: Mapping[str, Any]) -> dict[str, Any]:
        return {lang: text for lang, text in texts.items() if lang in langs}

    trimmed = card.model_copy(update={
        "title": keep(card.title), "answer": keep(card.answer), "keywords": keep(card.keywords),
        "links": [link.model_copy(update={"label": keep(link.label)}) for link in card.links],
    })  # fmt: skip
    return None if card_problems(trimmed, cfg) else trimmed


def parse_cards(
    text: str, cfg: CitylineConfig, *, check: bool = True
) -> tuple[list[Card], list[ConfigIssue]]:
    """The cards in `text` and the problems of the file (cards are returned only when there are
    none). `check=False` leaves out the checks against the configuration (`card_problems`)."""
    doc = Document(text)
    issues = list(doc.issues)
    if doc.data is None:
        if not issues:
            issues.append(ConfigIssue(line=None, field="", message="the file is empty"))
        return [], issues
    if not isinstance(doc.data, dict):
        issues.append(ConfigIssue(line=doc.line_of(()), field="",
                                  message="a card file is a mapping with a cards: list"))
        return [], issues
    try:
        parsed = CardFile.model_validate(doc.data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = clean_loc(err["loc"])
            msg = str(err.get("msg", "")).removeprefix("Value error, ")
            if err.get("type") == "missing":
                msg = "required setting is missing"
            elif err.get("type") == "extra_forbidden":
                msg = f"unknown setting {loc[-1]!r}" if loc else msg
            issues.append(_issue(doc, loc, msg))
        return [], _sorted(issues)
    for i, card in enumerate(parsed.cards if check else ()):
        issues += [_issue(doc, ("cards", i, *loc), msg) for loc, msg in card_problems(card, cfg)]
    if issues:
        return [], _sorted(issues)
    return list(parsed.cards), []


def _issue(doc: Document, loc: Loc, message: str) -> ConfigIssue:
    return ConfigIssue(line=doc.line_of(loc), field=dotted(loc), message=message)


def _sorted(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    unique = {(i.line, i.field, i.message): i for i in issues}
    return sorted(unique.values(), key=lambda i: (i.line is None, i.line or 0, i.field, i.message))


def _read(path: Path) -> tuple[str | None, list[ConfigIssue]]:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None, [ConfigIssue(line=None, field="",
                                      message=f"larger than {MAX_FILE_BYTES} bytes")]
        return path.read_text(encoding="utf-8"), []
    except (OSError, UnicodeDecodeError) as exc:
        return None, [ConfigIssue(line=None, field="", message=f"cannot read: {exc}")]


def check_knowledge_dir(
    directory: str | Path, cfg: CitylineConfig, *, strict: bool = True
) -> tuple[list[Card], list[tuple[Path, ConfigIssue]]]:
    """The valid cards of `directory` (file name order) and every problem as (file, issue).

    `strict=False` (the packaged cards of the example city under another city's configuration)
    leaves out, instead of reporting, the cards that do not fit the configuration (`fit_card`);
    a file that is malformed in itself is still a problem."""
    directory = Path(directory)
    cards: list[Card] = []
    problems: list[tuple[Path, ConfigIssue]] = []
    if not directory.is_dir():
        return [], [(directory, ConfigIssue(line=None, field="",
                                            message="not a directory of knowledge cards"))]
    where: dict[str, Path] = {}
    for path in sorted(p for p in directory.iterdir() if p.suffix in FILE_SUFFIXES):
        text, issues = _read(path)
        found: list[Card] = []
        if text is not None:
            found, issues = parse_cards(text, cfg, check=strict)
        if not strict:
            found = [c for c in (fit_card(card, cfg) for card in found) if c is not None]
        problems += [(path, issue) for issue in issues]
        doc = Document(text or "") if found else None
        for i, card in enumerate(found):
            if card.id in where:
                assert doc is not None
                problems.append((path, ConfigIssue(
                    line=doc.line_of(("cards", i, "id")), field=f"cards.{i}.id",
                    message=f"card {card.id!r} is already defined in {where[card.id].name}")))
                continue
            where[card.id] = path
            cards.append(card)
    if not cards and not problems and strict:
        problems.append((directory, ConfigIssue(line=None, field="",
                                                message="no card files (*.yaml)")))
    return cards, problems


def load_knowledge(cfg: CitylineConfig, directory: str | Path | None = None) -> KnowledgeBase:
    """The knowledge base of `directory` (default: `knowledge.dir`, else the packaged cards);
    `KnowledgeError` listing every problem when any file has one.

    The packaged cards are written for the example city's skill catalogue and languages: under
    another configuration the cards that do not fit it are left out (and counted in the log),
    its own cards (`directory`, `knowledge.dir`) must all fit."""
    packaged = directory is None and cfg.knowledge.dir is None
    where = Path(directory) if directory is not None else knowledge_dir(cfg)
    cards, problems = check_knowledge_dir(where, cfg, strict=not packaged)
    if problems:
        raise KnowledgeError(problems)
    if packaged:
        total = sum(len(CardFile.model_validate(Document(p.read_text("utf-8")).data).cards)
                    for p in sorted(where.iterdir()) if p.suffix in FILE_SUFFIXES)
        if total > len(cards):
            logger.warning("knowledge: %d of the %d packaged cards left out: their topics or "
                           "languages are not this configuration's (set knowledge.dir to the "
                           "city's own cards)", total - len(cards), total)
    logger.info("knowledge: %d cards on %d topics from %s", len(cards),
                len({c.topic for c in cards}), where)
    return KnowledgeBase(cards, cfg)


# --- folding words --------------------------------------------------------------------------------

# Letters that do not decompose into a base and a mark; apostrophes inside words (Ukrainian
# сім'ї, English don't) are dropped so the word stays one word.
_FOLD = str.maketrans({"ł": "l", "Ł": "l", "đ": "d", "Đ": "d", "ø": "o", "Ø": "o",
                       "'": "", "’": "", "ʼ": "", "`": ""})
_WORD = re.compile(r"\w+")
_LATIN_END = "\u0250"  # Latin letters (with their extensions) are below this code point


def fold(text: str) -> str:
    """Lower-case, without the accents of Latin letters; other scripts keep theirs (Ukrainian
    й, ї, ґ are letters of their own)."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFD", text.translate(_FOLD).casefold()):
        if unicodedata.combining(ch) and out and out[-1] < _LATIN_END:
            continue
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))


def words(text: str) -> list[str]:
    return _WORD.findall(fold(text))


# --- the index ------------------------------------------------------------------------------------

# How much a word in each part of a card counts; a title word above a keyword above the topic's
# name above the answer text.
WEIGHTS = {"title": 8.0, "keywords": 6.0, "topic": 4.0, "answer": 1.0}
PREFIX_FACTOR = 0.8  # the query word is a prefix of the card's word
STEM_FACTOR = 0.5  # the card's word shares all but the last letter of the query word
STEM_MIN = 5  # query words at least this long get the stem match


@dataclass(frozen=True)
class Hit:
    card: Card
    lang: str = ""  # the language the card is shown in
    score: float = 0.0
    matched: int = 0  # query words the card matched
    snippet: str = ""


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    total: int  # matching cards, before the limit
    fallback: bool  # nothing in the query's language matched: every language was searched


class _LangIndex:
    def __init__(self) -> None:
        self.postings: dict[str, dict[int, float]] = {}
        self.vocab: list[str] = []

    def add(self, card: int, text: str, weight: float) -> None:
        for word in words(text):
            row = self.postings.setdefault(word, {})
            if row.get(card, 0.0) < weight:
                row[card] = weight

    def freeze(self) -> None:
        self.vocab = sorted(self.postings)

    def _prefixed(self, prefix: str, factor: float, exact_factor: float,
                  into: dict[int, float]) -> None:
        i = bisect.bisect_left(self.vocab, prefix)
        while i < len(self.vocab) and self.vocab[i].startswith(prefix):
            word = self.vocab[i]
            f = exact_factor if word == prefix else factor
            for card, weight in self.postings[word].items():
                if into.get(card, 0.0) < weight * f:
                    into[card] = weight * f
            i += 1

    def match(self, query_word: str) -> dict[int, float]:
        """card -> best weight of a word of the card matching `query_word`."""
        found: dict[int, float] = {}
        self._prefixed(query_word, PREFIX_FACTOR, 1.0, found)
        if len(query_word) >= STEM_MIN:
            self._prefixed(query_word[:-1], STEM_FACTOR, STEM_FACTOR, found)
        return found


class KnowledgeBase:
    """The cards and their search index, built once; read-only afterwards (safe to share)."""

    def __init__(self, cards: Iterable[Card], cfg: CitylineConfig) -> None:
        self.cards: list[Card] = list(cards)
        self.by_id: dict[str, Card] = {c.id: c for c in self.cards}
        self.languages: list[str] = list(cfg.city.languages)
        self.default_language: str = cfg.city.default_language
        self.max_results = cfg.knowledge.max_results
        self.topic_labels: dict[str, dict[str, str]] = {
            name: dict(skill.labels) for name, skill in cfg.skills.items()
            if skill.kind == "information"
        }
        self._index: dict[str, _LangIndex] = {lang: _LangIndex() for lang in self.languages}
        for i, card in enumerate(self.cards):
            for lang, index in self._index.items():
                index.add(i, card.title.get(lang, ""), WEIGHTS["title"])
                index.add(i, " ".join(card.keywords.get(lang, [])), WEIGHTS["keywords"])
                index.add(i, self.topic_labels.get(card.topic, {}).get(lang, ""),
                          WEIGHTS["topic"])
                index.add(i, card.answer.get(lang, ""), WEIGHTS["answer"])
        for index in self._index.values():
            index.freeze()

    def __len__(self) -> int:
        return len(self.cards)

    def card(self, card_id: str) -> Card | None:
        return self.by_id.get(card_id)

    def text_language(self, lang: str | None) -> str:
        """The language to show a card in: `lang` when the city serves it, else the default."""
        return lang if lang in self._index else self.default_language

    def search(self, query: str, *, lang: str | None = None, topic: str | None = None,
               limit: int | None = None) -> SearchResult:
        """Cards matching `query`, best first. An empty query lists the cards (of `topic`)."""
        limit = self.max_results if limit is None else limit
        qwords = list(dict.fromkeys(words(query[:MAX_QUERY_CHARS])))
        if len(qwords) > 1:  # one-letter words ("w", "i") would match half of everything
            qwords = [w for w in qwords if len(w) > 1] or qwords
        allowed = None if topic is None else {
            i for i, c in enumerate(self.cards) if c.topic == topic
        }
        shown = self.text_language(lang)
        if not qwords:
            hits = [Hit(c, shown, 0.0, 0, snippet(c.answer.get(shown, ""), []))
                    for i, c in enumerate(self.cards) if allowed is None or i in allowed]
            hits.sort(key=lambda h: (h.card.topic, h.card.title.get(shown, h.card.id)))
            return SearchResult(hits[:limit], len(hits), fallback=False)
        fallback = False
        scored: dict[int, tuple[int, float, str]] = {}
        if lang in self._index:
            scored = self._score(self._index[lang], lang, qwords, allowed)
        if not scored:
            fallback = lang in self._index
            for code, index in self._index.items():
                for i, row in self._score(index, code, qwords, allowed).items():
                    if row[:2] > scored.get(i, (0, 0.0, ""))[:2]:
                        scored[i] = row
        order = sorted(scored.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))
        hits = []
        for i, (matched, score, matched_lang) in order[:limit]:
            card = self.cards[i]
            text_lang = shown if lang in self._index else matched_lang
            hits.append(Hit(card, text_lang, round(score, 3), matched,
                            snippet(card.answer.get(text_lang, ""), qwords)))
        return SearchResult(hits, len(order), fallback)

    @staticmethod
    def _score(index: _LangIndex, lang: str, qwords: list[str],
               allowed: set[int] | None) -> dict[int, tuple[int, float, str]]:
        matched: dict[int, int] = {}
        total: dict[int, float] = {}
        for word in qwords:
            for card, weight in index.match(word).items():
                if allowed is not None and card not in allowed:
                    continue
                matched[card] = matched.get(card, 0) + 1
                total[card] = total.get(card, 0.0) + weight
        return {card: (n, total[card], lang) for card, n in matched.items()}


def snippet(text: str, qwords: list[str], size: int = SNIPPET_CHARS) -> str:
    """About `size` characters of `text` around its first word matching a query word (from the
    start of that sentence when it is near), whitespace collapsed; "…" marks a cut."""
    flat = " ".join(text.split())
    if len(flat) <= size:
        return flat
    start = 0
    for m in re.finditer(r"\S+", flat):
        folded = words(m.group())
        if any(w.startswith(q) or (len(q) >= STEM_MIN and w.startswith(q[:-1]))
               for w in folded for q in qwords):
            start = m.start()
            break
    if start:
        sentence = max(flat.rfind(". ", 0, start), flat.rfind("\n", 0, start))
        start = sentence + 2 if sentence >= 0 and start - sentence < size // 2 else start
        start = max(0, min(start, len(flat) - size))
    cut = flat[start:start + size]
    if start + size < len(flat):
        cut = cut[: cut.rfind(" ")] if " " in cut[size // 2:] else cut
        cut = cut.rstrip(" ,;:") + "…"
    return ("…" if start else "") + cut


# --- the knowledge base of a running service -----------------------------------------------------

_BASES: weakref.WeakKeyDictionary[Any, KnowledgeBase] = weakref.WeakKeyDictionary()


def attach(service: Any, base: KnowledgeBase) -> None:
    """Make `base` the knowledge base the HTTP API answers from for `service` (the composition
    root does it at start, after loading and checking the cards)."""
    _BASES[service] = base


def knowledge_for(service: Any) -> KnowledgeBase:
    """The knowledge base attached to `service`; loaded from its configuration on first use
    when none was (test harnesses, tools that build the API without the composition root)."""
    base = _BASES.get(service)
    if base is None:
        base = _BASES[service] = load_knowledge(service.cfg)
    return base
