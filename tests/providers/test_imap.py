"""ImapInboundProvider against a real private Dovecot (tests/peers/dovecot.py), one fresh user per test."""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import ssl
import time
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest

from connector.errors import AuthFailed, ConfigError, ProviderError, ProviderUnavailable
from connector.models import PostAction, RawMessage
from providers.base import Checkable, InboundProvider, PushCapable
from providers.imap import ImapInboundProvider, InsecureTransportRefused
from tests.peers.dovecot import Dovecot, mutf7_encode, sample_message
from tests.peers.dovecot import imap_mailbox as mailbox

ODD_FOLDER = "Work Items ü"


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    with Dovecot(oauth=True) as server:
        yield server


@pytest.fixture
def user(dovecot: Dovecot) -> tuple[str, str]:
    return dovecot.add_user()


def verifier(dovecot: Dovecot, user: tuple[str, str], folder: str = "INBOX") -> imaplib.IMAP4:
    """A second, independent client (imaplib) to look at the server state."""
    client = imaplib.IMAP4("127.0.0.1", dovecot.plain_port)
    client.login(*user)
    client.select(f'"{mutf7_encode(folder)}"')
    return client


def uids_with(client: imaplib.IMAP4, criterion: str) -> list[int]:
    typ, data = client.uid("SEARCH", criterion)
    assert typ == "OK"
    return [int(x) for x in (data[0] or b"").split()]


def message_ids(messages: list[RawMessage]) -> list[str]:
    return [str(message_from_bytes(m.raw)["Message-ID"]) for m in messages]


async def drain(
    provider: ImapInboundProvider, folder: str, cursor: str | None, limit: int = 1000
) -> tuple[list[RawMessage], str | None]:
    out: list[RawMessage] = []
    while True:
        result = await provider.fetch(folder, cursor, limit)
        out.extend(result.messages)
        cursor = result.cursor
        if not result.more:
            return out, cursor


def test_provider_implements_the_ports(dovecot: Dovecot, user: tuple[str, str]) -> None:
    """The provider satisfies InboundProvider, PushCapable and Checkable."""
    provider = ImapInboundProvider(mailbox(dovecot, user))
    assert isinstance(provider, InboundProvider)
    assert isinstance(provider, PushCapable)
    assert isinstance(provider, Checkable)


@pytest.mark.parametrize("security", ["tls", "starttls", "plain"])
async def test_each_security_mode_fetches_the_same_messages(
    dovecot: Dovecot, user: tuple[str, str], security: str
) -> None:
    """Implicit TLS, STARTTLS and loopback plaintext return identical messages, cursors and metadata."""
    sent = [sample_message(i) for i in range(7)]
    dovecot.deliver(user[0], sent)
    port = dovecot.tls_port if security == "tls" else dovecot.plain_port
    provider = ImapInboundProvider(mailbox(dovecot, user, security=security, port=port))
    try:
        result = await provider.fetch("INBOX", None, 100)
        facts = await provider.check()
    finally:
        await provider.close()
    assert sorted(m.raw for m in result.messages) == sorted(sent)
    assert not result.more and not result.resync
    validity = result.cursor.split(":")[0] if result.cursor else ""
    assert [m.provider_id for m in result.messages] == [f"{validity}:{u}" for u in range(1, 8)]
    assert result.cursor == f"{validity}:7"
    assert all(m.size == len(m.raw) and m.internal_date is not None for m in result.messages)
    assert facts["tls"].startswith("TLSv1.") if security != "plain" else facts["tls"].startswith("plain")


async def test_wrong_ca_gives_clear_tls_error_from_check(dovecot: Dovecot, user: tuple[str, str]) -> None:
    """A CA that did not sign the server certificate makes check() fail with "certificate verify failed"."""
    provider = ImapInboundProvider(mailbox(dovecot, user, ca_file=dovecot.wrong_ca_file))
    with pytest.raises(ProviderUnavailable, match="TLS certificate verify failed") as info:
        await provider.check()
    assert info.value.context["server"] == f"127.0.0.1:{dovecot.tls_port}"


async def test_starttls_with_wrong_ca_is_refused_before_login(
    dovecot: Dovecot, user: tuple[str, str]
) -> None:
    """STARTTLS verifies the certificate too; the password is never sent over an unverified channel."""
    provider = ImapInboundProvider(
        mailbox(dovecot, user, security="starttls", port=dovecot.plain_port, ca_file=dovecot.wrong_ca_file)
    )
    with pytest.raises(ProviderUnavailable, match="TLS certificate verify failed"):
        await provider.fetch("INBOX", None, 10)


