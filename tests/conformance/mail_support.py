"""What the mail tests share: a real SMTP server on loopback (aiosmtpd) that keeps every message
the service sends, read back with the standard library's `email` package; a wait for the message
sent to one address with one subject; the checks every message of the service passes
(multipart/alternative with text and HTML, from AUTH_MAIL_FROM to that one address, the token only
inside the link, never a password), the link's token; and the API calls around them (register
with an address, verify it, forgot, reset).

Not a test module (no test_ prefix): conftest.py starts the server before the watch services, and
test_email_recovery.py and test_hosted_pages_chromium.py import the rest.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from html import unescape
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import requests

# The sender every watch service is given (AUTH_MAIL_FROM), and the subjects' prefix: the
# default AUTH_APP_NAME, which the suite leaves alone (the OIDC tests read the pages' titles).
MAIL_FROM = "auth@example.test"
APP_NAME = "Sign in"
CONFIRM = f"{APP_NAME}: confirm your email address"
RESET = f"{APP_NAME}: reset your password"
PASSWORD_CHANGED = f"{APP_NAME}: your password was changed"
EMAIL_CHANGED = f"{APP_NAME}: your email address was changed"

# Reset tokens on the shared services: the default, set explicitly. Long, on purpose: one test
# keeps a token for the per-account throttle's minute (a second reset link needs it) and must
# see it die of the password change, not of age; the Chromium journey and the DynamoDB service
# (moto takes one request at a time) must never race the clock. Expiry is tested on a watch of
# its own with SHORT_TOKEN_SECONDS (conftest.py `short_token_service`).
RESET_TOKEN_SECONDS = 1800
SHORT_TOKEN_SECONDS = 5

# Addresses whose RCPT the server refuses (550): the mailer's failure, on demand.
REFUSED_PREFIX = "refused-"

TIMEOUT = 60
# The service sends before it answers (a Lambda may be frozen once it has answered), so a
# message is normally there with the answer; the wait covers a slow machine.
MAIL_WAIT = 30
# How long "no message" is watched for before it is believed.
NO_MAIL_GRACE = 2.0

FORGOT_MESSAGE = "If the account has a verified address, a reset link is on its way"
INVALID_LINK = "The link is invalid or has expired"
# 256 random bits, base64url without padding.
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


# --- The SMTP server and what it received -------------------------------------------------------

@dataclass
class Mail:
    """One message as the server received it: the envelope and the parsed RFC 5322 message."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage
    received: float

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def to(self) -> list[str]:
        return [a.lower() for _, a in getaddresses(self.message.get_all("To", []))]

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None, f"no text/plain part in {self.subject!r}"
        return part.get_content()

    @property
    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        assert part is not None, f"no text/html part in {self.subject!r}"
        return part.get_content()

    def is_for(self, address: str) -> bool:
        address = address.lower()
        return address in (a.lower() for a in self.rcpt_tos) or address in self.to


class Mailbox:
    """Every message the SMTP server accepted, in order, for every test of the session."""

    def __init__(self):
        self._mails: list[Mail] = []
        self._changed = threading.Condition()
        self.port: int | None = None

    def add(self, mail: Mail) -> None:
        with self._changed:
            self._mails.append(mail)
            self._changed.notify_all()

    def mark(self) -> int:
        """A position: `since=` it, only messages received afterwards count."""
        with self._changed:
            return len(self._mails)

    def find(self, to: str, subject: str | None = None, since: int = 0) -> list[Mail]:
        with self._changed:
            return [m for m in self._mails[since:]
                    if m.is_for(to) and (subject is None or m.subject == subject)]

    def wait_for(self, to: str, subject: str, since: int = 0, timeout: float = MAIL_WAIT) -> Mail:
        """The one message to `to` with `subject` received after `since`, waiting for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [m for m in self._mails[since:] if m.is_for(to) and m.subject == subject]
                if found:
                    assert len(found) == 1, (
                        f"one {subject!r} to {to}, got {len(found)}: {[m.subject for m in found]}")
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(m.rcpt_tos, m.subject) for m in self._mails[since:]]
                    raise AssertionError(
                        f"no {subject!r} to {to} within {timeout} s; received since: {seen}")
                self._changed.wait(left)

    def assert_nothing_for(self, to: str, subject: str | None = None, since: int = 0,
                           grace: float = NO_MAIL_GRACE) -> None:
        """Nothing (with `subject`) reached `to` after `since`, however long `grace` waits."""
        time.sleep(grace)
        found = self.find(to, subject, since)
        assert not found, f"unexpected mail to {to}: {[m.subject for m in found]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpServer:
    """aiosmtpd on a free loopback port, in its own thread: no TLS and no AUTH (the service
    needs STARTTLS for every host but a loopback one), SMTPUTF8 and 8BITMIME offered, every
    message kept in `mailbox`; a recipient starting with REFUSED_PREFIX is refused with 550."""

    def __init__(self, mailbox: Mailbox):
        from aiosmtpd.controller import Controller

        self.mailbox = mailbox

        # aiosmtpd's hook names.
        class Recorder:
            async def handle_RCPT(self, server, session, envelope, address, options):  # noqa: N802
                if address.lower().startswith(REFUSED_PREFIX):
                    return "550 5.1.1 Mailbox unavailable"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server, session, envelope):  # noqa: N802
                raw = bytes(envelope.original_content or envelope.content)
                mailbox.add(Mail(
                    mail_from=envelope.mail_from, rcpt_tos=list(envelope.rcpt_tos), raw=raw,
                    message=message_from_bytes(raw, policy=policy.default),
                    received=time.time()))
                return "250 Message accepted for delivery"

        # Not port 0: the controller checks it is up by connecting to the port it was given.
        self.controller = Controller(Recorder(), hostname="127.0.0.1", port=_free_port(),
                                     enable_SMTPUTF8=True, ready_timeout=30)

    def start(self) -> None:
        self.controller.start()
        self.mailbox.port = self.controller.port

    def stop(self) -> None:
        self.controller.stop()


def mail_env(mailbox: Mailbox, reset_token_seconds: int = RESET_TOKEN_SECONDS) -> dict[str, str]:
    """What a watch service is given to send through the suite's SMTP server."""
    assert mailbox.port, "the SMTP server runs before the services start"
    return {
        "AUTH_MAILER": f"smtp://127.0.0.1:{mailbox.port}",
        "AUTH_MAIL_FROM": MAIL_FROM,
        "AUTH_RESET_TOKEN_SECONDS": str(reset_token_seconds),
    }


