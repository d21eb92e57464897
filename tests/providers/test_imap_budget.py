"""ConnectionBudget's slots, eviction order, waiting line and login pace, with fake sessions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from providers.imap import ImapInboundProvider
from providers.imap.budget import ConnectionBudget, SessionTicket
from tests.peers.dovecot import Dovecot, imap_mailbox, sample_message


class FakeMailbox:
    """Stands for a provider: holds a 'session' while its ticket holds a slot."""

    def __init__(self, budget: ConnectionBudget, name: str, host: str = "imap.example", idle: bool = False):
        self.name = name
        self.open = False
        self.closed_by_budget = 0
        self.ticket: SessionTicket = budget.ticket(host, idle=idle, detach=self.detach)

    def detach(self) -> asyncio.Future[None] | None:
        self.open = False
        self.closed_by_budget += 1
        return None

    async def use(self) -> None:
        """One operation: connect if needed, then park."""
        with self.ticket.in_use():
            if not self.ticket.held:
                await self.ticket.acquire()
            self.open = True


class Recorder:
    def __init__(self) -> None:
        self.sessions: dict[str, int] = {}
        self.evictions = 0
        self.delayed = 0

    def imap_sessions(self, host: str, count: int) -> None:
        self.sessions[host] = count

    def imap_evicted(self, host: str) -> None:
        self.evictions += 1

    def imap_login_delayed(self, host: str) -> None:
        self.delayed += 1


async def test_a_mailbox_holding_its_slot_reuses_it_even_when_the_budget_is_full() -> None:
    """The only slot is this mailbox's own: asking again returns at once (it never waits for itself)."""
    budget = ConnectionBudget(max_total=1)
    a = FakeMailbox(budget, "a")
    await a.use()
    with a.ticket.in_use():
        await asyncio.wait_for(a.ticket.acquire(), 1)
    assert budget.total == 1 and a.open and a.closed_by_budget == 0


async def test_the_least_recently_used_parked_session_makes_room_for_another_mailbox() -> None:
    """Budget 2, three mailboxes: the third evicts the one used longest ago, the other keeps its own."""
    recorder = Recorder()
    budget = ConnectionBudget(max_total=2, observer=recorder)
    a, b, c = (FakeMailbox(budget, n) for n in "abc")
    await a.use()
    await b.use()
    await a.use()  # a is now the more recently used
    await c.use()
    assert (a.open, b.open, c.open) == (True, False, True)
    assert b.closed_by_budget == 1 and not b.ticket.held
    assert budget.total == 2 and recorder.sessions == {"imap.example": 2} and recorder.evictions == 1
    await b.use()  # b reconnects in turn, taking a's slot (now the least recently used)
    assert (a.open, b.open, c.open) == (False, True, True)


async def test_polled_mailboxes_sessions_are_evicted_before_idle_ones() -> None:
    """An IDLE mailbox parked longer ago still keeps its session while a polled one's can go."""
    budget = ConnectionBudget(max_total=2)
    idler = FakeMailbox(budget, "idler", idle=True)
    polled = FakeMailbox(budget, "polled")
    await idler.use()
    await polled.use()
    await FakeMailbox(budget, "new").use()
    assert idler.open and not polled.open


async def test_a_session_in_use_is_never_evicted_the_newcomer_waits_for_it_to_park() -> None:
    """With the only slot in use (a fetch, an IDLE wait) a newcomer waits; it gets the slot once the
    operation ends, and the session it replaces is closed first."""
    budget = ConnectionBudget(max_total=1)
    a, b = FakeMailbox(budget, "a"), FakeMailbox(budget, "b")
    await a.use()
    with a.ticket.in_use():
        waiting = asyncio.create_task(b.use())
        await asyncio.sleep(0.05)
        assert not waiting.done() and a.open and budget.waiting == 1
    await asyncio.wait_for(waiting, 1)
    assert b.open and not a.open and budget.total == 1


async def test_the_per_host_bound_leaves_other_hosts_alone() -> None:
    """max_per_host 1: a second mailbox on the same host takes the first one's slot; another host's
    mailbox connects beside them."""
    budget = ConnectionBudget(max_total=10, max_per_host=1)
    a = FakeMailbox(budget, "a", host="one.example")
    other = FakeMailbox(budget, "other", host="two.example")
    b = FakeMailbox(budget, "b", host="ONE.example")
    await a.use()
    await other.use()
    await b.use()
    assert (a.open, other.open, b.open) == (False, True, True)
    assert budget.held("one.example") == 1 and budget.held("two.example") == 1


