"""The pipeline against the sandbox IWD (real HTTP) and a real store: exactly once, nothing lost."""

from __future__ import annotations

import email
import email.policy
import hashlib
import os
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from connector.errors import IWDRejected, IWDUnavailable, MessageError, ProviderUnavailable
from connector.iwd import IWDClient
from connector.models import PostAction, RawMessage
from connector.sandbox import SandboxIWD
from connector.store import open_store
from connector.store.types import LedgerState, Store
from connector.sync import pipeline as pipeline_module
from connector.sync.pipeline import MailboxSync
from providers.fake import FakeInboundProvider
from providers.fetch_failures import stand_in_bytes
from providers.maildir import MaildirInboundProvider, deliver_to_maildir
from tests.conftest import maildir_mailbox
from tests.connector.test_store import seed_pre_r0003_quarantine
from tests.mailfactory import make_message
from tests.peers.sandbox import real_client, wait_until_idle


async def items_in(iwd: IWDClient, mailbox_id: str) -> list[dict[str, Any]]:
    return [item async for item in iwd.iter_emails(mailbox_id=mailbox_id)]


def seed(root: Path, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        deliver_to_maildir(root, make_message(n), f"m{n:04d}")


def sync_for(root: Path, store: Store, iwd: IWDClient, **extra: Any) -> MailboxSync:
    box = maildir_mailbox(root, **extra)
    return MailboxSync(box, MaildirInboundProvider(box), store, iwd)


async def test_every_message_becomes_one_item_and_is_marked_read_after(
    tmp_path: Path, store: Store, iwd: IWDClient
) -> None:
    """20 messages → 20 items; a second cycle creates nothing; every file ends in cur/ with S."""
    seed(tmp_path, 20)
    sync = sync_for(tmp_path, store, iwd)
    first = await sync.run_cycle()
    second = await sync.run_cycle()
    items = await items_in(iwd, "mb-1")
    assert first.delivered == 20 and second.delivered == 0
    assert sorted(i["messageId"] for i in items) == sorted(f"<msg-{n}@example.net>" for n in range(20))
    assert os.listdir(tmp_path / "new") == []
    assert all(name.endswith(":2,S") for name in os.listdir(tmp_path / "cur"))
    assert await store.ledger_count("mb-1", LedgerState.ACTED) == 20


async def test_iwd_503s_are_retried_and_nothing_is_duplicated(
    tmp_path: Path, store: Store, iwd: IWDClient, sandbox_iwd: SandboxIWD
) -> None:
    """Three 503s in a row are absorbed by the client's retries."""
    seed(tmp_path, 5)
    sandbox_iwd.control.faults.set(fail_next=3, fail_status=503)
    report = await sync_for(tmp_path, store, iwd).run_cycle()
    assert report.delivered == 5
    assert len(await items_in(iwd, "mb-1")) == 5


async def test_iwd_timeouts_are_retried_with_the_same_external_id(
    tmp_path: Path, store: Store, sandbox_iwd: SandboxIWD
) -> None:
    """A request that times out may have created the item; the retry gets it back, not a second one."""
    seed(tmp_path, 3)
    sandbox_iwd.control.faults.set(latency_seconds=1.0, latency_next=2)
    async with real_client(sandbox_iwd, timeout_seconds=0.3, max_retry_seconds=10) as iwd:
        report = await sync_for(tmp_path, store, iwd).run_cycle()
        items = await items_in(iwd, "mb-1")
    assert report.delivered == 3
    assert len(items) == 3 and len({i["externalId"] for i in items}) == 3


async def test_iwd_down_marks_nothing_and_the_next_cycle_resumes(
    tmp_path: Path, store: Store, sandbox_iwd: SandboxIWD
) -> None:
    """While IWD is unreachable no message is touched on the server; afterwards all arrive once."""
    seed(tmp_path, 4)
    sandbox_iwd.down_for(2.0)
    async with real_client(sandbox_iwd, max_retry_seconds=0.5) as iwd:
        sync = sync_for(tmp_path, store, iwd)
        with pytest.raises(IWDUnavailable):
            await sync.run_cycle()
        assert len(os.listdir(tmp_path / "new")) == 4
        assert await store.ledger_count("mb-1", LedgerState.DELIVERED) == 0
    async with real_client(sandbox_iwd, max_retry_seconds=10) as iwd:
        report = await sync_for(tmp_path, store, iwd).run_cycle()
        assert report.delivered == 4
        assert len(await items_in(iwd, "mb-1")) == 4
    assert os.listdir(tmp_path / "new") == []


async def test_wrong_api_key_stops_the_cycle_without_quarantining_mail(
    tmp_path: Path, store: Store, sandbox_iwd: SandboxIWD
) -> None:
    """401 is a setup problem: the cycle fails, no message is quarantined or marked."""
    seed(tmp_path, 2)
    async with real_client(sandbox_iwd, api_key="wrong-key-123") as iwd:
        with pytest.raises(IWDRejected) as info:
            await sync_for(tmp_path, store, iwd).run_cycle()
    assert info.value.status == 401
    assert "wrong-key-123" not in str(info.value) and "wrong-key-123" not in repr(info.value)
    assert await store.quarantine_count("mb-1") == 0
    assert len(os.listdir(tmp_path / "new")) == 2


async def test_unconvertible_message_is_quarantined_then_reaches_iwd_as_unparseable(
    tmp_path: Path, store: Store, iwd: IWDClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bad message never blocks the others; after 3 attempts it arrives flagged, raw attached."""
    real_convert = pipeline_module.convert

    def picky(raw: bytes, **kw: Any) -> Any:
        if b"POISON" in raw:
            raise MessageError("nesting too deep")
        return real_convert(raw, **kw)

    monkeypatch.setattr(pipeline_module, "convert", picky)
    seed(tmp_path, 2)
    poison = make_message(99, subject="POISON pill")
    deliver_to_maildir(tmp_path, poison, "m0099")
    sync = sync_for(tmp_path, store, iwd)

    first = await sync.run_cycle()
    assert (first.delivered, first.quarantined) == (2, 1)
    assert "m0099" in os.listdir(tmp_path / "new")  # not marked: not delivered yet
    await sync.run_cycle()
    assert await store.quarantine_count("mb-1") == 1
    await sync.run_cycle()  # third attempt: delivered as unparseable

    assert await store.quarantine_count("mb-1") == 0
    items = {i["subject"]: i for i in await items_in(iwd, "mb-1")}
    flagged = items["POISON pill"]
    assert flagged["flags"]["unparseable"] is True
    (attachment,) = flagged["attachments"]
    downloaded = await iwd.download_attachment(attachment["attachmentId"])
    assert downloaded.data == poison
    assert os.listdir(tmp_path / "new") == []


async def test_payload_rejected_by_iwd_is_quarantined_and_retried_next_cycle(
    tmp_path: Path, store: Store, iwd: IWDClient, sandbox_iwd: SandboxIWD
) -> None:
    """A 400 for one message quarantines that message only; the next cycle delivers it.
    (The batch answers 400 as a whole, the client asks item by item, the first item is refused.)"""
    seed(tmp_path, 3)
    sandbox_iwd.control.faults.set(fail_next=2, fail_status=400)
    sync = sync_for(tmp_path, store, iwd)
    first = await sync.run_cycle()
    assert (first.delivered, first.quarantined) == (2, 1)
    await sync.run_cycle()
    assert len(await items_in(iwd, "mb-1")) == 3
    assert await store.quarantine_count("mb-1") == 0


class FlakyActions(FakeInboundProvider):
    def __init__(self, messages: dict[str, list[bytes]], failures: int) -> None:
        super().__init__(messages)
        self.failures = failures

    async def apply_post_action(self, message: RawMessage, action: PostAction) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ProviderUnavailable("server went away", folder=message.folder)
        await super().apply_post_action(message, action)


async def test_failed_post_action_is_retried_next_cycle_not_redelivered(
    tmp_path: Path, store: Store, iwd: IWDClient
) -> None:
    """A post-action that fails leaves the entry 'delivered'; the next cycle applies it."""
    provider = FlakyActions({"INBOX": [make_message(n) for n in range(3)]}, failures=3)
    box = maildir_mailbox(tmp_path)
    sync = MailboxSync(box, provider, store, iwd)
    first = await sync.run_cycle()
    assert first.delivered == 3 and first.post_action_failures == 3 and provider.actions == []
    second = await sync.run_cycle()
    assert second.delivered == 0 and second.acted == 3
    assert sorted(a[1] for a in provider.actions) == ["0", "1", "2"]
    assert len(await items_in(iwd, "mb-1")) == 3


class Renumbering(FakeInboundProvider):
    """Simulates a folder whose identities changed (IMAP UIDVALIDITY): same mail, new ids."""

    def __init__(self, messages: dict[str, list[bytes]]) -> None:
        super().__init__(messages)
        self.epoch = 1

    async def fetch(self, folder: str, cursor: str | None, limit: int) -> Any:
        result = await super().fetch(folder, None if self.epoch == 2 and cursor == "3" else cursor, limit)
        renamed = [
            RawMessage(
                folder=m.folder,
                provider_id=f"{self.epoch}:{m.provider_id}",
                raw=m.raw,
                size=m.size,
                cursor=m.cursor,
            )
            for m in result.messages
        ]
        return type(result)(messages=renamed, cursor=result.cursor, more=result.more, resync=self.epoch == 2)


async def test_same_mail_under_new_identities_is_not_delivered_twice(
    tmp_path: Path, store: Store, iwd: IWDClient
) -> None:
    """After a renumbering the ledger matches raw hash + Message-ID and reuses the externalId."""
    provider = Renumbering({"INBOX": [make_message(n) for n in range(3)]})
    sync = MailboxSync(maildir_mailbox(tmp_path), provider, store, iwd)
    await sync.run_cycle()
    provider.epoch = 2
    provider.folders["INBOX"].append(make_message(3))
    report = await sync.run_cycle()
    assert report.already_delivered == 3 and report.delivered == 1
    items = await items_in(iwd, "mb-1")
    assert Counter(i["messageId"] for i in items) == {f"<msg-{n}@example.net>": 1 for n in range(4)}


async def test_a_copy_of_a_delivered_email_is_marked_read_once_and_not_delivered_again(
    tmp_path: Path, store: Store, iwd: IWDClient
) -> None:
    """The same bytes under a second identity: no second item, the copy gets its post-action,
    and later cycles recognise both identities from the ledger without ping-pong."""
    deliver_to_maildir(tmp_path, make_message(1), "first")
    sync = sync_for(tmp_path, store, iwd)
    await sync.run_cycle()
    deliver_to_maildir(tmp_path, make_message(1), "copy")
    second = await sync.run_cycle()
    third = await sync.run_cycle()
    assert (second.delivered, second.already_delivered, second.acted) == (0, 2, 1)
    assert (third.delivered, third.already_delivered, third.acted) == (0, 2, 0)
    assert len(await items_in(iwd, "mb-1")) == 1
    assert sorted(os.listdir(tmp_path / "cur")) == ["copy:2,S", "first:2,S"]
    assert await store.ledger_count("mb-1", LedgerState.ACTED) == 2


class SkipsAhead(FakeInboundProvider):
    """A provider whose folder cursor runs past its last message (as IMAP's does when it filters)."""

    async def fetch(self, folder: str, cursor: str | None, limit: int) -> Any:
        result = await super().fetch(folder, cursor, limit)
        return type(result)(messages=result.messages, cursor="9", more=False)


async def test_a_message_left_for_the_next_cycle_keeps_the_cursor_before_it(
    tmp_path: Path, store: Store, iwd: IWDClient, sandbox_iwd: SandboxIWD
) -> None:
    """Two identical copies in one batch, the first refused by IWD: the second waits for the next
    cycle, so the folder cursor must not jump past it; next cycle the email arrives once."""
    twin = make_message(7)
    provider = SkipsAhead({"INBOX": [twin, twin]})
    sync = MailboxSync(maildir_mailbox(tmp_path), provider, store, iwd)
    sandbox_iwd.control.faults.set(fail_next=2, fail_status=400)  # the batch, then the first item
    first = await sync.run_cycle()
    assert first.quarantined == 1
    assert await store.get_cursor("mb-1", "INBOX") == "1"
    await sync.run_cycle()
    assert [i["messageId"] for i in await items_in(iwd, "mb-1")] == ["<msg-7@example.net>"]


async def test_a_quarantined_maildir_message_is_tried_once_per_cycle(
    tmp_path: Path, store: Store, iwd: IWDClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Maildir hands the held file over again each cycle; the walk leaves it to the quarantine
    retry, so each cycle costs exactly one attempt."""
    monkeypatch.setattr(pipeline_module, "convert", _refusing_poison(pipeline_module.convert))
    deliver_to_maildir(tmp_path, make_message(99, subject="POISON pill"), "m0099")
    sync = sync_for(tmp_path, store, iwd)
    await sync.run_cycle()
    await sync.run_cycle()
    (entry,) = await store.quarantine_list("mb-1")
    assert entry.attempts == 2


async def test_an_item_iwd_keeps_refusing_still_reaches_a_person_as_unparseable(
    tmp_path: Path, store: Store, iwd: IWDClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IWD refuses the converted item every time (400): after the last attempt the raw mail is
    delivered flagged unparseable instead of being retried forever."""
    import connector.sync.batch_delivery as batch_module

    real_build = batch_module.build_email_payload

    def broken(item: Any, **kw: Any) -> Any:
        payload = real_build(item, **kw)
        if "POISON" in payload["subject"] and not item.flags.unparseable:
            payload["importance"] = "not-a-level"  # the sandbox refuses it, naming the field
        return payload

    monkeypatch.setattr(batch_module, "build_email_payload", broken)
    deliver_to_maildir(tmp_path, make_message(98, subject="POISON again"), "m0098")
    sync = sync_for(tmp_path, store, iwd)
    for _ in range(4):
        await sync.run_cycle()
    (item,) = await items_in(iwd, "mb-1")
    assert item["flags"]["unparseable"] is True
    assert await store.quarantine_count("mb-1") == 0
    assert os.listdir(tmp_path / "new") == []


def _refusing_poison(real: Any) -> Any:
    def picky(raw: bytes, **kw: Any) -> Any:
        if b"POISON" in raw:
            raise MessageError("nesting too deep")
        return real(raw, **kw)

    return picky


ARRIVED = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
RETRIED = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


class WithServerMetadata(FakeInboundProvider):
    """Hands over its messages with the metadata an IMAP server gives: arrival time, thread id,
    and for an oversize message only the header block with the real size."""

    def __init__(self, messages: dict[str, list[bytes]], oversize: dict[str, int] | None = None) -> None:
        super().__init__(messages)
        self.oversize = oversize or {}

    async def fetch(self, folder: str, cursor: str | None, limit: int) -> Any:
        result = await super().fetch(folder, cursor, limit)
        messages = [self._as_server_gives(m) for m in result.messages]
        return type(result)(messages=messages, cursor=result.cursor, more=result.more)

    def _as_server_gives(self, message: RawMessage) -> RawMessage:
        real_size = self.oversize.get(message.provider_id)
        header_block = message.raw.split(b"\n\n", 1)[0] + b"\n\n"
        return replace(
            message,
            raw=message.raw if real_size is None else header_block,
            size=real_size or message.size,
            headers_only=real_size is not None,
            internal_date=ARRIVED,
            thread_hint="thread-42",
        )


class Switch:
    """A convert() that refuses POISON mail while `refusing` is set."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.refusing = True

    def __call__(self, raw: bytes, **kw: Any) -> Any:
        if self.refusing and b"POISON" in raw:
            raise MessageError("nesting too deep")
        return self.real(raw, **kw)


def synced(tmp_path: Path, provider: FakeInboundProvider, store: Store, iwd: IWDClient) -> MailboxSync:
    """A sync whose clock reads RETRIED, so an item dated by the clock is told apart from the server's."""
    return MailboxSync(maildir_mailbox(tmp_path), provider, store, iwd, clock=lambda: RETRIED)


async def test_a_quarantined_message_retried_later_keeps_the_servers_arrival_time(
    tmp_path: Path, store: Store, iwd: IWDClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Quarantined with an internal date, fixed, retried: receivedAt is the server's arrival time,
    not the retry's, and the provider's thread id still sets the thread key."""
    convert = Switch(pipeline_module.convert)
    monkeypatch.setattr(pipeline_module, "convert", convert)
    provider = WithServerMetadata({"INBOX": [make_message(1, subject="POISON pill")]})
    sync = synced(tmp_path, provider, store, iwd)
    assert (await sync.run_cycle()).quarantined == 1
    (entry,) = await store.quarantine_list("mb-1")
    assert (entry.internal_date, entry.thread_hint) == (ARRIVED, "thread-42")

    convert.refusing = False
    assert (await sync.run_cycle()).delivered == 1
    (item,) = await items_in(iwd, "mb-1")
    assert datetime.fromisoformat(item["receivedAt"]) == ARRIVED
    assert item["threadKey"] == "thread-42"
    assert item["flags"]["unparseable"] is False
    assert await store.quarantine_count("mb-1") == 0


async def test_an_oversize_message_retried_from_quarantine_is_still_oversize_with_its_real_size(
    tmp_path: Path, store: Store, iwd: IWDClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only its header block was fetched and kept; the retry makes the oversize placeholder with
    the size on the server, not a whole message of the header block's size."""
    convert = Switch(pipeline_module.convert)
    monkeypatch.setattr(pipeline_module, "convert", convert)
    provider = WithServerMetadata(
        {"INBOX": [make_message(2, subject="POISON big")]}, oversize={"0": 48_000_000}
    )
    sync = synced(tmp_path, provider, store, iwd)
    assert (await sync.run_cycle()).quarantined == 1
    (entry,) = await store.quarantine_list("mb-1")
    assert (entry.size, entry.headers_only) == (48_000_000, True)

    convert.refusing = False
    await sync.run_cycle()
    (item,) = await items_in(iwd, "mb-1")
    assert item["flags"]["oversize"] is True
    assert item["size"] == 48_000_000
    assert "48,000,000 bytes" in item["textBody"]
    assert datetime.fromisoformat(item["receivedAt"]) == ARRIVED


async def test_a_message_that_never_converts_arrives_unparseable_with_the_servers_date_and_size(
    tmp_path: Path, store: Store, iwd: IWDClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the last attempt the unparseable item still carries the server's arrival time, the
    real size and the oversize flag, with the kept header block attached and said to be only that."""
    monkeypatch.setattr(pipeline_module, "convert", Switch(pipeline_module.convert))
    big = make_message(3, subject="POISON big")
    provider = WithServerMetadata({"INBOX": [big]}, oversize={"0": 31_000_000})
    sync = synced(tmp_path, provider, store, iwd)
    for _ in range(3):
        await sync.run_cycle()
    (item,) = await items_in(iwd, "mb-1")
    assert item["flags"]["unparseable"] is True and item["flags"]["oversize"] is True
    assert item["size"] == 31_000_000
    assert "still in the mailbox" in item["textBody"]  # the attachment is only the header block
    (attachment,) = item["attachments"]
    kept = await iwd.download_attachment(attachment["attachmentId"])
    assert kept.data == big.split(b"\n\n", 1)[0] + b"\n\n"
    assert datetime.fromisoformat(item["receivedAt"]) == ARRIVED
    assert await store.quarantine_count("mb-1") == 0


async def test_a_quarantine_row_from_before_r0003_is_retried_as_a_whole_message(
    tmp_path: Path, iwd: IWDClient
) -> None:
    """A row kept before the metadata was recorded survives the upgrade and is retried with
    size len(raw), not flagged oversize, dated by the clock since its arrival time is unknown."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    raw = make_message(4, subject="Kept before the upgrade")
    await seed_pre_r0003_quarantine(url, raw)
    store = await open_store(url)
    try:
        sync = MailboxSync(
            maildir_mailbox(tmp_path, "box"), FakeInboundProvider({}), store, iwd, clock=lambda: RETRIED
        )
        (entry,) = await store.quarantine_list("box")
        assert await sync.retry_quarantined(entry) is True
        assert await store.quarantine_count("box") == 0
    finally:
        await store.close()
    (item,) = await items_in(iwd, "box")
    assert item["subject"] == "Kept before the upgrade"
    assert (item["size"], item["flags"]["oversize"]) == (len(raw), False)
    assert datetime.fromisoformat(item["receivedAt"]) == RETRIED


class WithStandIn(FakeInboundProvider):
    """Hands message "0" over as a stand-in (as Gmail/Graph do for a message they cannot download);
    `refuse_actions` makes every post-action fail, so entries stay delivered-but-not-acted."""

    def __init__(
        self, messages: dict[str, list[bytes]], *, refuse_actions: bool = False, flag: bool = True
    ) -> None:
        super().__init__(messages)
        self.refuse_actions = refuse_actions
        self.flag = flag  # False: as if the daemon died before the post-actions ran

    async def fetch(self, folder: str, cursor: str | None, limit: int) -> Any:
        result = await super().fetch(folder, cursor, limit)
        note = stand_in_bytes("mb-1@example.com", folder, "0", "500 for this message", 3, None)
        result.messages[:] = [
            replace(m, raw=note, size=len(note), stand_in=self.flag) if m.provider_id == "0" else m
            for m in result.messages
        ]
        return result

    async def apply_post_action(self, message: RawMessage, action: PostAction) -> None:
        if self.refuse_actions:
            raise ProviderUnavailable("post-actions are down")
        await super().apply_post_action(message, action)


async def test_a_stand_in_gets_no_post_action_in_the_cycle_or_after_a_restart(
    tmp_path: Path, store: Store, iwd: IWDClient
) -> None:
    """The original a stand-in speaks for stays on the server untouched: no post-action in the
    cycle that delivers it, nor after a restart (known then only from its Message-ID in the ledger);
    its ledger entry is still settled, and the real message beside it is acted on both times."""
    mail = {"INBOX": [make_message(1), make_message(2)]}
    first = WithStandIn(mail)
    assert (await synced(tmp_path, first, store, iwd).run_cycle()).delivered == 2
    assert first.actions == [("INBOX", "1", "mark_read")]
    assert await store.ledger_pending_actions("mb-1") == []
    subjects = sorted(i["subject"] for i in await items_in(iwd, "mb-1"))
    assert subjects == ["Message could not be downloaded from INBOX", "Question number 2"]

    other = tmp_path / "other"
    second_store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'second.db'}")
    try:
        down = WithStandIn(mail, refuse_actions=True, flag=False)
        sync = MailboxSync(maildir_mailbox(other, "mb-1"), down, second_store, iwd)
        await sync.run_cycle()
        assert len(await second_store.ledger_pending_actions("mb-1")) == 2  # both wait
        restarted = FakeInboundProvider(mail)  # knows nothing of stand-ins, as after a restart
        await MailboxSync(maildir_mailbox(other, "mb-1"), restarted, second_store, iwd).run_cycle()
        assert restarted.actions == [("INBOX", "1", "mark_read")]
        assert await second_store.ledger_pending_actions("mb-1") == []
    finally:
        await second_store.close()


def message_with_attachments(n: int, *parts: bytes) -> bytes:
    """A message carrying each of `parts` as its own attachment, in order."""
    msg = email.message_from_bytes(make_message(n), policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    for i, data in enumerate(parts):
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=f"part-{i}.bin")
    return msg.as_bytes()


def stored_attachments(sandbox: SandboxIWD) -> Counter[str]:
    """sha256 -> how many times the sandbox stored those bytes."""
    return Counter(a.sha256 for a in sandbox.control.store.list_attachments())


async def test_an_attachment_upload_retried_after_a_timeout_is_stored_once(
    tmp_path: Path, store: Store, sandbox_iwd: SandboxIWD
) -> None:
    """The first upload outlasts the client timeout but IWD stores it; the retry gets that attachment back."""
    parts = (b"first attachment " * 64, b"second attachment " * 64)
    deliver_to_maildir(tmp_path, message_with_attachments(1, *parts), "m0001")
    sandbox_iwd.control.faults.set(latency_seconds=1.0, latency_next=1)
    async with real_client(sandbox_iwd, timeout_seconds=0.3, max_retry_seconds=10) as iwd:
        report = await sync_for(tmp_path, store, iwd).run_cycle()
        [item] = await items_in(iwd, "mb-1")
    await wait_until_idle(sandbox_iwd)  # the abandoned slow upload has finished server-side
    assert report.delivered == 1
    assert sandbox_iwd.control.requests.count("POST", "/iwd/v3/emails/attachments") == 3
    expected = [hashlib.sha256(data).hexdigest() for data in parts]
    assert [a["sha256"] for a in item["attachments"]] == expected
    assert stored_attachments(sandbox_iwd) == Counter(expected)
    stored_ids = {a.id for a in sandbox_iwd.control.store.list_attachments()}
    assert {a["attachmentId"] for a in item["attachments"]} == stored_ids


async def test_attachments_uploaded_again_after_a_failed_cycle_are_stored_once(
    tmp_path: Path, store: Store, sandbox_iwd: SandboxIWD, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IWD fails after the uploads; the next cycle fetches the mail again and gets the same attachments."""
    parts = (b"invoice " * 100, b"photo " * 100)
    deliver_to_maildir(tmp_path, message_with_attachments(2, *parts), "m0002")
    async with real_client(sandbox_iwd, max_retry_seconds=0.2) as iwd:
        real_create = iwd.create_emails

        async def unavailable(payloads: Any) -> Any:
            raise IWDUnavailable("IWD went away after the uploads")

        monkeypatch.setattr(iwd, "create_emails", unavailable)
        with pytest.raises(IWDUnavailable):
            await sync_for(tmp_path, store, iwd).run_cycle()
        monkeypatch.setattr(iwd, "create_emails", real_create)
        report = await sync_for(tmp_path, store, iwd).run_cycle()
        [item] = await items_in(iwd, "mb-1")
    assert report.delivered == 1
    assert sandbox_iwd.control.requests.count("POST", "/iwd/v3/emails/attachments") == 4
    expected = [hashlib.sha256(data).hexdigest() for data in parts]
    assert [a["sha256"] for a in item["attachments"]] == expected
    assert stored_attachments(sandbox_iwd) == Counter(expected)
