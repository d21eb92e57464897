"""Known attachment bytes used to build the corpus; tests hash these, never the converter's output."""

from __future__ import annotations

import base64
import binascii
import struct
import zlib


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width
    raw = row * height
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


LOGO_PNG = _png(4, 3, (0, 102, 204))
PHOTO_PNG = _png(5, 5, (200, 30, 30))
INVOICE_PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"  # noqa: E501
CONTRACT_DOCX = b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)) + b"word/document.xml"
REPORT_XLSX = b"PK\x03\x04\x14\x00\x08\x08" + b"xl/workbook.xml" + bytes(reversed(range(256)))
NOTES_TXT = "Zählerstand: 4711 kWh\nAblesedatum: 01.03.2024\n".encode()
TNEF_DOC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"legacy word document" * 20
TNEF_CSV = b"id;amount\r\n1;10,50\r\n2;99,00\r\n"
UU_BINARY = bytes(range(256)) * 2 + b"tail"
SMIME_SIG = b"0\x82\x01\x00\x06\t*\x86H\x86\xf7\r\x01\x07\x02" + bytes(64)
ICS_INVITE = (
    b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nSUMMARY:Service visit\r\n"
    b"DTSTART:20240315T090000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


def b64(data: bytes, width: int = 76) -> str:
    text = base64.b64encode(data).decode("ascii")
    return "\r\n".join(text[i : i + width] for i in range(0, len(text), width))


def uuencode(data: bytes, name: str) -> str:
    lines = [f"begin 644 {name}"]
    for i in range(0, len(data), 45):
        lines.append(binascii.b2a_uu(data[i : i + 45]).decode("ascii").rstrip("\n"))
    lines += ["`", "end"]
    return "\r\n".join(lines)


def tnef(files: list[tuple[str, bytes]]) -> bytes:
    """A minimal TNEF stream (as Outlook writes winmail.dat) carrying `files`."""

    def obj(level: int, attr_id: int, data: bytes) -> bytes:
        checksum = sum(data) & 0xFFFF
        return struct.pack("<BII", level, attr_id, len(data)) + data + struct.pack("<H", checksum)

    out = struct.pack("<IH", 0x223E9F78, 0x0001)
    out += obj(1, 0x00089006, struct.pack("<I", 0x00010000))  # attTnefVersion
    out += obj(1, 0x00069007, struct.pack("<II", 1252, 0))  # attOemCodepage
    out += obj(1, 0x00078008, b"IPM.Microsoft Mail.Note\x00")  # attMessageClass
    for name, data in files:
        out += obj(2, 0x00069002, b"\x01\x00\xff\xff\xff\xff" + b"\x00" * 8)  # attAttachRendData
        out += obj(2, 0x00018010, name.encode("cp1252") + b"\x00")  # attAttachTitle
        out += obj(2, 0x0006800F, data)  # attAttachData
    return out
