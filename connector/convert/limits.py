"""Bounds on the work one message may cost, so a hostile or broken message cannot stall a mailbox."""

from __future__ import annotations

import time
from dataclasses import dataclass

from connector.errors import MessageError


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-message bounds; exceeding a hard bound raises MessageError (the message is quarantined)."""

    max_depth: int = 12  # multipart levels walked as a tree; deeper parts are flattened, not refused
    max_parts: int = 1000  # MIME parts walked in total
    max_header_bytes: int = 512 * 1024  # size of the top header block
    max_seconds: float = 20.0  # wall time per message, checked between parts
    max_attachments: int = 500  # attachments kept; more are dropped with a defect
    max_html_chars: int = 4 * 1024 * 1024  # HTML beyond this is not sanitized (kept as text only)
    max_tnef_bytes: int = 64 * 1024 * 1024  # winmail.dat larger than this is kept as is
    min_blob_bytes: int = 8 * 1024  # base64 runs this long are decoded outside the stdlib parser


DEFAULT_LIMITS = Limits()


class Budget:
    """Tracks parts and elapsed time during one conversion; raises MessageError when exhausted."""

    __slots__ = ("_deadline", "limits", "parts")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.parts = 0
        self._deadline = time.monotonic() + limits.max_seconds

    def check_time(self) -> None:
        if time.monotonic() > self._deadline:
            raise MessageError(f"conversion took longer than {self.limits.max_seconds:g} s")

    def count_part(self) -> None:
        """Call once per MIME part visited; enforces part count and time.

        Depth is no reason to refuse: the stdlib reads a message nested hundreds of levels deep, and
        the walker flattens what lies below `max_depth`, so the text and attachments still arrive.
        """
        self.parts += 1
        if self.parts > self.limits.max_parts:
            raise MessageError(f"message has more than {self.limits.max_parts} MIME parts")
        if self.parts % 16 == 0:
            self.check_time()
