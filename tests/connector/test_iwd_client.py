"""IWDClient against the sandbox IWD: idempotency, attachments, errors, retries and secrets."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
import trustme
from starlette.applications import Starlette

from connector.errors import IWDRejected, IWDUnavailable
from connector.iwd import is_payload_fault
from connector.iwd.retry import parse_retry_after
from connector.sandbox import SandboxIWD, control_of, create_app
from tests.peers.sandbox import (
    asgi_client,
    inbound_payload,
    make_attachment,
    make_item,
    raw_http,
    real_client,
    status_body,
)


async def wait_until(condition: Callable[[], bool], what: str, within: float = 5.0) -> None:
    """Polls with a deadline (the server runs in another thread)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.05)


def _answers(sandbox: SandboxIWD) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", sandbox.port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture
def app() -> Starlette:
    return create_app(":memory:")


@pytest.fixture
def live(sandbox_iwd: SandboxIWD) -> SandboxIWD:
    """The session's real sandbox (conftest), emptied and well-behaved for each test."""
    return sandbox_iwd


@pytest.fixture
def sandbox(sandbox_iwd_server: SandboxIWD) -> SandboxIWD:
    return sandbox_iwd_server


# ---------------------------------------------------------------- creating items


async def test_create_then_replay_returns_same_id(app: Starlette) -> None:
    """The first POST creates (201), a replay of the externalId answers 200 with the same id."""
    async with asgi_client(app) as iwd:
        first = await iwd.create_email(inbound_payload(1))
        again = await iwd.create_email(inbound_payload(1))
        stored = await iwd.get_email(first.id)
    assert first.created and not again.created
    assert again.id == first.id
    assert first.request_id
    assert stored["externalId"] == "ext-1" and stored["subject"] == "Question 1"
    assert control_of(app).store.count_items() == 1


async def test_concurrent_duplicate_posts_create_one_item(live: SandboxIWD) -> None:
    """Twenty simultaneous POSTs of one externalId over real HTTP leave exactly one item."""
    async with real_client(live) as iwd:
        results = await asyncio.gather(*(iwd.create_email(inbound_payload(7)) for _ in range(20)))
    assert len({r.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert live.control.store.count_items() == 1


async def test_attachment_round_trip_with_non_ascii_filename(app: Starlette) -> None:
    """Uploaded bytes (streamed in chunks) download identical, with the Unicode file name intact."""
    data = bytes(range(256)) * 1000  # several upload chunks
    async with asgi_client(app) as iwd:
        attachment_id = await iwd.upload_attachment(
            data, filename="Rechnung März €.pdf", content_type="application/pdf", idempotency_key="att-key-2"
        )
        got = await iwd.download_attachment(attachment_id)
        payload = inbound_payload(
            2,
            item=make_item(2, attachments=(make_attachment(data, "Rechnung März €.pdf", "application/pdf"),)),
            attachment_ids=(attachment_id,),
        )
        created = await iwd.create_email(payload)
        stored = await iwd.get_email(created.id)
    assert got.data == data
    assert got.filename == "Rechnung März €.pdf"
    assert got.content_type == "application/pdf"
    assert stored["attachments"][0]["attachmentId"] == attachment_id


async def test_a_retried_upload_sends_its_key_and_gets_the_stored_attachment(live: SandboxIWD) -> None:
    """The first upload outlasts the timeout but is stored; the retry, same key, gets that attachment."""
    live.control.faults.set(latency_seconds=1.0, latency_next=1)
    async with real_client(live, timeout_seconds=0.3) as iwd:
        attachment_id = await iwd.upload_attachment(
            b"%PDF-1.4 invoice", filename="invoice.pdf", content_type="application/pdf", idempotency_key="k-1"
        )
    await wait_until(lambda: live.control.requests.in_flight == 0, "the slow upload finished")
    assert live.control.requests.count("POST", "/iwd/v3/emails/attachments") == 2
    assert [a.id for a in live.control.store.list_attachments()] == [attachment_id]


async def test_item_with_unknown_attachment_is_rejected_naming_the_field(app: Starlette) -> None:
    """An item that references an attachment IWD never received is refused: 400, field named."""
    item = make_item(3, attachments=(make_attachment(b"abc"),))
    async with asgi_client(app) as iwd:
        with pytest.raises(IWDRejected) as caught:
            await iwd.create_email(inbound_payload(3, item=item, attachment_ids=("att_missing",)))
    assert caught.value.status == 400
    assert "attachments[0].attachmentId" in str(caught.value)
    assert is_payload_fault(caught.value)
    assert control_of(app).store.count_items() == 0


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.update({"from": {"name": "No Address"}}), "from.address: required"),
        (lambda b: b.pop("receivedAt"), "receivedAt: required"),
        (lambda b: b.update({"importance": "urgent"}), "importance:"),
        (lambda b: b.update({"receivedAt": "2026-11-20T09:00:00"}), "receivedAt:"),  # no offset
        (lambda b: b.update({"mailboxid": "x"}), "mailboxid: not a field of the profile"),
    ],
    ids=["missing-nested", "missing", "invalid-enum", "naive-timestamp", "unknown-field"],
)
async def test_profile_violation_is_rejected_naming_the_field(
    app: Starlette, mutate: object, field: str
) -> None:
    """A body that breaks the profile gets 400 with the field path, and the client raises IWDRejected."""
    body = inbound_payload(4)
    mutate(body)  # type: ignore[operator]
    async with asgi_client(app) as iwd:
        with pytest.raises(IWDRejected) as caught:
            await iwd.create_email(body)
    assert caught.value.status == 400
    assert caught.value.iwd_code == "invalid_field"
    assert field in str(caught.value)
    assert caught.value.request_id


