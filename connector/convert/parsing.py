"""The stdlib parser set up for conversion: `policy.default`, with parsed headers cached.

Under `policy.default` every `msg.get(name)` builds a new header object, re-running the header
grammar (Content-Type is read about eight times per part while walking), and every raw lookup
walks the whole header list. The converter never changes a parsed message, so each part keeps the
objects it built and one index of its raw values by name; any change clears both.
"""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

_MISSING = object()


class CachedHeadersMessage(EmailMessage):
    def get(self, name: str, failobj: Any = None) -> Any:
        cache: dict[str, Any] = self.__dict__.setdefault("_parsed_headers", {})
        key = name.lower()
        value = cache.get(key, _MISSING)
        if value is _MISSING:
            value = super().get(name, _MISSING)
            cache[key] = value
        return failobj if value is _MISSING else value

    def raw_values(self, name: str) -> list[str]:
        """Every raw value of header `name` (lower case), in order; the index is built once."""
        index: dict[str, list[str]] | None = self.__dict__.get("_raw_index")
        if index is None:
            index = {}
            for key, value in self.raw_items():
                index.setdefault(key.lower(), []).append(str(value))
            self.__dict__["_raw_index"] = index
        return index.get(name, [])

    def _forget(self) -> None:
        self.__dict__.pop("_parsed_headers", None)
        self.__dict__.pop("_raw_index", None)

    def __setitem__(self, name: str, val: Any) -> None:
        self._forget()
        super().__setitem__(name, val)

    def __delitem__(self, name: str) -> None:
        self._forget()
        super().__delitem__(name)

    def set_raw(self, name: str, value: Any) -> None:
        self._forget()
        super().set_raw(name, value)

    def replace_header(self, _name: str, _value: Any) -> None:
        self._forget()
        super().replace_header(_name, _value)

    def add_header(self, _name: str, _value: str, **_params: Any) -> None:
        self._forget()
        super().add_header(_name, _value, **_params)

    def set_boundary(self, boundary: str) -> None:
        self._forget()
        super().set_boundary(boundary)

    def set_param(self, *args: Any, **kwargs: Any) -> None:
        self._forget()
        super().set_param(*args, **kwargs)

    def del_param(self, *args: Any, **kwargs: Any) -> None:
        self._forget()
        super().del_param(*args, **kwargs)


PARSE_POLICY = policy.default.clone(message_factory=CachedHeadersMessage)


def parse_bytes(data: bytes) -> EmailMessage:
    message = BytesParser(policy=PARSE_POLICY).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message
