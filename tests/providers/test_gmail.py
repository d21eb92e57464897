"""GmailInboundProvider through google-api-python-client against the Gmail emulator over http."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest

from connector.config import MailboxSettings
from connector.errors import (
    AuthFailed,
    ConfigError,
    ConnectorError,
    FolderMissing,
    ProviderError,
    ProviderUnavailable,
    Throttled,
)
from connector.models import STAND_IN_DOMAIN, PostAction, RawMessage
from providers import registry
from providers.base import BatchPostActions, Checkable, InboundProvider
from providers.gmail import GmailInboundProvider
from providers.gmail import sync as gmail_sync
from providers.gmail.api import NotFound, RetryPolicy
from tests.mailfactory import make_message
from tests.peers.gmail_emulator import GmailEmulator

FAST = RetryPolicy(attempts=3, initial_seconds=0.01, max_wait_seconds=0.5)


@pytest.fixture
def emu() -> Iterator[GmailEmulator]:
    with GmailEmulator() as server:
        yield server


def gmail_mailbox(emu: GmailEmulator, **extra: Any) -> MailboxSettings:
    data: dict[str, Any] = {
        "id": "gmail-1",
        "address": emu.address,
        "provider": "gmail",
        "gmail": {"oauth": {"kind": "static", "token": "test-token"}, "api_endpoint": emu.url},
    }
    data.update(extra)
    return MailboxSettings.model_validate(data)


def provider_for(emu: GmailEmulator, **extra: Any) -> GmailInboundProvider:
    return GmailInboundProvider(gmail_mailbox(emu, **extra), retry=FAST)


class Tokens:
    """A TokenProvider that hands out `issued` in turn, moving on after each invalidate()."""

    def __init__(self, *issued: str) -> None:
        self.issued = list(issued)
        self.invalidations = 0

    async def token(self) -> str:
        return self.issued[min(self.invalidations, len(self.issued) - 1)]

    def invalidate(self) -> None:
        self.invalidations += 1


def subjects(messages: list[RawMessage]) -> list[str]:
    return [str(message_from_bytes(m.raw)["Subject"]) for m in messages]


async def drain(
    provider: GmailInboundProvider, cursor: str | None, limit: int = 100, folder: str = "INBOX"
) -> tuple[list[RawMessage], str | None, bool]:
    out: list[RawMessage] = []
    resync = False
    while True:
        result = await provider.fetch(folder, cursor, limit)
        out += result.messages
        resync = resync or result.resync
        cursor = result.cursor
        if not result.more:
            return out, cursor, resync


def test_provider_implements_the_ports_and_the_registry_builds_it(emu: GmailEmulator) -> None:
    provider = registry.build_inbound(gmail_mailbox(emu))
    assert isinstance(provider, GmailInboundProvider)
    assert isinstance(provider, InboundProvider | BatchPostActions | Checkable)
    assert isinstance(provider, BatchPostActions) and isinstance(provider, Checkable)


async def test_first_sync_hands_over_every_message_oldest_first_with_its_metadata(
    emu: GmailEmulator,
) -> None:
    """Listing is newest first; the provider sorts by internalDate and keeps threadId and bytes."""
    raws = {n: make_message(n) for n in range(3)}
    emu.add_message(raws[0], internal_date_ms=3_000_000)
    emu.add_message(raws[1], internal_date_ms=1_000_000, thread_id="thread-b")
    emu.add_message(raws[2], internal_date_ms=2_000_000)
    provider = provider_for(emu)
    messages, cursor, resync = await drain(provider, None)
    assert subjects(messages) == ["Question number 1", "Question number 2", "Question number 0"]
    assert messages[0].raw == raws[1] and messages[0].size == len(raws[1])
    assert messages[0].thread_hint == "thread-b"
    assert messages[0].internal_date is not None and messages[0].internal_date.timestamp() == 1000
    assert cursor is not None and cursor.startswith("h:") and not resync
    again, _, _ = await drain(provider, cursor)
    assert again == []
    await provider.close()


async def test_full_sync_in_small_batches_and_pages_skips_nothing(
    emu: GmailEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """25 messages, list pages of 7, batches of 4, with mark-as-moved between batches (which
    removes delivered mail from the label): every message exactly once."""
    monkeypatch.setattr(gmail_sync, "PAGE_SIZE", 7)
    done = emu.add_label("Done")
    ids = [emu.add_message(make_message(n)) for n in range(25)]
    provider = provider_for(emu, post_action="move:Done")
    seen: list[RawMessage] = []
    cursor: str | None = None
    for _ in range(20):
        result = await provider.fetch("INBOX", cursor, 4)
        assert len(result.messages) <= 4
        seen += result.messages
        await provider.apply_post_actions(result.messages, PostAction.parse("move:Done"))
        cursor = result.cursor
        if not result.more:
            break
    else:
        pytest.fail("the full sync never finished")
    assert [m.provider_id for m in seen] == ids
    assert all(emu.labels_of(i) == {done, "UNREAD"} for i in ids)
    await provider.close()


async def test_incremental_sync_returns_only_new_mail_and_never_our_own(emu: GmailEmulator) -> None:
    emu.add_message(make_message(1))
    provider = provider_for(emu)
    _, cursor, _ = await drain(provider, None)
    new = emu.add_message(make_message(2))
    emu.add_message(make_message(3, subject="our reply"), labels=("SENT", "INBOX"))
    emu.add_message(make_message(4, subject="a draft"), labels=("DRAFT",))
    emu.add_message(make_message(5, subject="junk"), labels=("SPAM",))
    gone = emu.add_message(make_message(6))
    emu.remove(gone)
    archived = emu.add_message(make_message(7), labels=())
    result = await provider.fetch("INBOX", cursor, 100)
    assert [m.provider_id for m in result.messages] == [new]
    assert result.cursor is not None and int(result.cursor[2:]) == emu.history_id
    await provider.apply_post_actions([RawMessage("INBOX", archived, b"", 0)], PostAction.parse("move:INBOX"))
    later = await provider.fetch("INBOX", result.cursor, 100)
    assert [m.provider_id for m in later.messages] == [archived]  # labelAdded INBOX counts as new
    await provider.close()


async def test_incremental_batch_cut_short_never_skips_a_message(emu: GmailEmulator) -> None:
    """History order and internalDate order differ; with limit 3 and only the first new message
    of each batch committed (the pipeline stopped there), every message still arrives."""
    provider = provider_for(emu)
    _, cursor, _ = await drain(provider, None)
    dates = [5, 1, 4, 2, 3, 7, 6]
    date_of = {emu.add_message(make_message(n), internal_date_ms=d * 1000): d for n, d in enumerate(dates)}
    delivered: list[str] = []
    for _ in range(3 * len(dates)):
        result = await provider.fetch("INBOX", cursor, 3)
        keys = [date_of[m.provider_id] for m in result.messages]
        assert keys == sorted(keys)
        fresh = [m for m in result.messages if m.provider_id not in delivered]
        if not fresh:
            break
        delivered.append(fresh[0].provider_id)
        cursor = fresh[0].cursor
    assert sorted(delivered) == sorted(date_of)
    await provider.close()


async def test_expired_history_resyncs_the_label(emu: GmailEmulator) -> None:
    first = emu.add_message(make_message(1))
    provider = provider_for(emu)
    _, cursor, _ = await drain(provider, None)
    second = emu.add_message(make_message(2))
    emu.expire_history()
    messages, after, resync = await drain(provider, cursor)
    assert resync and [m.provider_id for m in messages] == [first, second]
    assert after is not None and after.startswith("h:")
    result = await provider.fetch("INBOX", after, 10)
    assert result.messages == [] and not result.resync


async def test_garbage_cursor_restarts_the_label(emu: GmailEmulator) -> None:
    msg = emu.add_message(make_message(1))
    result = await provider_for(emu).fetch("INBOX", "UIDVALIDITY:12", 10)
    assert result.resync and [m.provider_id for m in result.messages] == [msg]


async def test_folder_is_a_label_name_or_id_and_unknown_is_folder_missing(emu: GmailEmulator) -> None:
    label = emu.add_label("Support/Billing")
    msg = emu.add_message(make_message(1), labels=(label,))
    emu.add_message(make_message(2))
    provider = provider_for(emu, folders=["Support/Billing"])
    by_name, _, _ = await drain(provider, None, folder="Support/Billing")
    by_id, _, _ = await drain(provider, None, folder=label)
    assert [m.provider_id for m in by_name] == [m.provider_id for m in by_id] == [msg]
    assert by_name[0].folder == "Support/Billing"
    with pytest.raises(FolderMissing, match="Nope") as info:
        await provider.fetch("Nope", None, 10)
    assert info.value.context["folder"] == "Nope"


async def test_mark_read_removes_unread_and_is_idempotent(emu: GmailEmulator) -> None:
    ids = [emu.add_message(make_message(n)) for n in range(3)]
    provider = provider_for(emu)
    messages, _, _ = await drain(provider, None)
    assert all("UNREAD" in emu.labels_of(i) for i in ids)  # fetching marks nothing
    await provider.apply_post_actions(messages, PostAction.parse("mark_read"))
    await provider.apply_post_action(messages[0], PostAction.parse("mark_read"))
    assert all(emu.labels_of(i) == {"INBOX"} for i in ids)
    assert emu.count("POST", "batchModify") == 2 and emu.count("POST", "/modify") == 0


async def test_move_adds_the_target_label_and_missing_target_is_folder_missing(emu: GmailEmulator) -> None:
    done = emu.add_label("Done")
    msg = emu.add_message(make_message(1))
    provider = provider_for(emu)
    stub = RawMessage("INBOX", msg, b"", 0)
    await provider.apply_post_action(stub, PostAction.parse("move:Done"))
    await provider.apply_post_action(stub, PostAction.parse("move:Done"))
    assert emu.labels_of(msg) == {done, "UNREAD"}
    with pytest.raises(FolderMissing, match="Archive-2024"):
        await provider.apply_post_action(stub, PostAction.parse("move:Archive-2024"))


async def test_delete_moves_to_trash_and_a_gone_message_is_no_error(emu: GmailEmulator) -> None:
    keep, gone = emu.add_message(make_message(1)), emu.add_message(make_message(2))
    emu.remove(gone)
    provider = provider_for(emu)
    stubs = [RawMessage("INBOX", keep, b"", 0), RawMessage("INBOX", gone, b"", 0)]
    await provider.apply_post_actions(stubs, PostAction.parse("delete"))
    await provider.apply_post_actions(stubs, PostAction.parse("delete"))
    assert "TRASH" in emu.labels_of(keep) and "INBOX" not in emu.labels_of(keep)
    gone_too = emu.add_message(make_message(3))
    emu.remove(gone_too)
    await provider.apply_post_actions([RawMessage("INBOX", gone_too, b"", 0)], PostAction.parse("mark_read"))


async def test_oversize_message_comes_headers_only_with_its_size(emu: GmailEmulator) -> None:
    big = make_message(1, body="x" * 3000)
    msg = emu.add_message(big)
    result = await provider_for(emu, max_message_bytes=1024).fetch("INBOX", None, 10)
    [raw] = result.messages
    assert raw.provider_id == msg and raw.headers_only and raw.size == len(big)
    assert raw.raw.endswith(b"\r\n\r\n") and b"xxxx" not in raw.raw
    assert message_from_bytes(raw.raw)["Subject"] == "Question number 1"
    assert emu.count("GET", f"messages/{msg}") == 2  # minimal, then metadata: never the body


async def test_429_with_retry_after_is_honoured_then_succeeds(emu: GmailEmulator) -> None:
    emu.add_message(make_message(1))
    emu.fail_next(429, retry_after="0.4", path_contains="/messages")
    started = time.monotonic()
    result = await provider_for(emu).fetch("INBOX", None, 10)
    assert len(result.messages) == 1 and time.monotonic() - started >= 0.4


async def test_lasting_throttling_is_throttled_with_retry_after(emu: GmailEmulator) -> None:
    emu.fail_next(429, retry_after="0.05", count=10)
    with pytest.raises(Throttled) as info:
        await provider_for(emu).fetch("INBOX", None, 10)
    assert info.value.retry_after_seconds == 0.05 and emu.count() == 3  # FAST: 3 attempts
    emu.faults.clear()
    emu.fail_next(403, reason="userRateLimitExceeded", retry_after="3600")
    with pytest.raises(Throttled) as long_wait:
        await provider_for(emu).fetch("INBOX", None, 10)
    assert long_wait.value.retry_after_seconds == 3600 and emu.count() == 4  # not slept through


async def test_server_errors_are_retried_then_unavailable(emu: GmailEmulator) -> None:
    emu.add_message(make_message(1))
    emu.fail_next(500, count=2)
    result = await provider_for(emu).fetch("INBOX", None, 10)
    assert len(result.messages) == 1
    emu.fail_next(503, count=5)
    with pytest.raises(ProviderUnavailable, match="503 backendError"):
        await provider_for(emu).fetch("INBOX", None, 10)
    emu.faults.clear()
    emu.fail_next(500, count=3, path_contains="/messages/")
    with pytest.raises(ProviderUnavailable, match=r"messages\.get") as info:
        await provider_for(emu).fetch("INBOX", None, 10)
    assert info.value.context["folder"] == "INBOX" and info.value.context["provider_id"]


async def test_other_403_is_a_provider_error_with_the_reason_and_no_retry(emu: GmailEmulator) -> None:
    emu.fail_next(403, reason="domainPolicy")
    with pytest.raises(ProviderError, match="403 domainPolicy") as info:
        await provider_for(emu).fetch("INBOX", None, 10)
    assert type(info.value) is ProviderError and emu.count() == 1
    assert info.value.context == {"mailbox": "gmail-1"}


async def test_401_refreshes_the_token_once_and_retries(emu: GmailEmulator) -> None:
    emu.tokens = {"fresh-token"}
    tokens = Tokens("stale-token", "fresh-token")
    msg = emu.add_message(make_message(1))
    provider = GmailInboundProvider(gmail_mailbox(emu), tokens=tokens, retry=FAST)
    result = await provider.fetch("INBOX", None, 10)
    assert [m.provider_id for m in result.messages] == [msg] and tokens.invalidations == 1


async def test_401_after_refresh_is_auth_failed_without_the_token(emu: GmailEmulator) -> None:
    tokens = Tokens("secret-token-a", "secret-token-b")
    provider = GmailInboundProvider(gmail_mailbox(emu), tokens=tokens, retry=FAST)
    with pytest.raises(AuthFailed) as info:
        await provider.fetch("INBOX", None, 10)
    assert info.value.code == "auth_required" and tokens.invalidations == 1
    assert "secret-token" not in str(info.value) and emu.count() == 2


async def test_unreachable_endpoint_is_provider_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    box = MailboxSettings.model_validate(
        {
            "id": "gmail-down",
            "address": "a@example.com",
            "provider": "gmail",
            "gmail": {"oauth": {"kind": "static", "token": "t"}, "api_endpoint": f"http://127.0.0.1:{port}/"},
        }
    )
    provider = GmailInboundProvider(box, retry=FAST)
    with pytest.raises(ProviderUnavailable, match="connection failed") as info:
        await provider.fetch("INBOX", None, 10)
    assert info.value.context["mailbox"] == "gmail-down"
    assert provider.api._opened == []  # every failed connection was closed and forgotten


async def test_check_reports_the_account_and_every_label(emu: GmailEmulator) -> None:
    emu.add_label("Done")
    facts = await provider_for(emu, post_action="move:Done").check()
    assert emu.address in facts["account"]
    assert facts["folder INBOX"] == "label INBOX exists" and facts["move target"] == "label Label_9 exists"
    with pytest.raises(FolderMissing, match="Missing"):
        await provider_for(emu, folders=["INBOX", "Missing"]).check()


def test_plaintext_endpoint_off_loopback_is_refused(emu: GmailEmulator) -> None:
    """The bearer token never goes over http:// to another host."""
    box = gmail_mailbox(emu)
    assert box.gmail is not None
    remote = box.model_copy(
        update={"gmail": box.gmail.model_copy(update={"api_endpoint": "http://gmail.example.com/"})}
    )
    with pytest.raises(ConfigError, match=r"gmail\.api_endpoint"):
        GmailInboundProvider(remote)


