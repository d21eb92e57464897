"""What a test (or the admin endpoint) can reach on a running sandbox: data, faults, tallies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request

from connector.sandbox.faults import Faults, RequestLog
from connector.sandbox.storage import SandboxStore


@dataclass
class SandboxControl:
    store: SandboxStore
    api_key: str
    ccid: str
    faults: Faults = field(default_factory=Faults)
    requests: RequestLog = field(default_factory=RequestLog)
    batch: bool = True  # offers POST /emails/batch (profile v1.1)
    sink: Callable[[], list[dict[str, Any]]] | None = None  # the demo's SMTP sink, shown on the page

    def reset(self) -> None:
        """Forget all data, faults and counts (between tests sharing one sandbox)."""
        self.store.clear()
        self.faults.reset()
        self.requests.reset()


def control_of(app: Starlette) -> SandboxControl:
    """The SandboxControl of an app made by create_app()."""
    ctl = app.state.sandbox
    assert isinstance(ctl, SandboxControl)
    return ctl


def control_for(request: Request) -> SandboxControl:
    ctl = request.app.state.sandbox
    assert isinstance(ctl, SandboxControl)
    return ctl
