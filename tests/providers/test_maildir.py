"""Maildir provider: reads without marking, post-actions are real file moves and idempotent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from connector.config import MailboxSettings
from connector.errors import FolderMissing
from connector.models import PostAction
from providers.maildir import MaildirInboundProvider, deliver_to_maildir
from tests.mailfactory import make_message


def _box(root: Path, **extra: object) -> MailboxSettings:
    return MailboxSettings.model_validate(
        {
            "id": "mb",
            "address": "mb@example.com",
            "provider": "maildir",
            "maildir": {"path": str(root)},
            **extra,
        }
    )


async def test_fetch_reads_new_and_cur_without_touching_files(tmp_path: Path) -> None:
    """Fetching leaves every file where the MTA put it."""
    deliver_to_maildir(tmp_path, make_message(1), "a1")
    deliver_to_maildir(tmp_path, make_message(2), "a2")
    before = sorted(os.listdir(tmp_path / "new"))
    result = await MaildirInboundProvider(_box(tmp_path)).fetch("INBOX", None, 100)
    assert sorted(m.provider_id for m in result.messages) == ["a1", "a2"]
    assert sorted(os.listdir(tmp_path / "new")) == before
    assert result.messages[0].raw.startswith(b"From: Customer")


@pytest.mark.parametrize(
    ("action", "where"),
    [("mark_read", "cur/a1:2,S"), ("move:Done", ".Done/cur/a1:2,S"), ("delete", None)],
)
async def test_post_action_moves_the_file_and_repeating_it_is_harmless(
    tmp_path: Path, action: str, where: str | None
) -> None:
    """mark_read → cur/ with S; move → other folder; delete → gone; a second call is a no-op."""
    deliver_to_maildir(tmp_path, make_message(1), "a1")
    provider = MaildirInboundProvider(_box(tmp_path))
    (message,) = (await provider.fetch("INBOX", None, 10)).messages
    await provider.apply_post_action(message, PostAction.parse(action))
    await provider.apply_post_action(message, PostAction.parse(action))
    assert os.listdir(tmp_path / "new") == []
    if where is None:
        assert os.listdir(tmp_path / "cur") == []
    else:
        assert (tmp_path / where).read_bytes() == make_message(1)


async def test_oversize_message_yields_headers_only(tmp_path: Path) -> None:
    """A message above max_message_bytes is handed over as its header block with the real size."""
    big = make_message(1, body="x" * 5000 + "\n")
    deliver_to_maildir(tmp_path, big, "big")
    (message,) = (
        await MaildirInboundProvider(_box(tmp_path, max_message_bytes=1024)).fetch("INBOX", None, 10)
    ).messages
    assert message.headers_only and message.size == len(big)
    assert b"Subject: Question number 1" in message.raw and b"xxxx" not in message.raw


async def test_missing_folder_is_reported_by_name(tmp_path: Path) -> None:
    with pytest.raises(FolderMissing) as info:
        await MaildirInboundProvider(_box(tmp_path)).fetch("Nope", None, 10)
    assert "folder=Nope" in str(info.value)
