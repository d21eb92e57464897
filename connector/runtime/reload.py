"""ConfigReloader: hot reload of mailboxes on SIGHUP, on a change of the file, or from IWD.

The file's mtime (and size) is polled: no extra dependency, and it works on every filesystem. A
file that does not load keeps the running configuration (the error is logged with file and field).
The daemon applies the new mailbox list: added mailboxes start, removed ones stop after their
in-flight cycle, changed ones are restarted after it; all others are not touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from connector.config import ConnectorSettings, load_config
from connector.errors import ConnectorError
from connector.logs import SecretRedactor, secret_values
from connector.remote_config import settings_with_iwd_mailboxes
from connector.runtime.services import BackgroundLoop

if TYPE_CHECKING:
    from connector.runtime.daemon import Daemon

log = structlog.get_logger("connector.runtime.reload")


def _stamp(path: Path) -> tuple[float, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime, st.st_size)


class ConfigReloader:
    name = "config-reloader"

    def __init__(self, daemon: Daemon, path: Path | None, *, redactor: SecretRedactor | None = None) -> None:
        self.daemon = daemon
        self.redactor = redactor
        self.path = path
        self.settings = daemon.settings.reload
        self.reloads = 0
        self._stamp = _stamp(path) if path is not None else None
        self._wake = asyncio.Event()
        self._loop = BackgroundLoop(self.name)
        self._lock = asyncio.Lock()
        self._sighup = False

    async def start(self) -> None:
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._wake.set)
            self._sighup = True
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no SIGHUP
            self._sighup = False
        if self.daemon.settings.config_source == "iwd":
            await self.reload_now()  # the mailboxes live in IWD: fetch them before anything else
        self._loop.start(self._run())

    async def stop(self) -> None:
        if self._sighup:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        await self._loop.stop()

    def request(self) -> None:
        """Asks for a reload soon (what SIGHUP does)."""
        self._wake.set()

    async def _run(self) -> None:
        watch = self.path is not None and self.settings.watch_file
        from_iwd = self.daemon.settings.config_source == "iwd"
        period = min(
            self.settings.poll_seconds if watch else float("inf"),
            self.settings.iwd_poll_seconds if from_iwd else float("inf"),
            3600.0,
        )
        since_iwd = 0.0
        while not self._loop.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), period)
            woken = self._wake.is_set()
            self._wake.clear()
            since_iwd += period
            due = woken
            if watch and self.path is not None:
                stamp = _stamp(self.path)
                if stamp != self._stamp:
                    due = True
            if from_iwd and since_iwd >= self.settings.iwd_poll_seconds:
                due, since_iwd = True, 0.0
            if due:
                await self.reload_now()

    async def load(self) -> ConnectorSettings:
        """The configuration as it is now: the file (if any), then IWD's mailboxes for source iwd."""
        base = self.daemon.settings
        if self.path is not None:
            self._stamp = _stamp(self.path)
            base = await asyncio.to_thread(load_config, self.path)
        if base.config_source == "iwd":
            base = await settings_with_iwd_mailboxes(base, self.daemon.iwd)
        return base

    async def reload_now(self) -> dict[str, list[str]] | None:
        """Loads and applies; None when the new configuration could not be loaded (old one kept)."""
        async with self._lock:
            try:
                new = await self.load()
            except ConnectorError as exc:
                log.warning("reload_failed", error=str(exc), code=exc.code, kept="running configuration")
                return None
            self.reloads += 1
            if self.redactor is not None:
                self.redactor.add(secret_values(new))
            return await self.daemon.apply_settings(new)
