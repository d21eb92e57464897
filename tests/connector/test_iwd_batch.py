"""Batch create (profile v1.1): the sandbox's POST /emails/batch and IWDClient.create_emails,
including the fallback to POST /emails on an IWD that does not offer it."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from connector.errors import IWDRejected
from connector.iwd import CreateResult, IWDClient
from connector.sandbox import SandboxIWD, control_of, create_app
from tests.peers.sandbox import (
    FAST_RETRY,
    asgi_client,
    inbound_payload,
    iwd_settings,
    make_attachment,
    make_item,
    raw_http,
    real_client,
)

BATCH = "/iwd/v3/emails/batch"
EMAILS = "/iwd/v3/emails"


@pytest.fixture
def app() -> Starlette:
    return create_app(":memory:")


def _created(results: list[CreateResult | IWDRejected]) -> list[CreateResult]:
    assert all(isinstance(r, CreateResult) for r in results), results
    return [r for r in results if isinstance(r, CreateResult)]


def _without_sender_address(n: int) -> dict[str, Any]:
    payload = inbound_payload(n)
    payload["from"] = {"name": "No address"}
    return payload


# ---------------------------------------------------------------- the sandbox endpoint


async def test_batch_creates_then_replay_answers_200_with_same_ids(app: Starlette) -> None:
    """Three new items answer 201 each; the same batch again answers 200 with the same ids."""
    async with asgi_client(app) as iwd:
        first = _created(await iwd.create_emails([inbound_payload(n) for n in (1, 2, 3)]))
        again = _created(await iwd.create_emails([inbound_payload(n) for n in (1, 2, 3)]))
        stored = [await iwd.get_email(r.id) for r in first]
    assert [r.created for r in first] == [True, True, True]
    assert [r.created for r in again] == [False, False, False]
    assert [r.id for r in again] == [r.id for r in first]
    assert [s["externalId"] for s in stored] == ["ext-1", "ext-2", "ext-3"]
    assert first[0].request_id and iwd.batch_supported is True
    assert control_of(app).requests.count("POST", BATCH) == 2
    assert control_of(app).requests.count("POST", EMAILS) == 0


async def test_invalid_item_is_refused_alone_naming_its_index(app: Starlette) -> None:
    """An item breaking the profile gets a 400 naming `items[1]...`; its neighbours are stored."""
    async with raw_http(app) as http:
        response = await http.post(
            BATCH, json={"items": [inbound_payload(1), _without_sender_address(2), inbound_payload(3)]}
        )
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 400, 201]
    assert results[1] == {
        "externalId": "ext-2",
        "status": 400,
        "id": None,
        "error": {"code": "invalid_field", "message": "items[1].from.address: required"},
    }
    assert control_of(app).store.count_items() == 2


async def test_invalid_item_becomes_a_rejected_entry_in_the_client(app: Starlette) -> None:
    """create_emails returns the 400 as an IWDRejected entry (never raised) with the request id."""
    async with asgi_client(app) as iwd:
        results = await iwd.create_emails([inbound_payload(1), _without_sender_address(2)])
    ok, bad = results
    assert isinstance(ok, CreateResult) and ok.created
    assert isinstance(bad, IWDRejected)
    assert bad.status == 400 and bad.iwd_code == "invalid_field"
    assert "items[1].from.address: required" in bad.message
    assert bad.request_id == ok.request_id and bad.context["external_id"] == "ext-2"


async def test_unknown_attachment_refuses_only_that_item(app: Starlette) -> None:
    """An item referencing an attachment never uploaded gets 400 for itself; the other is stored."""
    att = make_attachment(b"report")
    async with raw_http(app) as http:
        items = [
            inbound_payload(1),
            inbound_payload(2, item=make_item(2, attachments=(att,)), attachment_ids=("att_nope",)),
        ]
        response = await http.post(BATCH, json={"items": items})
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 400]
    assert (
        results[1]["error"]["message"]
        == "items[1].attachments[0].attachmentId: unknown attachment (upload it first)"
    )
    assert control_of(app).store.count_items() == 1


async def test_uploaded_attachment_is_accepted_in_a_batch(app: Starlette) -> None:
    """An item whose attachment was uploaded with matching size and sha256 is created."""
    att = make_attachment(b"report")
    async with asgi_client(app) as iwd:
        att_id = await iwd.upload_attachment(
            att.data, filename=att.filename, content_type=att.content_type, idempotency_key="att-key-1"
        )
        payload = inbound_payload(1, item=make_item(1, attachments=(att,)), attachment_ids=(att_id,))
        (result,) = _created(await iwd.create_emails([payload]))
    assert result.created


async def test_duplicates_within_a_batch(app: Starlette) -> None:
    """An identical repeat answers 200 with the first id; a different one with the same key 409."""
    changed = inbound_payload(1)
    changed["subject"] = "Something else"
    async with raw_http(app) as http:
        response = await http.post(BATCH, json={"items": [inbound_payload(1), inbound_payload(1), changed]})
    first, repeat, conflict = response.json()["results"]
    assert first["status"] == 201 and repeat["status"] == 200 and repeat["id"] == first["id"]
    assert conflict["status"] == 409 and conflict["id"] is None
    assert conflict["error"]["message"].startswith("items[2].externalId:")
    assert control_of(app).store.count_items() == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "(body): must be a JSON object"),
        ({}, "items: required"),
        ({"items": []}, "items: must hold 1..100 items, not 0"),
        ({"items": [{}] * 101}, "items: must hold 1..100 items, not 101"),
        ({"items": [{}], "extra": 1}, "extra: not a field of the profile"),
    ],
    ids=["not-object", "no-items", "empty", "too-many", "unknown-field"],
)
async def test_malformed_batch_body_is_refused_whole(app: Starlette, body: object, message: str) -> None:
    """A body that is not {items: [1..100]} answers 400 for the whole request; nothing is stored."""
    async with raw_http(app) as http:
        response = await http.post(BATCH, json=body)
    assert response.status_code == 400
    assert response.json()["message"].startswith(message)


async def test_disabled_batch_answers_404_like_an_unknown_route() -> None:
    """batch=False and the batchDisabled fault both answer 404 not_found, and are counted."""
    app, v1 = create_app(":memory:"), create_app(":memory:", batch=False)
    async with raw_http(app) as http, raw_http(v1) as http_v1:
        assert (await http.post("/sandbox/faults", json={"batchDisabled": True})).status_code == 200
        for client in (http, http_v1):
            response = await client.post(BATCH, json={"items": [inbound_payload(1)]})
            assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert control_of(app).requests.count("POST", BATCH) == 1
    assert control_of(app).store.count_items() == 0 and control_of(v1).store.count_items() == 0


# ---------------------------------------------------------------- the client


async def test_150_payloads_go_in_two_batches_in_order(app: Starlette) -> None:
    """150 payloads make 2 requests (100 + 50) and 150 results in the payloads' order."""
    async with asgi_client(app) as iwd:
        results = _created(await iwd.create_emails([inbound_payload(n) for n in range(150)]))
        stored = {item["id"]: item["externalId"] async for item in iwd.iter_emails(page_size=500)}
    assert control_of(app).requests.count("POST", BATCH) == 2
    assert [stored[r.id] for r in results] == [f"ext-{n}" for n in range(150)]


