"""Regressions: resend after uncertain/refused DATA, restart after partial acceptance, one bad reply
or one broken mailbox never blocking others, rows never left `sending`, compare-and-set finishes,
reserved reply ids, the OAuth scope by kind, and no leaked SMTP connection."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import httpx
import pytest
from starlette.applications import Starlette

from connector.api.app import ApiContext
from connector.config import MailboxSettings, OAuthSettings
from connector.errors import ProviderUnavailable
from connector.models import SendReceipt
from connector.outbox.api import EXTRA_KEY, reply_routes
from connector.outbox.dispatch import Outcome
from connector.outbox.request import parse_request
from connector.store.outbox import OutboxConflict, SqlOutbox
from connector.store.sql import SqlStore
from connector.store.types import OutboxEntry, OutboxState
from providers.oauth import IMAP_SCOPE_GOOGLE, build_token_provider
from providers.smtp import SmtpSender
from tests.connector.outbox.conftest import settings_for
from tests.connector.outbox.smtp_peer import Rules, SmtpPeer
from tests.connector.outbox.test_outbox_store import T0, entry
from tests.connector.outbox.test_sending import reply
from tests.connector.test_store import store_url  # noqa: F401  (the sqlite/postgresql fixture)

TOKEN = "api-token-for-tests"


async def test_resend_of_an_uncertain_reply_really_sends_it_again(make_rig, smtp: SmtpPeer) -> None:
    """Lost after the DATA dot: the recipient is recorded unconfirmed, and a person's resend sends it."""
    rig = await make_rig(settings_for(smtp))
    smtp.rules = Rules(drop_after_data=lambda msg: True)
    await rig.worker.submit("unc-1", reply(1))
    await rig.worker.tick()
    entry = await rig.outbox.outbox_get("unc-1")
    assert entry is not None and entry.state is OutboxState.UNCERTAIN
    assert entry.results["customer1@example.net"]["accepted"] is False
    smtp.rules = Rules()
    assert await rig.worker.requeue("unc-1") is not None
    await rig.worker.tick()
    entry = await rig.outbox.outbox_get("unc-1")
    assert entry is not None and entry.state is OutboxState.SENT, entry.last_error
    assert [r.recipients for r in smtp.received] == [["customer1@example.net"]] * 2


async def test_on_uncertain_resend_policy_sends_again_by_itself(make_rig, smtp: SmtpPeer) -> None:
    """`outbox.on_uncertain: resend`: the next tick sends the uncertain reply again, to its recipient."""
    settings = settings_for(smtp)
    settings = settings.model_copy(
        update={"outbox": settings.outbox.model_copy(update={"on_uncertain": "resend"})}
    )
    rig = await make_rig(settings)
    smtp.rules = Rules(drop_after_data=lambda msg: len(smtp.received) == 1)
    await rig.worker.submit("unc-2", reply(2))
    await rig.worker.tick()
    assert (await rig.outbox.outbox_get("unc-2")).state is OutboxState.RETRYING  # type: ignore[union-attr]
    await rig.worker.tick()
    entry = await rig.outbox.outbox_get("unc-2")
    assert entry is not None and entry.state is OutboxState.SENT, entry.last_error
    assert len(smtp.received) == 2


async def test_resend_after_data_refused_sends_to_every_recipient(make_rig, smtp: SmtpPeer) -> None:
    """554 after DATA: failed; a resend goes to the recipients again (not "no recipients")."""
    rig = await make_rig(settings_for(smtp))
    smtp.rules = Rules(data=lambda msg: "554 5.7.1 Message refused")
    await rig.worker.submit("refused-1", reply(3, cc=[{"address": "cc3@example.net"}]))
    await rig.worker.tick()
    entry = await rig.outbox.outbox_get("refused-1")
    assert entry is not None and entry.state is OutboxState.FAILED
    smtp.rules = Rules()
    await rig.worker.requeue("refused-1")
    await rig.worker.tick()
    entry = await rig.outbox.outbox_get("refused-1")
    assert entry is not None and entry.state is OutboxState.SENT, entry.last_error
    assert [r.recipients for r in smtp.received] == [["customer3@example.net", "cc3@example.net"]]


