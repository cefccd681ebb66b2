"""Residents' identities: what a channel knows about who wrote or called, in one canonical form.

The same person reaches the city hall by phone, SMS, e-mail, Telegram or a web form; each channel
writes its address its own way ("600 100 200", "+48600100200", "Jan.Kowalski@Example.PL",
"tg:123"). `identity_of` turns each into one string, so that a resident who consented can be
recognised across channels (`queues.residents`):

- phone numbers: ``tel:`` + E.164 (phonenumbers; numbers without a country prefix are read in the
  city's country, `city.country`; only valid numbers, so short codes and garbage are no one);
- e-mail addresses: ``mailto:`` + the address, trimmed and lower-cased;
- Telegram chats: ``telegram:`` + the chat id.

Withheld callers ("anonymous", "unknown", an empty caller ID), a web chat without any contact and
anything that is none of the above give None: no identity, nothing to recognise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from email.utils import parseaddr

import phonenumbers

from router.models import Channel

TEL, MAILTO, TELEGRAM = "tel:", "mailto:", "telegram:"

# what withheld or hidden caller IDs look like, from Asterisk and SMS gateways
WITHHELD = frozenset(
    {"", "anonymous", "unknown", "restricted", "private", "unavailable", "withheld", "hidden"}
)

# the web form's rule (channels/webform/validation.py): one @, a dotted domain, no spaces
_EMAIL = re.compile(
    r"^[^@\s<>\"'(),;:\\\[\]]{1,64}@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
    r"(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$"
)
# a phone number as people and gateways write it; letters never (phonenumbers would read
# vanity letters and digits embedded in text as a number)
_PHONEISH = re.compile(r"^\+?[\d\s().\-/]{3,40}$")
_TELEGRAM_ID = re.compile(r"^-?\d{1,20}$")

# how many characters a raw value may have before it is no identity at all
_MAX_RAW = 320


def phone_identity(raw: str, region: str) -> str | None:
    """``tel:+E164`` of a valid phone number (national numbers read in `region`), or None."""
    text = raw.strip()
    if text.lower().startswith(TEL):
        text = text[len(TEL):].strip()
    if not _PHONEISH.match(text):
        return None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return TEL + phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def email_identity(raw: str) -> str | None:
    """``mailto:`` + the lower-cased address (a display name around it is dropped), or None."""
    text = raw.strip()
    if text.lower().startswith(MAILTO):
        text = text[len(MAILTO):]
    _name, address = parseaddr(text)
    address = address.strip().lower()
    if not address or not _EMAIL.match(address):
        return None
    return MAILTO + address


def contact_of(value: str, region: str) -> str:
    """A way to reach the resident as they typed it on a form, as channels store and send to:
    the lower-cased e-mail address or the E.164 number. ValueError saying what is wrong."""
    if "@" in value:
        ident = email_identity(value)
        if ident is None:
            raise ValueError("not a valid e-mail address")
        return ident[len(MAILTO):]
    ident = phone_identity(value, region)
    if ident is None:
        if _PHONEISH.match(value.strip()):
            raise ValueError("not a valid phone number")
        raise ValueError("give an e-mail address or a phone number")
    return ident[len(TEL):]


def telegram_identity(raw: str) -> str | None:
    """``telegram:<chat id>`` from a chat id, ``tg:<id>`` (the Telegram adapter's resident
    field) or ``telegram:<id>``; None for anything else."""
    text = raw.strip()
    for prefix in ("tg:", TELEGRAM):
        if text.lower().startswith(prefix):
            text = text[len(prefix):].strip()
            break
    return TELEGRAM + text if _TELEGRAM_ID.match(text) else None


def identity_of(channel: Channel | str | None, raw: str, region: str) -> str | None:
    """The canonical identity of what `channel` knows about its resident (`raw`), or None.

    `channel` says how to read `raw`: voice and SMS give phone numbers; e-mail an address;
    Telegram a chat id; a web form an e-mail or a phone number; a web chat nothing of its own
    (but a contact it was given is read like any other). None reads `raw` as any contact: an
    e-mail, a phone number or an identity already in canonical form.
    """
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    if len(text) > _MAX_RAW or text.lower() in WITHHELD:
        return None
    ch = str(channel) if channel is not None else ""
    if ch in (Channel.voice, Channel.sms):
        return phone_identity(text, region)
    if ch == Channel.email:
        return email_identity(text)
    if ch == Channel.telegram:
        return telegram_identity(text)
    # a web form's contact, a chat's contact, a contact given in passing, a canonical identity
    if text.lower().startswith(TELEGRAM) or text.lower().startswith("tg:"):
        return telegram_identity(text)
    if "@" in text:
        return email_identity(text)
    return phone_identity(text, region)


def identities_of(
    channel: Channel | str, resident: str, contacts: Iterable[str], region: str
) -> list[str]:
    """Every distinct identity of one contact: the one it came from first (`resident`, read as
    `channel` says), then the further contacts it gave, in order. Unreadable ones are left out."""
    found = [identity_of(channel, resident, region)]
    found += [identity_of(None, c, region) for c in contacts]
    return list(dict.fromkeys(i for i in found if i))