# ---------------------------------------------------------------------- review findings


async def test_one_history_record_larger_than_the_limit_comes_whole_and_the_cursor_moves_on(
    emu: GmailEmulator,
) -> None:
    """A bulk label change is one history record: the batch takes all of it (past the limit)
    rather than cutting inside it, which left the cursor where it was, forever."""
    provider = provider_for(emu)
    _, cursor, _ = await drain(provider, None)
    archived = [emu.add_message(make_message(n), labels=("STARRED",)) for n in range(8)]
    record = emu.label_many(archived, "INBOX")
    later = emu.add_message(make_message(9))
    first = await provider.fetch("INBOX", cursor, 5)
    assert sorted(m.provider_id for m in first.messages) == sorted(archived)
    assert first.cursor is not None and first.more
    assert record <= int(first.cursor[2:]) < emu.history_id  # past the record, short of the next
    second = await provider.fetch("INBOX", first.cursor, 5)
    assert [m.provider_id for m in second.messages] == [later] and not second.more
    assert second.cursor == f"h:{emu.history_id}"
    await provider.close()


async def test_a_message_that_keeps_failing_becomes_a_stand_in_and_the_folder_moves_on(
    emu: GmailEmulator,
) -> None:
    """Its lookup fails every cycle (500): two cycles fail as before, the third hands over the
    good mail and a stand-in naming the message; the post-action leaves the original alone."""
    good1 = emu.add_message(make_message(1))
    bad = emu.add_message(make_message(2))
    good2 = emu.add_message(make_message(3))
    emu.fail_next(500, count=10_000, path_contains=f"messages/{bad}")
    provider = provider_for(emu)
    provider.failures.min_seconds = 0  # at once here; the wait is tested in test_fetch_failures
    for _ in range(2):
        with pytest.raises(ProviderUnavailable) as info:
            await provider.fetch("INBOX", None, 200)
        assert info.value.context["provider_id"] == bad
    result = await provider.fetch("INBOX", None, 200)
    assert [m.provider_id for m in result.messages] == [good1, good2, bad]  # unknown date: last
    note = message_from_bytes(result.messages[2].raw)
    assert note["Message-ID"].endswith(f"@{STAND_IN_DOMAIN}>") and bad in note.get_payload()
    assert result.cursor is not None and result.cursor.startswith("h:") and not result.more
    emu.faults.clear()
    await provider.apply_post_actions(result.messages, PostAction.parse("mark_read"))
    await provider.apply_post_actions(result.messages[2:], PostAction.parse("delete"))
    assert emu.labels_of(bad) == {"INBOX", "UNREAD"}
    assert emu.labels_of(good1) == emu.labels_of(good2) == {"INBOX"}
    await provider.close()


