"""`IWDClient`: the only code that talks to IWD. This module holds the calls other than item
creation (connector/iwd/creation.py); the HTTP plumbing is in connector/iwd/transport.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from pydantic import BaseModel, ValidationError

from connector.iwd import profile as p
from connector.iwd.creation import CreateResult, ItemCreation
from connector.iwd.transport import RequestObserver, is_payload_fault

__all__ = [
    "CreateResult",
    "DownloadedAttachment",
    "IWDClient",
    "RequestObserver",
    "decode_filename",
    "encode_filename",
    "is_payload_fault",
]

UPLOAD_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class DownloadedAttachment:
    data: bytes
    filename: str
    content_type: str


def encode_filename(filename: str) -> str:
    """x-filename header value: percent-encoded UTF-8 so any file name survives HTTP/1.1."""
    return quote(filename, safe="")


def decode_filename(value: str) -> str:
    """Reverses encode_filename; also accepts the RFC 5987 form `UTF-8''%E2%82%AC.txt`."""
    if value.lower().startswith("utf-8''"):
        value = value[7:]
    return unquote(value, encoding="utf-8", errors="replace")


class IWDClient(ItemCreation):
    """Async client for the IWD email API profile (docs/iwd-api.md); one per process."""

    async def upload_attachment(
        self, data: bytes, *, filename: str, content_type: str, idempotency_key: str
    ) -> str:
        """POST /emails/attachments, streamed in chunks; returns the attachmentId.

        `idempotency_key` (profile v1.2, see `profile.attachment_idempotency_key`) makes the
        retries safe: an upload whose answer was lost is answered with the attachment IWD stored.
        """
        if not idempotency_key:
            raise ValueError("an attachment upload needs an idempotency key")

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(data), UPLOAD_CHUNK_BYTES):
                yield data[start : start + UPLOAD_CHUNK_BYTES]

        headers = {
            "content-type": content_type or "application/octet-stream",
            "content-length": str(len(data)),
            p.FILENAME_HEADER: encode_filename(filename),
            p.IDEMPOTENCY_HEADER: idempotency_key,
        }
        response = await self._request("POST", p.ATTACHMENTS, content=chunks, headers=headers)
        return str(self._json(response, "POST", p.ATTACHMENTS)[p.F_ATTACHMENT_ID])

    async def download_attachment(self, attachment_id: str) -> DownloadedAttachment:
        """GET /emails/attachments/{attachmentId}: the bytes as uploaded."""
        response = await self._request("GET", _path(p.ATTACHMENT, attachmentId=attachment_id))
        return DownloadedAttachment(
            data=response.content,
            filename=decode_filename(response.headers.get(p.FILENAME_HEADER, "")),
            content_type=response.headers.get("content-type", "application/octet-stream"),
        )

    async def get_email(self, item_id: str) -> dict[str, Any]:
        path = _path(p.EMAIL, id=item_id)
        return self._json(await self._request("GET", path), "GET", path)

    async def list_emails(
        self,
        *,
        mailbox_id: str | None = None,
        direction: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of GET /emails, oldest first, and the cursor of the next page (None at the end)."""
        params = {p.Q_MAILBOX: mailbox_id, p.Q_DIRECTION: direction, p.Q_LIMIT: limit, p.Q_CURSOR: cursor}
        response = await self._request(
            "GET", p.EMAILS, params={k: v for k, v in params.items() if v is not None}
        )
        body = self._json(response, "GET", p.EMAILS)
        return list(body[p.F_ITEMS]), body.get(p.F_NEXT_CURSOR)

    async def iter_emails(
        self, *, mailbox_id: str | None = None, direction: str | None = None, page_size: int = 100
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item, page after page."""
        cursor: str | None = None
        while True:
            items, cursor = await self.list_emails(
                mailbox_id=mailbox_id, direction=direction, limit=page_size, cursor=cursor
            )
            for item in items:
                yield item
            if not cursor:
                return

    async def patch_email(self, item_id: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """PATCH /emails/{id}: outbound progress (sending|sent|failed, sentAt, messageId, error)."""
        body = _validated(p.EmailPatch, patch)
        path = _path(p.EMAIL, id=item_id)
        return self._json(await self._request("PATCH", path, json=body), "PATCH", path)

    async def list_outbound(
        self, status: str = "queued", limit: int = 50, *, mailbox_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Agents' replies waiting in IWD, oldest first."""
        params: dict[str, Any] = {p.Q_STATUS: status, p.Q_LIMIT: limit}
        if mailbox_id is not None:
            params[p.Q_MAILBOX] = mailbox_id
        response = await self._request("GET", p.OUTBOUND, params=params)
        return list(self._json(response, "GET", p.OUTBOUND)[p.F_ITEMS])

    # ------------------------------------------------------------ mailboxes

    async def put_mailbox_status(self, mailbox_id: str, status: Mapping[str, Any]) -> None:
        body = _validated(p.MailboxStatus, status)
        await self._request("PUT", _path(p.MAILBOX_STATUS, mailboxId=mailbox_id), json=body)

    async def put_mailbox_config(self, mailbox_id: str, config: Mapping[str, Any]) -> None:
        """PUT the public configuration; refuses (ValueError) if any key is secret-named."""
        secret_keys = p.find_secret_keys(dict(config))
        if secret_keys:
            raise ValueError(f"mailbox configuration holds secret-named keys: {', '.join(secret_keys)}")
        await self._request("PUT", _path(p.MAILBOX, mailboxId=mailbox_id), json=dict(config))

    async def list_mailboxes(self) -> list[dict[str, Any]]:
        response = await self._request("GET", p.MAILBOXES)
        return list(self._json(response, "GET", p.MAILBOXES)[p.F_ITEMS])

    async def ping(self) -> None:
        """One cheap authenticated call, no retries: raises IWDRejected (e.g. 401) or IWDUnavailable."""
        await self._request("GET", p.MAILBOXES, retry=False)


def _path(template: str, **values: str) -> str:
    for name, value in values.items():
        template = template.replace("{" + name + "}", quote(value, safe=""))
    return template


def _validated(model: type[BaseModel], data: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return model.model_validate(dict(data)).model_dump(mode="json", by_alias=True)
    except ValidationError as exc:
        raise ValueError(f"{model.__name__}: {p.describe_validation_error(exc)}") from None
