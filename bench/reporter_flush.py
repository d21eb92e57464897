"""Status reporter flush benchmark (issue #9): CPU per flush with N mailboxes, 1 % of them changed.

Not part of the test suite; prints figures, asserts nothing about time. For N = 500, 1 000 and
5 000 Maildir mailboxes (the tests' settings builder) it runs two reporters side by side, each on
its own StatusBoard fed the same changes:

- new: `StatusReporter.flush` as it is in this tree (only the mailboxes the board marked changed);
- old: `OldReporter`, a faithful copy of the walk-every-mailbox flush it replaced (public_view +
  json.dumps for every configuration, to_json + fingerprint for every status), embedded below
  rather than loaded from git so the figure does not move when main does.

Each round changes 1 % of the mailboxes (one delivery each) and times one flush with
time.process_time; then idle rounds time a flush with nothing changed. By default IWD is an
in-process fake that only counts PUTs, so the figures are the reporter's own CPU; `--sandbox`
sends the PUTs to the sandbox IWD app in-process instead (its HTTP and SQLite work then counts too).

    .venv/bin/python bench/reporter_flush.py [--sizes 500,1000,5000] [--rounds 20] [--idle 200] [--sandbox]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connector.config import MailboxSettings, StatusSettings, public_view  # noqa: E402
from connector.iwd import IWDClient  # noqa: E402
from connector.runtime.reporter import StatusReporter, _fingerprint  # noqa: E402
from connector.sandbox import control_of, create_app  # noqa: E402
from connector.status import StatusBoard  # noqa: E402
from tests.conftest import maildir_mailbox  # noqa: E402
from tests.peers.sandbox import asgi_client  # noqa: E402

CHANGED_SHARE = 0.01


class OldReporter(StatusReporter):
    """The flush before the changed set: every mailbox's configuration and status, every round."""

    async def flush(self, *, force: bool = False) -> bool:
        ok = True
        current = {box.id: box for box in self.mailboxes()}
        for stale in set(self.sent_config) - set(current):
            self.sent_config.pop(stale, None)
        for box in current.values():
            view = public_view(box)
            key = json.dumps(view, sort_keys=True)
            if force or self.sent_config.get(box.id) != key:
                if await self._put("config", box.id, self.iwd.put_mailbox_config, view):
                    self.sent_config[box.id] = key
                else:
                    ok = False
        statuses = self.board.all()
        for stale in set(self.sent_status) - {s.mailbox_id for s in statuses}:
            self.sent_status.pop(stale, None)
        for status in statuses:
            body = status.to_json()
            key = _fingerprint(body)
            if force or self.sent_status.get(status.mailbox_id) != key:
                if await self._put("status", status.mailbox_id, self.iwd.put_mailbox_status, body):
                    self.sent_status[status.mailbox_id] = key
                else:
                    ok = False
        if force and ok:
            self._last_heartbeat = time.monotonic()
        self._settle(ok)
        return ok


class FakeIWD:
    """Takes every PUT at once and counts it: no IO, so only the reporter's CPU is measured."""

    def __init__(self) -> None:
        self.puts = 0

    async def put_mailbox_status(self, mailbox_id: str, status: dict[str, Any]) -> None:
        self.puts += 1

    async def put_mailbox_config(self, mailbox_id: str, config: dict[str, Any]) -> None:
        self.puts += 1


@dataclass
class Figures:
    changed_cpu: float  # seconds per flush with 1 % changed
    changed_puts: float  # PUTs per such flush
    idle_cpu: float  # seconds per flush with nothing changed
    idle_puts: float


@contextlib.asynccontextmanager
async def iwd_for(sandbox: bool, workdir: Path) -> AsyncIterator[tuple[IWDClient, Callable[[], int]]]:
    """The IWD the reporter talks to, and a count of the PUTs it has taken."""
    if not sandbox:
        fake = FakeIWD()
        yield cast(IWDClient, fake), lambda: fake.puts
        return
    app = create_app(str(workdir / f"iwd-{time.monotonic_ns()}.db"))
    control = control_of(app)
    async with asgi_client(app, max_retry_seconds=0) as client:
        yield client, lambda: control.requests.count("PUT")


