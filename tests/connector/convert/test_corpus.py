# ruff: noqa: E501  (expected message text is data, kept on one line to compare exactly)
"""The corpus: real-world message shapes convert exactly as a person reading them would expect."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from connector.convert import Limits, convert
from connector.models import Address, BounceInfo, EmailItem
from tests.connector.convert import payloads as p

CORPUS = Path(__file__).parent / "corpus"


def load(name: str, **kwargs: Any) -> EmailItem:
    return convert((CORPUS / name).read_bytes(), **kwargs)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tz(hours: int) -> timezone:
    return timezone(timedelta(hours=hours))


def attachments(item: EmailItem) -> list[tuple[str, str, str, int, str | None, bool]]:
    return [(a.filename, a.content_type, a.sha256, a.size, a.content_id, a.inline) for a in item.attachments]


def test_corpus_has_at_least_thirty_messages() -> None:
    """The acceptance corpus holds at least 30 distinct real-world shapes, one file each."""
    assert len(list(CORPUS.glob("*.eml"))) >= 30


def test_outlook_related_html_keeps_inline_cid_image() -> None:
    """Outlook multipart/related: QP text, sanitized HTML with its cid: image kept inline, high importance."""
    item = load("outlook_related_inline_image.eml")
    assert item.subject == "Reklamation Auftrag 4711"
    assert item.sender == Address("anna.schmidt@contoso.de", "Schmidt, Anna")
    assert item.to == (Address("service@example.com", "Kundenservice"),)
    assert item.cc == (Address("joerg.meier@contoso.de", "Meier, Jörg"),)
    assert (
        item.message_id
        == "<AM0PR10MB2345F1C2D3E4A5B6C7D8E9F0A1B2C3D4@AM0PR10MB2345.EURPRD10.PROD.OUTLOOK.COM>"
    )
    assert item.thread_key == item.message_id
    assert item.sent_at == datetime(2024, 3, 5, 9, 14, 22, tzinfo=UTC)
    assert item.importance == "high"
    assert item.language == "de"
    assert item.text_body == (
        "Sehr geehrte Damen und Herren,\n\ndie Lieferung zu Auftrag 4711 kam beschädigt an. Bitte senden Sie "
        "uns Ersatz für die defekten Teile.\n\nMit freundlichen Grüßen\nAnna Schmidt\n"
    )
    assert item.html_body is not None
    assert 'src="cid:image001.png@01DA6F1C.2B3C4D50"' in item.html_body
    assert "<style" not in item.html_body and "MsoNormal" not in item.html_body
    assert attachments(item) == [
        (
            "image001.png",
            "image/png",
            sha(p.LOGO_PNG),
            len(p.LOGO_PNG),
            "image001.png@01DA6F1C.2B3C4D50",
            True,
        )
    ]
    assert item.flags.auto_reply is False and item.flags.bounce is False
    assert item.defects == ()


def test_gmail_reply_keeps_reference_chain_and_thread_root() -> None:
    """Gmail reply: folded References de-duplicated in order; the thread key is the thread root."""
    item = load("gmail_reply_thread.eml")
    assert item.subject == "Re: Re: Frage zu meiner Rechnung"
    assert item.normalized_subject == "Frage zu meiner Rechnung"
    assert item.references == (
        "<CAF=abc123@mail.gmail.com>",
        "<20240305101010.1234@example.com>",
        "<CAF=def456@mail.gmail.com>",
    )
    assert item.in_reply_to == "<CAF=def456@mail.gmail.com>"
    assert item.thread_key == "<CAF=abc123@mail.gmail.com>"
    assert item.sent_at == datetime(2024, 3, 6, 14, 2, 11, tzinfo=tz(1))
    assert item.text_body.startswith("Thanks, that answers my question about the invoice.")
    assert "> Your invoice number is 2024-0815.\n" in item.text_body
    assert item.html_body is not None and 'href="mailto:support@example.com"' in item.html_body
    assert item.language == "en"


def test_provider_thread_hint_wins_over_headers() -> None:
    """A provider thread id (Gmail threadId, Graph conversationId) is the thread key when given."""
    item = load("gmail_reply_thread.eml", thread_hint="18e1f0c2a3b4c5d6")
    assert item.thread_key == "18e1f0c2a3b4c5d6"
    assert item.references[0] == "<CAF=abc123@mail.gmail.com>"


def test_apple_mail_flowed_text_around_inline_photo() -> None:
    """Apple Mail: format=flowed lines are joined, text parts around an inline photo are both kept."""
    item = load("apple_mail_flowed_inline_photo.eml")
    assert item.sender == Address("francois@icloud.com", "François Lefèvre")
    assert item.text_body == (
        "Hello, here is a photo of the part that arrived broken. The crack is on the left side.\n\n"
        "Regards, Francois\n"
    )
    assert attachments(item) == [
        ("IMG_0042.png", "image/png", sha(p.PHOTO_PNG), len(p.PHOTO_PNG), None, True)
    ]


def test_thunderbird_rfc2231_continued_utf8_filenames() -> None:
    """RFC 2231 continuations with a UTF-8 charset give the full original file names."""
    item = load("thunderbird_rfc2231_filename.eml")
    assert item.subject == "Vertrag und Zählerstand"
    assert item.sender == Address("juergen.mueller@posteo.de", "Jürgen Müller")
    assert item.text_body == (
        "Guten Tag,\n\nanbei der unterschriebene Vertrag und mein Zählerstand.\n\nViele Grüße\nJürgen Müller\n"
    )
    docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    assert attachments(item) == [
        ("Vertrag über Stromlieferung – unterschrieben.docx", docx, sha(p.CONTRACT_DOCX), len(p.CONTRACT_DOCX), None, False),
        ("Zählerstand.txt", "text/plain", sha(p.NOTES_TXT), len(p.NOTES_TXT), None, False),
    ]  # fmt: skip


def test_japanese_iso2022jp_subject_sender_and_body() -> None:
    """ISO-2022-JP in encoded words and a 7-bit body decode to Japanese text."""
    item = load("japanese_iso2022jp.eml")
    assert item.subject == "お問い合わせ：注文番号１２３"
    assert item.sender == Address("taro.yamada@example.jp", "山田太郎")
    assert (
        item.text_body
        == "お世話になっております。\n注文した商品がまだ届いていません。\n確認をお願いいたします。\n\n山田太郎\n"
    )
    assert item.sent_at == datetime(2024, 3, 11, 9, 30, tzinfo=tz(9))
    assert item.language == "ja"
    assert item.defects == ()


def test_gb2312_label_decodes_gbk_only_characters() -> None:
    """GB2312 labels are decoded as GB18030, so characters outside GB2312 (喆) survive."""
    item = load("chinese_gb2312_gbk_chars.eml")
    assert item.subject == "关于订单的问题（王喆）"
    assert item.sender == Address("wangzhe@example.cn", "王喆")
    assert item.text_body == "您好：\n我的订单还没有收到，请帮忙查一下物流信息。\n谢谢！\n王喆\n"
    assert item.language == "zh-cn"


def test_koi8r_label_on_cp1251_bytes_is_detected() -> None:
    """A KOI8-R label on cp1251 bytes is caught and the Russian text reads correctly."""
    item = load("russian_koi8r_label_cp1251_bytes.eml")
    assert item.subject == "Где мой заказ?"
    assert item.sender == Address("ivan.petrov@mail.ru", "Иван Петров")
    assert item.text_body == (
        "Здравствуйте!\nПрошу проверить мой заказ номер 5512, он до сих пор не доставлен.\nС уважением,\nИван Петров\n"
    )
    assert item.language == "ru"
    assert any("koi8-r" in d for d in item.defects)


def test_raw_cp1251_headers_use_the_body_charset() -> None:
    """Unencoded 8-bit cp1251 in Subject/From is read with the body's declared charset."""
    item = load("russian_cp1251_raw_8bit_subject.eml")
    assert item.subject == "Возврат товара"
    assert item.sender == Address("olga@yandex.ru", "Ольга")
    assert item.text_body.startswith("Добрый день! Хочу вернуть товар")