class FakeSentFolder:
    def __init__(self, ids: set[str]) -> None:
        self.ids = ids

    async def append(self, raw: bytes) -> str:
        return "Sent"

    async def contains(self, message_id: str) -> bool:
        return message_id in self.ids

    async def close(self) -> None:
        return None


async def test_copy_in_sent_from_an_earlier_partial_send_does_not_prove_the_retry(
    make_rig, smtp: SmtpPeer
) -> None:
    """Crash in DATA of a retry for the other recipients: the earlier Sent copy proves nothing → uncertain."""
    rig = await make_rig(settings_for(smtp))
    await rig.worker.submit("partial-1", reply(4, cc=[{"address": "later@example.net"}]))
    claimed = await rig.outbox.outbox_claim("partial-1", rig.clock())
    assert claimed is not None
    await rig.outbox.outbox_finish(
        "partial-1",
        OutboxState.RETRYING,
        now=rig.clock(),
        results={
            "customer4@example.net": {"accepted": True, "code": 250, "message": "ok"},
            "later@example.net": {"accepted": False, "code": 451, "message": "later"},
        },
    )
    await rig.outbox.outbox_claim("partial-1", rig.clock())
    await rig.outbox.outbox_set_phase("partial-1", "data")
    rig.worker.dispatcher.sent_folder_factory = lambda box: FakeSentFolder({claimed.message_id})
    await rig.worker.recover()
    entry = await rig.outbox.outbox_get("partial-1")
    assert entry is not None and entry.state is OutboxState.UNCERTAIN


async def test_uncomposable_stored_reply_fails_and_does_not_block_the_next(make_rig, smtp: SmtpPeer) -> None:
    """A stored reply with CR/LF in a name: failed `reply_invalid`; the next reply is still sent."""
    rig = await make_rig(settings_for(smtp))
    bad = reply(5).to_json()
    bad["to"][0]["name"] = "Evil\r\nBcc: victim@example.net"
    await rig.outbox.outbox_enqueue(
        OutboxEntry(
            id="bad-1",
            mailbox_id="support",
            origin="api",
            request=bad,
            request_sha256="0" * 64,
            message_id="<bad-1@example.com>",
            created_at=rig.clock(),
        )
    )
    await rig.worker.submit("good-1", reply(6))
    await rig.worker.tick()
    bad_entry = await rig.outbox.outbox_get("bad-1")
    assert bad_entry is not None and bad_entry.state is OutboxState.FAILED
    assert bad_entry.last_error_code == "reply_invalid"
    assert (await rig.outbox.outbox_get("good-1")).state is OutboxState.SENT  # type: ignore[union-attr]
    assert len(smtp.received) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"to": [{"address": "a@example.net", "name": "A\r\nBcc: x@y.z"}]}, "to.0.name"),
        ({"to": [{"address": "jörg@example.net"}]}, "to.0.address"),
        ({"attachments": [{"attachmentId": "1", "filename": "a\nb.txt"}]}, "attachments.0.filename"),
        ({"attachments": [{"attachmentId": "1", "contentId": "c\r\nX: y"}]}, "attachments.0.contentId"),
        (
            {"attachments": [{"attachmentId": "1", "contentType": "text/plain\nX: y"}]},
            "attachments.0.contentType",
        ),
    ],
)
def test_request_refuses_header_breaking_fields_naming_them(change: dict[str, Any], field: str) -> None:
    """CR/LF in names, filenames, content ids or types, and non-ASCII addresses: refused, field named."""
    with pytest.raises(ValueError, match=rf"^{field}: "):
        parse_request({"to": [{"address": "a@example.net"}], **change})


