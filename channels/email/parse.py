"""Read a resident's mail with the standard library: headers decoded, the text (text/plain
preferred, HTML turned into text), attachments, and whether it is automatic mail.

Mail from outside is hostile input. The parser never raises on a malformed message: every
header is read defensively, undecodable bytes become U+FFFD, and the defects the `email` package
found are returned so they can be logged. HTML is never kept as markup: it is reduced to its
text, with scripts and styles dropped.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from email.utils import getaddresses
from html.parser import HTMLParser
from pathlib import Path

from router.config_email import AttachmentLimits

# Precedence values of mailing lists and bulk mail (RFC 3834 section 2, de facto headers).
BULK_PRECEDENCE = frozenset({"bulk", "list", "junk"})
# Local parts that only send bounces and other automatic mail.
DAEMONS = frozenset({"mailer-daemon", "postmaster"})


@dataclass(frozen=True)
class Attachment:
    filename: str  # already made safe for the file system
    content_type: str
    data: bytes


@dataclass
class ParsedMail:
    message_id: str = ""
    in_reply_to: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    subject: str = ""
    sender: str = ""  # lower-cased address from From (or the envelope sender)
    sender_name: str = ""
    reply_to: str = ""
    body: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    automatic: str = ""  # why no acknowledgement may be sent; empty for a person's mail
    defects: list[str] = field(default_factory=list)

    @property
    def thread_ids(self) -> list[str]:
        """Message-IDs this mail answers, the most recent first."""
        seen: list[str] = []
        for mid in [*self.in_reply_to, *reversed(self.references)]:
            if mid not in seen:
                seen.append(mid)
        return seen


# --- HTML -------------------------------------------------------------------------------

_BLOCKS = frozenset({
    "p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol",
    "blockquote", "pre", "hr", "section", "article", "header", "footer", "address",
})
_DROPPED = frozenset({"script", "style", "head", "template", "noscript", "iframe", "object"})


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROPPED:
            self.skipping += 1
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """The readable text of an HTML body; markup, scripts and styles are gone."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# --- file names -------------------------------------------------------------------------

_UNSAFE = re.compile(r"[^\w.\- ]+")


def safe_filename(name: str, fallback: str) -> str:
    """A file name that stays in its directory: no path, no leading dot, no control or
    reserved characters, at most 100 characters (the extension kept)."""
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name).strip(" .")
    if not name:
        return fallback
    stem, dot, ext = name.rpartition(".")
    if dot and len(ext) <= 10:
        return stem[: 100 - len(ext) - 1].rstrip(" .") + "." + ext if stem else fallback
    return name[:100]


# --- headers ----------------------------------------------------------------------------


def _header(msg: Message, name: str, defects: list[str]) -> str:
    """A header's decoded value, or "" when it cannot be read (logged as a defect)."""
    try:
        value = msg.get(name)
        return "" if value is None else " ".join(str(value).split())
    except Exception as exc:  # a malformed header may raise in the header registry
        defects.append(f"unreadable {name} header: {type(exc).__name__}")
        return ""


def _msg_ids(value: str) -> list[str]:
    return re.findall(r"<[^<>\s]+>", value)


def _address(value: str) -> tuple[str, str]:
    pairs = [(n, a) for n, a in getaddresses([value]) if "@" in a]
    if not pairs:
        return "", ""
    name, addr = pairs[0]
    return name.strip(), addr.strip().lower()


def automatic_reason(msg: Message, mail_from: str, sender: str, defects: list[str]) -> str:
    """Why this mail must not be answered automatically (RFC 3834 and common practice), or ""."""
    if mail_from in ("", "<>"):
        return "empty return path (bounce)"
    auto = _header(msg, "Auto-Submitted", defects).lower()
    if auto and auto.split(";")[0].strip() != "no":
        return f"Auto-Submitted: {auto}"
    if _header(msg, "Precedence", defects).lower() in BULK_PRECEDENCE:
        return "Precedence: " + _header(msg, "Precedence", defects).lower()
    if _header(msg, "List-Id", defects) or _header(msg, "List-Unsubscribe", defects):
        return "mailing list"
    if msg.get_content_type() == "multipart/report":
        return "delivery or disposition report"
    if _header(msg, "X-Autoreply", defects) or _header(msg, "X-Autorespond", defects):
        return "auto-reply"
    for addr in (mail_from.lower(), sender):
        if addr.partition("@")[0] in DAEMONS:
            return "mail from a mailer daemon"
    return ""