# --- What every message of the service is, and its link -----------------------------------------

class _Links(HTMLParser):
    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href" and v]


def assert_mail(mail: Mail, to: str, subject: str, never: tuple[str, ...] = ()) -> None:
    """One of the service's messages: `subject`, from AUTH_MAIL_FROM to `to` alone (envelope and
    header), dated, multipart/alternative with a text/plain then a text/html part (RFC 2046:
    the richer last), and none of the strings `never` (passwords) anywhere in it."""
    m = mail.message
    assert mail.subject == subject, mail.subject
    assert parseaddr(str(m["From"]))[1] == MAIL_FROM, m["From"]
    assert parseaddr(mail.mail_from)[1] == MAIL_FROM, mail.mail_from
    assert [a.lower() for a in mail.rcpt_tos] == [to.lower()], mail.rcpt_tos
    assert mail.to == [to.lower()], m.get_all("To")
    assert not m.get_all("Cc") and not m.get_all("Bcc"), m.items()
    assert m["Date"], m.items()
    assert m.get_content_type() == "multipart/alternative", m.get_content_type()
    assert [p.get_content_type() for p in m.iter_parts()] == ["text/plain", "text/html"], [
        p.get_content_type() for p in m.iter_parts()]
    decoded = mail.text + mail.html
    for secret in never:
        assert secret not in decoded, "a password in the message"
        assert secret.encode() not in mail.raw, "a password in the message"


def headers_of(message: EmailMessage) -> list[str]:
    """Every header value of the message and of its parts."""
    values = [str(v) for v in message.values()]
    for part in message.walk():
        if part is not message:
            values += [str(v) for v in part.values()]
    return values


def mail_link(mail: Mail, service, path: str, never: tuple[str, ...] = ()) -> str:
    """The message's one link, `{issuer}{path}?token=T` (the same in the text part and as an
    <a href> in the HTML part), after assert_mail's checks (its recipient and subject already
    matched) and the check that T, 256 bits in base64url, appears nowhere but inside that link."""
    assert_mail(mail, mail.rcpt_tos[0], mail.subject, never)
    found = sorted(set(re.findall(r"https?://[^\s<>\"']+", mail.text)))
    with_token = [u for u in found if "token=" in u]
    assert len(with_token) == 1, f"one link with a token in the text part: {found}"
    link = with_token[0]
    split = urlsplit(link)
    assert f"{split.scheme}://{split.netloc}" == service.issuer, link
    assert split.path == path, link
    assert not split.fragment, link
    query = parse_qs(split.query, keep_blank_values=True)
    assert list(query) == ["token"] and len(query["token"]) == 1, link
    token = query["token"][0]
    assert TOKEN_SHAPE.fullmatch(token), f"a 256-bit base64url token: {token!r}"
    # The HTML part links to the same URL.
    hrefs = _Links(mail.html).hrefs
    assert link in hrefs, f"the HTML part links to {link}: {hrefs}"
    # The token is only ever part of the link: gone from both parts once the link is removed,
    # and in no header (Subject, Message-ID, ...) of the message or of its parts.
    assert token not in mail.text.replace(link, ""), "the token outside the link (text part)"
    # (The HTML read as a browser shows it: a template may write the URL's characters as
    # references, `&#x2f;` for `/`.)
    assert token not in unescape(mail.html).replace(link, ""), "the token outside the link (HTML)"
    assert not [v for v in headers_of(mail.message) if token in v], "the token in a header"
    return link


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


