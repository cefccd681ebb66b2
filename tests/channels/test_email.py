"""The e-mail channel end to end: our aiosmtpd server on 127.0.0.1:0 driven by a real smtplib
client, the real router on the real Redis, and a tiny aiosmtpd sink of the test's own as the
smarthost that records what we send."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiosmtpd.smtp import SMTP, Envelope, Session

from channels.email.adapter import EmailAdapter
from channels.email.parse import html_to_text, safe_filename
from queues.store import RoutingStore
from router.config import CitylineConfig, load_config
from router.config_email import EmailConfig
from router.dispatcher import Dispatcher
from router.models import Channel, Event
from router.service import RoutingService

CONFIG = Path(__file__).with_name("email_config.yaml")
CITY = "kontakt@miasto.example.pl"
TAXES = "podatki@miasto.example.pl"
RESIDENT = "lukasz.zolw@example.com"
POLISH = "Zażółć gęślą jaźń: dziura w jezdni na ul. Żwirki i Wigury 5"
UKRAINIAN = "Добрий день! Ґанок біля під'їзду зламаний, їжак і є"


class Sink:
    """The smarthost: records every message it is given."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.port = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        msg = message_from_bytes(raw, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        self.envelopes.append((envelope.mail_from or "", list(envelope.rcpt_tos)))
        return "250 OK"


@pytest.fixture
def cfg() -> CitylineConfig:
    return load_config(CONFIG, env={})


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    handler = Sink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.test", loop=loop), "127.0.0.1", 0
    )
    handler.port = server.sockets[0].getsockname()[1]
    yield handler
    server.close()
    await server.wait_closed()


def email_cfg(sink: Sink, **overrides: Any) -> EmailConfig:
    data: dict[str, Any] = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": 0,
        "domains": ["miasto.example.pl"],
        "addresses": {CITY: "email", TAXES: "email-taxes"},
        "max_recipients": 3,
        "attachments": {"max_file_bytes": 1000, "max_message_bytes": 1500, "max_count": 3},
        "smarthost": {"host": "127.0.0.1", "port": sink.port, "timeout_s": 5},
    }
    data.update(overrides)
    return EmailConfig.model_validate(data)


@pytest.fixture
async def adapter(
    service: RoutingService, sink: Sink, tmp_path: Path
) -> AsyncIterator[EmailAdapter]:
    async with EmailAdapter(service, email_cfg(sink), tmp_path, env={}) as a:
        yield a


def send(port: int, msg: EmailMessage | bytes, sender: str, rcpts: list[str]) -> dict[str, Any]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        raw = msg if isinstance(msg, bytes) else msg.as_bytes(policy=policy.SMTP)  # CRLF lines
        return client.sendmail(sender, rcpts, raw)


async def asend(adapter: EmailAdapter, msg: EmailMessage | bytes, sender: str = RESIDENT,
                rcpts: list[str] | None = None) -> dict[str, Any]:
    return await asyncio.to_thread(send, adapter.port, msg, sender, rcpts or [CITY])


