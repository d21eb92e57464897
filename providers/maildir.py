"""Local Maildir folders, as an MTA delivers them (Maildir++ layout: INBOX is the root, others '.Name').

A message's identity is the unique part of its file name, which survives the new/ -> cur/ move and
flag changes. Maildir has no order or cursor: each fetch lists the folder and the ledger skips what
was delivered already, so with `post_action: none` or `mark_read` (files stay in the folder) every
cycle re-reads them; `move:<folder>` or `delete` keeps the folder small.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

from connector.config import MailboxSettings
from connector.errors import FolderMissing, ProviderUnavailable
from connector.models import FetchResult, PostAction, PostActionKind, RawMessage

INFO_SEPARATOR = ":2,"


def unique_name(file_name: str) -> str:
    return file_name.split(":", 1)[0]


def flags_of(file_name: str) -> str:
    _, _, info = file_name.partition(INFO_SEPARATOR)
    return info


class MaildirInboundProvider:
    def __init__(self, mailbox: MailboxSettings) -> None:
        if mailbox.maildir is None:
            raise ValueError("mailbox has no maildir settings")
        self.mailbox = mailbox
        self.root = Path(mailbox.maildir.path).expanduser()
        self.max_bytes = mailbox.max_message_bytes

    def folder_path(self, folder: str, *, create: bool = False) -> Path:
        path = self.root if folder.upper() == "INBOX" else self.root / f".{folder.replace('/', '.')}"
        if create:
            for sub in ("cur", "new", "tmp"):
                (path / sub).mkdir(parents=True, exist_ok=True)
        return path

    def _locate(self, folder: str, provider_id: str) -> Path | None:
        base = self.folder_path(folder)
        for sub in ("new", "cur"):
            directory = base / sub
            exact = directory / provider_id
            if exact.exists():
                return exact
            try:
                names = os.listdir(directory)
            except FileNotFoundError:
                continue
            for name in names:
                if unique_name(name) == provider_id:
                    return directory / name
        return None

    async def fetch(self, folder: str, cursor: str | None, limit: int) -> FetchResult:
        return await asyncio.to_thread(self._fetch, folder)

    def _fetch(self, folder: str) -> FetchResult:
        base = self.folder_path(folder)
        if not (base / "new").is_dir() or not (base / "cur").is_dir():
            raise FolderMissing(
                "Maildir folder not found", mailbox=self.mailbox.id, folder=folder, path=str(base)
            )
        entries: list[tuple[float, str, Path]] = []
        try:
            for sub in ("new", "cur"):
                with os.scandir(base / sub) as it:
                    for de in it:
                        if de.name.startswith("."):
                            continue
                        try:
                            if de.is_file():
                                entries.append((de.stat().st_mtime, de.name, Path(de.path)))
                        except FileNotFoundError:
                            continue  # moved between listing and looking: seen where it went
        except OSError as exc:
            raise ProviderUnavailable(
                f"cannot list Maildir: {exc.strerror}", mailbox=self.mailbox.id, folder=folder
            ) from None
        entries.sort()
        messages = []
        for mtime, name, path in entries:
            try:
                size = path.stat().st_size
                with path.open("rb") as fh:
                    raw = fh.read() if size <= self.max_bytes else _header_block(fh)
            except FileNotFoundError:
                continue  # moved away between listing and reading: seen next cycle where it went
            except OSError as exc:
                raise ProviderUnavailable(
                    f"cannot read message: {exc.strerror}",
                    mailbox=self.mailbox.id,
                    folder=folder,
                    provider_id=unique_name(name),
                ) from None
            info = flags_of(name)
            messages.append(
                RawMessage(
                    folder=folder,
                    provider_id=unique_name(name),
                    raw=raw,
                    size=size,
                    internal_date=datetime.fromtimestamp(mtime, UTC),
                    flags=frozenset(info),
                    headers_only=size > self.max_bytes,
                )
            )
        return FetchResult(messages=messages)

    async def apply_post_action(self, message: RawMessage, action: PostAction) -> None:
        await asyncio.to_thread(self._apply, message, action)

    def _apply(self, message: RawMessage, action: PostAction) -> None:
        if action.kind is PostActionKind.NONE:
            return
        path = self._locate(message.folder, message.provider_id)
        if path is None:
            return  # already moved or deleted: the action is done
        try:
            if action.kind is PostActionKind.DELETE:
                path.unlink(missing_ok=True)
                return
            flags = set(flags_of(path.name)) | {"S"}
            new_name = f"{message.provider_id}{INFO_SEPARATOR}{''.join(sorted(flags))}"
            if action.kind is PostActionKind.MARK_READ:
                target = self.folder_path(message.folder) / "cur" / new_name
            else:
                target = self.folder_path(action.target or "", create=True) / "cur" / new_name
            os.rename(path, target)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ProviderUnavailable(
                f"post-action {action} failed: {exc.strerror}",
                mailbox=self.mailbox.id,
                folder=message.folder,
                provider_id=message.provider_id,
            ) from None

    async def check(self) -> dict[str, str]:
        facts = {"path": str(self.root)}
        for folder in self.mailbox.folders:
            result = await self.fetch(folder, None, 0)  # the same checks and errors as a cycle
            facts[f"folder {folder}"] = f"{len(result.messages)} messages"
        return facts

    async def close(self) -> None:
        return None


def _header_block(fh: object, limit: int = 256 * 1024) -> bytes:
    """The header block of an oversize message, read without loading the body."""
    read = fh.readline  # type: ignore[attr-defined]
    out = bytearray()
    while len(out) < limit:
        line: bytes = read()
        if not line or line in (b"\r\n", b"\n"):
            break
        out += line
    return bytes(out) + b"\r\n"


def deliver_to_maildir(root: Path, raw: bytes, name: str, folder: str = "INBOX") -> Path:
    """Writes a message the way an MTA does (tmp/ then rename into new/). Used by demo and tests."""
    base = root if folder.upper() == "INBOX" else root / f".{folder}"
    for sub in ("cur", "new", "tmp"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    tmp = base / "tmp" / name
    tmp.write_bytes(raw)
    final = base / "new" / name
    os.rename(tmp, final)
    return final
