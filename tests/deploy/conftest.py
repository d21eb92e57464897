"""Tools for the deployment tests: Helm (fetched by scripts/deploy-check --install into .tools/),
kubernetes-validate and hadolint (PyPI, in the venv). scripts/test installs them; under CI a
missing tool fails the test instead of skipping it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "iwd-email-connector"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
K8S_VERSION = "1.30.0"


def tool(name: str, *candidates: Path) -> str:
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed: run scripts/deploy-check --install (as root for apt)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def helm() -> str:
    return tool("helm", ROOT / ".tools" / "helm" / "helm")


@pytest.fixture(scope="session")
def kubernetes_validate() -> str:
    return tool("kubernetes-validate", Path(sys.prefix) / "bin" / "kubernetes-validate")


@pytest.fixture(scope="session")
def hadolint() -> str:
    return tool("hadolint", Path(sys.prefix) / "bin" / "hadolint")


Render = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def render(helm: str, tmp_path: Path) -> Render:
    """`helm template` of the chart with values files and/or a values dict; never raises."""

    def run(*values_files: Path, values: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
        args = [helm, "template", "email", str(CHART), "--namespace", "iwd"]
        for path in values_files:
            args += ["-f", str(path)]
        if values is not None:
            extra = tmp_path / f"values-{len(list(tmp_path.iterdir()))}.yaml"
            extra.write_text(yaml.safe_dump(values), encoding="utf-8")
            args += ["-f", str(extra)]
        return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)

    return run


def manifests(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} rendered"
    return found[0]