def test_latin1_label_reads_cp1252_euro_and_quotes() -> None:
    """iso-8859-1 labels are read as cp1252, so € and typographic quotes are not lost."""
    item = load("latin1_declared_with_cp1252_euro.eml")
    assert item.subject == "Facture à corriger"
    assert (
        item.text_body
        == "Bonjour,\nle montant de 120 € sur la facture n’est pas correct. Merci de vérifier.\nCordialement\n"
    )
    assert item.language == "fr"
    assert item.message_id == "<000001da76f3$8a9b0c10$9fb12430$@orange.fr>"


def test_us_ascii_label_on_utf8_bytes() -> None:
    """8-bit UTF-8 behind a us-ascii label is read as UTF-8 and the mismatch is recorded."""
    item = load("us_ascii_label_utf8_bytes.eml")
    assert item.text_body == "Customer wrote: Señora Muñoz ordered 3× café crème.\n"
    assert item.sent_at == datetime(2024, 3, 16, 12, 0, tzinfo=tz(-5))
    assert item.defects == ("text: declared us-ascii but is UTF-8",)


def test_unlabelled_8bit_latin1_body() -> None:
    """A body with no Content-Type and latin-1 bytes reads as Western text, not mojibake."""
    item = load("no_content_type_8bit_latin1_body.eml")
    assert (
        item.text_body
        == "Grüß Gott, die Waschmaschine schleudert nicht mehr. Können Sie einen Techniker schicken?\n"
    )
    assert item.language == "de"


