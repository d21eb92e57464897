"""The profile as an OpenAPI 3.1 document, built from profile.py so the two cannot drift.

docs/iwd-api.openapi.yaml is this module's output; regenerate it after changing the profile:
    python -m connector.iwd.openapi docs/iwd-api.openapi.yaml
"""

from __future__ import annotations

import sys
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from connector.iwd import profile as p

_MODELS: list[type[BaseModel]] = [
    p.InboundEmail,
    p.OutboundEmail,
    p.EmailPatch,
    p.MailboxStatus,
    p.ErrorBody,
    p.BatchCreate,
    p.BatchCreateResponse,
]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("ErrorBody"), description)


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


_LIMIT = {"type": "integer", "minimum": 1, "maximum": p.MAX_PAGE_LIMIT}
_COMMON_ERRORS = {
    "401": _error(f"{p.API_KEY_HEADER} missing or wrong (permanent: fix the configuration)"),
    "403": _error(f"{p.CCID_HEADER} names another contact center"),
    "429": _error(f"Slow down; honour {p.RETRY_AFTER_HEADER} (seconds or HTTP date). Retried."),
    "503": _error("IWD unavailable. Retried with exponential backoff."),
}


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, **extra, "responses": {**responses, **_COMMON_ERRORS}}


def _extra_schemas() -> dict[str, Any]:
    stored = {
        "type": "object",
        "description": "An item as stored: the POST body plus id and createdAt (outbound items also carry "
        "status, sentAt, messageId, error, updatedAt).",
        "required": [p.F_ID, "createdAt", "direction", "mailboxId"],
        "properties": {p.F_ID: {"type": "string"}, "createdAt": {"type": "string", "format": "date-time"}},
        "additionalProperties": True,
    }
    return {
        "Created": {"type": "object", "required": [p.F_ID], "properties": {p.F_ID: {"type": "string"}}},
        "AttachmentCreated": {
            "type": "object",
            "required": [p.F_ATTACHMENT_ID, "size", "sha256"],
            "properties": {
                p.F_ATTACHMENT_ID: {"type": "string"},
                "size": {"type": "integer"},
                "sha256": {"type": "string"},
            },
        },
        "StoredEmail": stored,
        "EmailPage": {
            "type": "object",
            "required": [p.F_ITEMS, p.F_NEXT_CURSOR],
            "properties": {
                p.F_ITEMS: {"type": "array", "items": _ref("StoredEmail")},
                p.F_NEXT_CURSOR: {
                    "type": ["string", "null"],
                    "description": "Pass as cursor; null on the last page",
                },
            },
        },
        "MailboxConfig": {
            "type": "object",
            "description": "The mailbox's public configuration, free form; keys named like a secret "
            f"({', '.join(sorted(p.SECRET_KEY_NAMES))}, in any case, with or without _ or -) are refused.",
            "additionalProperties": True,
        },
        "MailboxRecord": {
            "type": "object",
            "required": ["mailboxId", "config", "status"],
            "properties": {
                "mailboxId": {"type": "string"},
                "config": {"anyOf": [_ref("MailboxConfig"), {"type": "null"}]},
                "configUpdatedAt": {"type": ["string", "null"], "format": "date-time"},
                "status": {"anyOf": [_ref("MailboxStatus"), {"type": "null"}]},
                "statusUpdatedAt": {"type": ["string", "null"], "format": "date-time"},
            },
        },
        "MailboxList": {
            "type": "object",
            "required": [p.F_ITEMS],
            "properties": {p.F_ITEMS: {"type": "array", "items": _ref("MailboxRecord")}},
        },
        "ItemList": {
            "type": "object",
            "required": [p.F_ITEMS],
            "properties": {p.F_ITEMS: {"type": "array", "items": _ref("StoredEmail")}},
        },
    }


