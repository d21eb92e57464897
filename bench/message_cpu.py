"""CPU per message: this checkout's converter against another one (default: `main`) in the same run.

Not part of the test suite. Issue #9's target: on 1,000 messages of 200 KB, conversion CPU per
message at most half of today's main. Each figure comes from its own child process that converts
`--messages` distinct messages and sums `time.process_time()` around each `convert` call only
(building the message is not counted). Base and ours alternate, `--rounds` times per shape, so
both see the same load on a shared machine; min and median are printed.

    .venv/bin/python bench/message_cpu.py [--messages 1000] [--rounds 3] [--base main | --code DIR]
        [--pool] [--no-append]

Shapes: `mixed` is a customer mail (8 KB text, 14 KB HTML alternative, a 130 KiB PDF in base64);
`text` is the IMAP benchmark's message padded to 200 KB of plain text. Every child prints a digest
of the items it built, so a difference between the two converters' answers shows. `--pool` also
measures 2 worker processes against converting inline (wall time and CPU of all processes).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SIZE_BYTES = 200_000
SENTENCES = (
    "thank you for your order we have received the parcel but the item was damaged during delivery "
    "please send a replacement or refund the amount to my account as soon as possible invoice number "
    "customer reference attached photos show the broken parts"
)
WORDS = SENTENCES.split()


def prose(rng: random.Random, chars: int) -> list[str]:
    lines: list[str] = []
    while sum(map(len, lines)) < chars:
        lines.append(" ".join(rng.choice(WORDS) for _ in range(12)).capitalize() + ".")
    return lines


def mixed_message(i: int) -> bytes:
    """About 200 KB: text, its HTML alternative and one attachment, as a customer sends them."""
    rng = random.Random(i)
    text = "\r\n".join(prose(rng, 8000)) + "\r\n"
    html = (
        "<html><body>\r\n"
        + "".join(f"<p>{line}</p>\r\n" for line in prose(rng, 14000))
        + "</body></html>\r\n"
    )
    attachment = base64.encodebytes(rng.randbytes((SIZE_BYTES - 24000) * 3 // 4)).replace(b"\n", b"\r\n")
    head = (
        f"From: Customer {i} <c{i}@example.test>\r\nTo: support@example.test\r\nSubject: Order {i}\r\n"
        f"Message-ID: <m{i}@example.test>\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="mix"\r\n\r\n--mix\r\n'
        'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n--alt\r\n'
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}--alt\r\n"
        f"Content-Type: text/html; charset=utf-8\r\n\r\n{html}--alt--\r\n--mix\r\n"
        'Content-Type: application/pdf; name="photos.pdf"\r\n'
        'Content-Disposition: attachment; filename="photos.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    )
    return head.encode() + attachment + b"--mix--\r\n"


def text_message(i: int) -> bytes:
    """The IMAP benchmark's message padded to 200 KB of plain text."""
    line = "x" * 76 + "\r\n"
    body = f"Hello number {i}.\r\n" + line * (SIZE_BYTES // len(line) + 1)
    return (
        f"From: Customer {i} <c{i}@example.test>\r\nTo: support@example.test\r\nSubject: Message {i}\r\n"
        f"Message-ID: <m{i}@example.test>\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    ).encode()


def small_message(i: int) -> bytes:
    """The IMAP ingest benchmark's 254-byte message (the 10,000-message ingest and IDLE arrivals)."""
    return (
        f"From: Customer {i} <c{i}@example.test>\r\nTo: support@example.test\r\nSubject: Message {i}\r\n"
        f"Message-ID: <m{i}.{i:08x}@example.test>\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello number {i}.\r\n"
    ).encode()


SHAPES: dict[str, Callable[[int], bytes]] = {
    "mixed": mixed_message,
    "text": text_message,
    "small": small_message,
}
LARGE_MIB = 52


def use_code(code: Path | None) -> None:
    """Import `connector` from `code`: the editable install's finder would otherwise win over sys.path."""
    if code is None:
        return
    sys.meta_path[:] = [
        f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")
    ]
    sys.path.insert(0, str(code))


def item_digest(item: Any) -> bytes:
    parts = (item.subject, item.language, item.text_body, item.html_body, item.defects,
             [(a.filename, a.sha256) for a in item.attachments])  # fmt: skip
    return hashlib.sha256(repr(parts).encode()).digest()


def child(args: argparse.Namespace) -> None:
    use_code(args.code)
    from connector.convert import convert

    if args.rss:
        print(json.dumps(peak_rss(convert, args.rss)))
        return
    make = SHAPES[args.shape]
    convert(make(-1))  # warm-up: imports, langdetect's profiles
    digest = hashlib.sha256()
    cpu = 0.0
    for i in range(args.messages):
        raw = make(i)
        started = time.process_time()
        item = convert(raw)
        cpu += time.process_time() - started
        digest.update(item_digest(item))
    result = {"cpu_ms": cpu * 1000 / args.messages, "digest": digest.hexdigest()[:12]}
    if args.pool:
        result.update(pool_figures(args.shape, args.messages, convert))
    print(json.dumps(result))


def high_water_bytes() -> int:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent's fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def peak_rss(convert: Callable[[bytes], Any], path: Path) -> dict[str, float]:
    """Peak RSS of this whole process while converting one large message, as a multiple of its size.
    The message is read from a file, so building it leaves no high-water mark of its own."""
    raw = path.read_bytes()
    before = high_water_bytes()
    convert(raw)
    peak = high_water_bytes()
    return {"size": len(raw), "before": before / len(raw), "peak": peak / len(raw)}


def pool_figures(shape: str, n: int, convert: Callable[[bytes], Any]) -> dict[str, float]:
    """Wall time and all-process CPU for inline conversion and for two worker processes."""
    messages = [SHAPES[shape](i) for i in range(n)]
    wall = time.perf_counter()
    cpu = time.process_time()
    for raw in messages:
        convert(raw)
    inline_wall, inline_cpu = time.perf_counter() - wall, time.process_time() - cpu
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    cpu = time.process_time()
    with ProcessPoolExecutor(2) as pool:
        for _ in pool.map(convert, messages, chunksize=8):  # the items come back, as they would in use
            pass
    pool_wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {
        "inline_wall_ms": inline_wall * 1000 / n,
        "inline_cpu_ms": inline_cpu * 1000 / n,
        "pool_wall_ms": pool_wall * 1000 / n,
        "pool_cpu_ms": (time.process_time() - cpu + workers) * 1000 / n,
    }


def base_checkout(ref: str, into: Path) -> Path:
    """`ref`'s connector package, unpacked from git into `into` (no work tree of ours is touched)."""
    data = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "connector"], capture_output=True, check=True
    )
    with tarfile.open(fileobj=BytesIO(data.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def run_child(
    code: Path | None, shape: str, n: int, pool: bool = False, rss: Path | None = None
) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", "--shape", shape, "--messages", str(n)]
    if rss is not None:
        command += ["--rss", str(rss)]
    if code is not None:
        command += ["--code", str(code)]
    if pool:
        command.append("--pool")
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd="/")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def span(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base", default="main", help="git ref whose converter is the baseline")
    parser.add_argument("--code", type=Path, help="a checkout to use as the baseline instead of --base")
    parser.add_argument("--shape", choices=sorted(SHAPES), help="one shape only")
    parser.add_argument("--pool", action="store_true", help="also measure a pool of 2 worker processes")
    parser.add_argument("--no-append", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rss", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    n = args.messages
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="message-cpu-") as tmp:
        base = args.code or base_checkout(args.base, Path(tmp))
        label = str(args.code) if args.code else args.base
        for shape in [args.shape] if args.shape else sorted(SHAPES):
            theirs: list[float] = []
            ours: list[float] = []
            digests: set[tuple[str, str]] = set()
            for round_ in range(args.rounds):
                old = run_child(base, shape, n)
                new = run_child(None, shape, n)
                theirs.append(old["cpu_ms"])
                ours.append(new["cpu_ms"])
                digests.add((old["digest"], new["digest"]))
                print(
                    f"  {shape} round {round_ + 1}: {label} {old['cpu_ms']:.2f} ms, "
                    f"ours {new['cpu_ms']:.2f} ms"
                )
            same = "yes" if all(a == b for a, b in digests) else "NO"
            ratio = statistics.median(ours) / statistics.median(theirs)
            rows.append(f"| {shape} | {span(theirs)} ms | {span(ours)} ms | {ratio:.2f}× | {same} |")
        rss_rows: list[str] = []
        large = Path(tmp) / "large.eml"
        from bench.convert_bench import big_message

        large.write_bytes(big_message(LARGE_MIB * 1024 * 1024))
        for _ in range(args.rounds):
            for name, code in ((label, base), ("ours", None)):
                figures = run_child(code, "mixed", n, rss=large)
                rss_rows.append(
                    f"| {name} | {figures['size'] / 2**20:.1f} MiB | {figures['before']:.2f}× | "
                    f"{figures['peak']:.2f}× |"
                )
        pool_rows: list[str] = []
        if args.pool:
            for shape in [args.shape] if args.shape else sorted(SHAPES):
                figures = run_child(None, shape, n, pool=True)
                pool_rows.append(
                    f"| {shape} | {figures['inline_wall_ms']:.2f} ms | {figures['pool_wall_ms']:.2f} ms | "
                    f"{figures['inline_cpu_ms']:.2f} ms | {figures['pool_cpu_ms']:.2f} ms |"
                )
    table = (
        f"| shape | {label}: CPU per message, min / median | ours | ours / {label} (medians) | same items |\n"
        "|---|---|---|---|---|\n" + "\n".join(rows)
    )
    rss_table = (
        "| converter (round by round) | message | process RSS before convert | peak RSS (target <= 3x) |\n"
        "|---|---|---|---|\n" + "\n".join(rss_rows)
    )
    table += "\n\n" + rss_table
    print(table)
    if pool_rows:
        pool_table = (
            "| shape | inline: wall per message | 2 worker processes: wall | inline: CPU | workers: CPU, all "
            "processes |\n|---|---|---|---|---|\n" + "\n".join(pool_rows)
        )
        print(pool_table)
        table += "\n\n" + pool_table
    if not args.no_append:
        from bench.imap_bench import append_section

        stamp = time.strftime("%Y-%m-%d %H:%M")
        block = (
            f"### {stamp} — {n} messages per figure, {args.rounds} rounds, ours against {label}, "
            f"{platform.python_implementation()} {platform.python_version()}, "
            f"{os.cpu_count()} shared cores\n\n"
            f"{table}\n\n"
        )
        doc = ROOT / "docs" / "benchmarks.md"
        append_section(doc, "## CPU per message", block)
        print(f"appended to {doc}")


if __name__ == "__main__":
    main()