async def test_a_download_that_keeps_failing_in_history_is_a_stand_in_with_its_date_and_cursor(
    emu: GmailEmulator,
) -> None:
    """Only the raw download fails (400 for that id): the stand-in keeps the message's date,
    thread and place in the history, and the next fetch starts after it."""
    provider = provider_for(emu)
    provider.failures.min_seconds = 0  # at once here; the wait is tested in test_fetch_failures
    _, cursor, _ = await drain(provider, None)
    bad = emu.add_message(make_message(1), internal_date_ms=5_000_000, thread_id="thread-x")
    good = emu.add_message(make_message(2), internal_date_ms=6_000_000)
    emu.fail_next(400, count=10_000, path_contains=f"messages/{bad}", query_contains="format=raw")
    for _ in range(2):
        with pytest.raises(ProviderError, match="400 badRequest"):
            await provider.fetch("INBOX", cursor, 10)
    result = await provider.fetch("INBOX", cursor, 10)
    stand_in, delivered = result.messages
    assert stand_in.provider_id == bad and b"could not be downloaded" in stand_in.raw
    assert stand_in.internal_date is not None and stand_in.internal_date.timestamp() == 5000
    assert stand_in.thread_hint == "thread-x" and delivered.provider_id == good
    assert stand_in.cursor is not None and stand_in.cursor != cursor
    again = await provider.fetch("INBOX", result.cursor, 10)
    assert again.messages == []
    await provider.close()