async def measure(
    kind: type[StatusReporter],
    boxes: Sequence[MailboxSettings],
    rounds: int,
    idle: int,
    sandbox: bool,
    workdir: Path,
) -> Figures:
    """One reporter over `boxes`: the first (full) flush untimed, then changed and idle rounds."""
    board = StatusBoard()
    for box in boxes:
        board.set_delivered_total(box.id, 0)
    rng = random.Random(9)  # the same changes for the old and the new reporter
    changed = max(1, round(len(boxes) * CHANGED_SHARE))
    async with iwd_for(sandbox, workdir) as (iwd, puts):
        reporter = kind(board, iwd, lambda: boxes, StatusSettings())
        assert await reporter.flush()
        changed_cpu, changed_puts = 0.0, 0
        for _ in range(rounds):
            for box in rng.sample(list(boxes), changed):
                board.inbound_delivered(box.id, 1.0)
            cpu, sent = await timed_flush(reporter, puts)
            changed_cpu += cpu
            changed_puts += sent
        idle_cpu, idle_puts = 0.0, 0
        for _ in range(idle):
            cpu, sent = await timed_flush(reporter, puts)
            idle_cpu += cpu
            idle_puts += sent
    return Figures(changed_cpu / rounds, changed_puts / rounds, idle_cpu / idle, idle_puts / idle)


async def timed_flush(reporter: StatusReporter, puts: Callable[[], int]) -> tuple[float, int]:
    """CPU seconds of one flush, and the PUTs it made."""
    before_puts = puts()
    gc.collect()
    start = time.process_time()
    assert await reporter.flush()
    return time.process_time() - start, puts() - before_puts


def ms(seconds: float) -> str:
    return f"{seconds * 1000:9.3f}"


def ratio(old: float, new: float) -> str:
    return f"{old / new:8.1f}x" if new > 0 else "     inf"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="500,1000,5000")
    parser.add_argument("--rounds", type=int, default=20, help="flushes with 1 %% changed, per reporter")
    parser.add_argument("--idle", type=int, default=200, help="flushes with nothing changed, per reporter")
    parser.add_argument("--sandbox", action="store_true", help="PUT to the sandbox IWD app, not a fake")
    args = parser.parse_args()
    iwd_name = "in-process fake (counts PUTs)"
    if args.sandbox:
        iwd_name = "sandbox IWD app in-process (its CPU counts)"
    print(f"status reporter flush: CPU per flush (time.process_time), IWD = {iwd_name}")
    print(f"{args.rounds} rounds with 1 % of the mailboxes changed, {args.idle} idle rounds, per reporter")
    print("old = walk-every-mailbox flush (embedded copy), new = changed-set flush (this tree)")
    print()
    header = (
        f"{'mailboxes':>9} {'flush':>7} {'old ms':>9} {'new ms':>9} {'old/new':>9}"
        f" {'old ms/chg':>10} {'new ms/chg':>10} {'PUTs old':>8} {'PUTs new':>8}"
    )
    print(header)
    with tempfile.TemporaryDirectory(prefix="reporter-bench-") as tmp:
        workdir = Path(tmp)
        for size in [int(s) for s in args.sizes.split(",")]:
            boxes = [maildir_mailbox(workdir, f"m-{i:05}") for i in range(size)]
            changed = max(1, round(size * CHANGED_SHARE))
            old = await measure(OldReporter, boxes, args.rounds, args.idle, args.sandbox, workdir)
            new = await measure(StatusReporter, boxes, args.rounds, args.idle, args.sandbox, workdir)
            print(
                f"{size:>9} {'1 %':>7} {ms(old.changed_cpu)} {ms(new.changed_cpu)}"
                f" {ratio(old.changed_cpu, new.changed_cpu)}"
                f" {ms(old.changed_cpu / changed):>10} {ms(new.changed_cpu / changed):>10}"
                f" {old.changed_puts:>8.1f} {new.changed_puts:>8.1f}"
            )
            print(
                f"{size:>9} {'idle':>7} {ms(old.idle_cpu)} {ms(new.idle_cpu)}"
                f" {ratio(old.idle_cpu, new.idle_cpu)} {'':>10} {'':>10}"
                f" {old.idle_puts:>8.1f} {new.idle_puts:>8.1f}"
            )


if __name__ == "__main__":
    asyncio.run(main())