# --- body -------------------------------------------------------------------------------


def _text_of(part: Message, defects: list[str]) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
    except Exception as exc:  # unknown charset, broken transfer encoding
        defects.append(f"undecodable {part.get_content_type()}: {type(exc).__name__}")
        raw = part.get_payload(decode=True) or b""
        content = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    if isinstance(content, bytes):
        content = content.decode("utf-8", errors="replace")
    return str(content)


def _is_attachment(part: Message) -> bool:
    if part.is_multipart():
        return False
    disposition = (part.get_content_disposition() or "").lower()
    if disposition == "attachment":
        return True
    if part.get_content_maintype() == "text" and disposition != "attachment":
        return part.get_content_subtype() not in ("plain", "html")
    return True  # inline images and other non-text parts are kept as files


def parse_message(raw: bytes, mail_from: str = "") -> ParsedMail:
    """Everything we keep of one message. Never raises on bad input."""
    msg = message_from_bytes(raw, policy=policy.default)
    defects = [type(d).__name__ for d in msg.defects]
    out = ParsedMail(defects=defects)
    out.message_id = next(iter(_msg_ids(_header(msg, "Message-ID", defects))), "")
    out.in_reply_to = _msg_ids(_header(msg, "In-Reply-To", defects))
    out.references = _msg_ids(_header(msg, "References", defects))
    out.subject = _header(msg, "Subject", defects)
    out.sender_name, out.sender = _address(_header(msg, "From", defects))
    if not out.sender and "@" in mail_from:
        out.sender = mail_from.strip("<>").lower()
    out.reply_to = _address(_header(msg, "Reply-To", defects))[1]

    plain: list[str] = []
    html: list[str] = []
    n = 0
    for part in msg.walk():
        defects.extend(type(d).__name__ for d in part.defects if part is not msg)
        if part.is_multipart():
            continue
        if _is_attachment(part):
            n += 1
            data = part.get_payload(decode=True) or b""
            if not isinstance(data, bytes):
                data = str(data).encode("utf-8", errors="replace")
            name = part.get_filename() or ""
            out.attachments.append(
                Attachment(safe_filename(name, f"attachment-{n}"), part.get_content_type(), data)
            )
        elif part.get_content_subtype() == "html":
            html.append(html_to_text(_text_of(part, defects)))
        else:
            plain.append(_text_of(part, defects))
    text = "\n\n".join(p.strip() for p in plain if p.strip())
    if not text:
        text = "\n\n".join(h for h in html if h)
    out.body = text.replace("\r\n", "\n").replace("\x00", "")
    out.automatic = automatic_reason(msg, mail_from, out.sender, defects)
    return out


# --- attachments on disk ----------------------------------------------------------------


@dataclass(frozen=True)
class AttachmentPlan:
    kept: list[Attachment]
    dropped: list[str]  # "name (reason)"


def plan_attachments(attachments: list[Attachment], limits: AttachmentLimits) -> AttachmentPlan:
    """Which attachments fit the limits, in the order they came; names made unique."""
    kept: list[Attachment] = []
    dropped: list[str] = []
    total = 0
    names: set[str] = set()
    for att in attachments:
        if len(att.data) > limits.max_file_bytes:
            dropped.append(f"{att.filename} (too large)")
        elif total + len(att.data) > limits.max_message_bytes:
            dropped.append(f"{att.filename} (over the per-message limit)")
        elif len(kept) >= limits.max_count:
            dropped.append(f"{att.filename} (too many attachments)")
        else:
            name = att.filename
            i = 1
            while name.lower() in names:
                i += 1
                name = f"{i}-{att.filename}"
            names.add(name.lower())
            kept.append(Attachment(name, att.content_type, att.data))
            total += len(att.data)
    return AttachmentPlan(kept, dropped)


def save_attachments(directory: Path, attachments: list[Attachment]) -> list[Path]:
    """Write the kept attachments into `directory` (created); an existing file of the same
    name (a second mail to the same interaction) is not overwritten: a number is prefixed."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for att in attachments:
        path = directory / att.filename
        i = 1
        while path.exists():
            i += 1
            path = directory / f"{i}-{att.filename}"
        # the name was made safe, but check anyway that it cannot leave the directory
        if path.resolve().parent != directory.resolve():
            raise ValueError(f"unsafe attachment name {att.filename!r}")
        path.write_bytes(att.data)
        written.append(path)
    return written

