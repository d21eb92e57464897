"""End to end: Graph emulator → GraphInboundProvider → MailboxSync → sandbox IWD (in-process), SQLite."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest

from connector.errors import AuthFailed, ProviderError
from connector.models import PostAction, RawMessage
from connector.sandbox import control_of, create_app
from connector.store import open_store
from connector.store.types import Store
from connector.sync import delivery
from connector.sync.pipeline import MailboxSync
from providers.fetch_failures import FetchFailures
from providers.graph import GraphInboundProvider
from providers.graph.api import RetryPolicy
from tests.peers.graph_emulator import GraphEmulator
from tests.peers.sandbox import asgi_client
from tests.providers.test_graph import graph_mailbox, mail

FAST = RetryPolicy(attempts=3, backoff_seconds=0.01, max_retry_after_seconds=2.0)


@dataclass
class Rig:
    graph: GraphEmulator
    provider: GraphInboundProvider
    sync: MailboxSync
    app: Any
    store: Store
    acted_before_item: list[str] = field(default_factory=list)

    def item_count(self) -> int:
        return int(control_of(self.app).store.count_items())


@pytest.fixture
def graph() -> Iterator[GraphEmulator]:
    with GraphEmulator() as emulator:
        yield emulator


@pytest.fixture
async def rig(graph: GraphEmulator) -> AsyncIterator[Rig]:
    workdir = tempfile.mkdtemp(prefix="graph-e2e-", dir="/tmp")
    box = graph_mailbox(graph, post_action="mark_read")
    store = await open_store(f"sqlite+aiosqlite:///{workdir}/state.db")
    app = create_app(":memory:")
    iwd = asgi_client(app)
    provider = GraphInboundProvider(box, policy=FAST, failures=FetchFailures(min_seconds=0))
    rig = Rig(graph, provider, MailboxSync(box, provider, store, iwd), app, store)
    apply_many = provider.apply_post_actions

    async def watched(messages: Sequence[RawMessage], action: PostAction) -> None:
        """Records any post-action asked for before IWD holds the item."""
        items = control_of(app).store
        for m in messages:
            if items.find_by_external_id(delivery.external_id(box.id, m.folder, m.provider_id)) is None:
                rig.acted_before_item.append(m.provider_id)
        await apply_many(messages, action)

    provider.apply_post_actions = watched  # type: ignore[method-assign]
    try:
        yield rig
    finally:
        await provider.close()
        await iwd.aclose()
        await store.close()
        shutil.rmtree(workdir, ignore_errors=True)


async def test_every_message_becomes_one_item_and_is_marked_read_only_after(rig: Rig) -> None:
    """250 messages (more than one batch) → 250 items; each is marked read after its item exists;
    a second cycle creates nothing."""
    ids = [rig.graph.add_message(mail(i)) for i in range(250)]
    report = await rig.sync.run_cycle()
    assert report.delivered == 250 and rig.item_count() == 250
    assert all(rig.graph.message(i)["isRead"] for i in ids)  # type: ignore[index]
    assert rig.acted_before_item == []
    again = await rig.sync.run_cycle()
    assert again.delivered == 0 and rig.item_count() == 250


async def test_expired_sync_state_resyncs_without_duplicates(rig: Rig) -> None:
    """410 Gone after a first delivery: the folder is replayed, only the new message becomes an item."""
    for i in range(20):
        rig.graph.add_message(mail(i))
    await rig.sync.run_cycle()
    rig.graph.expire_sync_state("gone")
    rig.graph.add_message(mail(100))
    report = await rig.sync.run_cycle()
    assert report.resynced_folders == ["INBOX"] and rig.item_count() == 21
    rig.graph.expire_sync_state("syncStateNotFound")
    await rig.sync.run_cycle()
    assert rig.item_count() == 21


async def test_throttling_is_waited_out_and_nothing_is_lost(rig: Rig) -> None:
    """429s with Retry-After on the delta and on downloads are honoured; every message arrives once."""
    for i in range(12):
        rig.graph.add_message(mail(i))
    rig.graph.fail_next(429, "ApplicationThrottled", retry_after="0.2", match="/messages/delta")
    rig.graph.fail_next(429, "ApplicationThrottled", times=2, retry_after="0.2", match="/$value")
    started = time.monotonic()
    report = await rig.sync.run_cycle()
    assert time.monotonic() - started >= 0.4
    assert report.delivered == 12 and rig.item_count() == 12


async def test_a_refused_token_stops_the_cycle_as_auth_required_and_recovery_loses_nothing(rig: Rig) -> None:
    """One 401 is recovered within the cycle; a token Graph keeps refusing raises auth_required and
    marks nothing; once the token is good again every message arrives exactly once."""
    for i in range(3):
        rig.graph.add_message(mail(i))
    rig.graph.fail_next(401, "InvalidAuthenticationToken")
    assert (await rig.sync.run_cycle()).delivered == 3
    rig.graph.add_message(mail(50))
    rig.graph.tokens = set()
    with pytest.raises(AuthFailed) as caught:
        await rig.sync.run_cycle()
    assert caught.value.code == "auth_required" and rig.item_count() == 3
    rig.graph.tokens = {"graph-token"}
    await rig.sync.run_cycle()
    assert rig.item_count() == 4


def item_for(rig: Rig, message_id: str) -> dict[str, Any] | None:
    items = control_of(rig.app).store
    found = items.find_by_external_id(delivery.external_id(rig.provider.mailbox.id, "INBOX", message_id))
    return items.get_item(found) if found else None


async def test_one_message_that_never_downloads_does_not_block_the_folder(rig: Rig) -> None:
    """A 500 on one message's $value every time: two cycles fail (nothing lost, nothing marked),
    the third delivers the four good messages and a stand-in item for the fifth; the original stays
    unread in the inbox and later cycles create nothing more."""
    ids = [rig.graph.add_message(mail(i)) for i in range(5)]
    rig.graph.fail_next(
        500, "ErrorInternalServerError", times=10_000, match=f"{quote(ids[3], safe='')}/$value"
    )
    for _ in range(2):
        with pytest.raises(ProviderError, match="could not be downloaded"):
            await rig.sync.run_cycle()
        assert rig.item_count() == 0
    await rig.sync.run_cycle()
    assert rig.item_count() == 5 and rig.acted_before_item == []
    assert "Message could not be downloaded from INBOX" in json.dumps(item_for(rig, ids[3]))
    assert [rig.graph.message(i)["isRead"] for i in ids] == [True, True, True, False, True]  # type: ignore[index]
    rig.graph.add_message(mail(9))
    await rig.sync.run_cycle()
    assert rig.item_count() == 6 and rig.graph.message(ids[3])["isRead"] is False  # type: ignore[index]


async def test_a_passing_404_at_value_delays_a_message_but_never_loses_it(rig: Rig) -> None:
    """Graph 404s an existing message once: that cycle fails, the next delivers all three."""
    ids = [rig.graph.add_message(mail(i)) for i in range(3)]
    rig.graph.fail_next(404, "ErrorItemNotFound", match=f"{quote(ids[1], safe='')}/$value")
    with pytest.raises(ProviderError):
        await rig.sync.run_cycle()
    await rig.sync.run_cycle()
    assert rig.item_count() == 3 and item_for(rig, ids[1]) is not None
    assert all(rig.graph.message(i)["isRead"] for i in ids)  # type: ignore[index]