async def test_payload_without_external_id_is_an_entry_and_not_sent(app: Starlette) -> None:
    """A payload with no externalId becomes IWDRejected(400) in place; the others are created."""
    nameless = inbound_payload(2)
    del nameless["externalId"]
    async with asgi_client(app) as iwd:
        first, bad, third = await iwd.create_emails([inbound_payload(1), nameless, inbound_payload(3)])
    assert isinstance(first, CreateResult) and isinstance(third, CreateResult)
    assert isinstance(bad, IWDRejected) and bad.status == 400
    assert control_of(app).store.count_items() == 2


@pytest.mark.parametrize("how", ["fault", "v1-app"])
async def test_without_batch_endpoint_the_client_falls_back_once_and_for_good(
    how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A 404 from /emails/batch switches to POST /emails per item, logged once, never tried again."""
    app = create_app(":memory:", batch=how == "fault")
    control_of(app).faults.set(batch_disabled=how == "fault")
    caplog.set_level(logging.INFO, logger="connector.iwd.client")
    async with asgi_client(app) as iwd:
        first = await iwd.create_emails([inbound_payload(n) for n in range(5)] + [_without_sender_address(5)])
        second = _created(await iwd.create_emails([inbound_payload(n) for n in range(3, 8)]))
    assert iwd.batch_supported is False
    created = _created(first[:5])
    assert isinstance(first[5], IWDRejected) and first[5].status == 400
    assert "from.address" in first[5].message
    assert [r.created for r in second] == [False, False, True, True, True]
    assert [r.id for r in second[:2]] == [r.id for r in created[3:5]]
    requests = control_of(app).requests
    assert requests.count("POST", BATCH) == 1
    assert requests.count("POST", EMAILS) == 6 + 5
    assert caplog.text.count("no batch create") == 1


async def test_405_from_batch_path_also_means_fallback(app: Starlette) -> None:
    """An IWD whose router answers 405 for POST /emails/batch gets per-item POST /emails."""

    async def v1_router(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == BATCH:
            body = {"code": "method_not_allowed", "message": "no", "requestId": "r"}
            await JSONResponse(body, status_code=405)(scope, receive, send)
            return
        await app(scope, receive, send)

    transport = httpx.ASGITransport(app=v1_router)
    async with IWDClient(iwd_settings(), transport=transport, retry_policy=FAST_RETRY) as iwd:
        results = _created(await iwd.create_emails([inbound_payload(n) for n in range(3)]))
    assert [r.created for r in results] == [True, True, True] and iwd.batch_supported is False
    assert control_of(app).requests.count("POST", EMAILS) == 3


async def test_batch_create_false_never_tries_the_batch_path(app: Starlette) -> None:
    """With iwd.batch_create: false every item is one POST /emails; /emails/batch is never asked."""
    async with asgi_client(app, batch_create=False) as iwd:
        results = _created(await iwd.create_emails([inbound_payload(n) for n in range(6)]))
    assert len(results) == 6
    assert control_of(app).requests.count("POST", BATCH) == 0
    assert control_of(app).requests.count("POST", EMAILS) == 6


async def test_batch_too_large_is_split_in_halves(app: Starlette, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 413 for a batch makes the client send it again as two halves until each fits."""
    size = len(httpx.Request("POST", "http://x", json={"items": [inbound_payload(1)] * 2}).content)
    monkeypatch.setattr("connector.sandbox.api.MAX_BATCH_BYTES", size + 50)
    async with asgi_client(app) as iwd:
        results = _created(await iwd.create_emails([inbound_payload(n) for n in range(8)]))
    assert len(results) == 8 and control_of(app).store.count_items() == 8
    assert control_of(app).requests.count("POST", BATCH) == 1 + 2 + 4


async def test_two_503s_retry_the_whole_batch_without_duplicates(live: SandboxIWD) -> None:
    """The batch request fails twice with 503 and is retried; every item exists exactly once."""
    live.control.faults.set(fail_next=2, fail_status=503)
    async with real_client(live) as iwd:
        results = _created(await iwd.create_emails([inbound_payload(n) for n in range(10)]))
    assert [r.created for r in results] == [True] * 10
    assert live.control.requests.count("POST", BATCH) == 3
    assert live.control.store.count_items() == 10


async def test_wrong_key_raises_for_the_whole_batch_without_the_key(app: Starlette) -> None:
    """401 is raised (not returned per item), and the key appears nowhere in the error."""
    secret = "wrong-key-0b5e1d"
    async with asgi_client(app, api_key=secret) as iwd:
        with pytest.raises(IWDRejected) as caught:
            await iwd.create_emails([inbound_payload(1), inbound_payload(2)])
    assert caught.value.status == 401 and iwd.batch_supported is None
    assert secret not in str(caught.value) and secret not in repr(caught.value.context)
    assert control_of(app).requests.count("POST", BATCH) == 1


@pytest.fixture
def live(sandbox_iwd: SandboxIWD) -> SandboxIWD:
    """The session's real sandbox (conftest), emptied and well-behaved for each test."""
    return sandbox_iwd