def test_plaintext_to_remote_host_is_refused_without_allow_insecure(
    dovecot: Dovecot, user: tuple[str, str]
) -> None:
    """security: plain to a non-loopback host is a configuration error unless allow_insecure is set."""
    settings = mailbox(dovecot, user, host="192.0.2.10", security="plain")
    with pytest.raises(InsecureTransportRefused, match="allow_insecure") as info:
        ImapInboundProvider(settings)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ProviderError)
    ImapInboundProvider(mailbox(dovecot, user, host="192.0.2.10", security="plain", allow_insecure=True))


async def test_wrong_password_fails_fast_as_auth_failed(dovecot: Dovecot, user: tuple[str, str]) -> None:
    """A rejected LOGIN raises AuthFailed within a few seconds and never echoes the password."""
    bad = "wrong-secret-123"
    provider = ImapInboundProvider(mailbox(dovecot, (user[0], bad)))
    started = time.monotonic()
    with pytest.raises(AuthFailed) as info:
        await provider.fetch("INBOX", None, 10)
    assert time.monotonic() - started < 5
    assert info.value.code == "auth_required"
    assert bad not in str(info.value) and bad not in repr(info.value.context)


async def test_xoauth2_valid_token_logs_in(dovecot: Dovecot, user: tuple[str, str]) -> None:
    """XOAUTH2 with a token the introspection endpoint accepts logs in and fetches."""
    dovecot.oauth_tokens["tok-good-" + user[0]] = user[0]
    dovecot.deliver(user[0], [sample_message(1)])
    provider = ImapInboundProvider(
        mailbox(
            dovecot, (user[0], None), auth="xoauth2", oauth={"kind": "static", "token": "tok-good-" + user[0]}
        )
    )
    try:
        result = await provider.fetch("INBOX", None, 10)
    finally:
        await provider.close()
    assert len(result.messages) == 1


async def test_xoauth2_rejected_token_fails_fast_as_auth_failed(
    dovecot: Dovecot, user: tuple[str, str]
) -> None:
    """A rejected XOAUTH2 token raises AuthFailed in under 5 s (aioimaplib alone hangs there)."""
    token = "tok-unknown-abcdef"
    provider = ImapInboundProvider(
        mailbox(dovecot, (user[0], None), auth="xoauth2", oauth={"kind": "static", "token": token})
    )
    started = time.monotonic()
    with pytest.raises(AuthFailed) as info:
        await provider.fetch("INBOX", None, 10)
    assert time.monotonic() - started < 5
    assert token not in str(info.value)


async def test_thousand_messages_in_two_folders_are_fetched_exactly_once(
    dovecot: Dovecot, user: tuple[str, str]
) -> None:
    """1,000 messages in INBOX and a non-ASCII folder come back once each across cursor-chained fetches."""
    dovecot.create_folder(user[0], ODD_FOLDER)
    dovecot.deliver(user[0], [sample_message(i) for i in range(600)])
    dovecot.deliver(user[0], [sample_message(1000 + i) for i in range(400)], folder=ODD_FOLDER)
    provider = ImapInboundProvider(mailbox(dovecot, user, folders=["INBOX", ODD_FOLDER], fetch_batch=50))
    seen: list[str] = []
    calls = 0
    try:
        for folder in ("INBOX", ODD_FOLDER):
            cursor: str | None = None
            while True:
                result = await provider.fetch(folder, cursor, 120)
                calls += 1
                assert len(result.messages) <= 120
                assert all(m.folder == folder and m.cursor == m.provider_id for m in result.messages)
                seen.extend(message_ids(result.messages))
                cursor = result.cursor
                if not result.more:
                    break
            again = await provider.fetch(folder, cursor, 120)
            assert again.messages == [] and again.cursor == cursor
    finally:
        await provider.close()
    assert len(seen) == 1000 and len(set(seen)) == 1000
    assert calls == 5 + 4
    client = verifier(dovecot, user)
    assert uids_with(client, "SEEN") == []
    client.logout()


