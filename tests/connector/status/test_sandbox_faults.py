"""The sandbox's fault endpoint refuses ill-typed values with 400 naming the field (not a later 500)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.sandbox import create_app


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"failNext": "3"}, "failNext"),
        ({"failNext": True}, "failNext"),
        ({"failStatus": 503.5}, "failStatus"),
        ({"batchDisabled": 1}, "batchDisabled"),
        ({"latencySeconds": "slow"}, "latencySeconds"),
    ],
)
async def test_ill_typed_fault_values_are_400_naming_the_field(
    tmp_path: Path, body: dict[str, Any], field: str
) -> None:
    """failNext '3', batchDisabled 1...: 400 invalid_field whose message starts with the field name."""
    transport = httpx.ASGITransport(app=create_app(str(tmp_path / "iwd.db")))
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox.test") as client:
        response = await client.post("/sandbox/faults", json=body)
        assert response.status_code == 400, response.text
        assert response.json()["message"].startswith(f"{field}: must be")
        good = await client.post("/sandbox/faults", json={"failNext": 1, "batchDisabled": True})
    assert good.status_code == 200
