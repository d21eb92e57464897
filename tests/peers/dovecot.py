"""A private Dovecot IMAP server for tests and benchmarks, started from a temp dir under /tmp.

Nothing under /etc/dovecot is read. The master runs in the foreground (`dovecot -F`) as our own
child, so stopping it is a plain terminate + wait (no zombie reparented to PID 1). Listeners: one
plain port (STARTTLS offered) and one implicit-TLS port, both on 127.0.0.1. Certificates come from
trustme with CN "localhost" and an IP SAN for 127.0.0.1. Optional XOAUTH2/OAUTHBEARER via Dovecot's
oauth2 passdb against a tiny local introspection endpoint (`Dovecot.oauth_tokens`).

Every parent of the instance dir must be o+x (auth runs as `dovecot`, mail as `nobody`), which is
why the dir comes from tempfile.mkdtemp(dir="/tmp") and is chmod 755, never pytest's tmp_path.
"""

from __future__ import annotations

import contextlib
import imaplib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import trustme

from connector.config import MailboxSettings

START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 5.0
_SPECIAL_FOLDERS = (
    ("Drafts", r"\Drafts"),
    ("Sent", r"\Sent"),
    ("Trash", r"\Trash"),
    ("Junk", r"\Junk"),
    ("Archive", r"\Archive"),
)