async def test_get_unknown_item_is_rejected_with_404(app: Starlette) -> None:
    """GET of an id IWD does not know raises IWDRejected with status 404 (not a payload fault)."""
    async with asgi_client(app) as iwd:
        with pytest.raises(IWDRejected) as caught:
            await iwd.get_email("em_nope")
    assert caught.value.status == 404
    assert not is_payload_fault(caught.value)


# ---------------------------------------------------------------- retries (real HTTP)


async def test_two_503s_are_retried_then_the_call_succeeds(live: SandboxIWD) -> None:
    """The sandbox fails the next 2 requests with 503; the client retries and the third POST lands."""
    live.control.faults.set(fail_next=2, fail_status=503)
    async with real_client(live) as iwd:
        result = await iwd.create_email(inbound_payload(10))
    assert result.created
    assert live.control.requests.count("POST", "/iwd/v3/emails") == 3
    assert live.control.store.count_items() == 1


async def test_retry_after_is_honoured_on_429(live: SandboxIWD) -> None:
    """A 429 with Retry-After: 1 makes the client wait about a second, far longer than its own backoff."""
    live.control.faults.set(fail_next=1, fail_status=429, retry_after=1)
    async with real_client(live) as iwd:
        started = time.monotonic()
        await iwd.create_email(inbound_payload(11))
        elapsed = time.monotonic() - started
    assert 0.95 <= elapsed < 3.0
    assert live.control.requests.count("POST", "/iwd/v3/emails") == 2


async def test_retry_after_longer_than_budget_gives_up_at_once(live: SandboxIWD) -> None:
    """If IWD asks for a wait beyond the budget, the client stops now with IWDUnavailable (429)."""
    live.control.faults.set(fail_next=1, fail_status=429, retry_after=30)
    async with real_client(live, max_retry_seconds=2) as iwd:
        started = time.monotonic()
        with pytest.raises(IWDUnavailable) as caught:
            await iwd.create_email(inbound_payload(12))
    assert time.monotonic() - started < 1.0
    assert caught.value.status == 429
    assert caught.value.context["retry_after_seconds"] == 30


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    """Retry-After is parsed as delta-seconds or as an HTTP date; garbage means 'not given'."""
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize("mode", ["refuse", "503"])
async def test_outage_shorter_than_budget_is_ridden_out(live: SandboxIWD, mode: str) -> None:
    """IWD down for 2 s (connections refused, or answering 503): the call succeeds once it is back."""
    async with real_client(live, max_retry_seconds=10) as iwd:
        await iwd.ping()  # a pooled connection exists before the outage
        if mode == "refuse":
            live.down_for(2.0)
        else:
            live.control.faults.set(down_seconds=2.0)
        started = time.monotonic()
        result = await iwd.create_email(inbound_payload(13))
        elapsed = time.monotonic() - started
    assert result.created
    assert 1.5 <= elapsed < 6.0
    assert live.control.store.count_items() == 1


