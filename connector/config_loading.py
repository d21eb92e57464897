"""Reading the configuration file: YAML → settings, and errors a person can act on.

Errors name the file, the field path (`mailboxes[2].imap.port`), the line where YAML has one, and
what is wrong. They never echo the offending value, which could be a secret.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from connector.errors import ConfigError
from connector.secrets import is_secret_key

if TYPE_CHECKING:  # the models import this module at their end; at run time it reads them lazily
    from connector.config import ConnectorSettings, MailboxSettings


def _format_loc(loc: tuple[int | str, ...]) -> str:
    # the loader is imported while connector.config is still loading; the IWD package needs it done
    from connector.iwd.profile import field_path

    return field_path(loc) if loc else "(top level)"


def _clean_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # pydantic adds validator names such as 'function-after[...]' to union/annotated locations
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known setting (check spelling)"
    ctx = error.get("ctx") or {}
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}"
    if kind == "string_pattern_mismatch":
        return "has an invalid format"
    text = str(error["msg"])
    return text.removeprefix("Value error, ")


def _line_index(text: str) -> dict[tuple[int | str, ...], int]:
    """Maps YAML paths to 1-based line numbers so errors can point at the line."""
    index: dict[tuple[int | str, ...], int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return index

    def walk(node: yaml.Node, path: tuple[int | str, ...]) -> None:
        index[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    index[(*path, key.value)] = key.start_mark.line + 1
                    walk(value, (*path, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    if root is not None:
        walk(root, ())
    return index


def parse_config(text: str, source: str = "<config>") -> ConnectorSettings:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError([f"{where}not valid YAML ({getattr(exc, 'problem', exc)})"], source) from None
    if not isinstance(data, dict):
        raise ConfigError(["the file must hold a mapping with 'iwd' and 'mailboxes'"], source)
    from connector.config import ConnectorSettings

    try:
        return ConnectorSettings.model_validate(data)
    except ValidationError as exc:  # an unresolvable ${VAR}/file: is a ValueError: pydantic wraps it
        lines = _line_index(text)
        problems = []
        for err in exc.errors(include_input=False, include_url=False):
            loc = _clean_loc(tuple(err["loc"]))
            line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), None)
            where = f" (line {line})" if line else ""
            problems.append(f"{_format_loc(loc)}: {_message(err)}{where}")
        raise ConfigError(problems, source) from None


def load_config(path: str | Path) -> ConnectorSettings:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read the file: {exc.strerror}"], str(path)) from None
    return parse_config(text, str(path))


def public_view(box: MailboxSettings) -> dict[str, Any]:
    """The effective mailbox configuration with every secret removed (for IWD, status, logs)."""
    data = box.model_dump(mode="json", exclude_none=True)

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if not is_secret_key(k)}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return dict(strip(data))
