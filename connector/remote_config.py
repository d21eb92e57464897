"""Mailbox configuration held in IWD (`config_source: iwd`), with secrets added locally.

IWD holds only the public configuration (what `public_view` produces: no password, token or client
secret). The local file's `secrets:` map names, per mailbox id, where each secret lives
(`imap.password: ${SUPPORT_IMAP_PASSWORD}` or `file:/run/secrets/...`); the references are merged in
and resolved here, so no secret, nor even its reference, ever travels through IWD. Values coming from
IWD are taken literally: a `${VAR}` or `file:` in them is refused, or IWD could make the connector
read a local secret into a field it then reports back.

Nor may IWD weaken TLS or move an endpoint the local secrets are sent to (`verify_tls: false`,
`allow_insecure: true`, `security: plain`, `ca_file`, oauth `authority`/`token_uri`/`ca_file`/
`service_account_file`, `api_endpoint`): such a value is refused, and the mailbox does not run,
unless the local `secrets:` entry sets the same path (`imap.verify_tls: "false"`,
`imap.ca_file: file:/etc/ca.pem`). And a block whose secrets are local (`imap.password`) sends them
only to a host pinned locally (`imap.host: imap.example.com`): without that pin, or when IWD names
another host, the mailbox does not run. A local override is always used, whatever IWD says.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import structlog
from pydantic import ValidationError

from connector.config import ConnectorSettings, GraphSettings, MailboxSettings
from connector.errors import ConfigError
from connector.iwd.client import IWDClient
from connector.secrets import SecretRefError, expand_env, is_secret_key

log = structlog.get_logger("connector.remote_config")


def _refuse_references(node: Any, path: str) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _refuse_references(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _refuse_references(value, f"{path}[{i}]")
    elif isinstance(node, str) and ("${" in node or node.startswith("file:")):
        raise ConfigError([f"{path}: references (${{...}}, file:) are only allowed in the local file"], "IWD")


_MISSING = object()
_TLS_SAFE: dict[str, tuple[object, ...]] = {
    "verify_tls": (True,),
    "allow_insecure": (False,),
    "security": ("tls", "starttls"),
    "ca_file": (None,),
}
_OAUTH_SAFE: dict[str, tuple[object, ...]] = {
    "authority": (None,),
    "token_uri": (None,),
    "ca_file": (None,),
    "service_account_file": (None,),  # a key file on this host: which one is the local admin's choice
}
# Dotted path -> the values IWD may set; anything else needs the same path set locally in `secrets:`.
GUARDED: dict[str, tuple[object, ...]] = {
    **{f"{block}.{leaf}": safe for block in ("imap", "smtp") for leaf, safe in _TLS_SAFE.items()},
    **{
        f"{block}.oauth.{leaf}": safe
        for block in ("imap", "smtp", "gmail", "graph")
        for leaf, safe in _OAUTH_SAFE.items()
    },
    "gmail.api_endpoint": (None,),
    "graph.api_endpoint": (None, GraphSettings.model_fields["api_endpoint"].default),
}
# Blocks that send their secrets to a configurable host: with a local secret, the host is pinned too.
HOST_BLOCKS = ("imap", "smtp")


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError([f"secrets: '{dotted}' does not name a setting block"], "local file")
        node = child
    node[parts[-1]] = value


def _get_path(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _local_value(dotted: str, reference: str, where: str) -> str:
    """A local override: literal, or `${VAR}` expanded; `file:/path` means that path (for ca_file)."""
    try:
        return expand_env(reference[5:] if reference.startswith("file:") else reference)
    except SecretRefError as exc:
        raise ConfigError([f"secrets.{where}.{dotted}: {exc}"], "local file") from None


def _same(iwd_value: Any, local: str, dotted: str) -> bool:
    if isinstance(iwd_value, bool):
        return str(iwd_value).lower() == local.strip().lower()
    if dotted.endswith(".host"):
        return str(iwd_value).strip().rstrip(".").lower() == local.strip().rstrip(".").lower()
    return str(iwd_value) == local


def _pinned_hosts(secrets: Mapping[str, str]) -> list[str]:
    """`imap.host` / `smtp.host` for each block that holds a local secret."""
    return [
        f"{block}.host"
        for block in HOST_BLOCKS
        if any(k.startswith(f"{block}.") and is_secret_key(k.rsplit(".", 1)[-1]) for k in secrets)
    ]


def _apply_guarded(data: dict[str, Any], local: Mapping[str, str], mailbox_id: str, where: str) -> None:
    """Refuses TLS-weakening or endpoint-moving values from IWD unless set alike locally, and a
    host for local secrets that is not pinned locally."""
    problems: list[str] = []
    pinned = _pinned_hosts(local)
    for dotted, safe in [*GUARDED.items(), *((host, ()) for host in pinned)]:
        iwd_value = _get_path(data, dotted)
        if dotted in local:
            value = _local_value(dotted, local[dotted], mailbox_id)
            if iwd_value is not _MISSING and iwd_value not in safe and not _same(iwd_value, value, dotted):
                problems.append(f"{where}.{dotted}: IWD sets a value that differs from the local override")
            else:
                _set_path(data, dotted, value)
        elif dotted in pinned:
            problems.append(
                f"{where}.{dotted}: the local {dotted.split('.')[0]} secrets go only to a host set in "
                f"this file; add secrets.{mailbox_id}.{dotted}"
            )
        elif iwd_value is not _MISSING and iwd_value not in safe:
            problems.append(
                f"{where}.{dotted}: refused from IWD (it would weaken TLS or move where secrets are sent); "
                f"set it locally under secrets.{mailbox_id}.{dotted}"
            )
    if problems:
        raise ConfigError(problems, "IWD")


def _is_local_setting(dotted: str) -> bool:
    return dotted in GUARDED or dotted in {f"{block}.host" for block in HOST_BLOCKS}


def mailbox_from_iwd(
    config: Mapping[str, Any], secrets: Mapping[str, str], mailbox_id: str
) -> MailboxSettings:
    """One IWD-held configuration plus its local secret references, validated."""
    data = copy.deepcopy(dict(config))  # merging secrets must not touch the caller's dict
    data.setdefault("id", mailbox_id)
    where = f"mailboxes[{mailbox_id}]"
    _refuse_references(data, where)
    if data["id"] != mailbox_id:
        raise ConfigError([f"{where}.id: differs from the IWD mailbox id"], "IWD")
    for dotted in secrets:
        if not _is_local_setting(dotted) and not is_secret_key(dotted.rsplit(".", 1)[-1]):
            # a reference put in a public field would be reported back to IWD
            raise ConfigError(
                [
                    f"secrets: '{dotted}' is not a secret setting (password, token, client_secret...) "
                    "nor a host pin or TLS/endpoint override (imap.host, smtp.host, verify_tls, "
                    "allow_insecure, security, ca_file, authority, token_uri, service_account_file, "
                    "api_endpoint)"
                ],
                "local file",
            )
    _apply_guarded(data, secrets, mailbox_id, where)
    for dotted, reference in secrets.items():
        if not _is_local_setting(dotted):
            _set_path(data, dotted, reference)
    try:
        return MailboxSettings.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{where}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)
        ]
        raise ConfigError(problems, "IWD") from None


async def settings_with_iwd_mailboxes(base: ConnectorSettings, iwd: IWDClient) -> ConnectorSettings:
    """`base` with its mailboxes replaced by IWD's (source iwd). A mailbox whose IWD configuration
    is invalid is left out and logged; the others run. Raises IWDError when IWD cannot be read."""
    boxes: list[MailboxSettings] = []
    for item in await iwd.list_mailboxes():
        mailbox_id = str(item.get("mailboxId", ""))
        config = item.get("config")
        if not mailbox_id or not isinstance(config, dict):
            continue
        try:
            boxes.append(mailbox_from_iwd(config, base.secrets.get(mailbox_id, {}), mailbox_id))
        except ConfigError as exc:
            log.warning("iwd_mailbox_config_invalid", mailbox=mailbox_id, error=str(exc))
    return base.model_copy(update={"mailboxes": boxes})