async def test_a_successful_download_resets_the_failure_count(emu: GmailEmulator) -> None:
    msg = emu.add_message(make_message(1))
    provider = provider_for(emu)
    for _ in range(3):  # three failures in all, never three in a row: never a stand-in
        emu.fail_next(400, path_contains=f"messages/{msg}", query_contains="format=raw")
        with pytest.raises(ProviderError):
            await provider.fetch("INBOX", None, 10)
        result = await provider.fetch("INBOX", None, 10)
        assert result.messages[0].raw == make_message(1)


async def test_throttling_on_one_message_never_turns_it_into_a_stand_in(emu: GmailEmulator) -> None:
    msg = emu.add_message(make_message(1))
    emu.fail_next(429, count=10_000, path_contains=f"messages/{msg}")
    provider = provider_for(emu)
    for _ in range(5):
        with pytest.raises(Throttled):
            await provider.fetch("INBOX", None, 10)
    emu.faults.clear()
    result = await provider.fetch("INBOX", None, 10)
    assert result.messages[0].raw == make_message(1)


async def test_wrong_user_id_is_a_provider_error_naming_the_user_id(emu: GmailEmulator) -> None:
    provider = provider_for(emu, gmail={**gmail_mailbox(emu).model_dump()["gmail"], "user_id": "other@x.com"})
    with pytest.raises(NotFound, match=r"other@x\.com") as info:
        await provider.fetch("INBOX", None, 10)
    assert isinstance(info.value, ProviderError) and isinstance(info.value, ConnectorError)
    assert "labels.list: 404" in str(info.value) and info.value.context["mailbox"] == "gmail-1"
    with pytest.raises(ProviderError, match=r"users\.getProfile: 404.*gmail\.user_id 'other@x.com'"):
        await provider.check()


