"""`email-connector demo`: the whole product on one machine with nothing to configure.

A sandbox IWD in-process on 127.0.0.1, a SQLite store, a Maildir seeded with the sample
messages shipped in connector/samples/ (package data: an installed wheel has them too), and an
SMTP sink that the demo mailbox sends its replies to: reply to an item on the sandbox page and the
reply shows up there as delivered, which closes the loop.
Re-running it is safe: samples already delivered are not seeded again, and the ledger would
answer any replay with the same item.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from rich.console import Console
from rich.table import Table

from connector.config import parse_config
from connector.logs import SecretRedactor, configure, secret_values
from connector.sandbox.app import DEFAULT_API_KEY, DEFAULT_CCID
from providers.maildir import deliver_to_maildir, unique_name

SAMPLES = Path(__file__).resolve().parent / "samples"
DEMO_API_KEY = DEFAULT_API_KEY
DEMO_CCID = DEFAULT_CCID

CONFIG_TEMPLATE = """\
# Written by `email-connector demo`. The API key is a reference, resolved at load.
iwd:
  url: {iwd_url}
  api_key: ${{DEMO_IWD_API_KEY}}
  ccid: {ccid}
store:
  url: sqlite+aiosqlite:///{store}
http:
  port: {http_port}
mailboxes:
  - id: demo-support
    address: support@example.com
    display_name: Example Support (demo)
    provider: maildir
    maildir:
      path: {maildir}
    folders: [INBOX]
    poll_interval_seconds: 3
    post_action: mark_read
    smtp:  # the demo's SMTP sink on 127.0.0.1: keeps what it receives, relays nothing
      host: 127.0.0.1
      port: {smtp_port}
      security: plain
      auth: none
      allow_insecure: true
outbox:
  poll_interval_seconds: 1
"""
ENV_FILE = "demo.env"  # what the CLI needs beside the config: `. demo-data/demo.env`


def free_port(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])


def seed_samples(maildir: Path, samples: Path = SAMPLES) -> int:
    """Delivers each sample once; returns how many were added."""
    present: set[str] = set()
    for sub in ("new", "cur"):
        with contextlib.suppress(FileNotFoundError):
            present.update(unique_name(n) for n in os.listdir(maildir / sub))
    added = 0
    for sample in sorted(samples.glob("*.eml")):
        name = f"demo-{sample.stem}"
        if name in present:
            continue
        deliver_to_maildir(maildir, sample.read_bytes(), name)
        added += 1
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    return added


def prepare(directory: Path) -> tuple[Path, Path, int]:
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    maildir = directory / "Maildir"
    return directory, maildir, seed_samples(maildir)


async def run_demo(directory: Path, *, port: int, once: bool, console: Console) -> int:
    from connector.runtime.app import run_once, runtime, serve_until_signalled
    from connector.sandbox import SandboxIWD
    from connector.sandbox.smtp_sink import SmtpSink

    directory, maildir, added = prepare(directory)
    os.environ["DEMO_IWD_API_KEY"] = DEMO_API_KEY  # the sandbox started below expects exactly this key
    sandbox = SandboxIWD(
        db_path=str(directory / "sandbox-iwd.db"),
        port=free_port(port),
        api_key=DEMO_API_KEY,
        ccid=DEMO_CCID,
    )
    sandbox.start()
    sink = await SmtpSink().start()
    sandbox.control.sink = sink.received
    try:
        config_path = directory / "connector.yaml"
        text = CONFIG_TEMPLATE.format(
            iwd_url=sandbox.url,
            ccid=DEMO_CCID,
            store=directory / "connector.db",
            maildir=maildir,
            http_port=free_port(8025),
            smtp_port=sink.port,
        )
        config_path.write_text(text, encoding="utf-8")
        env_path = directory / ENV_FILE
        env_path.write_text(f"export DEMO_IWD_API_KEY={DEMO_API_KEY}\n", encoding="utf-8")
        settings = parse_config(text, str(config_path))
        configure(SecretRedactor(secret_values(settings)), level="warning" if once else "info")
        page = sandbox.url.split("/iwd/")[0] + "/"
        admin = f"http://127.0.0.1:{settings.http.port}/admin"
        if not once:  # --once exits at the end: nothing would serve these addresses then
            console.print(f"[bold]Sandbox IWD[/]   {page}  (items; open one to reply as an agent)")
            key = f"x-api-key: {DEMO_API_KEY}, x-ccid: {DEMO_CCID}"
            console.print(f"[bold]IWD API[/]       {sandbox.url}/emails  ({key})")
            console.print(f"[bold]Admin console[/] {admin}  (mailboxes, quarantine, replies, charts)")
            console.print(f"[bold]SMTP sink[/]     127.0.0.1:{sink.port}  (where the demo's replies go)")
        console.print(f"[bold]Maildir[/]       {maildir}/new  ({added} samples added; drop .eml files here)")
        console.print(f"[bold]Config[/]        {config_path}")
        console.print(f"[bold]CLI[/]           . {env_path} && email-connector status -c {config_path}")
        async with runtime(settings) as rt:
            daemon = rt.daemon()
            if once:
                ok = await run_once(daemon)
                items, _ = await rt.iwd.list_emails(mailbox_id="demo-support", limit=100)
                _print_items(console, items)
                return 0 if ok else 1
            await serve_until_signalled(daemon, lambda: console.print("Serving. Press Ctrl-C to stop."))
            return 0
    finally:
        await sink.stop()
        sandbox.stop()


def _print_items(console: Console, items: list[dict[str, object]]) -> None:
    table = Table(title=f"{len(items)} items in the sandbox IWD")
    for column in ("id", "from", "subject", "flags", "attachments"):
        table.add_column(column)
    for item in items:
        sender = item.get("from") or {}
        flags = item.get("flags") or {}
        table.add_row(
            str(item.get("id")),
            str(sender.get("address", "") if isinstance(sender, dict) else ""),
            str(item.get("subject", "")),
            ",".join(k for k, v in flags.items() if v) if isinstance(flags, dict) else "",
            str(len(item.get("attachments") or [])),  # type: ignore[arg-type]
        )
    console.print(table)
