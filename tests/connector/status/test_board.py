"""StatusBoard: exceptions become states in one place, changes are reported once, bodies fit the profile."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connector.errors import (
    AuthFailed,
    CertificateRejected,
    ConfigError,
    ConnectorError,
    FolderMissing,
    IWDUnavailable,
    ProviderUnavailable,
    StoreError,
    Throttled,
)
from connector.iwd.profile import MailboxStatus as WireStatus
from connector.outbox.report import update_board
from connector.runtime.peer_calls import observe_iwd, watched
from connector.status import MailboxState, Peer, StatusBoard, state_for
from connector.store.types import OutboxState

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("exc", "state"),
    [
        (AuthFailed("no"), MailboxState.AUTH_REQUIRED),
        (Throttled("slow down", retry_after_seconds=5), MailboxState.THROTTLED),
        (IWDUnavailable("down"), MailboxState.DEGRADED),
        (StoreError("locked"), MailboxState.DEGRADED),
        (ProviderUnavailable("refused"), MailboxState.DEGRADED),  # an outage, like IWD's
        (CertificateRejected("untrusted CA"), MailboxState.ERROR),  # a fix, not an outage
        (FolderMissing("gone"), MailboxState.ERROR),
        (ConfigError(["bad"]), MailboxState.ERROR),
        (RuntimeError("bug"), MailboxState.ERROR),
    ],
)
def test_each_exception_class_maps_to_its_state(exc: BaseException, state: MailboxState) -> None:
    """state_for decides by class only."""
    assert state_for(exc) is state


def test_a_repeated_failure_reports_a_change_only_once_and_recovery_once() -> None:
    """inbound_failed/succeeded return True only on a change of state (callers log once)."""
    board = StatusBoard()
    assert board.inbound_failed("a", NOW, AuthFailed("login rejected")) is True
    assert board.inbound_failed("a", NOW, AuthFailed("login rejected")) is False
    assert board.inbound_succeeded("a", NOW, quarantined=0) is True
    assert board.inbound_succeeded("a", NOW, quarantined=0) is False


def test_last_error_is_sanitized_and_kept_after_recovery() -> None:
    """Control characters are stripped, length is bounded, and the last error survives an ok cycle."""
    board = StatusBoard()
    board.inbound_failed("a", NOW, ProviderUnavailable("line1\r\nline2\x00" + "x" * 900))
    board.inbound_succeeded("a", NOW, quarantined=0)
    err = board.get("a").inbound.last_error
    assert err is not None and err.code == "unavailable"
    assert "\x00" not in err.message and "\r" not in err.message and len(err.message) <= 500


def test_pause_shows_disabled_and_resume_restores_the_previous_state() -> None:
    """A paused mailbox reads disabled; a cycle ending meanwhile does not overwrite that."""
    board = StatusBoard()
    board.inbound_failed("a", NOW, AuthFailed("no"))
    board.set_paused("a", True)
    board.inbound_succeeded("a", NOW, quarantined=0)
    assert board.get("a").inbound.state is MailboxState.DISABLED
    board.set_paused("a", False)
    assert board.get("a").inbound.state is MailboxState.AUTH_REQUIRED


def test_every_writer_bumps_the_version_and_wakes_readers() -> None:
    """The reporter coalesces on `changed`; each write sets it."""
    board = StatusBoard()
    board.get("a")
    board.changed.clear()
    before = board.version
    board.inbound_delivered("a", 3.0)
    assert board.changed.is_set() and board.version == before + 1
    assert board.get("a").inbound.delivered_total == 1


def test_the_board_names_the_mailboxes_that_changed_once() -> None:
    """The reporter looks only at what changed: each writer marks its mailbox, taking clears it."""
    board = StatusBoard()
    board.get("a")
    board.get("b")
    board.take_changed()
    board.inbound_delivered("a", 1.0)
    board.outbound_failed("c", NOW, AuthFailed("smtp 535"))
    assert board.take_changed() == {"a", "c"}
    assert board.take_changed() == set()
    board.remove("b")
    assert board.take_changed() == {"b"}


def test_a_poll_is_marked_for_the_next_report_without_waking_it() -> None:
    """lastPollAt alone does not wake the reporter (one PUT per poll), but the next flush sends it."""
    board = StatusBoard()
    board.get("a")
    board.take_changed()
    board.changed.clear()
    board.inbound_polled("a", NOW)
    assert not board.changed.is_set()
    assert board.take_changed() == {"a"}


def test_a_touch_without_a_mailbox_marks_every_mailbox_changed() -> None:
    """A writer that cannot say which mailbox it changed makes the reporter look at all of them."""
    board = StatusBoard()
    board.inbound_delivered("a", 1.0)
    board.touch()
    board.inbound_delivered("b", 1.0)
    assert board.take_changed() is None
    assert board.take_changed() == set()


def test_the_outbox_marks_the_mailbox_it_updated_in_place() -> None:
    """update_board writes the outbound direction directly, then names the mailbox to the board."""
    board = StatusBoard()
    board.get("a")
    board.take_changed()
    update_board(board, {OutboxState.SENT: 3}, "a", NOW, None)
    assert board.take_changed() == {"a"}
    assert board.get("a").outbound.delivered_total == 3


def test_status_body_is_valid_for_the_iwd_profile() -> None:
    """to_json() validates against the IWD profile's MailboxStatus, in every state."""
    board = StatusBoard()
    board.inbound_failed("a", NOW, Throttled("429"))
    board.outbound_failed("a", NOW, AuthFailed("smtp 535"))
    board.inbound_stalled("b", NOW, 300)
    board.set_outbound_state("b", MailboxState.DISABLED)
    for status in board.all():
        WireStatus.model_validate(status.to_json())
    assert board.get("a").outbound.state is MailboxState.AUTH_REQUIRED
    assert board.get("b").inbound.last_error is not None


