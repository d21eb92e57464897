"""The IWD side: the email API profile (names and shapes), its HTTP client and retry policy."""

from connector.iwd.client import (
    CreateResult,
    DownloadedAttachment,
    IWDClient,
    decode_filename,
    encode_filename,
    is_payload_fault,
)
from connector.iwd.profile import build_email_payload
from connector.iwd.retry import RetryPolicy

__all__ = [
    "CreateResult",
    "DownloadedAttachment",
    "IWDClient",
    "RetryPolicy",
    "build_email_payload",
    "decode_filename",
    "encode_filename",
    "is_payload_fault",
]
