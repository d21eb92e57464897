"""Converter throughput and memory: small mail, 10 MB mail, and peak memory on a 50 MB message.

Every figure is printed next to the stdlib `email` parser alone (BytesParser, policy.default),
measured in the same run on the same bytes, so the ratio shows what conversion adds on top of parsing.
Run: .venv/bin/python bench/convert_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import base64
import gc
import os
import sys
import time
import tracemalloc
from collections.abc import Callable
from email import policy
from email.parser import BytesParser
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connector.convert import convert

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "connector" / "convert" / "corpus"


def stdlib_parse(raw: bytes) -> None:
    """The baseline: parse and decode every leaf, as any consumer of the stdlib must."""
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    for part in msg.walk():
        if not part.is_multipart():
            part.get_payload(decode=True)


def big_message(size: int) -> bytes:
    """A realistic large mail: short text, an HTML alternative, and one big binary attachment."""
    payload = os.urandom(size * 3 // 4)
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    return (
        b"From: Big Sender <big@example.com>\r\nTo: support@example.com\r\nSubject: Scans of the contract\r\n"
        b"Date: Mon, 1 Apr 2024 10:00:00 +0000\r\nMessage-ID: <big-1@example.com>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="big"\r\n\r\n--big\r\n'
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nPlease find the scans attached. Regards\r\n--big\r\n"
        b'Content-Type: application/pdf; name="scans.pdf"\r\n'
        b'Content-Disposition: attachment; filename="scans.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"\r\n--big--\r\n"
    )


def rate(func: Callable[[bytes], object], messages: list[bytes], seconds: float) -> float:
    """Messages per second over at least `seconds` of repeated passes."""
    func(messages[0])  # warm-up (imports, langdetect profiles)
    count = 0
    started = time.perf_counter()
    while True:
        for raw in messages:
            func(raw)
        count += len(messages)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return count / elapsed


def peak_bytes(func: Callable[[bytes], object], raw: bytes) -> int:
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    func(raw)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs (CI smoke)")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else 5.0
    mib = 1024 * 1024

    small = [path.read_bytes() for path in sorted(CORPUS.glob("*.eml"))]
    avg = sum(map(len, small)) // len(small)
    ours = rate(convert, small, seconds)
    base = rate(stdlib_parse, small, seconds)
    print(f"small ({len(small)} corpus messages, avg {avg} B): convert {ours:,.0f} msg/s, "
          f"stdlib parse {base:,.0f} msg/s; convert takes {base / ours:.1f}x the stdlib time")  # fmt: skip

    ten = [big_message(10 * mib)]
    ours = rate(convert, ten, seconds)
    base = rate(stdlib_parse, ten, seconds)
    print(f"10 MB ({len(ten[0]) / mib:.1f} MiB): convert {ours:.2f} msg/s, stdlib parse {base:.2f} msg/s, "
          f"convert takes {base / ours:.2f}x the stdlib time")  # fmt: skip
    del ten

    fifty = big_message(50 * mib)
    size = len(fifty)
    ours_peak = peak_bytes(convert, fifty)
    base_peak = peak_bytes(stdlib_parse, fifty)
    print(f"50 MB ({size / mib:.1f} MiB): convert peak {ours_peak / mib:.0f} MiB = "
          f"{ours_peak / size:.2f}x size "
          f"(target <= 3x), stdlib parse peak {base_peak / mib:.0f} MiB = {base_peak / size:.2f}x size, "
          f"convert/stdlib peak {ours_peak / base_peak:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