def test_unknown_charset_label_is_detected() -> None:
    """An unknown charset label falls back to detection and records a defect."""
    item = load("unknown_charset_label.eml")
    assert item.subject == "Pedido urgente"
    assert (
        item.text_body
        == "Olá, o meu pedido ainda não chegou. Poderiam verificar a situação da encomenda, por favor?\n"
    )
    assert item.language == "pt"
    assert "text: unknown charset 'x-unknown', detected" in item.defects


def test_tnef_winmail_dat_is_unpacked() -> None:
    """Outlook's winmail.dat is replaced by the files inside it."""
    item = load("outlook_tnef_winmail.eml")
    assert item.text_body == "Hallo,\nanbei unser Angebot und die Preisliste für Q2.\nGruß\nThomas Becker\n"
    assert attachments(item) == [
        ("Angebot 2024.doc", "application/msword", sha(p.TNEF_DOC), len(p.TNEF_DOC), None, False),
        ("Preise.csv", "text/csv", sha(p.TNEF_CSV), len(p.TNEF_CSV), None, False),
    ]


def test_postfix_dsn_is_a_bounce_with_failed_recipient_and_original_id() -> None:
    """Postfix DSN: only 'Action: failed' recipients count; the returned message's id is found."""
    item = load("dsn_postfix_bounce.eml")
    assert item.flags.bounce is True
    assert item.flags.auto_reply is True  # Auto-Submitted: auto-replied
    assert item.bounce == BounceInfo(("nobody@customer.example",), "<reply-7f3a@example.com>")
    assert item.sender == Address("MAILER-DAEMON@mail.example.com", "Mail Delivery System")
    assert item.text_body.startswith("This is the mail system at host mail.example.com.")
    names = [a.filename for a in item.attachments]
    assert names == ["delivery-status.txt", "Re Your ticket 8812.eml"]
    returned = item.attachments[1]
    assert returned.content_type == "message/rfc822"
    assert b"Message-ID: <reply-7f3a@example.com>" in returned.data


def test_exchange_ndr_bounce_from_rfc822_headers_part() -> None:
    """Exchange NDR: failed recipient from the DSN, original id from text/rfc822-headers."""
    item = load("dsn_exchange_ndr.eml")
    assert item.flags.bounce is True
    assert item.bounce == BounceInfo(("max.mustermann@contoso.com",), "<answer-2024-0320@example.com>")
    assert item.text_body == (
        "Your message to max.mustermann@contoso.com couldn't be delivered.\nmax.mustermann wasn't found at contoso.com.\n"
    )
    assert item.thread_key == "<answer-2024-0320@example.com>"


def test_exim_bounce_with_x_failed_recipients_header() -> None:
    """Exim's plain-text bounce: recipients from X-Failed-Recipients, id from the copied message."""
    item = load("exim_bounce_x_failed_recipients.eml")
    assert item.flags.bounce is True
    assert item.bounce == BounceInfo(
        ("old.customer@legacy.example", "other@legacy.example"), "<ticket-9911-reply@example.com>"
    )


def test_exchange_out_of_office_is_an_auto_reply() -> None:
    """Exchange 'Automatic reply:' with Auto-Submitted is an auto-reply, not a bounce."""
    item = load("oof_exchange_automatic_reply.eml")
    assert item.flags.auto_reply is True
    assert item.flags.bounce is False and item.bounce is None
    assert item.thread_key == "<ticket-7001@example.com>"


