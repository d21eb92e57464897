"""An inbound provider built from a list of raw messages, for the pipeline's unit tests."""

from __future__ import annotations

from connector.models import FetchResult, PostAction, RawMessage


class FakeInboundProvider:
    """Cursor = index of the next message; post-actions are recorded, not performed."""

    def __init__(self, messages: dict[str, list[bytes]]) -> None:
        self.folders = messages
        self.actions: list[tuple[str, str, str]] = []

    async def fetch(self, folder: str, cursor: str | None, limit: int) -> FetchResult:
        raws = self.folders.get(folder, [])
        start = int(cursor or 0)
        chunk = raws[start : start + limit]
        messages = [
            RawMessage(
                folder=folder, provider_id=str(start + i), raw=raw, size=len(raw), cursor=str(start + i + 1)
            )
            for i, raw in enumerate(chunk)
        ]
        end = start + len(chunk)
        return FetchResult(messages=messages, cursor=str(end), more=end < len(raws))

    async def apply_post_action(self, message: RawMessage, action: PostAction) -> None:
        self.actions.append((message.folder, message.provider_id, str(action)))

    async def close(self) -> None:
        return None
