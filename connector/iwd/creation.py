"""Creating inbound items: POST /emails, and the optional POST /emails/batch (profile v1.1)
with its fallback to one POST per item when IWD does not offer it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from connector.config import IWDSettings
from connector.errors import IWDRejected, IWDUnavailable
from connector.iwd import profile as p
from connector.iwd.retry import RetryPolicy
from connector.iwd.transport import (
    MAX_MESSAGE_CHARS,
    IWDTransport,
    RequestObserver,
    is_payload_fault,
    request_id_of,
)

log = logging.getLogger("connector.iwd.client")

FALLBACK_CONCURRENCY = 4  # POST /emails in flight when IWD has no POST /emails/batch
BATCH_UNSUPPORTED_STATUSES = frozenset({404, 405})


@dataclass(frozen=True, slots=True)
class CreateResult:
    id: str
    created: bool  # False: IWD already had an item with this externalId (a replay)
    request_id: str | None


class ItemCreation(IWDTransport):
    def __init__(
        self,
        settings: IWDSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retry_policy: RetryPolicy | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        super().__init__(settings, transport=transport, retry_policy=retry_policy, observer=observer)
        # None: not tried yet; False: IWD lacks POST /emails/batch (or iwd.batch_create is off)
        self.batch_supported: bool | None = None if settings.batch_create else False

    async def create_email(self, payload: Mapping[str, Any]) -> CreateResult:
        """POST /emails. Idempotent on externalId: a replay answers 200 with the first id."""
        external_id = payload.get("externalId")
        if not isinstance(external_id, str) or not external_id:
            raise ValueError("payload has no externalId")
        response = await self._request(
            "POST", p.EMAILS, json=dict(payload), headers={p.IDEMPOTENCY_HEADER: external_id}
        )
        body = self._json(response, "POST", p.EMAILS)
        return CreateResult(
            id=str(body[p.F_ID]), created=response.status_code == 201, request_id=request_id_of(response)
        )

    async def create_emails(self, payloads: Sequence[Mapping[str, Any]]) -> list[CreateResult | IWDRejected]:
        """Creates many inbound items; one result per payload, in order (profile v1.1).

        Uses POST /emails/batch in chunks of MAX_BATCH_ITEMS; if IWD lacks it (404/405) the
        client remembers that and falls back to POST /emails, FALLBACK_CONCURRENCY at a time.
        An item IWD refused (or without externalId) is an IWDRejected *entry*; raised errors
        concern the whole call (auth, URL, budget exhausted) and say nothing about one payload.
        """
        results: list[CreateResult | IWDRejected | None] = [None] * len(payloads)
        pending: list[tuple[int, dict[str, Any]]] = []
        for i, payload in enumerate(payloads):
            external_id = payload.get(p.F_EXTERNAL_ID)
            if isinstance(external_id, str) and external_id:
                pending.append((i, dict(payload)))
            else:
                results[i] = IWDRejected(
                    f"item {i} not sent: payload has no externalId", status=400, iwd_code="invalid_field"
                )
        done = 0
        while done < len(pending) and self.batch_supported is not False:
            chunk = pending[done : done + p.MAX_BATCH_ITEMS]
            if not await self._create_batch(chunk, results):
                break
            done += len(chunk)
        if done < len(pending):
            await self._create_each(pending[done:], results)
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:  # every path above fills its slots; a gap is a bug, never a silently shorter list
            raise IWDUnavailable(f"create_emails: no result for item(s) {missing} of {len(payloads)}")
        return [r for r in results if r is not None]

    async def _create_batch(
        self, chunk: list[tuple[int, dict[str, Any]]], results: list[CreateResult | IWDRejected | None]
    ) -> bool:
        """One POST /emails/batch (halved on 413); False if IWD does not offer the endpoint."""
        try:
            response = await self._request(
                "POST", p.EMAILS_BATCH, json={p.F_ITEMS: [body for _, body in chunk]}
            )
        except IWDRejected as exc:
            if exc.status in BATCH_UNSUPPORTED_STATUSES:
                if self.batch_supported is not False:
                    log.info(
                        "IWD answered POST %s with HTTP %s: no batch create (profile v1.1); "
                        "using one POST %s per item from now on",
                        p.EMAILS_BATCH,
                        exc.status,
                        p.EMAILS,
                    )
                self.batch_supported = False
                return False
            if exc.status == 413 and len(chunk) > 1:
                half = len(chunk) // 2
                return await self._create_batch(chunk[:half], results) and await self._create_batch(
                    chunk[half:], results
                )
            if exc.status == 413:
                results[chunk[0][0]] = exc
                return True
            if is_payload_fault(exc):
                # IWD refused the batch as a whole and named no item: ask item by item, so the
                # payload at fault is the only one refused and the others are created
                await self._create_each(chunk, results)
                return True
            raise
        self.batch_supported = True
        request_id = request_id_of(response)
        answers = self._json(response, "POST", p.EMAILS_BATCH).get(p.F_RESULTS)
        if not isinstance(answers, list) or len(answers) != len(chunk):
            raise IWDUnavailable(
                f"IWD answered POST {p.EMAILS_BATCH} without one result per item ({len(chunk)} sent)",
                status=response.status_code,
                request_id=request_id,
            )
        for (i, body), answer in zip(chunk, answers, strict=True):
            results[i] = self._batch_result(i, body[p.F_EXTERNAL_ID], answer, request_id)
        return True

    def _batch_result(
        self, index: int, external_id: str, answer: Any, request_id: str | None
    ) -> CreateResult | IWDRejected:
        status = answer.get(p.F_STATUS) if isinstance(answer, dict) else None
        if status in (200, 201) and isinstance(answer, dict) and answer.get(p.F_ID):
            return CreateResult(id=str(answer[p.F_ID]), created=status == 201, request_id=request_id)
        if status in (400, 409) and isinstance(answer, dict):
            error = answer.get(p.F_ERROR)
            if not isinstance(error, dict):
                error = {}
            code = error.get(p.F_CODE)
            message = self._redact(str(error.get(p.F_MESSAGE) or "no reason given")[:MAX_MESSAGE_CHARS])
            return IWDRejected(
                f"IWD rejected item {index} of POST {p.EMAILS_BATCH} with {status}: {message}",
                status=status,
                iwd_code=str(code) if code else None,
                request_id=request_id,
                external_id=external_id,
            )
        raise IWDUnavailable(
            f"IWD answered item {index} of POST {p.EMAILS_BATCH} with an unexpected result "
            f"(status {status!r})",
            request_id=request_id,
        )

    async def _create_each(
        self, pending: list[tuple[int, dict[str, Any]]], results: list[CreateResult | IWDRejected | None]
    ) -> None:
        """POST /emails per item, FALLBACK_CONCURRENCY in flight; payload faults become entries."""
        queue = iter(pending)

        async def worker() -> None:
            for i, body in queue:
                try:
                    results[i] = await self.create_email(body)
                except IWDRejected as exc:
                    if not is_payload_fault(exc):
                        raise
                    results[i] = exc

        workers = [asyncio.ensure_future(worker()) for _ in range(min(FALLBACK_CONCURRENCY, len(pending)))]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
