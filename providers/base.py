"""The two small ports every mail system is adapted to.

The pipeline talks only to these; it imports nothing from a concrete provider. Optional
capabilities are separate Protocols, checked with isinstance (a provider that cannot push is polled).
Providers translate their library's exceptions into `connector.errors` at the edge.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from email.message import EmailMessage
from typing import Protocol, runtime_checkable

from connector.models import FetchResult, PostAction, RawMessage, SendReceipt


@runtime_checkable
class InboundProvider(Protocol):
    """Reads one mailbox. Knows nothing of IWD, the ledger or conversion."""

    async def fetch(self, folder: str, cursor: str | None, limit: int) -> FetchResult:
        """Messages after `cursor` in server order, at most `limit` of them.

        A cursor of None means "from the beginning". Raises CursorReset-free: when the cursor
        is no longer valid the provider restarts the folder itself and sets `resync=True`.
        """
        ...

    async def apply_post_action(self, message: RawMessage, action: PostAction) -> None:
        """Marks, moves or deletes one message on the server; only called after the ledger commit.

        Idempotent: a message already marked, moved or gone is not an error.
        """
        ...

    async def close(self) -> None: ...


@runtime_checkable
class BatchPostActions(Protocol):
    """A provider that applies one post-action to many messages in one server round trip."""

    async def apply_post_actions(self, messages: Sequence[RawMessage], action: PostAction) -> None:
        """Same contract as apply_post_action, for a batch (any folders)."""
        ...


@runtime_checkable
class PushCapable(Protocol):
    """An inbound provider that can wait for new mail instead of being polled (IMAP IDLE...)."""

    async def wait_for_change(
        self, folder: str, timeout_seconds: float, wake: asyncio.Event | None = None
    ) -> bool:
        """Returns True when the server reported a change, False on timeout or once `wake` is set
        (a poll is due: the wait ends cleanly within a round trip and frees the connection).

        On a connection that no fetch has used yet it returns True at once: a push only reports
        what arrives while it waits, so the caller must catch up first (start-up, reconnect).
        """
        ...


@runtime_checkable
class Queued(Protocol):
    """A provider that can be waiting in line for a connection (the daemon's IMAP budget): a
    cycle that waits there is queued, not stalled, and the watchdog leaves it alone."""

    @property
    def queued(self) -> bool:
        """True while the provider waits for a connection slot or a login turn."""
        ...


@runtime_checkable
class Checkable(Protocol):
    """A provider that can report connection facts for `email-connector check`."""

    async def check(self) -> dict[str, str]:
        """Connects, logs in, looks at every folder; returns facts to print. Raises ProviderError."""
        ...


@runtime_checkable
class OutboundSender(Protocol):
    """Hands one reply to a mail server (SMTP). Knows nothing of IWD or the outbox."""

    async def send(
        self,
        message: EmailMessage,
        envelope_from: str,
        recipients: list[str],
        *,
        before_data: Callable[[], Awaitable[None]] | None = None,
    ) -> SendReceipt:
        """Returns when at least one recipient was accepted; refused ones are in the receipt.

        `before_data` is awaited right before the DATA command (the outbox records there that
        from now on a lost connection leaves the outcome unknown).

        Raises SendRejected (5xx for every recipient or at DATA), SendDeferred (4xx, or the
        connection failed before the message was transferred), SendUncertain (the connection
        was lost after the final DATA dot: the server may have accepted it), AuthFailed.
        """
        ...

    async def close(self) -> None: ...


class SentFolder(Protocol):
    """Where a sent reply is kept: filed after sending (IMAP APPEND; a no-op for APIs that file it
    themselves) and looked up by Message-ID when a crash left the outcome of a send unknown."""

    async def append(self, raw: bytes) -> str: ...

    async def contains(self, message_id: str) -> bool: ...

    async def close(self) -> None: ...