def test_german_oof_subject_with_exchange_headers_is_an_auto_reply() -> None:
    """'Abwesenheitsnotiz:' plus Exchange headers marks an auto-reply even without Auto-Submitted."""
    item = load("oof_german_subject_exchange_headers.eml")
    assert item.flags.auto_reply is True
    assert item.text_body.startswith("Ich bin bis zum 5. April nicht im Büro.")


def test_x_auto_response_suppress_alone_is_not_an_auto_reply() -> None:
    """A person's mail with X-Auto-Response-Suppress (and 'Out of office' in the text) is not automatic."""
    item = load("customer_sets_x_auto_response_suppress.eml")
    assert item.flags.auto_reply is False
    assert item.language == "it"


def test_mailing_list_is_an_auto_reply_and_tag_is_normalized_away() -> None:
    """List-Id / Precedence: list mark bulk mail; the [list] tag leaves the normalized subject."""
    item = load("mailing_list_digest.eml")
    assert item.flags.auto_reply is True
    assert item.subject == "[vendor-announce] New firmware 2.4 released"
    assert item.normalized_subject == "New firmware 2.4 released"


def test_forwarded_message_is_kept_as_eml_named_from_its_subject() -> None:
    """A message/rfc822 part becomes one .eml attachment; its own attachments are not spilled."""
    item = load("forward_as_attachment_rfc822.eml")
    assert item.text_body == "Bitte prüfen, die Rechnung ist doppelt.\n"
    assert item.normalized_subject == "Ihre Rechnung 2024-03"
    assert [(a.filename, a.content_type, a.inline) for a in item.attachments] == [
        ("Ihre Rechnung 2024-03.eml", "message/rfc822", False)
    ]
    inner = convert(item.attachments[0].data)
    assert inner.message_id == "<invoice-2024-03@vendor.example>"
    assert attachments(inner) == [
        ("Rechnung-2024-03.pdf", "application/pdf", sha(p.INVOICE_PDF), len(p.INVOICE_PDF), None, False)
    ]


def test_uuencoded_block_becomes_attachment_and_leaves_text() -> None:
    """A uuencoded file in the body is extracted and removed from the text."""
    item = load("uuencoded_attachment_in_body.eml")
    assert "begin 644" not in item.text_body and "\nend" not in item.text_body
    assert item.text_body.startswith("Nightly export attached.\n")
    assert item.text_body.endswith("-- \nfactory batch\n")
    assert attachments(item) == [
        ("export.bin", "application/octet-stream", sha(p.UU_BINARY), len(p.UU_BINARY), None, False)
    ]


def test_missing_message_id_is_synthesized_from_the_raw_hash() -> None:
    """No Message-ID: a stable id from the raw sha256; no Date: sent_at is None."""
    raw = (CORPUS / "missing_message_id_and_date.eml").read_bytes()
    item = convert(raw)
    digest = hashlib.sha256(raw).hexdigest()
    assert item.raw_sha256 == digest
    assert item.message_id == f"<{digest[:32]}@iwd-email-connector.invalid>"
    assert item.thread_key == item.message_id
    assert item.sent_at is None
    assert convert(raw).message_id == item.message_id
    assert any("Message-ID" in d for d in item.defects)


def test_boundary_mismatch_is_recovered() -> None:
    """A multipart whose declared boundary never occurs is re-read with the boundary the body uses."""
    item = load("broken_boundary_mismatch.eml")
    assert item.text_body == "I cannot log in to my account since yesterday.\n"
    assert any("boundary" in d for d in item.defects)


def test_missing_closing_boundary_keeps_the_attachment() -> None:
    """A truncated multipart without its closing boundary still yields text and attachment."""
    item = load("missing_closing_boundary.eml")
    assert item.text_body == "Please find the invoice attached.\n"
    assert attachments(item) == [
        ("invoice.pdf", "application/pdf", sha(p.INVOICE_PDF), len(p.INVOICE_PDF), None, False)
    ]
    assert "mime: CloseBoundaryNotFoundDefect" in item.defects


def test_raw_utf8_headers() -> None:
    """Unencoded UTF-8 in headers (common from modern MTAs) decodes directly."""
    item = load("raw_utf8_headers.eml")
    assert item.subject == "Problema con la facturación – urgente"
    assert item.sender == Address("jose.ramirez@example.es", "José Ramírez")
    assert item.to == (Address("support@example.com", "Soporte Técnico"),)
    assert item.language == "es"


