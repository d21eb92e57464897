"""GraphInboundProvider against the Graph emulator (real HTTP on 127.0.0.1, real httpx client)."""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

import pytest

from connector.config import MailboxSettings
from connector.errors import (
    AuthFailed,
    ConfigError,
    FolderMissing,
    ProviderError,
    ProviderUnavailable,
    Throttled,
)
from connector.models import FetchResult, PostAction, RawMessage
from providers.fetch_failures import FetchFailures
from providers.graph import GraphInboundProvider
from providers.graph.api import RetryPolicy
from providers.registry import build_inbound
from tests.peers.authority import FakeAuthority
from tests.peers.graph_emulator import GraphEmulator

FAST = RetryPolicy(attempts=3, backoff_seconds=0.01, max_retry_after_seconds=2.0)
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def mail(i: int, *, body: str = "") -> bytes:
    return (
        f"From: Customer {i} <c{i}@example.test>\r\nTo: support@example.test\r\nSubject: Question {i}\r\n"
        f"Message-ID: <q{i}@example.test>\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\nHello {i}.\r\n{body}"
    ).encode()


def body_text(message: RawMessage) -> str:
    parsed = email.message_from_bytes(message.raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return str(parsed.get_content())


def graph_mailbox(graph: GraphEmulator, **extra: Any) -> MailboxSettings:
    oauth = extra.pop("oauth", {"kind": "static", "token": "graph-token"})
    endpoint = extra.pop("api_endpoint", graph.url)
    return MailboxSettings.model_validate(
        {
            "id": "m365",
            "address": "support@example.test",
            "provider": "graph",
            "graph": {"user_id": graph.user, "oauth": oauth, "api_endpoint": endpoint},
            **extra,
        }
    )


@pytest.fixture
def graph() -> Iterator[GraphEmulator]:
    with GraphEmulator() as emulator:
        yield emulator


def no_wait() -> FetchFailures:
    """Stand-ins after three failed fetches, however quickly they came."""
    return FetchFailures(min_seconds=0)


@pytest.fixture
async def provider(graph: GraphEmulator) -> AsyncIterator[GraphInboundProvider]:
    p = GraphInboundProvider(graph_mailbox(graph), policy=FAST, failures=no_wait())
    yield p
    await p.close()


async def drain(
    p: GraphInboundProvider, folder: str = "INBOX", cursor: str | None = None, limit: int = 200
) -> tuple[list[RawMessage], FetchResult]:
    """Fetches until `more` is False; returns every message and the last result."""
    got: list[RawMessage] = []
    while True:
        result = await p.fetch(folder, cursor, limit)
        got += result.messages
        cursor = result.cursor
        if not result.more:
            return got, result


async def test_first_sync_hands_over_every_message_once_with_graph_metadata(
    graph: GraphEmulator, provider: GraphInboundProvider
) -> None:
    """25 messages arrive with their immutable id, raw MIME, receivedDateTime and conversationId;
    a draft is skipped; every request asked for immutable ids."""
    ids = [graph.add_message(mail(i)) for i in range(25)]
    graph.add_message(mail(99), is_draft=True)
    got, last = await drain(provider)
    assert [m.provider_id for m in got] == ids
    assert got[3].raw == mail(3) and got[3].size == len(mail(3)) and not got[3].headers_only
    assert got[3].internal_date is not None and got[3].internal_date.year == 2024
    assert got[3].thread_hint and got[3].thread_hint.startswith("AAMkCONV")
    assert last.resync is False
    assert all('IdType="ImmutableId"' in h.get("prefer", "") for _, _, h in graph.requests)


async def test_empty_pages_are_followed_and_limit_bounds_each_batch(
    graph: GraphEmulator, provider: GraphInboundProvider
) -> None:
    """With an empty page before every page, fetches of 10 still bring all 25, 10 at a time."""
    graph.empty_pages = True
    ids = [graph.add_message(mail(i)) for i in range(25)]
    first = await provider.fetch("INBOX", None, 10)
    assert len(first.messages) == 10 and first.more
    rest, last = await drain(provider, cursor=first.cursor, limit=10)
    assert [m.provider_id for m in first.messages + rest] == ids and not last.more


async def test_cursor_of_a_half_delivered_page_rereads_that_page_and_skips_nothing(
    graph: GraphEmulator, provider: GraphInboundProvider
) -> None:
    """If only the first 4 of a 10-message page were delivered, resuming from the 4th's cursor
    lists the rest of that page again (the ledger skips the delivered ones)."""
    ids = [graph.add_message(mail(i)) for i in range(25)]
    first = await provider.fetch("INBOX", None, 10)
    resumed, _ = await drain(provider, cursor=first.messages[3].cursor, limit=10)
    resumed_ids = [m.provider_id for m in resumed]
    assert set(ids[4:]) <= set(resumed_ids)
    assert first.messages[9].cursor == first.cursor  # the page's last message carries its next link


async def test_delta_round_brings_only_new_mail_and_ignores_removed_entries(
    graph: GraphEmulator, provider: GraphInboundProvider
) -> None:
    """After the first sync, a message a person moved away (@removed) yields nothing; two new ones arrive."""
    old = [graph.add_message(mail(i)) for i in range(5)]
    _, first = await drain(provider)
    graph.move_by_user(old[0], "archive")
    new = [graph.add_message(mail(10 + i)) for i in range(2)]
    got, last = await drain(provider, cursor=first.cursor)
    assert [m.provider_id for m in got] == new and not last.resync
    again, _ = await drain(provider, cursor=last.cursor)
    assert again == []


@pytest.mark.parametrize("mode", ["gone", "syncStateNotFound", "resyncRequired"])
async def test_lost_sync_state_restarts_the_folder_with_resync(
    graph: GraphEmulator, provider: GraphInboundProvider, mode: str
) -> None:
    """410 Gone, syncStateNotFound and resyncRequired all replay the folder with resync=True."""
    ids = [graph.add_message(mail(i)) for i in range(3)]
    _, first = await drain(provider)
    graph.expire_sync_state(mode)
    ids.append(graph.add_message(mail(3)))
    result = await provider.fetch("INBOX", first.cursor, 200)
    assert result.resync and not result.more
    assert [m.provider_id for m in result.messages] == ids


async def test_cursor_for_another_user_restarts_instead_of_reading_its_state(graph: GraphEmulator) -> None:
    """A cursor written for a different graph.user_id is not followed: the folder restarts."""
    ids = [graph.add_message(mail(i)) for i in range(2)]
    p = GraphInboundProvider(graph_mailbox(graph), policy=FAST)
    try:
        _, first = await drain(p)
        foreign = first.cursor.replace(graph.user, "other@example.test") if first.cursor else None
        result = await p.fetch("INBOX", foreign, 200)
        assert result.resync and [m.provider_id for m in result.messages] == ids
    finally:
        await p.close()


async def test_folders_resolve_by_well_known_name_display_name_and_child_path(
    graph: GraphEmulator, provider: GraphInboundProvider
) -> None:
    """`Support/Escalations` walks child folders; `JunkEmail` is well-known; unknown is FolderMissing."""
    graph.add_folder("Support")
    graph.add_folder("Escalations", parent="Support")
    child = graph.add_message(mail(1), "Escalations")
    junk = graph.add_message(mail(2), "junkemail")
    assert [m.provider_id for m in (await drain(provider, "Support/Escalations"))[0]] == [child]
    assert [m.provider_id for m in (await drain(provider, "JunkEmail"))[0]] == [junk]
    with pytest.raises(FolderMissing) as missing:
        await provider.fetch("No Such Folder", None, 10)
    assert missing.value.context["folder"] == "No Such Folder"


async def test_post_actions_mark_move_and_delete_on_the_server_and_are_idempotent(
    graph: GraphEmulator,
) -> None:
    """mark_read sets isRead; move:<folder> and delete (to Deleted Items) keep the immutable id;
    repeating each, or acting on a message a person already deleted, is not an error."""
    graph.add_folder("Processed")
    a, b, c, d = (graph.add_message(mail(i)) for i in range(4))
    p = GraphInboundProvider(graph_mailbox(graph), policy=FAST)
    try:
        got = {m.provider_id: m for m in (await drain(p))[0]}
        for action, mid in ((PostAction.parse("mark_read"), a), (PostAction.parse("move:Processed"), b)):
            await p.apply_post_action(got[mid], action)
            await p.apply_post_action(got[mid], action)
        await p.apply_post_actions([got[c]], PostAction.parse("delete"))
        graph.delete_by_user(d)
        await p.apply_post_action(got[d], PostAction.parse("delete"))
    finally:
        await p.close()
    assert graph.message(a) == {"folder": "inbox", "isRead": True, "raw": mail(0)}
    assert graph.message(b)["folder"] == "Processed"  # type: ignore[index]
    assert graph.message(c)["folder"] == "deleteditems"  # type: ignore[index]


async def test_a_404_on_move_for_a_message_that_still_exists_is_not_hidden(
    graph: GraphEmulator, provider: GraphInboundProvider
) -> None:
    """A 404 about the move target (the message is still there) raises FolderMissing, not "done";
    an unknown move target is FolderMissing before any move is tried."""
    graph.add_folder("Processed")
    mid = graph.add_message(mail(1))
    [message], _ = await drain(provider)
    graph.fail_next(404, "ErrorItemNotFound", match="/move")
    with pytest.raises(FolderMissing):
        await provider.apply_post_action(message, PostAction.parse("move:Processed"))
    with pytest.raises(FolderMissing):
        await provider.apply_post_action(message, PostAction.parse("move:Nowhere"))
    assert graph.message(mid)["folder"] == "inbox"  # type: ignore[index]


async def test_message_gone_before_download_is_skipped_once_graph_confirms_it_is_gone(
    graph: GraphEmulator, provider: GraphInboundProvider
) -> None:
    """404 on $value and 404 again for the item itself: that message is left out, the others arrive."""
    ids = [graph.add_message(mail(i)) for i in range(3)]
    graph.fail_next(404, "ErrorItemNotFound", times=2, match=f"/messages/{quote(ids[1], safe='')}")
    got, _ = await drain(provider)
    assert [m.provider_id for m in got] == [ids[0], ids[2]]
    assert graph.count("GET", f"{quote(ids[1], safe='')}?$select=id") == 1


async def test_a_404_at_value_for_a_message_that_still_exists_is_retried_not_skipped(
    graph: GraphEmulator, provider: GraphInboundProvider
) -> None:
    """Graph 404s an existing item once: the fetch fails (not as a missing folder) and the next
    fetch hands over all three messages; nothing is skipped."""
    ids = [graph.add_message(mail(i)) for i in range(3)]
    graph.fail_next(404, "ErrorItemNotFound", match=f"{quote(ids[1], safe='')}/$value")
    with pytest.raises(ProviderError, match="still exists") as caught:
        await provider.fetch("INBOX", None, 200)
    assert not isinstance(caught.value, (FolderMissing, AuthFailed))
    assert caught.value.context["provider_id"] == ids[1]
    got, _ = await drain(provider)
    assert [m.provider_id for m in got] == ids


async def test_a_message_that_keeps_failing_is_handed_over_as_a_stand_in_and_left_untouched(
    graph: GraphEmulator,
) -> None:
    """A 500 on one message's $value, every time: fetches fail until it has failed three times over
    at least `min_seconds`; then the four good messages come with a stand-in in its place (its
    date, conversation and cursor); the post-action marks the four read, the original stays unread."""
    now = [0.0]
    failures = FetchFailures(attempts=3, min_seconds=60, clock=lambda: now[0])
    provider = GraphInboundProvider(graph_mailbox(graph), policy=FAST, failures=failures)
    ids = [graph.add_message(mail(i)) for i in range(5)]
    match = f"{quote(ids[3], safe='')}/$value"
    graph.fail_next(500, "ErrorInternalServerError", times=10_000, match=match)
    try:
        for _ in range(3):  # three failures, but all within a moment: no stand-in yet
            with pytest.raises(ProviderError, match=f"message {ids[3]} could not be downloaded"):
                await provider.fetch("INBOX", None, 200)
        now[0] = 61.0
        await stand_in_then_post_actions(graph, provider, ids)
    finally:
        await provider.close()


async def stand_in_then_post_actions(
    graph: GraphEmulator, provider: GraphInboundProvider, ids: list[str]
) -> None:
    """The fetch that hands ids[3] over as a stand-in, and a post-action that leaves it alone."""
    result = await provider.fetch("INBOX", None, 200)
    assert [m.provider_id for m in result.messages] == ids
    stand_in = result.messages[3]
    note = body_text(stand_in)
    assert "could not be downloaded" in note and ids[3] in note and "500 ErrorInternalServerError" in note
    assert stand_in.internal_date == datetime(2024, 1, 1, 0, 0, 3, tzinfo=UTC)
    assert stand_in.thread_hint and stand_in.thread_hint.startswith("AAMkCONV")
    assert stand_in.cursor == result.messages[2].cursor
    assert result.messages[4].raw == mail(4)
    await provider.apply_post_actions(result.messages, PostAction.parse("mark_read"))
    assert [graph.message(i)["isRead"] for i in ids] == [True, True, True, False, True]  # type: ignore[index]
    assert graph.count("PATCH", quote(ids[3], safe="")) == 0


async def test_access_denied_on_one_download_is_not_auth_required_and_ends_as_a_stand_in(
    graph: GraphEmulator, provider: GraphInboundProvider
) -> None:
    """403 ErrorAccessDenied for one item's $value is about that item: a plain ProviderError, never
    AuthFailed, and after three fetches the folder moves on."""
    ids = [graph.add_message(mail(i)) for i in range(2)]
    graph.fail_next(403, "ErrorAccessDenied", times=10_000, match=f"{quote(ids[0], safe='')}/$value")
    for _ in range(2):
        with pytest.raises(ProviderError) as caught:
            await provider.fetch("INBOX", None, 200)
        assert not isinstance(caught.value, AuthFailed) and caught.value.code == "provider_error"
    result = await provider.fetch("INBOX", None, 200)
    assert [m.provider_id for m in result.messages] == ids
    assert "403 ErrorAccessDenied" in body_text(result.messages[0]) and result.messages[1].raw == mail(1)


@pytest.mark.parametrize(
    ("status", "code", "retry_after", "kind"),
    [
        (401, "InvalidAuthenticationToken", None, AuthFailed),
        (429, "ApplicationThrottled", "0", Throttled),
        (503, "serviceNotAvailable", None, ProviderUnavailable),
    ],
)
async def test_token_throttling_and_unavailability_on_downloads_never_become_stand_ins(
    graph: GraphEmulator,
    provider: GraphInboundProvider,
    status: int,
    code: str,
    retry_after: str | None,
    kind: type[ProviderError],
) -> None:
    """Errors about the account or the service end every fetch as they are; nothing is counted,
    so no stand-in ever replaces the message."""
    ids = [graph.add_message(mail(i)) for i in range(2)]
    graph.fail_next(
        status, code, times=10_000, retry_after=retry_after, match=f"{quote(ids[0], safe='')}/$value"
    )
    for _ in range(4):
        with pytest.raises(kind):
            await provider.fetch("INBOX", None, 200)
    assert not provider.failures.is_stand_in("INBOX", ids[0])


async def test_an_answer_that_cannot_be_decoded_is_a_provider_error(
    graph: GraphEmulator, provider: GraphInboundProvider
) -> None:
    """A body claiming gzip that is not: ProviderError naming the request, not a raw httpx error;
    on one message's $value it counts against that message, and the retry then succeeds."""
    ids = [graph.add_message(mail(i)) for i in range(2)]
    graph.garble_next("/messages/delta")
    with pytest.raises(ProviderError, match="could not be read"):
        await provider.fetch("INBOX", None, 200)
    graph.garble_next(f"{quote(ids[1], safe='')}/$value")
    with pytest.raises(ProviderError, match=f"message {ids[1]} could not be downloaded"):
        await provider.fetch("INBOX", None, 200)
    assert [m.provider_id for m in (await drain(provider))[0]] == ids


async def test_oversize_message_comes_headers_only_with_its_real_size(graph: GraphEmulator) -> None:
    """Over max_message_bytes: only the header block comes, flagged headers_only, with the full size."""
    big = mail(1, body="x" * 76 * 200)
    graph.add_message(big)
    p = GraphInboundProvider(graph_mailbox(graph, max_message_bytes=2048), policy=FAST)
    try:
        [message], _ = await drain(p)
    finally:
        await p.close()
    assert message.headers_only and message.size == len(big)
    assert message.raw == big[: big.index(b"\r\n\r\n") + 4]


async def test_429_retry_after_is_honoured_then_the_fetch_succeeds(
    graph: GraphEmulator, provider: GraphInboundProvider
) -> None:
    """Two 429s with Retry-After 0.3 s: the client waits at least 0.6 s and loses nothing."""
    ids = [graph.add_message(mail(i)) for i in range(3)]
    graph.fail_next(429, "ApplicationThrottled", times=2, retry_after="0.3")
    started = time.monotonic()
    got, _ = await drain(provider)
    assert time.monotonic() - started >= 0.6
    assert [m.provider_id for m in got] == ids


async def test_persistent_throttling_ends_as_throttled_with_retry_after(
    graph: GraphEmulator, provider: GraphInboundProvider
) -> None:
    """429 on every attempt → Throttled carrying Retry-After and the request id; 3 attempts made."""
    graph.fail_next(429, "ApplicationThrottled", times=10, retry_after="0.05")
    with pytest.raises(Throttled) as caught:
        await provider.fetch("INBOX", None, 10)
    assert caught.value.retry_after_seconds == pytest.approx(0.05)
    assert caught.value.context["request_id"] and caught.value.context["graph_code"] == "ApplicationThrottled"
    assert graph.count("GET", "/messages/delta") == 3


async def test_a_retry_after_beyond_the_bound_is_not_slept_in_process(
    graph: GraphEmulator, provider: GraphInboundProvider
) -> None:
    """Retry-After 120 s is handed to the cycle as Throttled at once instead of blocking it."""
    graph.fail_next(429, "ApplicationThrottled", retry_after="120")
    started = time.monotonic()
    with pytest.raises(Throttled) as caught:
        await provider.fetch("INBOX", None, 10)
    assert caught.value.retry_after_seconds == 120 and time.monotonic() - started < 1


async def test_server_errors_are_retried_then_reported_unavailable(
    graph: GraphEmulator, provider: GraphInboundProvider
) -> None:
    """503 without Retry-After once is retried away; 500 on every attempt → ProviderUnavailable."""
    ids = [graph.add_message(mail(i)) for i in range(2)]
    graph.fail_next(503, "serviceNotAvailable")
    assert [m.provider_id for m in (await drain(provider))[0]] == ids
    graph.fail_next(500, "generalException", times=10)
    with pytest.raises(ProviderUnavailable):
        await provider.fetch("INBOX", None, 10)


async def test_connection_refused_is_provider_unavailable(graph: GraphEmulator) -> None:
    """Nothing listening at the endpoint → ProviderUnavailable naming the mailbox."""
    graph.close()
    p = GraphInboundProvider(graph_mailbox(graph), policy=FAST)
    try:
        with pytest.raises(ProviderUnavailable) as caught:
            await p.fetch("INBOX", None, 10)
    finally:
        await p.close()
    assert caught.value.context["mailbox"] == "m365"


async def test_one_401_is_recovered_with_a_retry_and_a_refused_token_is_auth_failed(
    graph: GraphEmulator, provider: GraphInboundProvider
) -> None:
    """A single 401 is retried once; a token Graph never accepts ends as auth_required without the token."""
    ids = [graph.add_message(mail(i)) for i in range(2)]
    graph.fail_next(401, "InvalidAuthenticationToken")
    assert [m.provider_id for m in (await drain(provider))[0]] == ids
    graph.tokens = {"another-token"}
    with pytest.raises(AuthFailed) as caught:
        await provider.fetch("INBOX", None, 10)
    assert caught.value.code == "auth_required" and "graph-token" not in str(caught.value)


async def test_access_denied_names_the_missing_permission(
    graph: GraphEmulator, provider: GraphInboundProvider
) -> None:
    """403 ErrorAccessDenied → AuthFailed whose message names Mail.ReadWrite."""
    graph.denied = True
    with pytest.raises(AuthFailed, match=r"Mail\.ReadWrite"):
        await provider.fetch("INBOX", None, 10)


async def test_at_most_four_requests_run_at_once(
    graph: GraphEmulator, provider: GraphInboundProvider
) -> None:
    """20 downloads with a slow server: concurrency reaches but never passes 4."""
    for i in range(20):
        graph.add_message(mail(i))
    graph.delay_seconds = 0.02
    got, _ = await drain(provider)
    assert len(got) == 20 and graph.max_in_flight == 4


async def test_microsoft_token_is_refreshed_after_graph_revokes_it(graph: GraphEmulator) -> None:
    """kind microsoft against the fake authority: a revoked token brings one new token request."""
    with FakeAuthority(scope=GRAPH_SCOPE) as authority:
        revoked: set[str] = set()
        graph.accept_token = lambda token: token in authority.issued and token not in revoked
        oauth = {
            "kind": "microsoft",
            "client_id": authority.client_id,
            "client_secret": authority.client_secret,
            "authority": authority.authority,
            "ca_file": authority.ca_file,
        }
        ids = [graph.add_message(mail(i)) for i in range(2)]
        p = GraphInboundProvider(graph_mailbox(graph, oauth=oauth), policy=FAST)
        try:
            _, first = await drain(p)
            revoked.add(authority.issued[-1])
            ids.append(graph.add_message(mail(5)))
            got, _ = await drain(p, cursor=first.cursor)
        finally:
            await p.close()
        assert [m.provider_id for m in got] == ids[2:]
        assert authority.token_posts == 2


async def test_check_reports_the_mailbox_folders_and_move_target(graph: GraphEmulator) -> None:
    """check() reaches the user's mailbox and resolves every folder and the move target."""
    graph.add_folder("Processed")
    graph.add_message(mail(1))
    p = GraphInboundProvider(
        graph_mailbox(graph, folders=["INBOX", "Processed"], post_action="move:Processed"), policy=FAST
    )
    try:
        facts = await p.check()
        assert facts["folder INBOX"] == "exists, 1 messages"
        assert facts["folder Processed"] == "exists, 0 messages"
        assert facts["move target"].startswith("Processed (AAMkFLD")
        graph.user = "someone-else@example.test"
        with pytest.raises(ProviderError, match="no mailbox"):
            await p.check()
    finally:
        await p.close()


async def test_plain_http_is_refused_off_loopback_and_the_registry_builds_graph(graph: GraphEmulator) -> None:
    """http:// only to loopback (the token would travel in clear); `provider: graph` is registered."""
    with pytest.raises(ConfigError, match="plain http"):
        GraphInboundProvider(graph_mailbox(graph, api_endpoint="http://graph.example.com/v1.0"))
    built = build_inbound(graph_mailbox(graph))
    assert isinstance(built, GraphInboundProvider)
    await built.close()


def test_links_spelled_another_way_for_the_same_endpoint_are_owned(graph: GraphEmulator) -> None:
    """Scheme and host case and an explicit default port do not matter; another host, port, scheme
    or path does."""
    p = GraphInboundProvider(graph_mailbox(graph, api_endpoint="HTTPS://Graph.Microsoft.com/v1.0"))
    owns = p.api.owns
    assert owns("https://graph.microsoft.com/v1.0/users/x/messages/delta?$skiptoken=a")
    assert owns("https://GRAPH.microsoft.com:443/v1.0/users/x")
    assert not owns("https://graph.microsoft.com:8443/v1.0/users/x")
    assert not owns("http://graph.microsoft.com/v1.0/users/x")
    assert not owns("https://graph.microsoft.com/beta/users/x")
    assert not owns("https://graph.microsoft.com.evil.example/v1.0/users/x")
    assert not owns("https://graph.microsoft.com/v1.0evil/users/x")


async def test_an_endpoint_spelled_in_capitals_follows_graphs_links_to_the_end(graph: GraphEmulator) -> None:
    """api_endpoint `HTTP://…` while Graph's links say `http://…`: all 25 messages arrive, no resync."""
    ids = [graph.add_message(mail(i)) for i in range(25)]
    p = GraphInboundProvider(
        graph_mailbox(graph, api_endpoint=graph.url.replace("http", "HTTP")), policy=FAST
    )
    got: list[RawMessage] = []
    cursor: str | None = None
    try:
        for _ in range(5):  # three batches of 10 would do; a page-one loop must not hang the test
            result = await p.fetch("INBOX", cursor, 10)
            assert not result.resync
            got, cursor = got + result.messages, result.cursor
            if not result.more:
                break
    finally:
        await p.close()
    assert [m.provider_id for m in got] == ids and not result.more


async def test_links_outside_the_configured_endpoint_are_a_clear_error_not_a_resync_loop(
    graph: GraphEmulator,
) -> None:
    """Configured `localhost`, Graph's links say `127.0.0.1`: every fetch raises an error naming both,
    nothing is handed over, and the foreign link is never requested."""
    for i in range(25):
        graph.add_message(mail(i))
    endpoint = graph.url.replace("127.0.0.1", "localhost")
    p = GraphInboundProvider(graph_mailbox(graph, api_endpoint=endpoint), policy=FAST)
    try:
        for _ in range(2):
            with pytest.raises(ProviderError) as caught:
                await p.fetch("INBOX", None, 10)
            assert caught.value.code == "config_invalid"
            assert endpoint in caught.value.message and graph.url in caught.value.message
    finally:
        await p.close()
    assert graph.count("GET", "$skiptoken") == 0


async def test_an_unknown_user_on_delta_is_reported_as_such_not_as_a_missing_folder(
    graph: GraphEmulator, provider: GraphInboundProvider
) -> None:
    """404 ErrorInvalidUser from the delta request names the user instead of "folder not found"."""
    graph.user = "someone-else@example.test"
    with pytest.raises(ProviderError, match="no mailbox for user") as caught:
        await provider.fetch("INBOX", None, 10)
    assert not isinstance(caught.value, FolderMissing)


async def test_a_batch_of_moves_looks_the_target_folder_up_once(
    graph: GraphEmulator, provider: GraphInboundProvider
) -> None:
    """20 messages moved to `Processed` at once: one folder query, 20 moves."""
    graph.add_folder("Processed")
    ids = [graph.add_message(mail(i)) for i in range(20)]
    got, _ = await drain(provider)
    await provider.apply_post_actions(got, PostAction.parse("move:Processed"))
    assert all(graph.message(i)["folder"] == "Processed" for i in ids)  # type: ignore[index]
    assert graph.count("GET", "/mailFolders?$filter") == 1 and graph.count("POST", "/move") == 20
