"""The sandbox IWD itself: auth, exact error shapes, faults, tallies, the page and the runner."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from connector.sandbox import SandboxIWD, control_of, create_app
from tests.peers.sandbox import inbound_payload, make_attachment, make_item, raw_http, status_body

EMAILS = "/iwd/v3/emails"
ATTACHMENTS = "/iwd/v3/emails/attachments"


@pytest.fixture
def app() -> Starlette:
    return create_app(":memory:")


@pytest.fixture
async def http(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with raw_http(app) as client:
        yield client


async def _post(http: httpx.AsyncClient, body: dict[str, object], key: str | None = None) -> httpx.Response:
    return await http.post(EMAILS, json=body, headers={"Idempotency-Key": key or str(body["externalId"])})


async def test_errors_carry_code_message_and_the_request_id_header(http: httpx.AsyncClient) -> None:
    """Every response has x-request-id; an error body is {code, message, requestId} with the same id."""
    ok = await http.get("/iwd/v3/emails/mailboxes")
    bad = await http.get("/iwd/v3/emails/em_unknown")
    assert ok.status_code == 200 and ok.headers["x-request-id"]
    assert bad.status_code == 404
    assert bad.json() == {
        "code": "not_found",
        "message": "id: no such item",
        "requestId": bad.headers["x-request-id"],
    }


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"x-api-key": "nope"}, 401, "unauthorized"),
        ({"x-ccid": "other-tenant"}, 403, "forbidden"),
        ({"x-ccid": ""}, 400, "invalid_field"),
    ],
    ids=["wrong-key", "wrong-ccid", "missing-ccid"],
)
async def test_credentials_are_checked(
    app: Starlette, headers: dict[str, str], status: int, code: str
) -> None:
    """A wrong key is 401, another tenant's ccid 403, no ccid 400; nothing is stored."""
    async with raw_http(app) as http:
        response = await http.get("/iwd/v3/emails", headers=headers)
    assert (response.status_code, response.json()["code"]) == (status, code)


async def test_inbound_item_needs_matching_idempotency_key(http: httpx.AsyncClient, app: Starlette) -> None:
    """Without Idempotency-Key, or with one that differs from externalId, the POST is refused."""
    body = inbound_payload(1)
    missing = await http.post(EMAILS, json=body)
    wrong = await _post(http, body, key="ext-other")
    assert missing.status_code == 400 and missing.json()["message"].startswith("Idempotency-Key: required")
    assert wrong.status_code == 400 and wrong.json()["message"] == "Idempotency-Key: must equal externalId"
    assert control_of(app).store.count_items() == 0


async def test_attachment_checksum_must_match_the_upload(http: httpx.AsyncClient) -> None:
    """An item whose attachment sha256 differs from the uploaded bytes is refused, naming the field."""
    upload = await http.post(
        "/iwd/v3/emails/attachments",
        content=b"real bytes",
        headers={"content-type": "text/plain", "x-filename": "a.txt"},
    )
    assert upload.status_code == 201
    item = make_item(2, attachments=(make_attachment(b"other!!!!!"),))  # same size, other bytes
    response = await _post(
        http, inbound_payload(2, item=item, attachment_ids=(upload.json()["attachmentId"],))
    )
    assert response.status_code == 400
    assert response.json()["message"].startswith("attachments[0].sha256:")


async def _upload(
    http: httpx.AsyncClient, data: bytes, key: str | None, filename: str = "a.txt"
) -> httpx.Response:
    headers = {"content-type": "text/plain", "x-filename": filename}
    if key is not None:
        headers["Idempotency-Key"] = key
    return await http.post(ATTACHMENTS, content=data, headers=headers)


async def test_an_upload_repeated_with_its_key_returns_the_first_attachment(
    http: httpx.AsyncClient, app: Starlette
) -> None:
    """Same Idempotency-Key and bytes: 200 with the first attachmentId, and nothing stored twice."""
    first = await _upload(http, b"invoice", "att-key-1")
    again = await _upload(http, b"invoice", "att-key-1", filename="renamed.txt")
    other_key = await _upload(http, b"invoice", "att-key-2")
    assert (first.status_code, again.status_code, other_key.status_code) == (201, 200, 201)
    assert again.json() == first.json()
    assert other_key.json()["attachmentId"] != first.json()["attachmentId"]
    assert len(control_of(app).store.list_attachments()) == 2


