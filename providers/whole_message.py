"""What an API sender (Gmail, Graph) hands over: the whole message, its recipients in its headers.

Unlike SMTP, these APIs take recipients from the headers, and take or refuse the message as a
whole. Recipients that no To/Cc header names (Bcc) are added as a `Bcc:` header, which the API
keeps only in its Sent copy. An address in To/Cc that is not a recipient of this attempt already
received the reply (an earlier, partly accepted attempt); the API cannot leave it out, so the send
is refused rather than duplicated for that person.
"""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.utils import getaddresses

from connector.errors import SendRejected
from connector.models import RecipientResult


def mime_for_api(message: EmailMessage, recipients: list[str], api: str) -> bytes:
    """The message as composed, with a Bcc header for recipients the headers do not name."""
    raw = message.as_bytes(policy=policy.SMTP)
    fields = [str(v) for name in ("To", "Cc", "Bcc") for v in message.get_all(name, [])]
    listed = {address.casefold() for _, address in getaddresses(fields) if address}
    wanted = {r.casefold() for r in recipients}
    already = sorted(listed - wanted)
    if already:
        raise SendRejected(
            f"{api} sends to every address in the message's To/Cc, and {', '.join(already)} already "
            "received this reply; sending again would duplicate it (send a new reply to the "
            "remaining recipients)"
        )
    blind = [r for r in recipients if r.casefold() not in listed]
    if not blind:
        return raw
    header = EmailMessage(policy=policy.SMTP)
    header["Bcc"] = ", ".join(blind)
    return header.as_bytes().split(b"\r\n\r\n", 1)[0] + b"\r\n" + raw


def unconfirmed(recipients: list[str]) -> tuple[RecipientResult, ...]:
    """Nobody confirmed these got it: not accepted, no code, so a resend does send to them."""
    return tuple(RecipientResult(r, False, None, "delivery uncertain") for r in recipients)
