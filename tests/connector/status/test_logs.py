"""Log output: stdlib records are JSON and redacted like structlog's; a bad level is a clear error."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from typer.testing import CliRunner

from connector.cli import app
from connector.logs import SecretRedactor, configure


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def test_stdlib_records_are_json_and_redacted(restore_logging: None) -> None:
    """A connector.iwd (stdlib) line carrying a secret value prints as one JSON object, value redacted."""
    stream = io.StringIO()
    configure(SecretRedactor(["s3cret-Value-42"]), level="info", stream=stream)
    logging.getLogger("connector.iwd.test").warning("answer had %s in it", "s3cret-Value-42")
    structlog.get_logger("connector.test").info("structlog_line", password="pw")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["event"] == "answer had [redacted] in it"
    assert lines[0]["logger"] == "connector.iwd.test" and lines[0]["level"] == "warning"
    assert lines[1]["event"] == "structlog_line" and lines[1]["password"] == "[redacted]"
    assert "s3cret-Value-42" not in stream.getvalue()


def test_an_unknown_level_is_a_clear_error(restore_logging: None) -> None:
    """configure(level='verbose') names the choices instead of an AttributeError; so does the CLI."""
    with pytest.raises(ValueError, match="debug, info, warning, error"):
        configure(level="verbose", stream=io.StringIO())
    result = CliRunner().invoke(app, ["run", "-c", "/nonexistent.yaml", "--log-level", "verbose"])
    assert result.exit_code == 2 and "verbose" in result.output
    assert not isinstance(result.exception, AttributeError)