async def test_daily_limit_is_throttled_at_once_and_missing_scope_is_auth_failed(emu: GmailEmulator) -> None:
    emu.fail_next(403, reason="dailyLimitExceeded")
    with pytest.raises(Throttled, match="dailyLimitExceeded"):
        await provider_for(emu).fetch("INBOX", None, 10)
    assert emu.count() == 1
    emu.fail_next(403, reason="insufficientPermissions")
    with pytest.raises(AuthFailed, match=r"auth/gmail\.modify"):
        await provider_for(emu).fetch("INBOX", None, 10)


async def test_missing_internal_date_is_none_not_1970(emu: GmailEmulator) -> None:
    msg = emu.add_message(make_message(1))
    emu.forget_date(msg)
    [raw] = (await provider_for(emu).fetch("INBOX", None, 10)).messages
    assert raw.provider_id == msg and raw.internal_date is None


async def test_batch_refused_for_one_id_falls_back_to_one_by_one(emu: GmailEmulator) -> None:
    ids = [emu.add_message(make_message(n)) for n in range(3)]
    emu.fail_next(400, reason="invalidArgument", path_contains="batchModify")
    provider = provider_for(emu)
    stubs = [RawMessage("INBOX", i, b"", 0) for i in ids]
    await provider.apply_post_actions(stubs, PostAction.parse("mark_read"))
    assert all(emu.labels_of(i) == {"INBOX"} for i in ids) and emu.count("POST", "/modify") == 3
