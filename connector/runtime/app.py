"""Builds the daemon's parts from settings: the one connect path shared by `run`, `check` and `demo`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from connector.api import ApiContext, ApiServer, create_api_app
from connector.api.admin import admin_routes
from connector.api.app import RouteGroup
from connector.api.console import ActivityWatcher, console_routes
from connector.config import ConnectorSettings, MailboxSettings
from connector.errors import ConnectorError
from connector.iwd.client import IWDClient
from connector.logs import SecretRedactor
from connector.metrics import ConnectorMetrics
from connector.outbox.api import reply_routes
from connector.outbox.wiring import attach_outbox
from connector.runtime.daemon import Daemon
from connector.runtime.identity import replica_identity
from connector.runtime.peer_calls import observe_activity, observe_all, observe_iwd
from connector.runtime.reload import ConfigReloader
from connector.runtime.reporter import StatusReporter
from connector.runtime.services import OneShot
from connector.runtime.watchdog import Watchdog
from connector.runtime.wiring import attach_leases
from connector.status import StatusBoard
from connector.store import open_store
from connector.store.types import Store
from providers.base import Checkable
from providers.imap.budget import ConnectionBudget
from providers.registry import build_inbound

# Route groups served beside /healthz and /readyz (replies API, admin page, metrics).
ROUTE_GROUPS: list[RouteGroup] = [console_routes, admin_routes, reply_routes]  # console first: /check


@dataclass
class Runtime:
    settings: ConnectorSettings
    store: Store
    iwd: IWDClient
    board: StatusBoard
    api: ApiContext | None = None
    config_path: Path | None = None  # for hot reload (SIGHUP, file change)
    redactor: SecretRedactor | None = None  # learns the secrets of reloaded mailboxes
    imap_budget: ConnectionBudget | None = None  # the daemon's IMAP sessions (set by daemon())

    def daemon(self) -> Daemon:
        """The daemon with its services; the HTTP server only when enabled."""
        metrics = ConnectorMetrics(self.board)
        self.imap_budget = ConnectionBudget.from_settings(self.settings.imap_connections, metrics)
        factory = functools.partial(build_inbound, imap_budget=self.imap_budget)
        daemon = Daemon(
            self.settings, self.store, self.iwd, provider_factory=factory, board=self.board, metrics=metrics
        )
        self.iwd.observer = observe_all(  # metrics, then status, then the console's charts
            daemon.metrics.observe_iwd, observe_iwd, observe_activity(self.board.activity)
        )
        self.api = ApiContext(self.settings, self.store, self.iwd, self.board, daemon=daemon)
        identity = replica_identity(self.settings.replicas)
        manager = attach_leases(daemon, self.store, identity)  # PostgreSQL: several replicas
        reloader = ConfigReloader(daemon, self.config_path, redactor=self.redactor)
        self.api.extras.update(
            metrics=daemon.metrics,
            reloader=reloader,
            replica=identity,
            leases=manager,
            started_at=datetime.now(UTC),
        )
        daemon.services.extend(
            [
                reloader,
                StatusReporter(
                    self.board,
                    self.iwd,
                    lambda: daemon.settings.mailboxes,
                    self.settings.status,
                    daemon.metrics,
                    holds=None if manager is None else manager.holds,
                ),
                Watchdog(daemon, self.settings.status),
                ActivityWatcher(self.board),
            ]
        )
        attach_outbox(  # replies (issue #5), claimed by this replica
            daemon,
            self.store,
            self.iwd,
            self.board,
            self.api,
            replica_id=identity.replica_id,
            on_refused=None if manager is None else manager.count_refused,
        )
        if self.settings.http.enabled:
            app = create_api_app(self.api, ROUTE_GROUPS)
            daemon.services.append(ApiServer(app, self.settings.http.host, self.settings.http.port))
        return daemon


@contextlib.asynccontextmanager
async def runtime(
    settings: ConnectorSettings, *, config_path: Path | None = None, redactor: SecretRedactor | None = None
) -> AsyncIterator[Runtime]:
    store = await open_store(settings.store.url)
    try:
        async with IWDClient(settings.iwd) as iwd:
            yield Runtime(settings, store, iwd, StatusBoard(), config_path=config_path, redactor=redactor)
    finally:
        await store.close()


@dataclass
class MailboxVerdict:
    mailbox_id: str
    provider: str
    ok: bool
    detail: str


async def check_mailbox(box: MailboxSettings) -> MailboxVerdict:
    """Connects and looks at every folder; the same connect path the daemon uses."""
    try:
        provider = build_inbound(box)
    except (ConnectorError, NotImplementedError, ValueError) as exc:
        return MailboxVerdict(box.id, box.provider, False, str(exc))
    try:
        if isinstance(provider, Checkable):
            facts = await provider.check()
        else:
            for folder in box.folders:
                await provider.fetch(folder, None, 1)
            facts = {"folders": ", ".join(box.folders)}
        return MailboxVerdict(box.id, box.provider, True, "; ".join(f"{k}: {v}" for k, v in facts.items()))
    except ConnectorError as exc:
        return MailboxVerdict(box.id, box.provider, False, f"{exc.code}: {exc}")
    finally:
        with contextlib.suppress(Exception):
            await provider.close()


async def run_once(daemon: Daemon) -> bool:
    """`run --once` and `demo --once`: one cycle per mailbox, then one round of every service
    that has one (the outbox sends the replies that are due), through the daemon's own code.
    False when a mailbox or a round failed."""
    results = await daemon.run_once()
    ok = all(report is not None for report in results.values())
    for service in daemon.services:
        if isinstance(service, OneShot):
            ok = await service.run_once() and ok
    return ok


async def serve_until_signalled(daemon: Daemon, on_started: Callable[[], None] | None = None) -> None:
    """Runs the daemon until SIGTERM or SIGINT, then stops it cleanly (current work commits)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await daemon.start()
    if on_started is not None:
        on_started()
    await stop.wait()
    await daemon.stop()