async def test_outage_longer_than_budget_raises_unavailable(live: SandboxIWD) -> None:
    """With a 1 s budget and a 2 s outage, the call gives up with IWDUnavailable inside the budget."""
    async with real_client(live, max_retry_seconds=1) as iwd:
        live.down_for(2.0)
        started = time.monotonic()
        with pytest.raises(IWDUnavailable) as caught:
            await iwd.create_email(inbound_payload(14))
        elapsed = time.monotonic() - started
    assert elapsed < 1.5
    assert "cannot reach IWD" in str(caught.value)
    await wait_until(lambda: _answers(live), "the sandbox is back after its outage")


async def test_timeout_is_retried_and_creates_one_item(live: SandboxIWD) -> None:
    """The first POST outlasts the client timeout; the retry succeeds and idempotency keeps one item."""
    live.control.faults.set(latency_seconds=1.0, latency_next=1)
    async with real_client(live, timeout_seconds=0.3) as iwd:
        result = await iwd.create_email(inbound_payload(15))
    assert live.control.requests.count("POST", "/iwd/v3/emails") == 2
    # the abandoned slow request still finishes server-side; it must not add an item
    await wait_until(lambda: live.control.requests.in_flight == 0, "the slow request finished")
    assert live.control.store.count_items() == 1
    assert live.control.store.get_item(result.id) is not None


async def test_ping_does_not_retry(live: SandboxIWD) -> None:
    """ping is one attempt: a 503 surfaces at once as IWDUnavailable."""
    live.control.faults.set(fail_next=1)
    async with real_client(live, max_retry_seconds=30) as iwd:
        with pytest.raises(IWDUnavailable):
            await iwd.ping()
    assert live.control.requests.count("GET", "/iwd/v3/emails/mailboxes") == 1


# ---------------------------------------------------------------- auth, TLS and secrets


async def test_wrong_key_is_rejected_quickly_and_never_shown(
    app: Starlette, caplog: pytest.LogCaptureFixture
) -> None:
    """401 raises IWDRejected without retries; the key appears in no message, repr, context or log."""
    secret = "wrong-key-7f3a9c1e5b"
    caplog.set_level(logging.DEBUG)
    async with asgi_client(app, api_key=secret, max_retry_seconds=30) as iwd:
        started = time.monotonic()
        with pytest.raises(IWDRejected) as caught:
            await iwd.create_email(inbound_payload(20))
        assert time.monotonic() - started < 1.0
        assert secret not in repr(iwd)
    exc = caught.value
    assert exc.status == 401 and exc.iwd_code == "unauthorized"
    assert not is_payload_fault(exc)
    for text in (str(exc), repr(exc), repr(exc.args), repr(exc.context), caplog.text):
        assert secret not in text
    assert control_of(app).requests.count("POST", "/iwd/v3/emails") == 1


@pytest.fixture(scope="module")
def tls_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SandboxIWD, Path]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    where = tmp_path_factory.mktemp("tls")
    ca_file, cert_file, key_file = where / "ca.pem", where / "cert.pem", where / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    with SandboxIWD(
        ssl_certfile=str(cert_file), ssl_keyfile=str(key_file), ssl_ca_file=str(ca_file)
    ) as running:
        yield running, ca_file


async def test_tls_is_verified_by_default(tls_sandbox: tuple[SandboxIWD, Path]) -> None:
    """An untrusted certificate fails at once (no retry loop) and says which setting fixes it."""
    sandbox, _ = tls_sandbox
    async with real_client(sandbox, max_retry_seconds=30) as iwd:
        started = time.monotonic()
        with pytest.raises(IWDUnavailable) as caught:
            await iwd.create_email(inbound_payload(21))
    assert time.monotonic() - started < 2.0
    assert "TLS certificate verification failed" in str(caught.value)
    assert "iwd.ca_file" in str(caught.value)


async def test_tls_with_configured_ca_file_succeeds(tls_sandbox: tuple[SandboxIWD, Path]) -> None:
    """With iwd.ca_file naming the CA, the same server is trusted."""
    sandbox, ca_file = tls_sandbox
    async with real_client(sandbox, ca_file=str(ca_file)) as iwd:
        result = await iwd.create_email(inbound_payload(22))
    assert result.created


# ---------------------------------------------------------------- mailboxes and outbound