def test_encoded_words_split_inside_multibyte_characters() -> None:
    """Adjacent encoded words are joined before decoding, so split UTF-8 sequences survive."""
    item = load("malformed_encoded_words.eml")
    assert item.subject == "日本語のメール and Grüße"
    assert item.sender == Address("bjoern@example.de", "Björn Schäfer")


def test_groups_garbage_and_encoded_commas_in_addresses() -> None:
    """Groups are flattened, garbage dropped, an encoded comma does not split an address."""
    item = load("garbage_and_group_addresses.eml")
    assert item.sender == Address("sender@example.org", "Broken Sender")
    assert item.to == ()
    assert item.cc == (
        Address("alice@example.org"),
        Address("bob@example.org", "Bob B."),
        Address("hans@example.de", "Müller, Hans"),
    )
    assert item.reply_to == (Address("replies@example.org"),)


def test_hostile_html_is_sanitized_and_text_derived() -> None:
    """Scripts, handlers, javascript: links, iframes, forms and CSS url() are removed; text is derived."""
    item = load("html_only_hostile.eml")
    html = item.html_body
    assert html is not None
    for bad in (
        "<script",
        "steal(",
        "onload",
        "onerror",
        "javascript:",
        "<iframe",
        "<form",
        "<input",
        "url(",
        "<style",
    ):
        assert bad not in html, bad
    assert 'href="https://example.com/account"' in html
    assert item.text_body == (
        "Dear customer,\n\nPlease verify your details at our site <https://example.com/account>.\n\nThanks\nYour Bank\n"
    )


def test_base64_with_junk_and_missing_padding() -> None:
    """Base64 with stray characters and no padding still decodes."""
    item = load("base64_with_junk.eml")
    assert item.text_body == "Device 17 reports: temperature too high (81 °C).\n"


def test_attachment_names_decoded_and_made_safe() -> None:
    """RFC 2047 inside name=, path traversal stripped, a nameless part gets a typed fallback name."""
    item = load("outlook_rfc2047_in_name_and_unsafe_names.eml")
    xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert attachments(item) == [
        ("Übersicht Kosten.xlsx", xlsx, sha(p.REPORT_XLSX), len(p.REPORT_XLSX), None, False),
        ("evil.pdf", "application/pdf", sha(p.INVOICE_PDF), len(p.INVOICE_PDF), None, False),
        ("attachment-3.png", "image/png", sha(p.LOGO_PNG), len(p.LOGO_PNG), None, False),
    ]


def test_invalid_date_is_none_with_defect_and_low_priority() -> None:
    """An unparseable Date gives sent_at None plus a defect; X-Priority 5 is low."""
    item = load("invalid_date_low_priority.eml")
    assert item.sent_at is None
    assert any(d.startswith("invalid Date header") for d in item.defects)
    assert item.importance == "low"


def test_priority_urgent_is_high() -> None:
    """RFC 2156 'Priority: urgent' maps to high importance."""
    assert load("urgent_priority_header.eml").importance == "high"


def test_subject_prefix_soup_normalizes() -> None:
    """Mixed-language reply/forward prefixes and gateway tags are stripped; the original is kept."""
    item = load("subject_prefix_soup.eml")
    assert item.subject == "RE: AW: [EXTERNAL] WG: [Ticket#4711] Rechnung falsch"
    assert item.normalized_subject == "Rechnung falsch"
    assert item.thread_key == "<ticket-4711-3@example.com>"


def test_calendar_part_in_alternative_is_an_attachment() -> None:
    """A text/calendar alternative becomes an .ics attachment next to the plain text."""
    item = load("calendar_invite_alternative.eml")
    assert item.text_body == "You are invited to a service visit on March 15.\n"
    assert attachments(item) == [
        ("attachment-1.ics", "text/calendar", sha(p.ICS_INVITE), len(p.ICS_INVITE), None, False)
    ]


def test_smime_signature_is_an_attachment() -> None:
    """multipart/signed: the signed text is the body and smime.p7s is kept."""
    item = load("smime_signed.eml")
    assert item.text_body == "Your statement is available online.\n"
    assert attachments(item) == [
        ("smime.p7s", "application/pkcs7-signature", sha(p.SMIME_SIG), len(p.SMIME_SIG), None, False)
    ]


def test_mbox_from_line_and_lf_line_ends() -> None:
    """An mbox 'From ' line and bare LF line ends (Maildir copies) parse normally."""
    item = load("mbox_from_line_lf_only.eml")
    assert item.subject == "Maildir copy with LF line ends"
    assert item.sender == Address("sender@example.net", "Sender")
    assert item.text_body == "Line one.\nLine two.\n"


