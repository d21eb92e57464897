"""structlog as JSON lines on stdout, with secrets redacted by construction.

Secrets are `SecretStr` everywhere, so they print as '**********'. As a second line of defence
the redactor replaces any field named like a secret, and any known secret value that slipped into
a string (the values are collected from the loaded configuration, never stored elsewhere).
Records of stdlib loggers (uvicorn, sqlalchemy, connector.iwd...) go through the same redactor and
JSON renderer, so every line on stdout is one redacted JSON object.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog
from pydantic import BaseModel, SecretStr

from connector.secrets import is_secret_key

# Beyond the configuration's secret keys (connector.secrets), HTTP credential headers logged as fields.
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "setcookie"})
REDACTED = "[redacted]"
LOG_LEVELS = ("debug", "info", "warning", "error")


def _secret_field(name: str) -> bool:
    return is_secret_key(name) or name.lower().replace("_", "").replace("-", "") in CREDENTIAL_HEADERS


WHOLE_WORD_BELOW = 12


class SecretRedactor:
    def __init__(self, secret_values: Iterable[str] = ()) -> None:
        self.values = sorted({v for v in secret_values if len(v) >= 4}, key=len, reverse=True)

    def add(self, secret_values: Iterable[str]) -> None:
        """Learns more values (mailboxes added by a hot reload bring their own secrets)."""
        merged = set(self.values) | {v for v in secret_values if len(v) >= 4}
        self.values = sorted(merged, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        """Replaces each secret. A short one (under WHOLE_WORD_BELOW characters) only where it stands
        alone: a 4-letter password is also a syllable of ordinary words, which must stay readable."""
        for value in self.values:
            if value in text:
                if len(value) >= WHOLE_WORD_BELOW:
                    text = text.replace(value, REDACTED)
                else:
                    text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])", REDACTED, text)
        return text

    def __call__(
        self, _logger: Any, _method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key in list(event):
            value = event[key]
            if _secret_field(key):
                event[key] = REDACTED
            elif isinstance(value, str):
                event[key] = self.scrub(value)
            elif not isinstance(value, int | float | bool | type(None)):
                event[key] = self.scrub(str(value))
        return event


def secret_values(model: BaseModel) -> list[str]:
    """Every SecretStr value inside a settings tree."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, SecretStr):
            found.append(node.get_secret_value())
        elif isinstance(node, BaseModel):
            for name in type(node).model_fields:
                walk(getattr(node, name))
        elif isinstance(node, list | tuple):
            for item in node:
                walk(item)

    walk(model)
    return found


class _JsonHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler configure() installs (told apart from handlers others installed)."""


def configure(redactor: SecretRedactor | None = None, level: str = "info", stream: Any = None) -> None:
    """Called once by the CLI; library code only asks structlog (or stdlib logging) for loggers.

    Raises ValueError naming the choices when `level` is not one of LOG_LEVELS.
    """
    if level.lower() not in LOG_LEVELS:
        raise ValueError(f"log level '{level}' is not one of {', '.join(LOG_LEVELS)}")
    number = getattr(logging, level.upper())
    redactor = redactor or SecretRedactor()
    out = stream or sys.stdout
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redactor,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = _JsonHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _JsonHandler)]:
        root.removeHandler(old)  # configured again (tests, demo): one handler, not two
    root.addHandler(handler)
    root.setLevel(number)
    for noisy in (
        "aioimaplib",  # its debug lines carry the quoted password and whole raw messages
        "aiosqlite",
        "alembic",
        "httpx",
        "httpcore",
        "apscheduler",
        "asyncio",
        "uvicorn",
        "uvicorn.access",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            redactor,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
