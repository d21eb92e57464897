"""create_emails never returns fewer results than payloads (a gap would shift results onto wrong items)."""

from __future__ import annotations

from typing import Any

import pytest

from connector.errors import IWDUnavailable
from connector.iwd import IWDClient


async def test_an_unfilled_result_slot_raises_instead_of_shortening_the_list(
    iwd: IWDClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If a create path leaves a slot empty, create_emails raises IWDUnavailable naming the item."""
    iwd.batch_supported = False

    async def fills_nothing(*_: Any) -> None:
        return None

    monkeypatch.setattr(iwd, "_create_each", fills_nothing)
    with pytest.raises(IWDUnavailable, match=r"no result for item\(s\) \[0\]"):
        await iwd.create_emails([{"externalId": "x-1"}])
