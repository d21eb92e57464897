"""Crash points for the crash-safety tests (the failpoint pattern of FoundationDB and TiKV).

With `EMAIL_CONNECTOR_CRASH_AT=<step>:<n>` in the environment the process SIGKILLs itself the
n-th time it reaches <step>. Unset (always, in production) the check is one dict lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "EMAIL_CONNECTOR_CRASH_AT"
STEPS = ("fetched", "converted", "intent", "uploaded", "posted", "committed", "acted")
# Outbound replies (connector/outbox): claimed as `sending`; DATA accepted; copied to Sent; `sent` recorded.
SEND_STEPS = ("outbox_sending", "smtp_data_sent", "sent_copied", "outbox_sent")


class CrashPoints:
    def __init__(self, spec: str | None) -> None:
        self.step: str | None = None
        self.remaining = 0
        if spec:
            step, _, count = spec.partition(":")
            if step not in STEPS + SEND_STEPS:
                known = ", ".join(STEPS + SEND_STEPS)
                raise ValueError(f"{ENV}: unknown step {step!r}; steps are {known}")
            self.step, self.remaining = step, int(count or 1)

    @classmethod
    def from_env(cls) -> CrashPoints:
        return cls(os.environ.get(ENV))

    def reached(self, step: str) -> None:
        if step != self.step:
            return
        self.remaining -= 1
        if self.remaining <= 0:
            os.kill(os.getpid(), signal.SIGKILL)
