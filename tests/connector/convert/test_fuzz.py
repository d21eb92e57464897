# ruff: noqa: E501  (expected message text is data, kept on one line to compare exactly)
"""Generated and mutated MIME never crashes the converter nor stalls it (peers.md §2 class 10).

Only MessageError may escape (that is the quarantine path), and every example must finish within
a generous time bound measured inside the test. CI runs 2 000 examples (CI=true), derandomized.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.convert import Limits, convert, unparseable_item
from connector.convert.converter import INTERNAL_ERROR_PREFIX
from connector.errors import MessageError
from connector.models import EmailItem

CORPUS = Path(__file__).parent / "corpus"
SEEDS = [path.read_bytes() for path in sorted(CORPUS.glob("*.eml"))]
TIME_BOUND_SECONDS = 2.0

settings.register_profile(
    "convert-ci",
    max_examples=2000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "convert-dev",
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile("convert-ci" if os.environ.get("CI") == "true" else "convert-dev")

CONTENT_TYPES = [
    "text/plain", "text/html", "text/calendar", "image/png", "application/pdf", "application/ms-tnef",
    "message/rfc822", "message/delivery-status", "text/rfc822-headers", "application/octet-stream", "bogus",
    "text/plain; format=flowed; delsp=yes", "",
]  # fmt: skip
CHARSETS = [
    "utf-8",
    "iso-8859-1",
    "us-ascii",
    "gb2312",
    "iso-2022-jp",
    "koi8-r",
    "x-unknown",
    "utf-7",
    "",
    "utf-16",
]
ENCODINGS = ["7bit", "8bit", "base64", "quoted-printable", "x-uuencode", "binary", "bogus", ""]
SUBTYPES = ["mixed", "alternative", "related", "report; report-type=delivery-status", "signed", "digest"]
header_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=40)
odd_bytes = st.binary(max_size=300)


@st.composite
def leaf(draw: st.DrawFn) -> bytes:
    ctype = draw(st.sampled_from(CONTENT_TYPES))
    charset = draw(st.sampled_from(CHARSETS))
    encoding = draw(st.sampled_from(ENCODINGS))
    name = draw(st.one_of(st.none(), header_text, st.just("=?utf-8?B?w4RwZmVs?=.pdf"), st.just("../x")))
    lines = [f"Content-Type: {ctype}" + (f'; charset="{charset}"' if charset else "")]
    if encoding:
        lines.append(f"Content-Transfer-Encoding: {encoding}")
    if name is not None:
        disposition = draw(st.sampled_from(["attachment", "inline", "weird"]))
        lines.append(f'Content-Disposition: {disposition}; filename="{name}"')
    if draw(st.booleans()):
        lines.append(f"Content-ID: <{draw(header_text)}@x>")
    body = draw(st.one_of(odd_bytes, st.sampled_from(SEEDS[:5]), header_text.map(str.encode)))
    return "\r\n".join(lines).encode("utf-8", "replace") + b"\r\n\r\n" + body


@st.composite
def mime_tree(draw: st.DrawFn, depth: int = 0) -> bytes:
    if depth >= 4 or draw(st.integers(0, 3)) == 0:
        return draw(leaf())
    boundary = draw(st.sampled_from(["b1", "=_x", "----", "a b", ""])) + str(depth)
    used = boundary if draw(st.integers(0, 9)) else "mismatch"
    children = draw(st.lists(mime_tree(depth + 1), max_size=4))
    out = f'Content-Type: multipart/{draw(st.sampled_from(SUBTYPES))}; boundary="{boundary}"\r\n\r\npreamble\r\n'
    chunks = [out.encode()]
    for child in children:
        chunks.append(f"--{used}\r\n".encode() + child + b"\r\n")
    if draw(st.booleans()):
        chunks.append(f"--{used}--\r\n".encode())
    return b"".join(chunks)


@st.composite
def generated_message(draw: st.DrawFn) -> bytes:
    headers = [
        ("From", draw(st.one_of(header_text, st.just('"A, B" <a@b.c>'), st.just("=?utf-8?Q?x?= <<>>")))),
        ("To", draw(st.one_of(header_text, st.just("g: a@b, c@d;")))),
        (
            "Subject",
            draw(st.one_of(header_text, st.just("=?utf-8?B?broken"), st.just("=?x?Q?a?= =?y?B?Yg==?="))),
        ),
        ("Message-ID", draw(st.one_of(header_text, st.just("<a@b>")))),
        ("References", draw(header_text)),
        ("Date", draw(st.one_of(header_text, st.just("Mon, 1 Jan 2024 00:00:00 +0000")))),
        ("X-Priority", draw(header_text)),
        ("Auto-Submitted", draw(header_text)),
    ]
    block = b"".join(f"{k}: {v}\r\n".encode("utf-8", "surrogateescape") for k, v in headers)
    raw_header = draw(st.binary(max_size=60).filter(lambda b: b"\n" not in b))
    return block + b"X-Raw: " + raw_header + b"\r\nMIME-Version: 1.0\r\n" + draw(mime_tree())


@st.composite
def mutated_message(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        op = draw(st.integers(0, 4))
        pos = draw(st.integers(0, len(data) - 1))
        if op == 0:
            data[pos] = draw(st.integers(0, 255))
        elif op == 1:
            del data[pos : pos + draw(st.integers(1, 200))]
        elif op == 2:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=40))
        elif op == 3:
            data = data[:pos]
        else:
            chunk = data[pos : pos + draw(st.integers(1, 300))]
            data[pos:pos] = chunk * draw(st.integers(1, 5))
    return bytes(data)


def check(raw: bytes) -> None:
    """Converts without an escaping exception, within a bound on this thread's CPU time (a loaded
    machine cannot fail it; a pathological path can)."""
    started = time.thread_time()
    try:
        item = convert(raw)
    except MessageError as exc:
        assert not str(exc).startswith(INTERNAL_ERROR_PREFIX), str(exc)  # a bug caught by the safety net
        item = unparseable_item(raw, str(exc))
        assert item.flags.unparseable
    elapsed = time.thread_time() - started
    assert isinstance(item, EmailItem)
    assert elapsed < TIME_BOUND_SECONDS, f"took {elapsed:.2f}s"
    for attachment in item.attachments:
        assert "/" not in attachment.filename and "\\" not in attachment.filename


@PROFILE
@given(st.one_of(generated_message(), mutated_message()))
def test_generated_and_mutated_mime_never_crash_or_stall(raw: bytes) -> None:
    """Generated MIME trees (odd types, charsets, encodings, boundaries) and corpus messages with
    flipped, cut, inserted and repeated bytes either convert or go to quarantine, each within the bound."""
    check(raw)


@PROFILE
@given(st.one_of(generated_message(), mutated_message()))
def test_cutting_base64_runs_changes_nothing_on_generated_mime(raw: bytes) -> None:
    """Generated and mutated MIME give the same item, or the same refusal, whether base64 runs are cut
    out before parsing (every run of 64 bytes here; 8 KiB by default) or left to the stdlib parser."""
    outcomes = []
    for limits in (Limits(min_blob_bytes=64), Limits(min_blob_bytes=10**9)):
        try:
            outcomes.append(convert(raw, limits=limits))
        except MessageError as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]