async def test_one_mailbox_crashing_does_not_stop_the_others(make_rig, smtp: SmtpPeer) -> None:
    """An unexpected exception for one mailbox is logged; the other mailbox's reply is still sent."""
    settings = settings_for(smtp)
    other = settings.mailboxes[0].model_copy(update={"id": "sales", "address": "sales@example.com"})
    settings = settings.model_copy(update={"mailboxes": [*settings.mailboxes, other]})
    rig = await make_rig(settings)
    real_attempt = rig.worker.dispatcher.attempt

    async def attempt(entry: OutboxEntry) -> Outcome:
        if entry.mailbox_id == "support":
            raise RuntimeError("bug")
        return await real_attempt(entry)

    rig.worker.dispatcher.attempt = attempt
    await rig.worker.submit("s-1", reply(7))
    await rig.worker.submit("o-1", reply(8, mailboxId="sales"))
    assert await rig.worker.tick() == 1
    assert (await rig.outbox.outbox_get("o-1")).state is OutboxState.SENT  # type: ignore[union-attr]


class ExplodingSender:
    """An OutboundSender with a bug: raises before or after announcing DATA."""

    def __init__(self, in_data: bool) -> None:
        self.in_data = in_data

    async def send(
        self,
        message: EmailMessage,
        envelope_from: str,
        recipients: list[str],
        *,
        before_data: Callable[[], Awaitable[None]] | None = None,
    ) -> SendReceipt:
        if self.in_data and before_data is not None:
            await before_data()
        raise RuntimeError("unexpected")

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(("in_data", "state"), [(False, OutboxState.RETRYING), (True, OutboxState.UNCERTAIN)])
async def test_unexpected_error_after_the_claim_settles_the_row_by_phase(
    make_rig, smtp: SmtpPeer, in_data: bool, state: OutboxState
) -> None:
    """A bug in sending never leaves the row `sending`: before DATA → retrying, in DATA → uncertain."""
    rig = await make_rig(settings_for(smtp))
    rig.worker.dispatcher.sender_factory = lambda box: ExplodingSender(in_data)
    await rig.worker.submit("boom-1", reply(9))
    await rig.worker.tick()
    entry = await rig.outbox.outbox_get("boom-1")
    assert entry is not None and entry.state is state


async def test_smtp_session_is_dropped_after_an_unexpected_error_and_reopened(smtp: SmtpPeer) -> None:
    """An exception inside the transaction drops the connection; the next send opens a fresh one."""
    box = settings_for(smtp).mailboxes[0]
    sender = SmtpSender(box)
    msg = EmailMessage()
    msg["Subject"] = "x"
    msg.set_content("y")

    async def broken() -> None:
        raise RuntimeError("store down")

    try:
        with pytest.raises(RuntimeError):
            await sender.send(msg, box.address, ["a@example.net"], before_data=broken)
        assert sender._client is None
        receipt = await sender.send(msg, box.address, ["a@example.net"])
        assert receipt.accepted == ("a@example.net",) and sender.connections_opened == 2
    finally:
        await sender.close()


class FailingTokens:
    async def token(self) -> str:
        raise ProviderUnavailable("token endpoint down")

    def invalidate(self) -> None:
        return None