def _paths() -> dict[str, Any]:
    item_id = _path_param("id", "Item id returned by POST /emails")
    mailbox_id = _path_param("mailboxId", f"Mailbox id, pattern {p.MAILBOX_ID_PATTERN}")
    attachment_id = _path_param("attachmentId", "Id returned by POST /emails/attachments")
    bad = _error("The request breaks the profile; message names the field (`from.address: required`)")
    missing = _error("No such item / attachment")
    return {
        p.EMAILS: {
            "post": _op(
                "Create an email item (inbound from the connector; outbound = an agent's queued reply)",
                {
                    "201": _json(_ref("Created"), "Created"),
                    "200": _json(_ref("Created"), "An item with this externalId exists already: its id"),
                    "400": bad,
                    "409": _error("A request with the same Idempotency-Key is in progress. Retried."),
                },
                parameters=[
                    {
                        "name": p.IDEMPOTENCY_HEADER,
                        "in": "header",
                        "required": False,
                        "description": "Required for inbound items: the item's externalId",
                        "schema": {"type": "string"},
                    }
                ],
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"oneOf": [_ref("InboundEmail"), _ref("OutboundEmail")]}
                        }
                    },
                },
            ),
            "get": _op(
                "List items, oldest first, one page at a time",
                {"200": _json(_ref("EmailPage"), "A page"), "400": bad},
                parameters=[
                    _query(p.Q_MAILBOX, "Only this mailbox", {"type": "string"}),
                    _query(p.Q_DIRECTION, "inbound or outbound", {"enum": [p.INBOUND, p.OUTBOUND_DIRECTION]}),
                    _query(p.Q_LIMIT, "Page size (default 100)", _LIMIT),
                    _query(p.Q_CURSOR, "nextCursor of the previous page", {"type": "string"}),
                ],
            ),
        },
        p.EMAILS_BATCH: {
            "post": _op(
                f"Optional (v1.1): create up to {p.MAX_BATCH_ITEMS} inbound items in one request; each "
                "item's externalId is its idempotency key. An IWD without it answers 404/405 and the "
                "connector falls back to POST /emails.",
                {
                    "200": _json(
                        _ref("BatchCreateResponse"),
                        "One result per item in request order: 201 created, 200 existed (its id), "
                        "400 the item breaks the profile (message starts items[i].), 409 the same "
                        "externalId came earlier in this batch with different content",
                    ),
                    "400": _error(f"The body is malformed (no items, 0 or more than {p.MAX_BATCH_ITEMS})"),
                    "404": _error("This IWD does not offer batch create: use POST /emails"),
                    "405": _error("This IWD does not offer batch create: use POST /emails"),
                    "413": _error("Too large: send fewer items"),
                },
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": _ref("BatchCreate")}},
                },
            ),
        },
        p.EMAIL: {
            "parameters": [item_id],
            "get": _op("One item", {"200": _json(_ref("StoredEmail"), "The item"), "404": missing}),
            "patch": _op(
                "Report an outbound item's progress",
                {
                    "200": _json(_ref("StoredEmail"), "The updated item"),
                    "400": bad,
                    "404": missing,
                },
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": _ref("EmailPatch")}},
                },
            ),
        },
        p.ATTACHMENTS: {
            "post": _op(
                "Upload one attachment's bytes (before the item that references it)",
                {
                    "201": _json(_ref("AttachmentCreated"), "Stored"),
                    "200": _json(
                        _ref("AttachmentCreated"),
                        "v1.2: this Idempotency-Key was used before with the same bytes: the attachment "
                        "stored then (nothing is stored again)",
                    ),
                    "400": bad,
                    "413": _error("Too large"),
                    "422": _error(
                        "v1.2: this Idempotency-Key was used before with other bytes (code "
                        "idempotency_conflict; the message names the first attachment)"
                    ),
                },
                parameters=[
                    {
                        "name": p.FILENAME_HEADER,
                        "in": "header",
                        "required": True,
                        "description": "File name, percent-encoded UTF-8 (RFC 5987 UTF-8'' form accepted)",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": p.IDEMPOTENCY_HEADER,
                        "in": "header",
                        "required": False,
                        "description": "v1.2: the upload's stable key (the connector always sends one, "
                        "derived from the item's externalId, the attachment's index and its sha256); "
                        "a repeated upload with the same key and bytes answers 200 with the first "
                        "attachment",
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": p.MAX_IDEMPOTENCY_KEY_CHARS,
                        },
                    },
                ],
                requestBody={
                    "required": True,
                    "description": "The raw bytes; Content-Type is the attachment's media type",
                    "content": {
                        "*/*": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}
                    },
                },
            ),
        },
        p.ATTACHMENT: {
            "parameters": [attachment_id],
            "get": _op(
                "Download an attachment (Content-Type and x-filename as uploaded)",
                {"200": {"description": "The bytes", "content": {"*/*": {}}}, "404": missing},
            ),
        },
        p.MAILBOXES: {
            "get": _op(
                "Mailbox configurations with their status", {"200": _json(_ref("MailboxList"), "All")}
            ),
        },
        p.MAILBOX: {
            "parameters": [mailbox_id],
            "put": _op(
                "Publish a mailbox's configuration (never secrets)",
                {"200": {"description": "Stored"}, "400": bad},
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": _ref("MailboxConfig")}},
                },
            ),
        },
        p.MAILBOX_STATUS: {
            "parameters": [mailbox_id],
            "put": _op(
                "Publish a mailbox's inbound and outbound status",
                {"200": {"description": "Stored"}, "400": bad},
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": _ref("MailboxStatus")}},
                },
            ),
        },
        p.OUTBOUND: {
            "get": _op(
                "Outbound items (agents' replies) in one status, oldest first",
                {"200": _json(_ref("ItemList"), "The items"), "400": bad},
                parameters=[
                    _query(p.Q_STATUS, "Default queued", {"enum": list(p.OUTBOUND_STATUSES)}),
                    _query(p.Q_LIMIT, "Default 50", _LIMIT),
                    _query(p.Q_MAILBOX, "Only this mailbox", {"type": "string"}),
                ],
            ),
        },
    }


def _untitled(node: Any) -> Any:
    """Drops pydantic's generated titles ("Externalid"), which only add noise to the document."""
    if isinstance(node, dict):
        return {k: _untitled(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))}
    if isinstance(node, list):
        return [_untitled(v) for v in node]
    return node


class _NoAliasDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def build_openapi() -> dict[str, Any]:
    _, defs = models_json_schema(
        [(model, "validation") for model in _MODELS], ref_template="#/components/schemas/{model}"
    )
    schemas = {**_untitled(defs.get("$defs", {})), **_extra_schemas()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "IWD email API profile",
            "version": p.PROFILE_VERSION,
            "description": "The IWD endpoints the iwd-email-connector uses; see docs/iwd-api.md. "
            "All names live in connector/iwd/profile.py.",
        },
        "servers": [{"url": "https://{host}:4024" + p.BASE_PATH, "variables": {"host": {"default": "iwd"}}}],
        "security": [{"apiKey": [], "ccid": []}],
        "paths": _paths(),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": p.API_KEY_HEADER},
                "ccid": {"type": "apiKey", "in": "header", "name": p.CCID_HEADER},
            },
        },
    }


def render_yaml() -> str:
    header = "# Generated by `python -m connector.iwd.openapi docs/iwd-api.openapi.yaml`; do not edit.\n"
    return header + yaml.dump(
        build_openapi(), Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True, width=100
    )


if __name__ == "__main__":
    text = render_yaml()
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
