"""The systemd unit for VM installs (deploy/systemd/email-connector.service)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.deploy.conftest import ROOT, tool

UNIT = ROOT / "deploy" / "systemd" / "email-connector.service"
INSTALLED = "/opt/email-connector/bin/email-connector"


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit without a warning (an unknown key would be one)."""
    analyze = tool("systemd-analyze")
    daemon = Path(sys.prefix) / "bin" / "email-connector"  # verify checks ExecStart is executable
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text(encoding="utf-8").replace(INSTALLED, str(daemon)), encoding="utf-8")
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_unit_runs_hardened_keeps_state_and_reloads_on_sighup() -> None:
    """The unit runs as a dynamic user with a read-only system, a StateDirectory, and SIGHUP as reload."""
    unit = directives()
    assert unit["ExecStart"] == [f"{INSTALLED} run -c /etc/email-connector/connector.yaml"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    for key, value in {
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "StateDirectory": "email-connector",
        "WorkingDirectory": "/var/lib/email-connector",
        "KillSignal": "SIGTERM",
        "RestartPreventExitStatus": "2",
        "CapabilityBoundingSet": "",
    }.items():
        assert unit[key] == [value], key
