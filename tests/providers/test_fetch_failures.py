"""A message that keeps failing to download becomes a stand-in only after attempts *and* time."""

from __future__ import annotations

from connector.convert import convert
from connector.outbox.autoack import skip_reason
from providers.fetch_failures import FetchFailures


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_short_incident_never_makes_a_stand_in_however_many_attempts() -> None:
    """Ten failures within five minutes: the fetch keeps failing (a retry), no stand-in."""
    clock = Clock()
    failures = FetchFailures(attempts=3, min_seconds=900, clock=clock)
    for _ in range(10):
        assert failures.failed("INBOX", "m1") is False
        clock.now += 30
    clock.now += 601  # now past a quarter of an hour since the first failure
    assert failures.failed("INBOX", "m1") is True


def test_time_alone_is_not_enough_and_a_success_starts_over() -> None:
    clock = Clock()
    failures = FetchFailures(attempts=3, min_seconds=900, clock=clock)
    assert failures.failed("INBOX", "m1") is False
    clock.now += 3600
    assert failures.failed("INBOX", "m1") is False  # two attempts only
    failures.succeeded("INBOX", "m1")
    clock.now += 10
    assert [failures.failed("INBOX", "m1") for _ in range(3)] == [False, False, False]  # restarted


def test_the_stand_in_names_the_message_and_is_not_answered_or_acted_on() -> None:
    """It converts into an item from the mailbox itself (so no auto-acknowledgement answers it),
    not flagged as an auto-reply, naming the server's message id; its post-action is skipped."""
    failures = FetchFailures(attempts=1, min_seconds=0)
    assert failures.failed("INBOX", "AAMk-42") is True
    note = failures.stand_in(
        mailbox_address="support@example.com",
        folder="INBOX",
        message_id="AAMk-42",
        error="500 ErrorInternalServerError\nfor this item",
        cursor="c-1",
        thread_hint="conv-9",
    )
    assert (note.provider_id, note.cursor, note.thread_hint) == ("AAMk-42", "c-1", "conv-9")
    item = convert(note.raw)
    assert item.subject == "Message could not be downloaded from INBOX"
    assert "AAMk-42" in item.text_body and "500 ErrorInternalServerError for this item" in item.text_body
    assert not item.flags.auto_reply
    assert skip_reason(item, note.raw, {"support@example.com"}) is not None
    assert failures.is_stand_in("INBOX", "AAMk-42") and not failures.is_stand_in("Other", "AAMk-42")