def test_short_encoded_word_in_unknown_charset_reads_as_western() -> None:
    """`=?x-bogus-cs?Q?caf=E9?=` is café, not the CJK a detector guesses from four bytes."""
    item = load("short_subject_unknown_charset.eml")
    assert item.subject == "café"
    assert item.defects == ("subject: unknown charset 'x-bogus-cs', guessed",)


def test_short_body_in_unknown_charset_reads_as_western() -> None:
    """A body `caf\\xe9` declared `x-no-such-charset` (and nothing else declared) is café."""
    item = load("short_body_unknown_charset.eml")
    assert item.text_body == "café\n"
    assert item.defects == ("text: unknown charset 'x-no-such-charset', guessed",)


def test_short_raw_8bit_subject_without_any_charset_reads_as_western() -> None:
    """A raw 8-bit subject `\\xe9\\xe8\\xff` in a message declaring no charset reads as cp1252."""
    item = load("short_raw_8bit_subject_no_charset.eml")
    assert item.subject == "éèÿ"


def test_short_unknown_8bit_words_use_the_body_charset() -> None:
    """`unknown-8bit` words in Subject and From are read in the body's declared windows-1251."""
    item = load("short_unknown_8bit_word_cp1251_body.eml")
    assert item.subject == "Счёт"
    assert item.sender == Address("petr@mail.ru", "Пётр")
    assert item.language == "ru"


def test_short_display_name_in_unknown_charset_uses_the_body_charset() -> None:
    """A display name and subject in an unknown charset follow the body's iso-8859-1."""
    item = load("short_name_unknown_charset_latin1_body.eml")
    assert item.sender == Address("jose.garcia@example.es", "José García")
    assert item.subject == "Pedido nº 77"
    assert item.text_body == "¿Dónde está mi pedido? Lo pagué hace dos semanas.\n"


def test_short_latin1_bytes_behind_a_utf8_label_read_as_western() -> None:
    """`Gr\\xfc\\xdfe` labelled UTF-8 (body) and raw in the subject both read Grüße."""
    item = load("short_utf8_label_latin1_bytes.eml")
    assert item.subject == "Grüße"
    assert item.text_body == "Grüße\n"
    assert "text: not valid utf-8, guessed" in item.defects


def test_short_unlabelled_part_uses_the_charset_of_its_sibling() -> None:
    """An unlabelled text part and raw subject follow the iso-8859-2 its HTML sibling declares."""
    item = load("short_raw_subject_charset_from_html_part.eml")
    assert item.subject == "Zamówienie"
    assert item.text_body == "Dziękuję!\n"
    assert item.html_body is not None and "Dziękuję!" in item.html_body


def test_address_as_display_name_leaves_the_angle_address_as_sender() -> None:
    """`From: alice@example.com <bob@example.com>` is sent by bob, with alice's address as his name."""
    item = load("outlook_address_as_display_name.eml")
    assert item.sender == Address("bob@example.com", "alice@example.com")
    assert item.to == (Address("support@example.com"),)
    assert item.defects == ()


def test_truncated_and_quoted_address_like_names_keep_one_address_each() -> None:
    """A truncated address as name, a single-quoted one and one glued to `<` each give one recipient."""
    item = load("truncated_address_display_name.eml")
    assert item.sender == Address("john.smith@contoso.com", "j.smith@contoso.c")
    assert item.cc == (
        Address("kim.lee@contoso.com", "kim@contoso.com"),
        Address("sales-team@contoso.com", "sales@contoso.com"),
    )


def test_encoded_address_like_name_and_reply_to_use_the_angle_address() -> None:
    """An RFC 2047 name that is an address, and a Reply-To of the same shape, name the real mailboxes."""
    item = load("address_display_name_with_reply_to_and_encoded_name.eml")
    assert item.sender == Address("hans.mueller@example.de", "müller@example.de")
    assert item.reply_to == (Address("rechnungen@example.de", "billing@example.de"),)


def test_reply_goes_to_the_angle_address_of_an_address_like_display_name() -> None:
    """The outbox's reply target for such a message is the angle-bracket address, never the name."""
    from connector.outbox.autoack import reply_target

    target = reply_target(load("outlook_address_as_display_name.eml"))
    assert target is not None and target.address == "bob@example.com"
    target = reply_target(load("address_display_name_with_reply_to_and_encoded_name.eml"))
    assert target is not None and target.address == "rechnungen@example.de"