async def test_mailbox_status_and_config_round_trip(app: Starlette) -> None:
    """PUT status and PUT config come back from GET /emails/mailboxes as sent."""
    config = {
        "id": "support",
        "address": "support@example.com",
        "provider": "imap",
        "imap": {"host": "imap.example.com", "port": 993, "username": "support"},
    }
    async with asgi_client(app) as iwd:
        await iwd.put_mailbox_config("support", config)
        await iwd.put_mailbox_status("support", status_body("degraded", backlog=4))
        boxes = await iwd.list_mailboxes()
    [box] = boxes
    assert box["mailboxId"] == "support"
    assert box["config"] == config
    assert box["status"]["inbound"]["state"] == "degraded"
    assert box["status"]["inbound"]["backlog"] == 4
    assert box["status"]["outbound"]["state"] == "disabled"


async def test_invalid_status_is_refused_before_sending(app: Starlette) -> None:
    """A state outside the profile raises ValueError naming the field; nothing is sent."""
    async with asgi_client(app) as iwd:
        with pytest.raises(ValueError, match=r"inbound\.state"):
            await iwd.put_mailbox_status("support", status_body("sleeping"))
    assert control_of(app).requests.count("PUT") == 0


async def test_config_with_secret_key_is_refused_by_client_and_sandbox(app: Starlette) -> None:
    """A secret-named key never leaves the client; sent anyway, the sandbox answers 400 naming it."""
    config = {"address": "a@example.com", "imap": {"host": "h", "password": "hunter2"}}
    async with asgi_client(app) as iwd:
        with pytest.raises(ValueError, match=r"imap\.password") as caught:
            await iwd.put_mailbox_config("support", config)
    assert "hunter2" not in str(caught.value)
    assert control_of(app).requests.count("PUT") == 0
    async with raw_http(app) as http:
        response = await http.put("/iwd/v3/emails/mailboxes/support", json=config)
    assert response.status_code == 400
    assert response.json()["message"].startswith("imap.password:")
    assert "hunter2" not in response.text


async def test_outbound_queue_list_and_patch(app: Starlette) -> None:
    """An agent's queued reply is listed, patched to sending then sent, and leaves the queue."""
    async with asgi_client(app) as iwd:
        inbound = await iwd.create_email(inbound_payload(30))
        async with raw_http(app) as http:
            response = await http.post(
                "/iwd/v3/emails",
                json={
                    "direction": "outbound",
                    "mailboxId": "support",
                    "status": "queued",
                    "to": [{"address": "customer@example.net"}],
                    "subject": "Re: Question 30",
                    "textBody": "Here is the answer.",
                    "inReplyToItemId": inbound.id,
                },
            )
        assert response.status_code == 201
        reply_id = response.json()["id"]
        [queued] = await iwd.list_outbound()
        assert queued["id"] == reply_id and queued["inReplyToItemId"] == inbound.id
        await iwd.patch_email(reply_id, {"status": "sending"})
        assert await iwd.list_outbound() == []
        sent = await iwd.patch_email(
            reply_id,
            {"status": "sent", "sentAt": datetime.now(UTC).isoformat(), "messageId": "<r1@example.com>"},
        )
        assert sent["status"] == "sent" and sent["messageId"] == "<r1@example.com>"
        assert [i["id"] for i in await iwd.list_outbound(status="sent")] == [reply_id]
        with pytest.raises(IWDRejected) as caught:
            await iwd.patch_email(reply_id, {"status": "sending"})
    assert caught.value.iwd_code == "invalid_transition"


async def test_paging_walks_all_250_items_in_order(app: Starlette) -> None:
    """250 items come back over three pages of 100, oldest first, each exactly once."""
    store = control_of(app).store
    for n in range(250):
        store.create_item(inbound_payload(n), external_id=f"ext-{n}")
    async with asgi_client(app) as iwd:
        first, cursor = await iwd.list_emails(limit=100)
        every = [item["externalId"] async for item in iwd.iter_emails(page_size=100)]
        other, end = await iwd.list_emails(mailbox_id="elsewhere")
    assert len(first) == 100 and cursor
    assert every == [f"ext-{n}" for n in range(250)]
    assert control_of(app).requests.count("GET", "/iwd/v3/emails") == 1 + 3 + 1
    assert other == [] and end is None