async def test_token_failure_at_login_closes_the_new_connection(
    smtp: SmtpPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ProviderUnavailable from the token endpoint: raised as is, and the opened socket is closed."""
    opened: list[aiosmtplib.SMTP] = []
    real_connect = aiosmtplib.SMTP.connect

    async def connect(self: aiosmtplib.SMTP, *args: Any, **kwargs: Any) -> Any:
        opened.append(self)
        return await real_connect(self, *args, **kwargs)

    monkeypatch.setattr(aiosmtplib.SMTP, "connect", connect)
    base = settings_for(smtp).mailboxes[0]
    box = MailboxSettings.model_validate(
        {
            **base.model_dump(),
            "smtp": smtp.smtp_block(auth="xoauth2", oauth={"kind": "static", "token": "t"}),
        }
    )
    sender = SmtpSender(box, tokens=FailingTokens())  # type: ignore[arg-type]
    msg = EmailMessage()
    msg.set_content("y")
    with pytest.raises(ProviderUnavailable):
        await sender.send(msg, box.address, ["a@example.net"])
    assert len(opened) == 1 and not opened[0].is_connected


async def test_finish_is_compare_and_set_on_the_current_state(store_url: str) -> None:  # noqa: F811
    """A finish from a stale view (row already sent by another worker): OutboxConflict, nothing written."""
    store = await SqlStore.open(store_url)
    try:
        outbox = SqlOutbox(store)
        await outbox.outbox_enqueue(entry(1))
        with pytest.raises(OutboxConflict):
            await outbox.outbox_finish("r-1", OutboxState.FAILED, now=T0)  # not claimed: not `sending`
        await outbox.outbox_claim("r-1", T0)
        await outbox.outbox_finish("r-1", OutboxState.SENT, now=T0, sent_at=T0)
        with pytest.raises(OutboxConflict) as info:
            await outbox.outbox_finish("r-1", OutboxState.RETRYING, now=T0, error_code="x")
        assert info.value.current.state is OutboxState.SENT
        stored = await outbox.outbox_get("r-1")
        assert stored is not None and stored.state is OutboxState.SENT and stored.last_error_code is None
    finally:
        await store.close()


async def test_api_refuses_reserved_reply_ids(make_rig, smtp: SmtpPeer) -> None:
    """Ids starting with iwd- or auto- are the outbox's own: 400 naming `id`, nothing queued."""
    rig = await make_rig(settings_for(smtp, http={"token": TOKEN}))
    ctx = ApiContext(rig.settings, rig.store, rig.iwd, rig.board, extras={EXTRA_KEY: rig.worker})
    app = Starlette(routes=reply_routes(ctx))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://api.test",
        headers={"authorization": f"Bearer {TOKEN}"},
    ) as http:
        for reply_id in ("iwd-em_1", "auto-abc"):
            resp = await http.post(
                "/api/v1/replies", json={"id": reply_id, "to": [{"address": "a@example.net"}]}
            )
            assert resp.status_code == 400 and resp.json()["message"].startswith("id:")
            assert await rig.outbox.outbox_get(reply_id) is None
        resp = await http.post(
            "/api/v1/replies",
            json={"id": "ok-1", "mailboxId": "support", "to": [{"address": "a@example.net", "name": "A\nB"}]},
        )
        assert resp.status_code == 400 and resp.json()["message"].startswith("to.0.name:")


async def test_iwd_item_is_not_taken_over_by_a_reply_with_its_id(make_rig, smtp: SmtpPeer) -> None:
    """A non-IWD row already holding `iwd-<item>`: the IWD item is left queued, the row untouched."""
    rig = await make_rig(settings_for(smtp))
    item_id = await rig.queue_in_iwd(
        {"mailboxId": "support", "to": [{"address": "q@example.net"}], "subject": "s", "textBody": "t"}
    )
    box = rig.settings.mailboxes[0]
    await rig.worker.enqueue(f"iwd-{item_id}", box, reply(10), origin="api")
    assert await rig.worker.pull_iwd_queue() == 0
    assert (await rig.iwd.get_email(item_id))["status"] == "queued"
    row = await rig.outbox.outbox_get(f"iwd-{item_id}")
    assert row is not None and row.origin == "api" and row.iwd_item_id is None


def test_google_kinds_default_to_the_google_mail_scope() -> None:
    """Without oauth.scope, a Google kind asks for https://mail.google.com/, not the Microsoft scope."""
    oauth = OAuthSettings.model_validate(
        {"kind": "google_refresh", "client_id": "c", "client_secret": "s", "refresh_token": "r"}
    )
    provider = build_token_provider(oauth)
    assert provider._credentials.scopes == [IMAP_SCOPE_GOOGLE]  # type: ignore[attr-defined]
