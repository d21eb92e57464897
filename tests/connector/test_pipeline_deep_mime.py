"""Deeply nested MIME through the pipeline: one cycle, a normal item, nothing quarantined (#12 item 6)."""

from __future__ import annotations

import os
from pathlib import Path

from connector.iwd import IWDClient
from connector.store.types import Store
from connector.sync.pipeline import MailboxSync
from providers.maildir import MaildirInboundProvider, deliver_to_maildir
from tests.conftest import maildir_mailbox

DEEP = Path(__file__).parent / "convert" / "corpus" / "deep_nested_forward_chain_60_levels.eml"


async def test_sixty_levels_deep_message_is_delivered_on_the_first_cycle(
    tmp_path: Path, store: Store, iwd: IWDClient
) -> None:
    """A 60-level nest arrives in IWD on the first cycle as a readable item with both files."""
    deliver_to_maildir(tmp_path, DEEP.read_bytes(), "m0001")
    box = maildir_mailbox(tmp_path)
    report = await MailboxSync(box, MaildirInboundProvider(box), store, iwd).run_cycle()

    assert (report.delivered, report.quarantined) == (1, 0)
    assert await store.quarantine_count("mb-1") == 0
    (item,) = [i async for i in iwd.iter_emails(mailbox_id="mb-1")]
    assert item["flags"]["unparseable"] is False
    assert "The heating in flat 4B has been off since Monday." in item["textBody"]
    assert sorted(a["filename"] for a in item["attachments"]) == ["meter-reading.pdf", "radiator.png"]
    assert "MIME nesting deeper than 12 levels; the parts below were flattened" in item["defects"]
    assert os.listdir(tmp_path / "new") == []
