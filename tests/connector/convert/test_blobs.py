"""Finding base64 runs to cut out before parsing: the same runs as the regex it replaced, in linear time."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.convert import blobs

PIECES = [b"A", b"z", b"0", b"+", b"/", b"\r\n", b"\n", b"AAAAAAAA", b"-", b" ", b"="]


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(st.sampled_from(PIECES)).map(b"".join),
    min_bytes=st.integers(1, 24),
    window=st.sampled_from([1, 8, 64]),
)
def test_runs_are_the_maximal_runs_the_regex_finds(data: bytes, min_bytes: int, window: int) -> None:
    """Every maximal run of base64 alphabet and line ends of `min_bytes` or more, also across windows."""
    expected = [m.span() for m in re.finditer(rb"[A-Za-z0-9+/\r\n]{%d,}" % min_bytes, data)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(blobs, "_WINDOW_BYTES", window)
        assert list(blobs._runs(data, min_bytes)) == expected
