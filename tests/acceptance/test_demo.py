"""The README's first command: `email-connector demo` delivers the shipped samples as items."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "connector" / "samples").glob("*.eml"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_once_delivers_every_sample_exactly_once_even_when_rerun(tmp_path: Path) -> None:
    """Two runs of the demo: the samples are items once, listed in the output, none twice."""
    command = [sys.executable, "-m", "connector", "demo", "--once", "--dir", str(tmp_path), "--port"]
    first = subprocess.run([*command, str(_free_port())], capture_output=True, text=True, timeout=120)
    second = subprocess.run([*command, str(_free_port())], capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert f"{len(SAMPLES)} items in the sandbox IWD" in first.stdout
    assert f"{len(SAMPLES)} items in the sandbox IWD" in second.stdout
    assert "5 samples added" in first.stdout and "0 samples added" in second.stdout
    assert "/admin" not in first.stdout  # --once has exited by then: no address nothing serves
    assert (tmp_path / "demo.env").read_text() == "export DEMO_IWD_API_KEY=sandbox-key\n"
    assert not any((tmp_path / "Maildir" / "new").iterdir())
    assert sorted(p.name for p in (tmp_path / "Maildir" / "cur").iterdir()) == [
        f"demo-{s.stem}:2,S" for s in SAMPLES
    ]