async def test_fetch_leaves_flags_untouched(dovecot: Dovecot, user: tuple[str, str]) -> None:
    """Fetching uses BODY.PEEK: no message becomes \\Seen, and existing flags are reported."""
    dovecot.deliver(user[0], [sample_message(1)])
    dovecot.deliver(user[0], [sample_message(2)], seen=True)
    provider = ImapInboundProvider(mailbox(dovecot, user))
    try:
        result = await provider.fetch("INBOX", None, 10)
    finally:
        await provider.close()
    flags = {m.provider_id.split(":")[1]: m.flags for m in result.messages}
    assert any("\\Seen" in f for f in flags.values()) and any("\\Seen" not in f for f in flags.values())
    client = verifier(dovecot, user)
    assert len(uids_with(client, "UNSEEN")) == 1
    client.logout()


async def _fetch_all(
    dovecot: Dovecot, user: tuple[str, str], count: int
) -> tuple[ImapInboundProvider, list[RawMessage]]:
    dovecot.deliver(user[0], [sample_message(i) for i in range(count)])
    provider = ImapInboundProvider(mailbox(dovecot, user))
    result = await provider.fetch("INBOX", None, 100)
    assert len(result.messages) == count
    return provider, result.messages


async def test_mark_read_sets_seen_on_the_server(dovecot: Dovecot, user: tuple[str, str]) -> None:
    """mark_read stores \\Seen on exactly that message; repeating it is harmless."""
    provider, messages = await _fetch_all(dovecot, user, 3)
    try:
        await provider.apply_post_action(messages[1], PostAction.parse("mark_read"))
        await provider.apply_post_action(messages[1], PostAction.parse("mark_read"))
        await provider.apply_post_action(messages[2], PostAction.parse("none"))
    finally:
        await provider.close()
    client = verifier(dovecot, user)
    assert uids_with(client, "SEEN") == [2]
    client.logout()


@pytest.mark.parametrize("target", ["Archive", "\\Archive", "archive"])
async def test_move_puts_the_message_in_the_target_folder(
    dovecot: Dovecot, user: tuple[str, str], target: str
) -> None:
    """move:<name> or move:\\Archive (SPECIAL-USE) moves the message; a second call is a no-op."""
    provider, messages = await _fetch_all(dovecot, user, 2)
    try:
        await provider.apply_post_action(messages[0], PostAction.parse(f"move:{target}"))
        await provider.apply_post_action(messages[0], PostAction.parse(f"move:{target}"))
    finally:
        await provider.close()
    inbox = verifier(dovecot, user)
    assert uids_with(inbox, "ALL") == [2]
    inbox.logout()
    archive = verifier(dovecot, user, "Archive")
    typ, data = archive.uid("FETCH", "1:*", "(BODY.PEEK[])")
    assert typ == "OK" and data[0] is not None and data[0][1] == messages[0].raw
    archive.logout()


async def test_delete_expunges_only_that_message(dovecot: Dovecot, user: tuple[str, str]) -> None:
    """delete flags \\Deleted and UID EXPUNGEs just that UID."""
    provider, messages = await _fetch_all(dovecot, user, 3)
    try:
        await provider.apply_post_action(messages[0], PostAction.parse("delete"))
        await provider.apply_post_action(messages[0], PostAction.parse("delete"))
    finally:
        await provider.close()
    client = verifier(dovecot, user)
    assert uids_with(client, "ALL") == [2, 3]
    client.logout()


async def test_post_action_with_stale_uidvalidity_does_nothing(
    dovecot: Dovecot, user: tuple[str, str]
) -> None:
    """A message whose UIDVALIDITY no longer matches its folder is left alone (its UID may name another)."""
    provider, _ = await _fetch_all(dovecot, user, 1)
    stale = RawMessage(folder="INBOX", provider_id="1:1", raw=b"", size=0)
    try:
        await provider.apply_post_action(stale, PostAction.parse("delete"))
    finally:
        await provider.close()
    client = verifier(dovecot, user)
    assert uids_with(client, "ALL") == [1]
    client.logout()


async def test_move_to_missing_folder_names_the_target(dovecot: Dovecot, user: tuple[str, str]) -> None:
    """A move target that exists neither by name nor by attribute raises FolderMissing naming it."""
    from connector.errors import FolderMissing

    provider, messages = await _fetch_all(dovecot, user, 1)
    try:
        with pytest.raises(FolderMissing, match="No Such Folder"):
            await provider.apply_post_action(messages[0], PostAction.parse("move:No Such Folder"))
    finally:
        await provider.close()


