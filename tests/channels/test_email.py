"""The e-mail channel end to end: our aiosmtpd server on 127.0.0.1:0 driven by a real smtplib
client, the real router on the real Redis, and a tiny aiosmtpd sink of the test's own as the
smarthost that records what we send (or is not there yet, or refuses).

What we send goes through the channel's persistent outbox: tests wait for its delivery records
(`service.deliveries`) or for `adapter.drain()`, never for a task of the adapter's."""

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
import yaml
from aiosmtpd.smtp import SMTP, Envelope, Session

from channels.email.adapter import EmailAdapter
from channels.email.outbound import tagged_subject
from channels.email.parse import html_to_text, safe_filename
from queues.embedded import free_tcp_port
from queues.store import RoutingStore
from router.config import CitylineConfig, load_config
from router.config_email import EmailConfig
from router.dispatcher import Dispatcher
from router.models import Channel, Event, IntakeRequest
from router.outbox import OutboundJob, submit
from router.service import RoutingService
from tests.routing_fixtures import eventually

CONFIG = Path(__file__).with_name("email_config.yaml")
CITY = "kontakt@miasto.example.pl"
TAXES = "podatki@miasto.example.pl"
RESIDENT = "lukasz.zolw@example.com"
POLISH = "Zażółć gęślą jaźń: dziura w jezdni na ul. Żwirki i Wigury 5"
UKRAINIAN = "Добрий день! Ґанок біля під'їзду зламаний, їжак і є"