LATER = datetime(2026, 11, 20, 9, 0, 7, tzinfo=UTC)


def test_the_first_failed_call_turns_ok_degraded_naming_the_peer_and_the_first_answer_turns_it_back() -> None:
    """inbound_fault reports the change once, keeps `since` at the first failure; an answer ends it."""
    board = StatusBoard()
    assert board.inbound_fault("a", NOW, IWDUnavailable("503")) is True
    assert board.inbound_fault("a", LATER, IWDUnavailable("503 again")) is False
    box = board.get("a").inbound
    assert box.state is MailboxState.DEGRADED
    assert box.last_error is not None
    assert (box.last_error.peer, box.last_error.since, box.last_error.at) == (Peer.IWD, NOW, LATER)
    body = WireStatus.model_validate(board.get("a").to_json()).inbound.lastError
    assert body is not None and (body.peer, body.since) == ("iwd", NOW)
    assert board.inbound_peer_answered("a", Peer.MAIL_SERVER) is False  # not the failing peer
    assert board.inbound_peer_answered("a", Peer.IWD) is True
    assert board.get("a").inbound.state is MailboxState.OK
    assert board.inbound_peer_answered("a", Peer.IWD) is False


def test_degraded_lasts_while_any_peer_fails_and_a_person_state_is_not_hidden() -> None:
    """Two failing peers need two answers; an outage mid-cycle does not replace auth_required."""
    board = StatusBoard()
    board.inbound_fault("a", NOW, ProviderUnavailable("refused"))
    board.inbound_fault("a", LATER, StoreError("locked"))
    assert board.inbound_peer_answered("a", Peer.MAIL_SERVER) is False
    assert board.get("a").inbound.state is MailboxState.DEGRADED
    assert board.inbound_peer_answered("a", Peer.STORE) is True
    board.inbound_failed("b", NOW, AuthFailed("login rejected"))
    assert board.inbound_fault("b", LATER, IWDUnavailable("down")) is False
    assert board.get("b").inbound.state is MailboxState.AUTH_REQUIRED


class _Watcher:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def peer_failed(self, mailbox_id: str, error: ConnectorError) -> None:
        self.seen.append((mailbox_id, error.code))

    def peer_answered(self, mailbox_id: str, peer: Peer) -> None:
        self.seen.append((mailbox_id, f"{peer.value} answered"))


def test_iwd_attempts_are_told_to_the_cycle_that_made_them_only() -> None:
    """Inside `watched` each attempt reaches the watcher (5xx and timeouts fail, 2xx and 4xx answer,
    409 says nothing); outside any cycle nothing is told."""
    watcher = _Watcher()
    observe_iwd("POST", "/emails/batch", 503, 0.1, None)
    with watched("a", watcher):
        observe_iwd("POST", "/emails/batch", 503, 0.1, None)
        observe_iwd("POST", "/emails/batch", None, 1.0, "timeout")
        observe_iwd("POST", "/emails", 409, 0.1, None)
        observe_iwd("POST", "/emails/attachments", 422, 0.1, None)
        observe_iwd("POST", "/emails/batch", 200, 0.1, None)
    observe_iwd("POST", "/emails/batch", 200, 0.1, None)
    assert watcher.seen == [
        ("a", "iwd_unavailable"),
        ("a", "iwd_unavailable"),
        ("a", "iwd answered"),
        ("a", "iwd answered"),
    ]