async def test_missing_folder_raises_folder_missing(dovecot: Dovecot, user: tuple[str, str]) -> None:
    """Fetching or checking a folder that does not exist raises FolderMissing with the folder name."""
    from connector.errors import FolderMissing

    provider = ImapInboundProvider(mailbox(dovecot, user, folders=["INBOX", "Nope"]))
    try:
        with pytest.raises(FolderMissing) as info:
            await provider.fetch("Nope", None, 10)
        assert info.value.context["folder"] == "Nope"
        with pytest.raises(FolderMissing):
            await provider.check()
    finally:
        await provider.close()


async def test_uidvalidity_change_under_open_connection_resyncs(
    dovecot: Dovecot, user: tuple[str, str]
) -> None:
    """doveadm --uid-validity kills the open session (BYE inconsistent); the fetch reconnects and resyncs."""
    provider, first = await _fetch_all(dovecot, user, 5)
    try:
        cursor = first[-1].cursor
        dovecot.doveadm("mailbox", "update", "-u", user[0], "--uid-validity", "4242", "INBOX")
        result = await provider.fetch("INBOX", cursor, 100)
    finally:
        await provider.close()
    assert result.resync
    assert result.cursor == "4242:5"
    assert sorted(m.raw for m in result.messages) == sorted(m.raw for m in first)


async def test_index_removal_gives_new_uidvalidity_and_resync(
    dovecot: Dovecot, user: tuple[str, str]
) -> None:
    """After dovecot-uidlist and indexes are removed, a saved cursor leads to resync=True and a replay."""
    provider, first = await _fetch_all(dovecot, user, 4)
    cursor = first[-1].cursor
    await provider.close()
    dovecot.remove_index(user[0])
    provider = ImapInboundProvider(mailbox(dovecot, user))
    try:
        result = await provider.fetch("INBOX", cursor, 100)
    finally:
        await provider.close()
    assert result.resync and result.cursor and result.cursor.split(":")[0] != (cursor or "").split(":")[0]
    assert sorted(m.raw for m in result.messages) == sorted(m.raw for m in first)


async def test_garbage_cursor_restarts_the_folder(dovecot: Dovecot, user: tuple[str, str]) -> None:
    """A cursor that is not "V:U" restarts from UID 1 with resync=True instead of failing."""
    dovecot.deliver(user[0], [sample_message(1)])
    provider = ImapInboundProvider(mailbox(dovecot, user))
    try:
        result = await provider.fetch("INBOX", "not-a-cursor", 10)
    finally:
        await provider.close()
    assert result.resync and len(result.messages) == 1


async def test_oversize_message_comes_headers_only_with_real_size(
    dovecot: Dovecot, user: tuple[str, str]
) -> None:
    """A message above max_message_bytes is returned as its header block, flagged, with the real size."""
    big = sample_message(1, size=5000)
    small = sample_message(2)
    dovecot.deliver(user[0], [big, small])
    provider = ImapInboundProvider(mailbox(dovecot, user, max_message_bytes=2048))
    try:
        result = await provider.fetch("INBOX", None, 10)
    finally:
        await provider.close()
    by_raw = {m.headers_only: m for m in result.messages}
    assert by_raw[True].size == len(big)
    assert big.startswith(by_raw[True].raw) and by_raw[True].raw.endswith(b"\r\n\r\n")
    assert by_raw[False].raw == small


async def test_idle_reports_a_message_appended_by_another_client(
    dovecot: Dovecot, user: tuple[str, str]
) -> None:
    """wait_for_change returns True within 2 s of another client's APPEND (Dovecot notifies in ~0.5 s)."""
    provider = ImapInboundProvider(mailbox(dovecot, user))
    try:
        first = await provider.fetch("INBOX", None, 10)
        waiter = asyncio.create_task(provider.wait_for_change("INBOX", 10))
        await asyncio.sleep(0)  # let IDLE start before the other client appends

        def append() -> None:
            client = imaplib.IMAP4("127.0.0.1", dovecot.plain_port)
            client.login(*user)
            client.append("INBOX", "", imaplib.Time2Internaldate(time.time()), sample_message(9))
            client.logout()

        started = time.monotonic()
        await asyncio.to_thread(append)
        assert await asyncio.wait_for(waiter, 5) is True
        assert time.monotonic() - started < 2
        after = await provider.fetch("INBOX", first.cursor, 10)
        assert len(after.messages) == 1
    finally:
        await provider.close()


