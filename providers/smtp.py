"""SMTP submission with aiosmtplib: the OutboundSender for every mailbox with an `smtp:` block.

One connection per mailbox, reused (checked with NOOP, reopened when dropped). Certificates are
verified unless a person set `verify_tls: false`; plaintext only to loopback or with
`allow_insecure`. The transaction is driven step by step (MAIL, one RCPT per recipient, DATA)
so each recipient's answer is kept, and so we know whether the message body had been written
when a connection failed: before that nothing can have been delivered (SendDeferred), after it
the server may have accepted it (SendUncertain, never resent blindly). Every aiosmtplib, ssl
and OS error leaves this module as a `connector.errors` class, with context and no secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from email import policy
from email.message import EmailMessage
from typing import Any

import aiosmtplib

from connector.config import MailboxSettings, SmtpSettings
from connector.endpoints import is_loopback
from connector.errors import AuthFailed, ConfigError, SendDeferred, SendRejected, SendUncertain
from connector.models import RecipientResult, SendReceipt
from providers.oauth import TokenProvider, build_token_provider

NOOP_TIMEOUT_SECONDS = 5.0
BeforeData = Callable[[], Awaitable[None]]


def refuse_insecure(settings: SmtpSettings, mailbox_id: str) -> None:
    if settings.security == "plain" and not settings.allow_insecure and not is_loopback(settings.host):
        raise ConfigError(
            [
                f"mailboxes[{mailbox_id}].smtp.security: plain (unencrypted) SMTP to {settings.host} is "
                "refused; use tls (465) or starttls (587), or set allow_insecure: true"
            ]
        )


def smtp_tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    try:
        ctx = (
            ssl.create_default_context(cafile=settings.ca_file)
            if settings.ca_file
            else ssl.create_default_context()
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"smtp.ca_file: cannot load CA file {settings.ca_file}: {exc}"]) from None
    if not settings.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _text(exc: BaseException | aiosmtplib.SMTPResponse) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(message).split())[:300]


def _is_temporary(code: int | None) -> bool:
    return code is None or 400 <= code < 500


class SmtpSender:
    """OutboundSender for one mailbox. Not for concurrent use by design: sends are serialized."""

    def __init__(self, mailbox: MailboxSettings, *, tokens: TokenProvider | None = None) -> None:
        if mailbox.smtp is None:
            raise ConfigError([f"mailboxes[{mailbox.id}]: replies need an 'smtp:' block"])
        self.mailbox_id = mailbox.id
        self.settings = mailbox.smtp
        refuse_insecure(self.settings, mailbox.id)
        if self.settings.auth == "xoauth2" and tokens is None:
            if self.settings.oauth is None:
                raise ConfigError([f"mailboxes[{mailbox.id}].smtp.oauth: is required when auth is xoauth2"])
            tokens = build_token_provider(self.settings.oauth)
        self._tokens = tokens
        self._ctx = smtp_tls_context(self.settings) if self.settings.security != "plain" else None
        self._client: aiosmtplib.SMTP | None = None
        self._lock = asyncio.Lock()
        self.connections_opened = 0

    def __repr__(self) -> str:
        return f"SmtpSender(mailbox={self.mailbox_id!r}, host={self.settings.host!r})"

    def _where(self, **extra: Any) -> dict[str, Any]:
        return {"mailbox": self.mailbox_id, "server": f"{self.settings.host}:{self.settings.port}", **extra}

    # ------------------------------------------------------------------ connection

    async def _connected(self) -> aiosmtplib.SMTP:
        client = self._client
        if client is not None and client.is_connected:
            try:
                await client.noop(timeout=NOOP_TIMEOUT_SECONDS)
                return client
            except (aiosmtplib.SMTPException, OSError):
                pass
        self._drop()
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
            tls_context=self._ctx,
            timeout=s.timeout_seconds,
        )
        try:
            await client.connect()
            await self._login(client)
        except AuthFailed:
            client.close()
            raise
        except ssl.SSLCertVerificationError as exc:
            client.close()
            raise SendDeferred(
                f"TLS certificate verify failed: {exc.verify_message} (set smtp.ca_file to the CA that "
                "signed the server's certificate)",
                **self._where(),
            ) from None
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            client.close()
            code = getattr(exc, "code", None)
            raise SendDeferred(
                f"cannot open the SMTP session: {_text(exc)}", smtp_code=code, **self._where()
            ) from None
        except BaseException:  # e.g. ProviderUnavailable from the token endpoint: no leaked socket
            client.close()
            raise
        self._client = client
        self.connections_opened += 1
        return client

    async def _login(self, client: aiosmtplib.SMTP) -> None:
        s = self.settings
        if s.auth == "none":
            return
        user = s.username or ""
        try:
            if s.auth == "xoauth2":
                assert self._tokens is not None
                await client.auth_xoauth2(user, await self._tokens.token())
            else:
                if s.password is None:
                    raise ConfigError(
                        [f"mailboxes[{self.mailbox_id}].smtp.password: is required for auth password"]
                    )
                await client.login(user, s.password.get_secret_value())
        except aiosmtplib.SMTPAuthenticationError as exc:
            if self._tokens is not None:
                self._tokens.invalidate()
            raise AuthFailed(
                f"SMTP login rejected: {exc.code} {_text(exc)}", **self._where(user=user)
            ) from None
        except aiosmtplib.SMTPException as exc:
            if "AUTH" in str(exc).upper():
                raise AuthFailed(f"SMTP login impossible: {_text(exc)}", **self._where(user=user)) from None
            raise

    def _drop(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
        self._client = None

    async def close(self) -> None:
        async with self._lock:
            client, self._client = self._client, None
            if client is not None and client.is_connected:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.quit(), 2.0)
            if client is not None:
                client.close()

    # ------------------------------------------------------------------ one transaction

    async def send(
        self,
        message: EmailMessage,
        envelope_from: str,
        recipients: list[str],
        *,
        before_data: BeforeData | None = None,
    ) -> SendReceipt:
        """MAIL, RCPT each, DATA. `before_data` runs (and must finish) before the DATA command."""
        if not recipients:
            raise SendRejected("no recipients", **self._where())
        raw = message.as_bytes(policy=policy.SMTP)
        async with self._lock:
            client = await self._connected()
            try:
                return await self._transaction(client, raw, envelope_from, recipients, before_data)
            except SendUncertain:
                self._drop()
                raise
            except (SendDeferred, SendRejected):
                if client.is_connected:
                    try:
                        await client.rset()
                    except (aiosmtplib.SMTPException, OSError):
                        self._drop()
                else:
                    self._drop()
                raise
            except BaseException:  # unknown state (a bug, a cancellation): never reuse the session
                self._drop()
                raise

    async def _transaction(
        self,
        client: aiosmtplib.SMTP,
        raw: bytes,
        envelope_from: str,
        recipients: list[str],
        before_data: BeforeData | None,
    ) -> SendReceipt:
        try:
            await client.mail(envelope_from)
        except aiosmtplib.SMTPResponseException as exc:
            kind = SendDeferred if _is_temporary(exc.code) else SendRejected
            raise kind(
                f"sender refused: {exc.code} {_text(exc)}", smtp_code=exc.code, **self._where()
            ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise SendDeferred(f"connection failed at MAIL FROM: {_text(exc)}", **self._where()) from None
        results: list[RecipientResult] = []
        for rcpt in recipients:
            try:
                resp = await client.rcpt(rcpt)
                results.append(RecipientResult(rcpt, True, resp.code, _text(resp)))
            except aiosmtplib.SMTPResponseException as exc:
                results.append(RecipientResult(rcpt, False, exc.code, _text(exc)))
            except UnicodeEncodeError:  # raised before anything was written: the session is intact
                results.append(RecipientResult(rcpt, False, 553, "the address is not ASCII (no SMTPUTF8)"))
            except (aiosmtplib.SMTPException, OSError) as exc:
                raise SendDeferred(f"connection failed at RCPT TO: {_text(exc)}", **self._where()) from None
        accepted = [r for r in results if r.accepted]
        if not accepted:
            temporary = any(r.temporary for r in results)
            kind = SendDeferred if temporary else SendRejected
            first = next((r for r in results if r.temporary), results[0]) if temporary else results[0]
            raise kind(
                f"every recipient refused: {first.code} {first.message}",
                smtp_code=first.code,
                recipients=tuple(results),
                **self._where(),
            )
        if before_data is not None:
            await before_data()
        response = await self._data(client, raw, tuple(results))
        final = tuple(
            RecipientResult(r.address, True, response.code, _text(response)) if r.accepted else r
            for r in results
        )
        return SendReceipt(final, data_response=_text(response))

    async def _data(
        self, client: aiosmtplib.SMTP, raw: bytes, results: tuple[RecipientResult, ...]
    ) -> aiosmtplib.SMTPResponse:
        protocol = client.protocol
        body_written = False
        if protocol is not None:
            original = protocol.write

            def watch(data: bytes) -> None:
                nonlocal body_written
                original(data)
                if data != b"DATA\r\n":
                    body_written = True  # the message and its final dot went out in this one write

            protocol.write = watch  # type: ignore[method-assign]
        try:
            return await client.data(raw)
        except aiosmtplib.SMTPDataError as exc:
            kind = SendDeferred if _is_temporary(exc.code) else SendRejected
            refused = tuple(
                RecipientResult(r.address, False, exc.code, _text(exc)) if r.accepted else r for r in results
            )
            raise kind(
                f"message refused: {exc.code} {_text(exc)}",
                smtp_code=exc.code,
                recipients=refused,
                **self._where(),
            ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            if body_written:
                # nobody confirmed these recipients got it: record them as not accepted (no code),
                # so a resend (policy or a person's decision) does send to them again
                unconfirmed = tuple(
                    RecipientResult(r.address, False, None, "delivery uncertain") if r.accepted else r
                    for r in results
                )
                raise SendUncertain(
                    f"connection lost after the message was transferred ({_text(exc)}): the server may "
                    "have accepted it",
                    recipients=unconfirmed,
                    **self._where(),
                ) from None
            raise SendDeferred(f"connection failed at DATA: {_text(exc)}", **self._where()) from None
        finally:
            if protocol is not None:
                with contextlib.suppress(AttributeError):
                    del protocol.write