class Sink:
    """The smarthost: records every message it is given; refuses the recipients in `refuse`
    with the reply given there (e.g. "550 5.1.1 No such user")."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refuse: dict[str, str] = {}
        self.port = 0

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        msg = message_from_bytes(raw, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        self.envelopes.append((envelope.mail_from or "", list(envelope.rcpt_tos)))
        return "250 OK"


async def serve_sink(handler: Sink, port: int = 0) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.test", loop=loop), "127.0.0.1", port
    )
    handler.port = server.sockets[0].getsockname()[1]
    return server


@pytest.fixture
def cfg(tmp_path_factory: pytest.TempPathFactory) -> CitylineConfig:
    """email_config.yaml, and a web form queue: its requests may be answered by e-mail."""
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    data["queues"]["webform"] = {
        "channel": "webform", "labels": {"pl": "Formularz", "en": "Form", "uk": "Форма"},
        "skills": {"general": 1}, "service_level": {"target_pct": 80, "threshold_s": 3600},
        "wrapup_s": 0,
    }
    path = tmp_path_factory.mktemp("email-city") / "city.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_config(path, env={})


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    handler = Sink()
    server = await serve_sink(handler)
    yield handler
    server.close()
    await server.wait_closed()


# Tries come quickly in tests; `attempts` high enough for a smarthost that comes up late.
FAST_RETRY = {"attempts": 50, "backoff_s": 0.05, "backoff_max_s": 0.2}


def email_cfg(sink: Sink | None, **overrides: Any) -> EmailConfig:
    data: dict[str, Any] = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": 0,
        "domains": ["miasto.example.pl"],
        "addresses": {CITY: "email", TAXES: "email-taxes"},
        "max_recipients": 3,
        "attachments": {"max_file_bytes": 1000, "max_message_bytes": 1500, "max_count": 3},
        "smarthost": {"host": "127.0.0.1", "port": sink.port if sink else 25, "timeout_s": 5},
        "retry": FAST_RETRY,
    }
    data.update(overrides)
    return EmailConfig.model_validate(data)


def make_adapter(service: RoutingService, cfg: EmailConfig, data_dir: Path) -> EmailAdapter:
    return EmailAdapter(service, cfg, data_dir, env={}, outbox_tick_s=0.05)


@pytest.fixture
async def adapter(
    service: RoutingService, sink: Sink, tmp_path: Path
) -> AsyncIterator[EmailAdapter]:
    async with make_adapter(service, email_cfg(sink), tmp_path) as a:
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


async def delivery(service: RoutingService, ix_id: str, item: str) -> dict[str, Any]:
    """The delivery record the agent sees for `item` ("ack" or a message index)."""
    return (await service.deliveries(ix_id)).get(item, {})


async def wait_status(service: RoutingService, ix_id: str, item: str, status: str,
                      within_s: float = 5.0) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        record = await delivery(service, ix_id, item)
        return record if record.get("status") == status else None

    return await eventually(reached, within_s)


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

    record = await wait_status(service, ix["id"], "ack", "sent")
    assert record["channel"] == "email" and record["attempts"] == 1 and record["to"] == RESIDENT
    assert len(sink.messages) == 1
    ack = sink.messages[0]
    assert f"[{ix['ref']}]" in ack["Subject"] and POLISH in ack["Subject"]
    assert ack["In-Reply-To"] == msg["Message-ID"]
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["Message-ID"].endswith("@miasto.example.pl>")
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
    store: RoutingStore, cfg: CitylineConfig, tmp_path: Path
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
    # ... and once more to another process's adapter (its consumer took the event over)
    await make_adapter(service, email_cfg(sink), tmp_path).handle_event(messages[0], current)
    record = await wait_status(service, ix["id"], "1", "sent")  # agent message no. 1
    assert record["attempts"] == 1
    await asyncio.sleep(0.2)  # nothing more comes

    assert len(sink.messages) == 2  # the acknowledgement, then the reply
    reply = next(m for m in sink.messages if "Auto-Submitted" not in m)
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
    async with make_adapter(service, cfg, tmp_path) as small:
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
    async with make_adapter(service, default, tmp_path) as a:
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
    async with make_adapter(service, email_cfg(sink, max_connections=2), tmp_path) as a:

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
    assert await service.deliveries(ix["id"]) == {}  # nothing queued for it at all
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


async def test_router_refusal_is_temporary_451(
    service: RoutingService, sink: Sink, tmp_path: Path, redis: aioredis.Redis
) -> None:
    bad = email_cfg(sink, addresses={CITY: "no-such-queue"})
    async with make_adapter(service, bad, tmp_path) as a:
        with pytest.raises(smtplib.SMTPDataError) as exc:
            await asend(a, resident_mail())
        assert exc.value.smtp_code == 451  # the sender's server keeps it and retries
    assert await count_interactions(redis) == 0


# --- the outbox: retried, persistent, once -------------------------------------------------


async def test_smarthost_down_then_up_ack_retried_and_sent_once(
    service: RoutingService, tmp_path: Path
) -> None:
    later = Sink()
    port = free_tcp_port()  # nothing listens there yet: the city's MTA is down
    cfg = email_cfg(None, smarthost={"host": "127.0.0.1", "port": port, "timeout_s": 2})
    async with make_adapter(service, cfg, tmp_path) as a:  # starting needs no smarthost
        msg = resident_mail()
        assert await asend(a, msg) == {}  # the resident's mail is taken all the same
        ix = await ix_of(service, msg["Message-ID"])
        record = await wait_status(service, ix["id"], "ack", "retrying")
        assert str(port) in record["error"] and record["to"] == RESIDENT

        server = await serve_sink(later, port)  # the MTA is back
        try:
            record = await wait_status(service, ix["id"], "ack", "sent")
            await asyncio.sleep(0.3)
        finally:
            server.close()
            await server.wait_closed()
    assert record["attempts"] >= 2 and record["error"] == ""
    assert len(later.messages) == 1 and f"[{ix['ref']}]" in later.messages[0]["Subject"]


async def test_ack_survives_a_restart(service: RoutingService, tmp_path: Path) -> None:
    later = Sink()
    port = free_tcp_port()
    cfg = email_cfg(None, smarthost={"host": "127.0.0.1", "port": port, "timeout_s": 2})
    async with make_adapter(service, cfg, tmp_path) as first:
        msg = resident_mail()
        await asend(first, msg)
        ix = await ix_of(service, msg["Message-ID"])
        await wait_status(service, ix["id"], "ack", "retrying")
    # the process is gone; the acknowledgement is not
    assert (await delivery(service, ix["id"], "ack"))["status"] == "retrying"
    server = await serve_sink(later, port)
    try:
        async with make_adapter(service, cfg, tmp_path):  # a new process, same Redis
            await wait_status(service, ix["id"], "ack", "sent")
            await asyncio.sleep(0.3)
    finally:
        server.close()
        await server.wait_closed()
    assert len(later.messages) == 1 and later.messages[0]["In-Reply-To"] == msg["Message-ID"]


async def test_refused_recipient_fails_at_once_4xx_is_retried(
    adapter: EmailAdapter, service: RoutingService, sink: Sink
) -> None:
    sink.refuse = {RESIDENT: "550 5.1.1 No such user", "busy@example.com": "451 4.3.0 Later"}
    gone = resident_mail()
    await asend(adapter, gone)
    ix = await ix_of(service, gone["Message-ID"])
    record = await wait_status(service, ix["id"], "ack", "failed")
    assert record["attempts"] == 1 and "550" in record["error"]

    busy = resident_mail()
    busy.replace_header("From", "busy@example.com")
    await asend(adapter, busy, sender="busy@example.com")
    other = await ix_of(service, busy["Message-ID"])
    record = await wait_status(service, other["id"], "ack", "retrying")
    assert "451" in record["error"]
    sink.refuse = {}
    await wait_status(service, other["id"], "ack", "sent")
    assert [m["To"] for m in sink.messages] == ["busy@example.com"]


# --- another channel's answers by e-mail ----------------------------------------------------


async def webform_request(service: RoutingService, contact: str = RESIDENT) -> dict[str, str]:
    res = await service.create_interaction(IntakeRequest(
        channel=Channel.webform, queue="webform", resident=contact,
        subject="Nieczynna latarnia", body="Latarnia przy ul. Lipowej 3 nie świeci",
        meta={"contact": contact},
    ))
    return await service.store.interaction(res.id)


async def answer_by_email(service: RoutingService, ix: dict[str, str], item: str = "1",
                          **payload: str) -> None:
    """What the web form adapter does: a job into the e-mail outbox, with no more than this."""
    job = OutboundJob(ix_id=ix["id"], item=item, to=ix["resident"],
                      text="Dzień dobry, latarnię naprawimy jutro.",
                      payload={"ref": ix["ref"], "language": "pl", **payload})
    assert await submit(service.channel_state("email"), job)


async def test_another_channels_answer_is_sent_as_a_proper_mail(
    adapter: EmailAdapter, service: RoutingService, sink: Sink
) -> None:
    wf = await webform_request(service)
    await answer_by_email(service, wf)
    record = await wait_status(service, wf["id"], "1", "sent")
    assert record["channel"] == "email" and record["to"] == RESIDENT
    assert len(sink.messages) == 1
    mail = sink.messages[0]
    assert mail["Subject"] == f"[{wf['ref']}] Miasto Testowe: odpowiedź na zgłoszenie"
    assert mail["To"] == RESIDENT and sink.envelopes[0][1] == [RESIDENT]
    assert mail["From"].addresses[0].addr_spec == CITY
    assert mail["Message-ID"].endswith("@miasto.example.pl>")
    assert "Auto-Submitted" not in mail and "In-Reply-To" not in mail  # a person's answer
    assert mail.get_content().strip() == "Dzień dobry, latarnię naprawimy jutro."

    # with a subject of its own, and in the resident's language
    await answer_by_email(service, wf, item="2", subject="Latarnia", language="en")
    await wait_status(service, wf["id"], "2", "sent")
    assert sink.messages[1]["Subject"] == f"Latarnia [{wf['ref']}]"
    # a contact that is no e-mail address fails for good, at once
    phone = await webform_request(service, contact="+48600100200")
    await answer_by_email(service, phone)
    record = await wait_status(service, phone["id"], "1", "failed")
    assert record["attempts"] == 1 and "not an e-mail address" in record["error"]


async def test_reply_to_a_webform_answer_joins_it_or_follows_it(
    adapter: EmailAdapter, service: RoutingService, sink: Sink, store: RoutingStore,
    cfg: CitylineConfig, redis: aioredis.Redis
) -> None:
    wf = await webform_request(service)
    await answer_by_email(service, wf)
    await wait_status(service, wf["id"], "1", "sent")
    answer = sink.messages[0]

    # the request is still open: the resident's reply is part of it, for the same agent
    reply = resident_mail(f"Re: {answer['Subject']}", "Dziękuję, czekam",
                          In_Reply_To=answer["Message-ID"], References=answer["Message-ID"])
    assert await asend(adapter, reply) == {}
    # a client that dropped the threading headers: the reference number in the subject
    bare = resident_mail(f"Re: {answer['Subject']}", "Jeszcze zdjęcie wyślę")
    await asend(adapter, bare)
    assert await count_interactions(redis) == 1
    texts = [m["text"] for m in await service.store.messages(wf["id"])]
    assert texts == ["Dziękuję, czekam", "Jeszcze zdjęcie wyślę"]
    assert (await delivery(service, wf["id"], "ack")) == {}  # no acknowledgement for those

    # closed: a reply opens a new e-mail interaction that follows the request
    await service.agent_login("e1", ready=True)
    assert await Dispatcher(store, cfg).match_round() == 1
    await service.accept("e1", wf["id"])
    await service.complete("e1", wf["id"])
    if (await store.interaction(wf["id"]))["state"] == "wrapup":
        await service.wrapup_end("e1", wf["id"])
    late = resident_mail(f"Re: {answer['Subject']}", "Znowu nie świeci",
                         In_Reply_To=answer["Message-ID"])
    await asend(adapter, late, rcpts=[TAXES])
    new = await ix_of(service, late["Message-ID"])
    assert new["channel"] == "email" and new["queue"] == "email-taxes"  # the mailbox's queue
    assert f'"follows": "{wf["ref"]}"' in new["meta"]
    ack = await wait_status(service, new["id"], "ack", "sent")
    assert ack["to"] == RESIDENT

    # a stranger quoting the reference number gets a new interaction of their own
    stranger = resident_mail(f"Re: [{wf['ref']}]", "hej")
    stranger.replace_header("From", "intruder@example.net")
    await asend(adapter, stranger, sender="intruder@example.net")
    other = await ix_of(service, stranger["Message-ID"])
    assert "follows" not in other["meta"]


async def test_subject_reference_of_a_contact_never_mailed_opens_a_new_one(
    adapter: EmailAdapter, service: RoutingService, redis: aioredis.Redis
) -> None:
    wf = await webform_request(service)  # answered on the status page only, never by mail
    msg = resident_mail(tagged_subject("Latarnia", wf["ref"]), "Czy jest coś nowego?")
    await asend(adapter, msg)
    assert await count_interactions(redis) == 2
    assert await service.store.messages(wf["id"]) == []


# --- several processes ------------------------------------------------------------------------


async def test_same_reply_to_two_processes_joins_once(
    service: RoutingService, sink: Sink, tmp_path: Path
) -> None:
    async with make_adapter(service, email_cfg(sink), tmp_path) as one, \
            make_adapter(service, email_cfg(sink), tmp_path) as two:
        first = resident_mail()
        await asend(one, first)
        ix = await ix_of(service, first["Message-ID"])
        reply = resident_mail(f"Re: {POLISH}", "Uzupełniam", In_Reply_To=first["Message-ID"])

        # the sender's server lost our answer and tries the other MX at the same moment
        results = await asyncio.gather(asend(one, reply), asend(two, reply),
                                       return_exceptions=True)
        for result, again in zip(results, (one, two), strict=True):
            if isinstance(result, smtplib.SMTPDataError):
                assert result.smtp_code == 451  # "being added right now": it tries later
                assert await asend(again, reply) == {}
            else:
                assert result == {}
        assert await asend(two, reply) == {}  # and once more, later
        assert await asend(one, reply) == {}
        texts = [m["text"] for m in await service.store.messages(ix["id"])]
        assert texts == ["Uzupełniam"]
        # both answered with the conversation's reference number
        def refs() -> list[str]:
            with smtplib.SMTP("127.0.0.1", two.port, timeout=10) as client:
                client.ehlo()
                client.mail(RESIDENT)
                client.rcpt(CITY)
                code, text = client.data(reply.as_bytes(policy=policy.SMTP))
                return [str(code), text.decode()]

        code, text = await asyncio.to_thread(refs)
        assert code == "250" and text.endswith(ix["ref"])
        await one.drain()
    assert len(sink.messages) == 1  # the first mail's acknowledgement, once


async def test_start_with_the_defaults_needs_no_smarthost(
    service: RoutingService, tmp_path: Path
) -> None:
    """`enabled: true` with the default smarthost (127.0.0.1:25, the city's own MTA) starts
    whether that MTA runs or not: it is first met when something is to be sent."""
    cfg = EmailConfig.model_validate({"enabled": True, "port": 0,
                                      "addresses": {"kontakt@nowygrod.example.pl": "email"}})
    assert (cfg.smarthost.host, cfg.smarthost.port) == ("127.0.0.1", 25)
    assert (cfg.retry.attempts, cfg.retry.backoff_s, cfg.retry.backoff_max_s) == (20, 5.0, 900.0)
    async with make_adapter(service, cfg, tmp_path) as a:
        assert a.port > 0 and await a.outbox.pending() == 0