async def test_wait_for_change_times_out_false_and_session_stays_usable(
    dovecot: Dovecot, user: tuple[str, str]
) -> None:
    """With no new mail wait_for_change returns False at the timeout, and the next fetch works."""
    provider = ImapInboundProvider(mailbox(dovecot, user))
    try:
        first = await provider.fetch("INBOX", None, 10)
        started = time.monotonic()
        assert await provider.wait_for_change("INBOX", 0.3) is False
        assert time.monotonic() - started < 2
        dovecot.deliver(user[0], [sample_message(3)])
        assert await provider.wait_for_change("INBOX", 5) is True  # arrived while not idling
        assert len((await provider.fetch("INBOX", first.cursor, 10)).messages) == 1
    finally:
        await provider.close()


async def test_dovecot_restart_recovers_on_the_next_calls() -> None:
    """Dovecot killed and restarted: the next call works or is ProviderUnavailable; the one after works."""
    with Dovecot() as server:
        user = server.add_user()
        server.deliver(user[0], [sample_message(i) for i in range(3)])
        provider = ImapInboundProvider(mailbox(server, user))
        try:
            first = await provider.fetch("INBOX", None, 10)
            server.kill()
            server.start()
            server.deliver(user[0], [sample_message(7)])
            with contextlib.suppress(ProviderUnavailable):
                await provider.fetch("INBOX", first.cursor, 10)
            result = await provider.fetch("INBOX", first.cursor, 10)
            assert len(result.messages) == 1 and not result.resync
        finally:
            await provider.close()


async def test_server_down_fails_fast_then_recovers_after_backoff() -> None:
    """While Dovecot is down calls raise ProviderUnavailable quickly; after it returns a call succeeds
    once the reconnect backoff (1 s after the first failed connect) has passed."""
    with Dovecot() as server:
        user = server.add_user()
        server.deliver(user[0], [sample_message(1)])
        provider = ImapInboundProvider(mailbox(server, user))
        try:
            first = await provider.fetch("INBOX", None, 10)
            server.kill()
            started = time.monotonic()
            with pytest.raises(ProviderUnavailable):
                await provider.fetch("INBOX", first.cursor, 10)
            with pytest.raises(ProviderUnavailable, match="backoff"):
                await provider.fetch("INBOX", first.cursor, 10)
            assert time.monotonic() - started < 2
            server.start()
            deadline = time.monotonic() + 5
            while True:
                try:
                    result = await provider.fetch("INBOX", first.cursor, 10)
                    break
                except ProviderUnavailable:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
            assert result.messages == [] and result.cursor == first.cursor
        finally:
            await provider.close()


async def test_connection_dropped_mid_session_is_reopened_transparently(
    dovecot: Dovecot, user: tuple[str, str]
) -> None:
    """A session the server closed between calls is replaced at the start of the next call."""
    provider = ImapInboundProvider(mailbox(dovecot, user))
    try:
        await provider.fetch("INBOX", None, 10)
        dovecot.doveadm("kick", user[0])
        assert provider._session is not None
        await asyncio.wait_for(asyncio.shield(provider._session.client.protocol.lost), 5)
        dovecot.deliver(user[0], [sample_message(1)])
        result = await provider.fetch("INBOX", None, 10)
        assert len(result.messages) == 1
    finally:
        await provider.close()


def test_tls_context_verifies_by_default(dovecot: Dovecot, user: tuple[str, str]) -> None:
    """Certificates and host names are verified unless a person sets verify_tls: false."""
    from providers.imap.connection import tls_context

    settings = mailbox(dovecot, user).imap
    assert settings is not None
    ctx = tls_context(settings)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