def resident_mail(subject: str = POLISH, body: str = f"{POLISH}\n{UKRAINIAN}\n",
                  **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Łukasz Żółw <Lukasz.Zolw@Example.COM>"
    msg["To"] = CITY
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.com")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body, cte="quoted-printable")
    return msg


async def ix_of(service: RoutingService, message_id: str) -> dict[str, str]:
    ix_id = await service.find_external(Channel.email, message_id)
    assert ix_id is not None, f"no interaction for {message_id}"
    return await service.store.interaction(ix_id)


async def count_interactions(redis: aioredis.Redis) -> int:
    return len([k async for k in redis.scan_iter("cl:ix:*")])


# --- intake, acknowledgement, threading, replies ------------------------------------------


async def test_mail_becomes_interaction_with_ack(
    adapter: EmailAdapter, service: RoutingService, sink: Sink, tmp_path: Path
) -> None:
    msg = resident_mail()
    msg.add_alternative(f"<p>{POLISH}</p>", subtype="html", cte="base64")
    msg.add_attachment(b"\xff\xd8photo", maintype="image", subtype="jpeg",
                       filename="zdjęcie ulicy.jpg")
    msg.add_attachment(b"root:x:0:0", maintype="text", subtype="plain",
                       filename="../../etc/passwd")
    msg.add_attachment(b"x" * 2000, maintype="application", subtype="pdf", filename="big.pdf")
    assert await asend(adapter, msg) == {}

    ix = await ix_of(service, msg["Message-ID"])
    assert ix["channel"] == "email" and ix["queue"] == "email" and ix["state"] == "queued"
    assert ix["subject"] == POLISH
    assert POLISH in ix["body"] and UKRAINIAN in ix["body"]
    assert ix["resident"] == RESIDENT and ix["resident_name"] == "Łukasz Żółw"

    files = sorted(p.name for p in (tmp_path / "attachments" / ix["id"]).iterdir())
    assert files == ["passwd", "zdjęcie ulicy.jpg"]  # big.pdf is over the per-file limit
    assert not (tmp_path / "etc").exists()
    notes = [m["text"] for m in await service.store.messages(ix["id"])]
    assert any("big.pdf (too large)" in n for n in notes)

    await adapter.drain()
    assert len(sink.messages) == 1
    ack = sink.messages[0]
    assert f"[{ix['ref']}]" in ack["Subject"] and POLISH in ack["Subject"]
    assert ack["In-Reply-To"] == msg["Message-ID"]
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["To"] == RESIDENT
    assert ix["ref"] in ack.get_content()
    assert sink.envelopes[0][1] == [RESIDENT]


async def test_same_message_twice_is_one_interaction(
    adapter: EmailAdapter, redis: aioredis.Redis, sink: Sink
) -> None:
    msg = resident_mail()
    await asend(adapter, msg)
    await asend(adapter, msg)
    await adapter.drain()
    assert await count_interactions(redis) == 1
    assert len(sink.messages) == 1


async def test_reply_joins_the_interaction(
    adapter: EmailAdapter, service: RoutingService, sink: Sink, redis: aioredis.Redis
) -> None:
    first = resident_mail()
    await asend(adapter, first)
    ix = await ix_of(service, first["Message-ID"])

    by_header = resident_mail(f"Re: {POLISH}", "Uzupełniam: Дякую", In_Reply_To=first["Message-ID"],
                              References=first["Message-ID"])
    by_subject = resident_mail(f"Re: sprawa [{ix['ref']}]", "Jeszcze jedno")
    for msg in (by_header, by_subject):
        await asend(adapter, msg)
    await adapter.drain()

    assert await count_interactions(redis) == 1
    texts = [m["text"] for m in await service.store.messages(ix["id"])]
    assert texts == ["Uzupełniam: Дякую", "Jeszcze jedno"]
    assert len(sink.messages) == 1  # the first mail's acknowledgement only

    # a stranger quoting the (guessable) reference number does not get into the conversation
    stranger = resident_mail(f"Re: [{ix['ref']}]", "hej")
    stranger.replace_header("From", "intruder@example.net")
    await asend(adapter, stranger, sender="intruder@example.net")
    assert await count_interactions(redis) == 2
    assert len(await service.store.messages(ix["id"])) == 2


async def test_agent_reply_reaches_resident_threaded(
    adapter: EmailAdapter, service: RoutingService, sink: Sink, redis: aioredis.Redis,
    store: RoutingStore, cfg: CitylineConfig
) -> None:
    msg = resident_mail()
    await asend(adapter, msg)
    ix = await ix_of(service, msg["Message-ID"])
    await service.agent_login("e1", ready=True)
    assert await Dispatcher(store, cfg).match_round() == 1
    await service.accept("e1", ix["id"])
    await service.agent_message("e1", ix["id"], "Dzień dobry, zgłoszenie przyjęte. Дякуємо!")

    entries = await redis.xrange("cl:events")
    messages = [Event.from_stream(i, f) for i, f in entries if f.get("ev") == "MESSAGE"]
    assert len(messages) == 1
    current = await service.store.interaction(ix["id"])
    await adapter.handle_event(messages[0], current)
    await adapter.handle_event(messages[0], current)  # delivered twice: sent once
    await adapter.drain()

    assert len(sink.messages) == 2  # the acknowledgement, then the reply
    reply = sink.messages[1]
    assert reply["In-Reply-To"] == msg["Message-ID"]
    assert msg["Message-ID"] in reply["References"]
    assert f"[{ix['ref']}]" in reply["Subject"] and reply["Subject"].startswith("Re: ")
    assert reply["To"] == RESIDENT
    assert "Auto-Submitted" not in reply
    assert reply.get_content().strip() == "Dzień dobry, zgłoszenie przyjęte. Дякуємо!"

    # the resident answers the agent's reply: it joins the same conversation
    answer = resident_mail(reply["Subject"], "Dziękuję", In_Reply_To=reply["Message-ID"],
                           References=f"{msg['Message-ID']} {reply['Message-ID']}")
    await asend(adapter, answer)
    assert await count_interactions(redis) == 1
    assert [m["text"] for m in await service.store.messages(ix["id"])][-1] == "Dziękuję"


async def test_reply_to_ended_interaction_opens_new_one_in_same_queue(
    adapter: EmailAdapter, service: RoutingService, sink: Sink, store: RoutingStore,
    cfg: CitylineConfig
) -> None:
    msg = resident_mail()
    await asend(adapter, msg, rcpts=[TAXES])
    old = await ix_of(service, msg["Message-ID"])
    assert old["queue"] == "email-taxes"
    await service.agent_login("e1", ready=True)
    await Dispatcher(store, cfg).match_round()
    await service.accept("e1", old["id"])
    await service.complete("e1", old["id"])
    if (await store.interaction(old["id"]))["state"] == "wrapup":
        await service.wrapup_end("e1", old["id"])
    assert (await store.interaction(old["id"]))["state"] == "closed"

    later = resident_mail(f"Re: {POLISH}", "Problem wrócił", In_Reply_To=msg["Message-ID"])
    await asend(adapter, later, rcpts=[CITY])
    new = await ix_of(service, later["Message-ID"])
    assert new["id"] != old["id"] and new["queue"] == "email-taxes"
    assert f'"follows": "{old["ref"]}"' in new["meta"]
    await adapter.drain()
    assert [f"[{old['ref']}]" in m["Subject"] for m in sink.messages] == [True, False]
    assert f"[{new['ref']}]" in sink.messages[1]["Subject"]


# --- refusals and limits -------------------------------------------------------------------


async def test_relay_attempt_refused_nothing_stored(
    adapter: EmailAdapter, redis: aioredis.Redis, sink: Sink
) -> None:
    for rcpt in ("victim@gmail.com", "kontakt@miasto.example.pl.evil.net", "@miasto.example.pl"):
        with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
            await asend(adapter, resident_mail(), rcpts=[rcpt])
        assert next(iter(exc.value.recipients.values()))[0] in (550, 553)
    assert await count_interactions(redis) == 0
    await adapter.drain()
    assert sink.messages == []
    assert adapter.handler.refused >= 2


async def test_other_mailbox_of_city_domain_goes_to_first_queue(
    adapter: EmailAdapter, service: RoutingService
) -> None:
    msg = resident_mail()
    refused = await asend(adapter, msg, rcpts=["sekretariat@Miasto.Example.PL"])
    assert refused == {}
    assert (await ix_of(service, msg["Message-ID"]))["queue"] == "email"


async def test_too_many_recipients(adapter: EmailAdapter, redis: aioredis.Redis) -> None:
    rcpts = [f"u{i}@miasto.example.pl" for i in range(4)]
    refused = await asend(adapter, resident_mail(), rcpts=rcpts)
    assert refused == {rcpts[3]: (452, b"4.5.3 Too many recipients")}
    assert await count_interactions(redis) == 1


async def test_oversized_mail_refused_552(
    service: RoutingService, sink: Sink, tmp_path: Path, redis: aioredis.Redis
) -> None:
    cfg = email_cfg(sink, max_message_bytes=64 * 1024)
    async with EmailAdapter(service, cfg, tmp_path, env={}) as small:
        big = resident_mail(body="ź" * 100_000)
        # declared with SIZE (smtplib does): refused at MAIL FROM
        with pytest.raises(smtplib.SMTPSenderRefused) as exc:
            await asend(small, big)
        assert exc.value.smtp_code == 552

        # not declared: refused after DATA ran over
        def raw_data() -> tuple[int, bytes]:
            with smtplib.SMTP("127.0.0.1", small.port, timeout=10) as client:
                client.ehlo()
                client.mail(RESIDENT)
                client.rcpt(CITY)
                return client.data(big.as_bytes(policy=policy.SMTP))

        code, _text = await asyncio.to_thread(raw_data)
        assert code == 552
    assert await count_interactions(redis) == 0
    # twenty megabytes against the default 10 MiB limit: refused as soon as it is declared
    default = email_cfg(sink)
    async with EmailAdapter(service, default, tmp_path, env={}) as a:
        huge = resident_mail(body="a" * 70 + "\n")
        raw = huge.as_bytes(policy=policy.SMTP) + b"x" * (20 * 1024 * 1024)
        with pytest.raises(smtplib.SMTPSenderRefused) as exc:
            await asend(a, raw)
        assert exc.value.smtp_code == 552

        # and sent without declaring it: read to its end, discarded, refused
        def undeclared() -> tuple[int, bytes]:
            with smtplib.SMTP("127.0.0.1", a.port, timeout=30) as client:
                client.ehlo()
                client.mail(RESIDENT)
                client.rcpt(CITY)
                line = b"y" * 76 + b"\r\n"
                return client.data(huge.as_bytes(policy=policy.SMTP) + line * 270_000)

        assert (await asyncio.to_thread(undeclared))[0] == 552
    assert await count_interactions(redis) == 0


async def test_connection_limit(service: RoutingService, sink: Sink, tmp_path: Path) -> None:
    async with EmailAdapter(service, email_cfg(sink, max_connections=2), tmp_path, env={}) as a:

        def three() -> int:
            c1 = smtplib.SMTP("127.0.0.1", a.port, timeout=10)
            c2 = smtplib.SMTP("127.0.0.1", a.port, timeout=10)
            try:
                smtplib.SMTP("127.0.0.1", a.port, timeout=10).close()
                return 220
            except smtplib.SMTPConnectError as exc:
                return exc.smtp_code
            finally:
                c1.quit()
                c2.quit()

        assert await asyncio.to_thread(three) == 421
        # the limit is on concurrent connections: once they are gone, mail is taken again
        await asyncio.sleep(0.05)
        assert await asend(a, resident_mail()) == {}


# --- automatic mail: accepted, never acknowledged ------------------------------------------


@pytest.mark.parametrize(
    ("headers", "sender"),
    [
        ({"Auto_Submitted": "auto-replied"}, RESIDENT),
        ({"Precedence": "bulk"}, RESIDENT),
        ({"Precedence": "list", "List_Id": "<news.example.com>"}, RESIDENT),
        ({}, "<>"),  # a bounce: empty return path
    ],
)
async def test_no_ack_to_automatic_mail(
    adapter: EmailAdapter, service: RoutingService, sink: Sink, headers: dict[str, str],
    sender: str
) -> None:
    msg = resident_mail(**headers)
    assert await asend(adapter, msg, sender=sender) == {}
    ix = await ix_of(service, msg["Message-ID"])
    assert '"automatic"' in ix["meta"]
    await adapter.drain()
    assert sink.messages == []


async def test_auto_submitted_no_is_acknowledged(adapter: EmailAdapter, sink: Sink) -> None:
    await asend(adapter, resident_mail(Auto_Submitted="no"))
    await adapter.drain()
    assert len(sink.messages) == 1


# --- hostile content ------------------------------------------------------------------------


MALFORMED = (
    b"From: =?utf-8?B?broken <bad@@example.com>\r\n"
    b"To: kontakt@miasto.example.pl\r\n"
    b"Subject: =?x-unknown?Q?Zg=C5=82oszenie?= \xc5\xbcle \xff\r\n"
    b"Message-ID: <malformed-1@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XYZ"\r\n'
    b"\r\n"
    b"--XYZ\r\n"
    b"Content-Type: text/plain; charset=x-no-such-charset\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"WmfFgm9zemVuaWU=!!!not base64\r\n"
    b"--XYZ\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Tekst \xc5\xbc\xff\xfe po\xc5\x82owy\r\n"
)  # no closing boundary


async def test_malformed_mime_accepted_safely(
    adapter: EmailAdapter, service: RoutingService, caplog: pytest.LogCaptureFixture
) -> None:
    assert await asend(adapter, MALFORMED) == {}
    ix = await ix_of(service, "<malformed-1@example.com>")
    assert "Tekst ż" in ix["body"] and "łowy" in ix["body"]
    assert "defects" in caplog.text
    # and the channel still works for the next resident
    msg = resident_mail()
    await asend(adapter, msg)
    assert (await ix_of(service, msg["Message-ID"]))["subject"] == POLISH


async def test_garbage_bytes_accepted_safely(adapter: EmailAdapter, redis: aioredis.Redis) -> None:
    assert await asend(adapter, b"\x00\xff\xfe garbage\r\n\r\n\x80\x81") == {}
    assert await count_interactions(redis) == 1


async def test_html_with_script_stored_as_text(
    adapter: EmailAdapter, service: RoutingService
) -> None:
    msg = resident_mail()
    msg.set_content(
        "<html><head><style>p{color:red}</style><script>alert('x')</script></head>"
        "<body><p>Dziura &amp; kałuża</p><script>document.cookie</script>"
        "<img src=x onerror=alert(1)><p>ул. Шевченка</p></body></html>",
        subtype="html",
    )
    await asend(adapter, msg)
    body = (await ix_of(service, msg["Message-ID"]))["body"]
    assert body == "Dziura & kałuża\n\nул. Шевченка"


def test_html_to_text_and_safe_names() -> None:
    assert html_to_text("a<br>b<SCRIPT>x</SCRIPT><p>c</p>") == "a\nb\nc"
    assert safe_filename("../../etc/passwd", "f") == "passwd"
    assert safe_filename("..\\..\\boot.ini", "f") == "boot.ini"
    assert safe_filename(".htaccess", "f") == "htaccess"
    assert safe_filename("a/\x00b;rm -rf.txt", "f") == "_b_rm -rf.txt"
    assert safe_filename("", "attachment-1") == "attachment-1"
    assert len(safe_filename("ż" * 300 + ".pdf", "f")) == 100


async def test_router_refusal_is_temporary_451_and_smarthost_down_loses_nothing(
    service: RoutingService, sink: Sink, tmp_path: Path, redis: aioredis.Redis,
    caplog: pytest.LogCaptureFixture
) -> None:
    bad = email_cfg(sink, addresses={CITY: "no-such-queue"})
    async with EmailAdapter(service, bad, tmp_path, env={}) as a:
        with pytest.raises(smtplib.SMTPDataError) as exc:
            await asend(a, resident_mail())
        assert exc.value.smtp_code == 451  # the sender's server keeps it and retries
    assert await count_interactions(redis) == 0

    down = email_cfg(sink, smarthost={"host": "127.0.0.1", "port": 1, "timeout_s": 2})
    async with EmailAdapter(service, down, tmp_path, env={}) as a:
        msg = resident_mail()
        assert await asend(a, msg) == {}
        await a.drain()
    assert (await ix_of(service, msg["Message-ID"]))["subject"] == POLISH
    assert "failed" in caplog.text and sink.messages == []
