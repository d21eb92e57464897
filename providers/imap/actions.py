"""Post-actions on one message, run only after the ledger commit: mark read, move, delete.

All are idempotent: a UID that is gone is a no-op on the server, and a message whose
UIDVALIDITY no longer matches its folder is left alone (its UID now names nothing, or another
message). Move targets may be given by name or by SPECIAL-USE attribute (`\\Archive`); a name
that does not exist falls back to the folder carrying the same-named attribute (`Sent` finds
"Sent Items" flagged \\Sent).
"""

from __future__ import annotations

from collections.abc import Sequence

from connector.errors import FolderMissing
from connector.models import PostAction, PostActionKind, RawMessage
from providers.imap.connection import ImapSession
from providers.imap.cursor import UidCursor, uid_set
from providers.imap.utf7 import quote_folder


async def resolve_folder(session: ImapSession, target: str) -> str:
    """The server folder a configured move target means; FolderMissing when none fits."""
    folders = await session.list_folders()
    if not target.startswith("\\"):
        for info in folders:
            if info.name == target or (target.upper() == "INBOX" and info.name.upper() == "INBOX"):
                return info.name
    attribute = ("\\" + target.lstrip("\\")).lower()
    for info in folders:
        if attribute in info.attributes:
            return info.name
    raise FolderMissing(
        f"move target not found by name or special-use attribute: {target}",
        mailbox=session.mailbox_id,
        folder=target,
    )


async def apply_action(session: ImapSession, message: RawMessage, action: PostAction) -> None:
    """Performs `action` on the message named by `message.provider_id` ("UIDVALIDITY:UID")."""
    await apply_actions(session, message.folder, [message], action)


async def apply_actions(
    session: ImapSession, folder: str, messages: Sequence[RawMessage], action: PostAction
) -> None:
    """One command per action for a whole batch of one folder (a UID set, not a round trip each)."""
    if action.kind is PostActionKind.NONE or not messages:
        return
    idents = [i for i in (UidCursor.parse(m.provider_id) for m in messages) if i is not None]
    if not idents:
        return
    selected = await session.select(folder)
    uids = sorted({i.uid for i in idents if i.validity == selected.uidvalidity})
    if not uids:
        return  # every UID belongs to an older UIDVALIDITY: nothing on the server is ours to touch
    uid = uid_set(uids)
    pid = messages[0].provider_id if len(messages) == 1 else f"{len(uids)} messages"
    client = session.client
    if action.kind is PostActionKind.MARK_READ:
        await session.ok(
            client.uid("store", uid, "+FLAGS.SILENT", "(\\Seen)"), "UID STORE", folder=folder, uid=pid
        )
        return
    if action.kind is PostActionKind.MOVE:
        assert action.target is not None
        target = await resolve_folder(session, action.target)
        if target == folder:
            return
        if "MOVE" in session.capabilities:
            await session.ok(
                client.uid("move", uid, quote_folder(target)), "UID MOVE", folder=folder, uid=pid
            )
            return
        await session.ok(client.uid("copy", uid, quote_folder(target)), "UID COPY", folder=folder, uid=pid)
    await session.ok(
        client.uid("store", uid, "+FLAGS.SILENT", "(\\Deleted)"), "UID STORE", folder=folder, uid=pid
    )
    if "UIDPLUS" in session.capabilities:
        await session.ok(client.uid("expunge", uid), "UID EXPUNGE", folder=folder, uid=pid)
    # Without UIDPLUS a plain EXPUNGE would also remove messages others flagged \Deleted: leave it.
