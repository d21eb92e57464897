"""Secret references in configuration: `${ENV_VAR}` and `file:/path`, resolved at load.

Resolved values live in pydantic `SecretStr`, whose repr and str hide the value, so a secret
that reaches a log line or an f-string prints as '**********'.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SecretRefError(ValueError):
    """A reference that cannot be resolved; the message names the reference, never a value."""


UNRESOLVED = "<unresolved secret>"  # what a secret reads as under `secrets_optional()`
_optional: ContextVar[bool] = ContextVar("secrets_optional", default=False)


@contextlib.contextmanager
def secrets_optional() -> Iterator[None]:
    """Loads inside this block read an unresolvable secret as UNRESOLVED instead of failing: for
    commands that read only the store or the daemon (`status`, `quarantine list`), which must not
    demand every mailbox's password to show a table."""
    token = _optional.set(True)
    try:
        yield
    finally:
        _optional.reset(token)


def resolve_optional(text: str) -> str:
    """resolve_secret, or UNRESOLVED inside `secrets_optional()` when the reference cannot be read."""
    try:
        return resolve_secret(text)
    except SecretRefError:
        if _optional.get():
            return UNRESOLVED
        raise


def expand_env(text: str, env: dict[str, str] | None = None) -> str:
    """Replaces every `${VAR}`; a missing variable is an error (never an empty secret)."""
    source = os.environ if env is None else env

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in source:
            raise SecretRefError(f"environment variable {name} is not set")
        return source[name]

    return _ENV_REF.sub(sub, text)


def resolve_secret(text: str, env: dict[str, str] | None = None) -> str:
    """`file:/path` reads the file (trailing newline dropped); otherwise `${VAR}` expansion."""
    if text.startswith("file:"):
        path = Path(expand_env(text[5:], env)).expanduser()
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise SecretRefError(f"cannot read secret file {path}: {exc.strerror}") from None
    return expand_env(text, env)


# The one list of key names that mark a secret, compared without case, '_' or '-' (so `client_secret`,
# `clientSecret` and `CLIENT-SECRET` are one name). Used to strip public views, refuse secrets in
# IWD-held configuration, limit what `secrets:` may set, and redact log fields.
SECRET_KEY_NAMES = frozenset(
    {"password", "token", "clientsecret", "refreshtoken", "apikey", "accesstoken", "secret"}
)


def normalise_key(name: str) -> str:
    """`Client_Secret` -> `clientsecret`: the form SECRET_KEY_NAMES holds."""
    return name.lower().replace("_", "").replace("-", "")


def is_secret_key(name: str) -> bool:
    """True when a field or key of this name holds a secret."""
    return normalise_key(name) in SECRET_KEY_NAMES