def free_port() -> int:
    """A currently free loopback port (small race accepted: tests own the machine's loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mutf7_encode(name: str) -> str:
    """Modified UTF-7 (RFC 3501 §5.1.3), kept here so the peer does not import the code under test."""
    import base64

    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            data = "".join(run).encode("utf-16-be")
            out.append("&" + base64.b64encode(data).decode().rstrip("=").replace("/", ",") + "-")
            run.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


class _Introspection:
    """POST /introspect with `token=<t>` → {"active": true, "username": ...} for known tokens."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self.tokens = tokens
        tokens_ref = tokens

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                token = (form.get("token") or [""])[0]
                user = tokens_ref.get(token)
                body = json.dumps({"active": True, "username": user} if user else {"active": False})
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Dovecot:
    """One private Dovecot instance. Use as a context manager or call start()/stop()."""

    def __init__(
        self, root: str | Path | None = None, *, oauth: bool = False, spare_users: int = 100
    ) -> None:
        self.dir = Path(root) if root else Path(tempfile.mkdtemp(prefix="dovecot-", dir="/tmp"))
        self._own_dir = root is None
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.plain_port = free_port()
        self.tls_port = free_port()
        self.oauth_tokens: dict[str, str] = {}
        self._introspection = _Introspection(self.oauth_tokens) if oauth else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._users: dict[str, str] = {}
        nobody = pwd.getpwnam("nobody")
        self._uid, self._gid = nobody.pw_uid, nobody.pw_gid
        self._write_certs()
        self.mail_root = self.dir / "mail"
        self.mail_root.mkdir(exist_ok=True)
        os.chown(self.mail_root, self._uid, self._gid)
        (self.dir / "users").write_text("")
        # Dovecot re-reads passwd-file at most about once a second, so users are written up front
        # and handed out by add_user(); past the pool it appends and waits until a login works.
        self._spare: list[tuple[str, str]] = []
        for _ in range(spare_users):
            self._spare.append(self._append_user(None, None))
        self._write_config()

    # ------------------------------------------------------------------ setup

    @property
    def ca_file(self) -> str:
        return str(self.dir / "certs" / "ca.pem")

    @property
    def config_file(self) -> str:
        return str(self.dir / "dovecot.conf")

    @property
    def log_file(self) -> Path:
        """Dovecot's log: microsecond timestamps, one `Login:` line per session (with its session
        id and the client's port) and one `Disconnected` line from the session's imap process."""
        return self.dir / "dovecot.log"

    def _write_certs(self) -> None:
        certs = self.dir / "certs"
        certs.mkdir(exist_ok=True)
        ca = trustme.CA()
        leaf = ca.issue_cert("localhost", "127.0.0.1", common_name="localhost")
        ca.cert_pem.write_to_path(str(certs / "ca.pem"))
        leaf.private_key_pem.write_to_path(str(certs / "server-key.pem"))
        with open(certs / "server-cert.pem", "wb") as fh:
            for blob in leaf.cert_chain_pems:
                fh.write(blob.bytes())
        other = trustme.CA()
        other.cert_pem.write_to_path(str(certs / "wrong-ca.pem"))
        for p in certs.iterdir():
            os.chmod(p, 0o644)

    @property
    def wrong_ca_file(self) -> str:
        """A CA that did not sign the server certificate (for verify-failure tests)."""
        return str(self.dir / "certs" / "wrong-ca.pem")

    def _write_config(self) -> None:
        d = self.dir
        mechanisms = "plain login" + (" xoauth2 oauthbearer" if self._introspection else "")
        oauth_passdb = ""
        if self._introspection:
            (d / "dovecot-oauth2.conf.ext").write_text(
                "introspection_mode = post\n"
                f"introspection_url = http://127.0.0.1:{self._introspection.port}/introspect\n"
                "username_attribute = username\nactive_attribute = active\nactive_value = true\n"
            )
            oauth_passdb = (
                "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                f"  args = {d}/dovecot-oauth2.conf.ext\n}}\n"
            )
        specials = "".join(
            f"  mailbox {name} {{\n    special_use = {use}\n    auto = subscribe\n  }}\n"
            for name, use in _SPECIAL_FOLDERS
        )
        conf = f"""instance_name = testimap-{self.plain_port}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
log_timestamp = "%Y-%m-%d %H:%M:%S.%{{usecs}} "
login_log_format_elements = user=<%u> method=%m rip=%r rport=%{{rport}} mpid=%e %c session=<%{{session}}>
protocols = imap
listen = 127.0.0.1
first_valid_uid = 1
first_valid_gid = 1
mail_uid = nobody
mail_gid = nogroup
default_login_user = dovenull
default_internal_user = dovecot
ssl = yes
ssl_cert = <{d}/certs/server-cert.pem
ssl_key = <{d}/certs/server-key.pem
ssl_dh = </usr/share/dovecot/dh.pem
auth_mechanisms = {mechanisms}
disable_plaintext_auth = no
auth_cache_size = 0
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{oauth_passdb}passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/users
}}
mail_location = maildir:~/Maildir
mail_fsync = never
maildir_very_dirty_syncs = no
namespace inbox {{
  inbox = yes
  separator = /
{specials}}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.plain_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port}
    ssl = yes
  }}
}}
service imap {{
  process_limit = 1024
}}
stats_writer_socket_path =
imap_idle_notify_interval = 2 mins
mail_max_userip_connections = 1000
"""
        (d / "dovecot.conf").write_text(conf)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Dovecot:
        """Starts the master in the foreground and waits until both listeners accept."""
        if self._proc is not None and self._proc.poll() is None:
            return self
        log = open(self.dir / "master.out", "ab")  # noqa: SIM115 - handed to the child
        self._proc = subprocess.Popen(["dovecot", "-F", "-c", self.config_file], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        for port in (self.plain_port, self.tls_port):
            while True:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"dovecot exited at start; see {self.dir}/dovecot.log")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"dovecot did not listen on {port}") from None
                    time.sleep(0.02)
        return self

    def _descendants(self) -> list[int]:
        if self._proc is None:
            return []
        parents: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents[int(entry)] = ppid
        found: list[int] = []
        frontier = [self._proc.pid]
        while frontier:
            pid = frontier.pop()
            children = [p for p, pp in parents.items() if pp == pid]
            found.extend(children)
            frontier.extend(children)
        return found

    def stop(self) -> None:
        """SIGTERM to the master, then SIGKILL to anything left (by pid, our own children only)."""
        if self._proc is None:
            return
        children = self._descendants()
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._kill_pids(children)
        self._proc = None
        self._remove_dead_locks()

    def kill(self) -> None:
        """Simulates a crash: SIGKILL the master and all its processes at once.

        An imap process killed between creating a dotlock and writing its pid into it leaves an
        empty `dovecot-uidlist.lock` that Dovecot only treats as stale after two minutes; every
        SELECT of that folder waits until then (seen under CPU load). A real crash has the same
        effect, and the client reports it as a SELECT timeout; the tests check the client's
        recovery once the server serves again, so the dead processes' locks are removed here.
        """
        if self._proc is None:
            return
        children = self._descendants()
        self._proc.kill()
        self._proc.wait()
        self._kill_pids(children)
        self._proc = None
        self._remove_dead_locks()

    def _remove_dead_locks(self) -> None:
        """Every Dovecot process is gone, so any dotlock left is stale (see `kill`); a stop that
        had to SIGKILL a busy imap process leaves them too."""
        for lock in self.mail_root.rglob("*.lock"):
            lock.unlink(missing_ok=True)

    def _kill_pids(self, pids: Iterable[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for pid in pids:
            while time.monotonic() < deadline:
                try:
                    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                except OSError:
                    break
                if state == "Z":
                    break
                time.sleep(0.01)

    def restart(self) -> None:
        self.stop()
        self._wait_ports_free()
        self.start()

    def _wait_ports_free(self) -> None:
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for port in (self.plain_port, self.tls_port):
            while time.monotonic() < deadline:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        s.bind(("127.0.0.1", port))
                        break
                    except OSError:
                        time.sleep(0.02)

    def close(self) -> None:
        """Stops the server and the introspection endpoint and removes the instance dir."""
        try:
            self.stop()
        finally:
            if self._introspection:
                self._introspection.close()
            if self._own_dir:
                shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ users and mail

    def add_user(self, user: str | None = None, password: str | None = None) -> tuple[str, str]:
        """A fresh user with an empty mailbox: from the pre-written pool, else appended and awaited."""
        if user is None and password is None and self._spare:
            return self._spare.pop()
        user, password = self._append_user(user, password)
        if self._proc is not None:
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while True:
                try:
                    client = imaplib.IMAP4("127.0.0.1", self.plain_port)
                    try:
                        client.login(user, password)
                        break
                    finally:
                        with contextlib.suppress(Exception):
                            client.logout()
                except imaplib.IMAP4.error:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        return user, password

    def _append_user(self, user: str | None, password: str | None) -> tuple[str, str]:
        user = user or f"u{uuid.uuid4().hex[:10]}@example.test"
        password = password or f"pw-{uuid.uuid4().hex[:12]}"
        self._users[user] = password
        home = self.mail_root / user
        with open(self.dir / "users", "a") as fh:
            fh.write(f"{user}:{{PLAIN}}{password}::::{home}::\n")
        return user, password

    def home(self, user: str) -> Path:
        return self.mail_root / user

    def maildir(self, user: str, folder: str = "INBOX") -> Path:
        """The on-disk Maildir++ directory of a folder (created, owned by nobody)."""
        root = self.home(user) / "Maildir"
        path = root if folder == "INBOX" else root / ("." + mutf7_encode(folder).replace("/", "."))
        for p in (self.home(user), root, path, path / "tmp", path / "new", path / "cur"):
            if not p.exists():
                p.mkdir()
                os.chown(p, self._uid, self._gid)
        if path != root and not (path / "maildirfolder").exists():
            (path / "maildirfolder").touch()
            os.chown(path / "maildirfolder", self._uid, self._gid)
        return path

    def deliver(
        self, user: str, messages: Iterable[bytes], folder: str = "INBOX", *, seen: bool = False
    ) -> int:
        """Writes messages straight into the maildir (tmp/ then rename); the fastest way to fill a box."""
        path = self.maildir(user, folder)
        stamp = int(time.time())
        count = 0
        for i, raw in enumerate(messages):
            name = f"{stamp}.M{i}P{os.getpid()}R{uuid.uuid4().hex[:8]}.test"
            tmp = path / "tmp" / name
            tmp.write_bytes(raw)
            os.chown(tmp, self._uid, self._gid)
            if seen:
                os.rename(tmp, path / "cur" / f"{name}:2,S")
            else:
                os.rename(tmp, path / "new" / name)
            count += 1
        return count

    def doveadm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Runs `doveadm -c <our config> ...` and returns the completed process."""
        return subprocess.run(
            ["doveadm", "-c", self.config_file, *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=30,
        )

    def create_folder(self, user: str, folder: str) -> None:
        self.doveadm("mailbox", "create", "-u", user, folder)

    def remove_index(self, user: str, folder: str = "INBOX") -> None:
        """Deletes dovecot-uidlist and indexes: the next access assigns a new UIDVALIDITY."""
        path = self.maildir(user, folder)
        for p in path.iterdir():
            if p.name == "dovecot-uidlist" or p.name.startswith("dovecot.index"):
                p.unlink()


def sample_message(i: int, *, subject: str | None = None, body: str | None = None, size: int = 0) -> bytes:
    """A small RFC 5322 message with a unique Message-ID; `size` pads the body to at least that many bytes."""
    text = body or f"Hello number {i}.\r\n"
    if size:
        line = ("x" * 76) + "\r\n"
        text += line * (size // len(line) + 1)
    return (
        f"From: Customer {i} <c{i}@example.test>\r\n"
        "To: support@example.test\r\n"
        f"Subject: {subject or f'Message {i}'}\r\n"
        f"Message-ID: <m{i}.{uuid.uuid4().hex[:8]}@example.test>\r\n"
        "Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{text}"
    ).encode()


@contextlib.contextmanager
def running_dovecot(*, oauth: bool = False) -> Iterator[Dovecot]:
    with Dovecot(oauth=oauth) as server:
        yield server


def imap_mailbox_config(
    dovecot: Dovecot,
    user: tuple[str, str | None],
    folders: list[str] | None = None,
    *,
    mailbox_id: str = "box1",
    mailbox: dict[str, Any] | None = None,
    **imap: Any,
) -> dict[str, Any]:
    """A mailbox on this Dovecot over implicit TLS, as the configuration file writes it; `imap`
    overrides the imap block, `mailbox` adds mailbox-level keys (poll_interval_seconds...), and
    `max_message_bytes` / `post_action` go to the mailbox too."""
    block: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": dovecot.tls_port,
        "security": "tls",
        "username": user[0],
        "password": user[1],
        "ca_file": dovecot.ca_file,
        "timeout_seconds": 10,
    }
    extra = {k: imap.pop(k) for k in ("max_message_bytes", "post_action") if k in imap}
    block.update(imap)
    return {
        "id": mailbox_id,
        "address": "support@example.test",
        "provider": "imap",
        "imap": block,
        "folders": folders or ["INBOX"],
        **extra,
        **(mailbox or {}),
    }


def imap_mailbox(
    dovecot: Dovecot,
    user: tuple[str, str | None],
    folders: list[str] | None = None,
    *,
    mailbox_id: str = "box1",
    **imap: Any,
) -> MailboxSettings:
    """`imap_mailbox_config`, validated: for tests that build providers directly."""
    return MailboxSettings.model_validate(
        imap_mailbox_config(dovecot, user, folders, mailbox_id=mailbox_id, **imap)
    )