async def test_a_key_reused_for_other_bytes_is_refused_naming_the_first_attachment(
    http: httpx.AsyncClient, app: Starlette
) -> None:
    """Same Idempotency-Key, different bytes: 422 idempotency_conflict, and the first upload stands."""
    first = await _upload(http, b"invoice", "att-key-1")
    clash = await _upload(http, b"something else", "att-key-1")
    assert clash.status_code == 422
    assert clash.json()["code"] == "idempotency_conflict"
    assert clash.json()["message"].startswith("Idempotency-Key: already used for attachment ")
    assert first.json()["attachmentId"] in clash.json()["message"]
    assert [a.id for a in control_of(app).store.list_attachments()] == [first.json()["attachmentId"]]


async def test_uploads_without_a_key_are_each_stored(http: httpx.AsyncClient, app: Starlette) -> None:
    """The key is optional (profile v1.1 clients, agents' uploads): without one, every upload is new."""
    one, two = await _upload(http, b"same", None), await _upload(http, b"same", None)
    assert (one.status_code, two.status_code) == (201, 201)
    assert one.json()["attachmentId"] != two.json()["attachmentId"]


async def test_attachment_keys_survive_a_restart_and_an_older_database(tmp_path: Path) -> None:
    """A database from before profile v1.2 gains the key column; a key is still known after a restart."""
    import sqlite3

    db = str(tmp_path / "iwd.db")
    old = sqlite3.connect(db)
    old.execute(
        "CREATE TABLE attachments (id TEXT PRIMARY KEY, filename TEXT NOT NULL, content_type TEXT NOT NULL, "
        "size INTEGER NOT NULL, sha256 TEXT NOT NULL, data BLOB NOT NULL, created_at TEXT NOT NULL)"
    )
    old.close()
    async with raw_http(create_app(db)) as http:
        first = await _upload(http, b"invoice", "att-key-1")
    async with raw_http(create_app(db)) as http:
        again = await _upload(http, b"invoice", "att-key-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["attachmentId"] == first.json()["attachmentId"]


async def test_upload_without_filename_is_refused(http: httpx.AsyncClient) -> None:
    """POST /emails/attachments needs x-filename."""
    response = await http.post(
        "/iwd/v3/emails/attachments", content=b"x", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 400 and response.json()["message"].startswith("x-filename: required")


async def test_outbound_reply_to_unknown_item_is_refused(http: httpx.AsyncClient) -> None:
    """An outbound item must reply to an item IWD holds."""
    response = await http.post(
        EMAILS,
        json={
            "direction": "outbound",
            "mailboxId": "support",
            "to": [{"address": "c@example.net"}],
            "subject": "Re: x",
            "inReplyToItemId": "em_ghost",
        },
    )
    assert response.status_code == 400 and response.json()["message"] == "inReplyToItemId: no such item"


async def test_bad_query_and_path_values_are_named(http: httpx.AsyncClient) -> None:
    """limit, cursor, direction, status and mailboxId are validated with the parameter named."""
    cases = {
        f"{EMAILS}?limit=0": "limit:",
        f"{EMAILS}?cursor=garbage": "cursor:",
        f"{EMAILS}?direction=sideways": "direction:",
        "/iwd/v3/emails/outbound?status=lost": "status:",
    }
    for url, field in cases.items():
        response = await http.get(url)
        assert response.status_code == 400 and response.json()["message"].startswith(field), url
    response = await http.put("/iwd/v3/emails/mailboxes/-bad-/status", json=status_body())
    assert response.status_code == 400 and response.json()["message"].startswith("mailboxId:")
    response = await http.put("/iwd/v3/emails/mailboxes/support/status", json=status_body(lagSeconds=-1))
    assert response.status_code == 400 and response.json()["message"].startswith("inbound.lagSeconds:")


async def test_secret_keys_are_refused_in_any_spelling_but_token_uri_is_fine(http: httpx.AsyncClient) -> None:
    """clientSecret / refresh-token / API_KEY are secrets; token_uri is plain configuration."""
    for key in ("clientSecret", "refresh-token", "API_KEY", "token"):
        response = await http.put("/iwd/v3/emails/mailboxes/support", json={"oauth": {key: "s3cr3t"}})
        assert response.status_code == 400, key
        assert response.json()["code"] == "secret_field"
        assert "s3cr3t" not in response.text
    ok = await http.put(
        "/iwd/v3/emails/mailboxes/support", json={"oauth": {"token_uri": "https://t.example"}}
    )
    assert ok.status_code == 200


async def test_fault_endpoint_fails_next_requests_and_spares_admin(
    http: httpx.AsyncClient, app: Starlette
) -> None:
    """POST /sandbox/faults {failNext, failStatus} fails exactly that many profile requests."""
    set_faults = await http.post("/sandbox/faults", json={"failNext": 2, "failStatus": 500})
    assert set_faults.status_code == 200 and set_faults.json()["fail_next"] == 2
    assert (await http.get("/sandbox/requests")).status_code == 200  # admin is never faulted
    statuses = [(await http.get("/iwd/v3/emails/mailboxes")).status_code for _ in range(3)]
    assert statuses == [500, 500, 200]
    unknown = await http.post("/sandbox/faults", json={"explode": True})
    assert unknown.status_code == 400 and unknown.json()["message"].startswith("explode:")
    tally = (await http.get("/sandbox/requests")).json()
    assert tally["GET /iwd/v3/emails/mailboxes"] == 3
    assert control_of(app).requests.count("POST", prefix="/iwd/") == 0


async def test_random_failures_repeat_with_the_same_seed(http: httpx.AsyncClient) -> None:
    """failRate with a seed gives the same failure pattern every time."""

    async def pattern() -> list[int]:
        await http.post("/sandbox/faults", json={"failRate": 0.5, "seed": 42})
        return [(await http.get("/iwd/v3/emails/mailboxes")).status_code for _ in range(12)]

    first, second = await pattern(), await pattern()
    assert first == second
    assert 503 in first and 200 in first


async def test_page_lists_items_and_status_escaped(http: httpx.AsyncClient) -> None:
    """The HTML page shows subject, sender, flags, attachments and mailbox state, with HTML escaped."""
    upload = await http.post(
        "/iwd/v3/emails/attachments",
        content=b"%PDF",
        headers={"content-type": "application/pdf", "x-filename": "inv.pdf"},
    )
    item = make_item(
        5, subject="<script>alert(1)</script>", attachments=(make_attachment(b"%PDF", "inv.pdf"),)
    )
    await _post(http, inbound_payload(5, item=item, attachment_ids=(upload.json()["attachmentId"],)))
    await http.put("/iwd/v3/emails/mailboxes/support/status", json=status_body("auth_required"))
    page = await http.get("/", headers={"x-api-key": ""})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "<script>" not in page.text
    assert "customer@example.net" in page.text and "inv.pdf" in page.text
    assert "auth_required" in page.text and 'http-equiv="refresh"' in page.text


async def test_reset_forgets_items_faults_and_counts(http: httpx.AsyncClient, app: Starlette) -> None:
    """POST /sandbox/reset returns the sandbox to empty and well-behaved."""
    await _post(http, inbound_payload(6))
    await http.post("/sandbox/faults", json={"failNext": 5})
    assert (await http.post("/sandbox/reset")).status_code == 200
    assert control_of(app).store.count_items() == 0
    assert (await http.get(EMAILS)).json() == {"items": [], "nextCursor": None}


async def test_items_and_idempotency_survive_a_restart(tmp_path: Path) -> None:
    """A new app over the same SQLite file still knows the externalId and answers 200."""
    db = str(tmp_path / "iwd.db")
    async with raw_http(create_app(db)) as http:
        first = await _post(http, inbound_payload(8))
    async with raw_http(create_app(db)) as http:
        again = await _post(http, inbound_payload(8))
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]


def test_runner_serves_on_loopback_and_stops() -> None:
    """SandboxIWD answers on 127.0.0.1 at .url once started, and refuses connections once stopped."""
    with SandboxIWD() as sandbox:
        assert sandbox.url == f"http://127.0.0.1:{sandbox.port}/iwd/v3"
        response = httpx.get(
            sandbox.url + "/emails", headers={"x-api-key": "sandbox-key", "x-ccid": "sandbox"}
        )
        assert response.status_code == 200
        port = sandbox.port
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


async def test_runner_starts_from_a_running_event_loop() -> None:
    """The async context manager starts and stops the server without blocking the loop's caller."""
    async with SandboxIWD(api_key="k", ccid="c") as sandbox, httpx.AsyncClient() as client:
        response = await client.get(
            sandbox.url + "/emails/mailboxes", headers={"x-api-key": "k", "x-ccid": "c"}
        )
    assert response.json() == {"items": []}