async def test_a_uid_that_comes_back_without_a_body_is_asked_for_again_not_skipped(
    dovecot: Dovecot, user: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the server lists a UID but its body does not arrive, the cursor stops before it; the
    next fetch gets it and everything after it, so no message is skipped for good."""
    import providers.imap.provider as provider_module

    dovecot.deliver(user[0], [sample_message(i) for i in range(3)])
    real = provider_module.fetch_messages
    calls = 0

    async def loses_the_second(*args: Any, **kwargs: Any) -> list[RawMessage]:
        nonlocal calls
        calls += 1
        messages = await real(*args, **kwargs)
        return [m for i, m in enumerate(messages) if i != 1] if calls == 1 else messages

    monkeypatch.setattr(provider_module, "fetch_messages", loses_the_second)
    provider = ImapInboundProvider(mailbox(dovecot, user))
    try:
        first = await provider.fetch("INBOX", None, 10)
        second = await provider.fetch("INBOX", first.cursor, 10)
    finally:
        await provider.close()
    assert len(first.messages) == 1 and not first.more
    assert [m.provider_id for m in second.messages] == [
        first.cursor.split(":")[0] + f":{uid}"
        for uid in (2, 3)  # type: ignore[union-attr]
    ]


async def test_a_uid_never_returned_holds_its_folder_only_until_its_stand_in(
    dovecot: Dovecot, user: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A UID the server keeps listing but FETCH never returns: the folder stops before it and the
    fetch names it, until it has failed 3 times over 15 minutes; then a stand-in takes its place,
    the mail behind it follows, and nothing is skipped silently."""
    import providers.imap.provider as provider_module
    from providers.fetch_failures import FetchFailures

    dovecot.deliver(user[0], [sample_message(i) for i in range(3)])
    real = provider_module.fetch_messages

    async def never_returns_uid_2(*args: Any, **kwargs: Any) -> list[RawMessage]:
        return [m for m in await real(*args, **kwargs) if not m.provider_id.endswith(":2")]

    monkeypatch.setattr(provider_module, "fetch_messages", never_returns_uid_2)
    now = [0.0]
    provider = ImapInboundProvider(mailbox(dovecot, user), failures=FetchFailures(clock=lambda: now[0]))
    try:
        first = await provider.fetch("INBOX", None, 10)
        with pytest.raises(ProviderError, match="UID 2"):
            await provider.fetch("INBOX", first.cursor, 10)
        now[0] = 901.0
        last = await provider.fetch("INBOX", first.cursor, 10)
    finally:
        await provider.close()
    validity = first.cursor.split(":")[0]  # type: ignore[union-attr]
    assert [m.provider_id for m in first.messages] == [f"{validity}:1"]
    assert [(m.provider_id, m.stand_in) for m in last.messages] == [
        (f"{validity}:2", True),
        (f"{validity}:3", False),
    ]
    assert b"UID 2" in last.messages[0].raw and last.cursor == f"{validity}:3"


async def test_a_backlog_is_searched_once_and_fetched_batch_by_batch(
    dovecot: Dovecot, user: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Draining 250 messages 50 at a time costs one UID SEARCH, not one per batch, and still
    hands over every message exactly once, in order."""
    from providers.imap.connection import ImapSession

    dovecot.deliver(user[0], [sample_message(i) for i in range(250)])
    searches = 0
    real = ImapSession.search_after

    async def counted(self: ImapSession, uid: int, folder: str) -> list[int]:
        nonlocal searches
        searches += 1
        return await real(self, uid, folder)

    monkeypatch.setattr(ImapSession, "search_after", counted)
    provider = ImapInboundProvider(mailbox(dovecot, user))
    try:
        messages, _ = await drain(provider, "INBOX", None, limit=50)
    finally:
        await provider.close()
    assert [int(m.provider_id.split(":")[1]) for m in messages] == list(range(1, 251))
    assert searches == 1


async def test_after_a_reconnect_the_rest_of_a_backlog_counts_as_a_change() -> None:
    """Dovecot restarts while a backlog is half fetched: the wait on the new connection reports a
    change at once, so the caller's next cycle fetches the rest instead of idling until the interval."""
    with Dovecot() as server:  # its own server: the restart must not disturb other tests
        user = server.add_user()
        server.deliver(user[0], [sample_message(i) for i in range(5)])
        provider = ImapInboundProvider(mailbox(server, user))
        try:
            first = await provider.fetch("INBOX", None, 2)
            assert first.more
            server.restart()
            changed = None
            for _ in range(2):  # the first call may still meet the dead connection
                with contextlib.suppress(ProviderUnavailable):
                    changed = await asyncio.wait_for(provider.wait_for_change("INBOX", 30), 10)
                    break
            rest, _ = await drain(provider, "INBOX", first.cursor)
        finally:
            await provider.close()
    assert changed is True
    assert len(rest) == 3