def test_exchange_header_folded_without_whitespace_keeps_headers_and_html() -> None:
    """An X-Microsoft-Antispam value continued on unindented lines no longer ends the header block."""
    item = load("exchange_unfolded_antispam_header_multipart.eml")
    assert item.subject == "Broken delivery, order 9913"
    assert item.sender == Address("petra.novak@contoso.cz", "Novak, Petra")
    assert item.message_id == "<DB9PR10MB5678A1B2C3D4E5F6@DB9PR10MB5678.EURPRD10.PROD.OUTLOOK.COM>"
    assert item.text_body == (
        "Hello,\n\nthe parcel for order 9913 arrived crushed. Please send a replacement.\n\nPetra Novák\n"
    )
    assert item.html_body is not None and "<b>crushed</b>" in item.html_body
    assert item.defects == ("2 header lines folded without leading whitespace; joined to the field above",)


def test_exchange_unindented_fold_before_from_keeps_the_attachment() -> None:
    """Unindented continuations in two X-MS headers above From: the sender, body and PDF all survive."""
    item = load("exchange_unfolded_header_before_from_with_attachment.eml")
    assert item.subject == "Invoice attached"
    assert item.sender == Address("tomas.berg@contoso.se", "Tomas Berg")
    assert item.text_body == "Hi, the invoice for April is attached.\n"
    assert attachments(item) == [
        ("invoice-april.pdf", "application/pdf", sha(p.INVOICE_PDF), len(p.INVOICE_PDF), None, False)
    ]


def test_exchange_unindented_fold_in_lf_only_copy() -> None:
    """The same repair works on an LF-only (Maildir) copy with encoded-word continuation lines."""
    item = load("exchange_unfolded_header_lf_only.eml")
    assert item.subject == "Rückruf erbeten"
    assert item.sender == Address("lena.fischer@contoso.de", "Lena Fischer")
    assert item.text_body == "Bitte rufen Sie mich zurück.\n"
    assert item.html_body is not None and "Bitte rufen Sie mich zurück." in item.html_body


def test_sixty_levels_of_nesting_keep_text_html_and_every_attachment() -> None:
    """A 60-level ticket loop is a normal item: top note, inner text and HTML, the photo and the PDF."""
    item = load("deep_nested_forward_chain_60_levels.eml")
    assert item.flags.unparseable is False
    assert item.subject == "Re: Re: Re: [#4471] Heating broken"
    assert item.text_body == (
        "Forwarded by the ticket system, see below.\n\nThe heating in flat 4B has been off since Monday.\n"
    )
    assert item.html_body is not None and "<b>Monday</b>" in item.html_body
    assert attachments(item) == [
        ("meter-reading.pdf", "application/pdf", sha(p.INVOICE_PDF), len(p.INVOICE_PDF), None, False),
        ("radiator.png", "image/png", sha(p.PHOTO_PNG), len(p.PHOTO_PNG), None, False),
    ]
    assert item.defects == ("MIME nesting deeper than 12 levels; the parts below were flattened",)


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.eml")))
def test_every_corpus_message_has_consistent_basics(name: str) -> None:
    """Every corpus message: size and hash of the raw bytes, an id, a thread key, no lost attachment hash."""
    raw = (CORPUS / name).read_bytes()
    item = convert(raw)
    assert item.size == len(raw)
    assert item.raw_sha256 == hashlib.sha256(raw).hexdigest()
    assert item.message_id.startswith("<") and item.message_id.endswith(">")
    assert item.thread_key
    assert item.importance in ("low", "normal", "high")
    for attachment in item.attachments:
        assert attachment.sha256 == sha(attachment.data)
        assert "/" not in attachment.filename and "\\" not in attachment.filename
        assert not attachment.filename.startswith(".")
    assert item.sent_at is None or item.sent_at.tzinfo is not None


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.eml")))
def test_cutting_base64_runs_before_parsing_changes_nothing(name: str) -> None:
    """The large-message path (base64 runs decoded outside the parser) gives the same item as the normal path."""
    raw = (CORPUS / name).read_bytes()
    cut = convert(raw, limits=Limits(min_blob_bytes=120))
    assert cut == convert(raw, limits=Limits(min_blob_bytes=10**9))