def link_token(mail: Mail, service, path: str, never: tuple[str, ...] = ()) -> str:
    """mail_link's token."""
    return token_of(mail_link(mail, service, path, never))


def assert_notice(mail: Mail, to: str, subject: str, never: tuple[str, ...] = ()) -> None:
    """A notice ("your password was changed", ...): a message as any other, with no token."""
    assert_mail(mail, to, subject, never)
    assert "token=" not in mail.text and "token=" not in mail.html, "a token in a notice"


# --- The API around the messages ----------------------------------------------------------------

def new_address(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.test"


@dataclass
class Account:
    username: str
    password: str
    full_name: str
    email: str | None


def register_with_email(service, email: str | None = None, full_name: str = "Ada Lovelace"
                        ) -> Account:
    """POST /register with an address (a fresh one by default): 201."""
    username = f"user-{uuid.uuid4().hex[:12]}"
    password = f"orbit-{uuid.uuid4().hex[:8]}-lantern-quartz"
    email = email or new_address()
    r = requests.post(service.url("/register"), timeout=TIMEOUT, json={
        "username": username, "password": password, "full_name": full_name, "email": email})
    assert r.status_code == 201, r.text
    assert r.json() == {"message": "User registered successfully"}, r.text
    return Account(username, password, full_name, email)


def verification_token(service, mailbox: Mailbox, account: Account, since: int = 0,
                       to: str | None = None) -> str:
    """The token of the verification message sent to `to` (the account's address) after
    `since`, with the message's checks."""
    to = to or account.email
    mail = mailbox.wait_for(to, CONFIRM, since=since)
    return link_token(mail, service, "/verify-email", never=(account.password,))


def verify(service, token: str) -> requests.Response:
    return requests.post(service.url("/email/verify"), json={"token": token}, timeout=TIMEOUT)


def verified_account(service, mailbox: Mailbox, full_name: str = "Ada Lovelace") -> Account:
    """An account registered with a fresh address and verified through its mailed link."""
    since = mailbox.mark()
    account = register_with_email(service, full_name=full_name)
    r = verify(service, verification_token(service, mailbox, account, since))
    assert r.status_code == 200, r.text
    return account


def login(service, username: str, password: str) -> requests.Response:
    """The password grant at POST /login (form-encoded, as an OAuth2 client sends it)."""
    return requests.post(service.url("/login"), timeout=TIMEOUT, data={
        "grant_type": "password", "username": username, "password": password})


def tokens_of(service, account: Account) -> dict:
    r = login(service, account.username, account.password)
    assert r.status_code == 200, r.text
    return r.json()


def bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


def me(service, access_token: str) -> requests.Response:
    return requests.get(service.url("/me"), headers=bearer(access_token), timeout=TIMEOUT)


def forgot(service, **body: str) -> requests.Response:
    """POST /password/forgot with a JSON body ({"email"} or {"username"})."""
    return requests.post(service.url("/password/forgot"), json=body, timeout=TIMEOUT)


def assert_forgot_answer(r: requests.Response) -> None:
    """The one answer of POST /password/forgot, whatever matched, held to AUTH_FORGOT_MIN_MS."""
    assert r.status_code == 202, r.text
    assert r.json() == {"message": FORGOT_MESSAGE}, r.text
    assert r.elapsed.total_seconds() >= 0.4, r.elapsed


def reset_token(service, mailbox: Mailbox, account: Account, since: int = 0) -> str:
    """Asks for a reset link by the account's address and returns the mailed token."""
    assert_forgot_answer(forgot(service, email=account.email))
    mail = mailbox.wait_for(account.email, RESET, since=since)
    return link_token(mail, service, "/reset-password", never=(account.password,))


def reset(service, token: str, new_password: str) -> requests.Response:
    return requests.post(service.url("/password/reset"), timeout=TIMEOUT,
                         json={"token": token, "new_password": new_password})


def new_password() -> str:
    return f"harbor-{uuid.uuid4().hex[:8]}-meadow-violet"


def assert_problem(r: requests.Response, status: int, detail: str | None = None,
                   field: str | None = None) -> dict:
    """An application/problem+json answer with `status` (and `detail`, `field` when given)."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers.get("content-type", "").startswith("application/problem+json"), r.headers
    body = r.json()
    assert body.get("status") == status, body
    if detail is not None:
        assert body.get("detail") == detail, body
    if field is not None:
        assert body.get("field") == field, body
    return body