async def test_a_cancelled_waiter_leaves_no_slot_behind() -> None:
    """A mailbox cancelled while waiting (shutdown, watchdog) takes nothing: the next one gets the slot."""
    budget = ConnectionBudget(max_total=1)
    a, b, c = (FakeMailbox(budget, n) for n in "abc")
    with a.ticket.in_use():
        await a.ticket.acquire()
        waiting = asyncio.create_task(b.use())
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    assert budget.waiting == 0 and budget.total == 1
    a.ticket.release()
    await asyncio.wait_for(c.use(), 1)
    assert budget.total == 1 and c.ticket.held and not b.ticket.held


async def test_the_evicted_session_is_closed_before_the_newcomer_connects() -> None:
    """The victim's logout finishes before the slot is handed on (the server never sees one more)."""
    budget = ConnectionBudget(max_total=1)
    order: list[str] = []

    async def slow_close() -> None:
        await asyncio.sleep(0.05)
        order.append("victim closed")

    victim = budget.ticket("imap.example", idle=False, detach=slow_close)
    with victim.in_use():
        await victim.acquire()
    newcomer = budget.ticket("imap.example", idle=False, detach=lambda: None)
    with newcomer.in_use():
        await newcomer.acquire()
        order.append("newcomer connects")
    assert order == ["victim closed", "newcomer connects"]


async def test_logins_to_one_host_are_paced_and_other_hosts_are_not() -> None:
    """10 logins/s (bursts of 10): 15 logins take about half a second; another host's go at once."""
    recorder = Recorder()
    budget = ConnectionBudget(logins_per_second_per_host=10, observer=recorder)
    loop = asyncio.get_running_loop()
    started = loop.time()
    tickets = [budget.ticket("one.example", idle=False, detach=lambda: None) for _ in range(15)]
    await asyncio.gather(*(t.pause_for_login() for t in tickets))
    paced = loop.time() - started
    started = loop.time()
    await budget.ticket("two.example", idle=False, detach=lambda: None).pause_for_login()
    assert 0.45 <= paced < 1.5
    assert loop.time() - started < 0.05
    assert recorder.delayed == 5


async def test_when_idle_mailboxes_hold_every_slot_a_parked_one_makes_room() -> None:
    """More IDLE mailboxes than slots (a budget set too low): a waiter is not left waiting forever,
    the IDLE session parked longest ago goes once its wait ends."""
    budget = ConnectionBudget(max_total=2)
    first, second = FakeMailbox(budget, "first", idle=True), FakeMailbox(budget, "second", idle=True)
    await first.use()
    await second.use()
    await asyncio.wait_for(FakeMailbox(budget, "polled").use(), 1)
    assert (first.open, second.open) == (False, True)


async def test_an_idle_session_is_not_evicted_while_a_polled_mailbox_will_free_a_slot() -> None:
    """A polled mailbox's slot in use will be parked soon: the newcomer waits for it rather than
    take the parked IDLE session."""
    budget = ConnectionBudget(max_total=2)
    idler, polled = FakeMailbox(budget, "idler", idle=True), FakeMailbox(budget, "polled")
    await idler.use()
    with polled.ticket.in_use():
        await polled.ticket.acquire()
        waiting = asyncio.create_task(FakeMailbox(budget, "new").use())
        await asyncio.sleep(0.02)
        assert not waiting.done() and idler.open
    await asyncio.wait_for(waiting, 1)
    assert idler.open and not polled.ticket.held


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with Dovecot(spare_users=4) as server:
        yield server


async def test_providers_sharing_one_slot_take_turns_and_reconnect_transparently(dovecot: Dovecot) -> None:
    """Budget 1, two mailboxes on a real Dovecot: each fetch evicts the other's parked session, every
    fetch still returns its mailbox's mail, and closing gives the slot back."""
    recorder = Recorder()
    budget = ConnectionBudget(max_total=1, observer=recorder)
    users = [dovecot.add_user(), dovecot.add_user()]
    providers = [
        ImapInboundProvider(imap_mailbox(dovecot, user, mailbox_id=f"b{i}", idle=False), budget=budget)
        for i, user in enumerate(users)
    ]
    try:
        for round_ in range(3):
            for i, (user, _) in enumerate(users):
                dovecot.deliver(user, [sample_message(10 * i + round_)])
                result = await providers[i].fetch("INBOX", None, 100)
                assert len(result.messages) == round_ + 1
                assert budget.total == 1 and budget.held("127.0.0.1") == 1
    finally:
        for provider in providers:
            await provider.close()
    assert budget.total == 0 and recorder.evictions == 5  # every fetch but the first took the slot
