"""TOTP as a second factor, end to end on each store (SQLite, then DynamoDB on moto), every code
made by pyotp (mfa_support.py), an implementation independent of the service's.

The enrolment (the secret, its otpauth URI and QR code, pending until confirmed, the ten recovery
codes); the two-step login at the password grant (403 mfa_required with an mfa_token, then the
mfa-otp or mfa-recovery-code grant) and the tokens' `amr`; and what must not work: a code
replayed, or of an earlier step than the last accepted, a spent mfa_token or one after five
wrong codes, a recovery code used twice or from a voided set, two logins at once with one code,
wrong codes without end across mfa_tokens (the account's hourly failure window), a password
reset by mail or a password change that skips the code, and the secret or the recovery codes
readable in the store (the SQLite file and its WAL, the DynamoDB table) or in the log. Then the
hosted sign-in page with authlib as the client and a `requests.Session` as the browser: the
code's form after the password, a recovery code instead, and five wrong codes starting the
sign-in over. (The same in Chromium: test_hosted_pages_chromium.py.)

Each test needs at most three TOTP steps, which are to hand without waiting out a step
(mfa_support.py's Authenticator: at most a few seconds, near the end of one), and uses recovery
codes where any code will do. The throttle test (sixty requests) runs on SQLite only.
"""

from __future__ import annotations

import base64
import threading
from html.parser import HTMLParser
from urllib.parse import urljoin

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session

from mail_support import (
    TIMEOUT,
    assert_problem,
    me,
    new_password,
    reset,
    reset_token,
    verified_account,
)
from mfa_support import (
    AMR_MFA,
    AMR_PASSWORD,
    OTP_GRANT,
    RECOVERY_GRANT,
    Authenticator,
    amr,
    assert_enrolment,
    assert_invalid_grant,
    assert_mfa_required,
    assert_recovery_codes,
    assert_token_answer,
    base32_bytes,
    change_password,
    confirm,
    disable,
    enrol,
    mfa_token_for,
    otp_grant,
    password_login,
    recovery_grant,
    regenerate,
    register,
    totp_account,
    two_factor_login,
)
from oidc_support import (
    SCOPE,
    SESSION_COOKIE,
    Form,
    Page,
    access_claims,
    assert_page_headers,
    assert_redirect_to,
    auth_request,
    authorize_redirect,
    login_page,
    redeem,
    refresh,
    set_cookie,
    submit,
    verify_id_token,
)

# The service's default AUTH_ACCOUNT_FAILURES_PER_HOUR (shared/src/policy.rs), which conftest.py
# leaves as it ships.
ACCOUNT_FAILURES_PER_HOUR = 50
MFA_TOKEN_FAILURES = 5
CONCURRENT_LOGINS = 4
# How long a code sent more than once (refused, then accepted) must stay valid.
REUSED_CODE_SECONDS = 15.0
USE_RECOVERY_CODE = "Use a recovery code"


def access_of(service, username: str, password: str) -> str:
    r = password_login(service, username, password)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


# --- Discovery ---------------------------------------------------------------------------------


def test_discovery_lists_both_second_factor_grants(oidc_service):
    r = requests.get(oidc_service.url("/.well-known/openid-configuration"), timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    grants = set(r.json()["grant_types_supported"])
    assert {OTP_GRANT, RECOVERY_GRANT, "password", "refresh_token",
            "authorization_code"} <= grants, grants


# --- Enrolment and the two-step login ----------------------------------------------------------


def test_enrol_confirm_then_the_password_grant_needs_the_code(store_service):
    service = store_service
    username, password, full_name = register(service, "Ada Lovelace")
    # GIVEN a password-only account: its token says so
    r = password_login(service, username, password)
    tokens = assert_token_answer(r)
    access = tokens["access_token"]
    assert amr(service, access) == AMR_PASSWORD

    # WHEN it enrols with a wrong password THEN 403, nothing to scan
    refused = enrol(service, access, password + "x")
    assert_problem(refused, 403)
    assert "secret" not in refused.text
    # AND confirming with nothing pending is 409
    assert_problem(confirm(service, access, "123456"), 409)

    # WHEN it enrols with its password
    r = enrol(service, access, password)
    # THEN a secret, its otpauth URI naming the issuer and the account, and the QR code's SVG
    assert r.status_code == 200, r.text
    first_secret = assert_enrolment(r.json(), username)
    # AND login is unchanged while the enrolment is pending
    pending = assert_token_answer(password_login(service, username, password))
    assert amr(service, pending["access_token"]) == AMR_PASSWORD

    # WHEN it enrols again (the first QR code was never scanned, say)
    r = enrol(service, access, password)
    assert r.status_code == 200, r.text
    secret = assert_enrolment(r.json(), username)
    # THEN a new secret replaces the pending one: the first one's code no longer confirms
    assert base32_bytes(secret) != base32_bytes(first_secret)
    stale = Authenticator(first_secret)
    assert_problem(confirm(service, access, stale.code_at_step(stale.next_step())), 422,
                   field="code")
    # AND neither does a wrong code, nor something that is no code
    app = Authenticator(secret)
    assert_problem(confirm(service, access, app.wrong_code()), 422, field="code")
    assert_problem(confirm(service, access, "not a code"), 422, field="code")
    # AND login is still single-factor
    assert password_login(service, username, password).status_code == 200

    # WHEN it confirms with the authenticator's code
    r = confirm(service, access, app.next_code())
    # THEN ten recovery codes, and TOTP is on
    assert r.status_code == 200, r.text
    assert_recovery_codes(r.json())
    # AND there is nothing more to enrol or confirm
    assert_problem(enrol(service, access, password), 409)
    assert_problem(confirm(service, access, app.wrong_code()), 409)

    # WHEN the password is wrong THEN the usual 401: no word of a second factor
    wrong = password_login(service, username, password + "x")
    assert wrong.status_code == 401, wrong.text
    assert "mfa" not in wrong.text
    # WHEN it is right THEN 403 mfa_required with an mfa_token, and no token; the same for
    # the tutorial's form without grant_type, and for JSON
    mfa_token = assert_mfa_required(password_login(service, username, password))
    for kwargs in ({"data": {"username": username, "password": password}},
                   {"json": {"username": username, "password": password}}):
        other = requests.post(service.url("/login"), timeout=TIMEOUT, **kwargs)
        assert assert_mfa_required(other) != mfa_token

    # WHEN the second step comes with a wrong code THEN invalid_grant
    assert_invalid_grant(otp_grant(service, mfa_token, app.wrong_code()))
    # WHEN it comes with the authenticator's code (on the same mfa_token: one wrong code
    # does not end it)
    tokens = assert_token_answer(otp_grant(service, mfa_token, app.next_code()))
    # THEN the tokens of a two-factor login, which open /me
    assert amr(service, tokens["access_token"]) == AMR_MFA
    profile = me(service, tokens["access_token"])
    assert profile.status_code == 200, profile.text
    assert profile.json()["username"] == username
    # AND a refresh of that session is still two-factor
    refreshed = refresh(service, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert amr(service, refreshed.json()["access_token"]) == AMR_MFA
    # AND the bearer token from before the enrolment still works
    assert me(service, access).status_code == 200


def test_a_code_passes_once_and_only_later_steps_after_it(store_service):
    """No replay: a step accepted once is never accepted again, nor an earlier one; a spent
    mfa_token is refused even with a good code."""
    service = store_service
    account = totp_account(service)  # confirmed with step s
    app = account.authenticator
    # GIVEN a two-factor login with the code of step s + 1
    first = mfa_token_for(service, account)
    step = app.next_step()
    code = app.code_at_step(step)
    assert_token_answer(otp_grant(service, first, code))

    # WHEN the spent mfa_token comes again, with the code of step s + 2 (the service takes it
    # one step before its time)
    later = app.next_code()
    # THEN invalid_grant (and the step is not used up by it)
    assert_invalid_grant(otp_grant(service, first, later))

    # WHEN a fresh login replays the accepted code
    second = mfa_token_for(service, account)
    # THEN invalid_grant
    assert_invalid_grant(otp_grant(service, second, code))
    # AND so is the code of the step before it (the confirmation's, or too old by now)
    assert_invalid_grant(otp_grant(service, second, app.code_at_step(step - 1)))
    # WHEN step s + 2's code comes, later than the last accepted
    tokens = assert_token_answer(otp_grant(service, second, later))
    # THEN it passes
    assert amr(service, tokens["access_token"]) == AMR_MFA


def test_five_wrong_codes_end_the_mfa_token(store_service):
    service = store_service
    account = totp_account(service)
    app = account.authenticator
    token = mfa_token_for(service, account)
    # WHEN five wrong codes come on one mfa_token
    for _ in range(MFA_TOKEN_FAILURES):
        assert_invalid_grant(otp_grant(service, token, app.wrong_code()))
    # THEN the right code no longer helps it (a code good for a few requests more)
    code = app.next_code(valid_for=REUSED_CODE_SECONDS)
    assert_invalid_grant(otp_grant(service, token, code))
    # AND neither does a recovery code
    assert_invalid_grant(recovery_grant(service, token, account.recovery_codes[0]))
    # AND a new login passes with that same code (the dead token used nothing up)
    tokens = assert_token_answer(otp_grant(service, mfa_token_for(service, account), code))
    assert amr(service, tokens["access_token"]) == AMR_MFA


def test_recovery_codes_pass_once_each(store_service):
    service = store_service
    account = totp_account(service)
    first, second = account.recovery_codes[:2]
    # WHEN a recovery code is the second step
    tokens = assert_token_answer(recovery_grant(service, mfa_token_for(service, account), first))
    # THEN a two-factor session (whatever it adds to pwd and mfa)
    methods = amr(service, tokens["access_token"])
    assert "pwd" in methods and "mfa" in methods, methods
    # WHEN the same code comes again, on a new login
    token = mfa_token_for(service, account)
    # THEN invalid_grant
    assert_invalid_grant(recovery_grant(service, token, first))
    # AND a recovery code is no TOTP code, nor the other way round
    assert_invalid_grant(otp_grant(service, token, second))
    assert_invalid_grant(recovery_grant(service, token, account.authenticator.next_code()))
    # AND another code of the set passes (on that token, which survived three wrong codes)
    assert_token_answer(recovery_grant(service, token, second))


def test_new_recovery_codes_void_the_old_set(store_service):
    service = store_service
    account = totp_account(service)
    app = account.authenticator
    # WHEN new codes are asked for with a wrong password, or a wrong code
    assert_problem(regenerate(service, account.access_token, account.password + "x",
                              app.wrong_code()), 403)
    assert_problem(regenerate(service, account.access_token, account.password,
                              app.wrong_code()), 422, field="code")
    # WHEN with the password and the authenticator's code
    r = regenerate(service, account.access_token, account.password, app.next_code())
    # THEN ten new codes
    assert r.status_code == 200, r.text
    new = assert_recovery_codes(r.json())
    assert not set(new) & set(account.recovery_codes)
    # AND none of the old set passes any more
    token = mfa_token_for(service, account)
    for old in account.recovery_codes[:3]:
        assert_invalid_grant(recovery_grant(service, token, old))
    # AND a new one does
    assert_token_answer(recovery_grant(service, token, new[0]))


def test_disabling_totp_needs_the_password_and_a_code_then_login_is_single_factor(
        store_service):
    service = store_service
    account = totp_account(service)
    app = account.authenticator
    access = account.access_token
    # WHEN TOTP is turned off with a wrong password THEN 403; with a wrong code, or none, 422
    assert_problem(disable(service, access, account.password + "x", app.wrong_code()), 403)
    assert_problem(disable(service, access, account.password, app.wrong_code()), 422,
                   field="code")
    assert_problem(disable(service, access, account.password, None), 422, field="code")
    # AND the second factor is still asked for
    mfa_token_for(service, account)

    # WHEN it comes with the password and a recovery code
    r = disable(service, access, account.password, account.recovery_codes[0])
    # THEN 204, and the password alone signs in again
    assert r.status_code == 204, r.text
    tokens = assert_token_answer(password_login(service, account.username, account.password))
    assert amr(service, tokens["access_token"]) == AMR_PASSWORD
    # AND there is nothing more to turn off
    assert_problem(disable(service, access, account.password, app.next_code()), 409)
    assert_problem(regenerate(service, access, account.password, account.recovery_codes[1]),
                   409)
    # AND a new enrolment starts afresh, with a new secret
    r = enrol(service, access, account.password)
    assert r.status_code == 200, r.text
    again = assert_enrolment(r.json(), account.username)
    assert base32_bytes(again) != base32_bytes(account.secret)


def test_one_code_in_concurrent_logins_passes_once(store_service):
    """Two or more logins at once (an mfa_token each) with the same code: exactly one passes,
    the others are invalid_grant (the last accepted step is recorded atomically)."""
    service = store_service
    account = totp_account(service)
    tokens = [mfa_token_for(service, account) for _ in range(CONCURRENT_LOGINS)]
    code = account.authenticator.next_code()
    barrier = threading.Barrier(CONCURRENT_LOGINS)
    results: list[requests.Response] = []
    lock = threading.Lock()

    def attempt(token: str) -> None:
        barrier.wait()
        r = otp_grant(service, token, code)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=attempt, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    statuses = sorted(r.status_code for r in results)
    assert len(results) == CONCURRENT_LOGINS, statuses
    assert statuses == [200] + [400] * (CONCURRENT_LOGINS - 1), [
        (r.status_code, r.text[:300]) for r in results]
    for r in results:
        if r.status_code == 400:
            assert_invalid_grant(r)
        else:
            assert amr(service, r.json()["access_token"]) == AMR_MFA


def test_wrong_codes_across_mfa_tokens_fill_the_accounts_hourly_window(service):
    """Knowing the password buys no unlimited guesses: each mfa_token dies after five wrong
    codes, and the wrong codes of all of them count in the account's hourly failure window,
    after which even the right password waits (429). (SQLite only: sixty requests.)"""
    account = totp_account(service)
    app = account.authenticator
    wrong = 0
    while wrong < ACCOUNT_FAILURES_PER_HOUR:
        token = mfa_token_for(service, account)
        for _ in range(min(MFA_TOKEN_FAILURES, ACCOUNT_FAILURES_PER_HOUR - wrong)):
            assert_invalid_grant(otp_grant(service, token, app.wrong_code()))
            wrong += 1
    # WHEN the owner's password comes after that many wrong codes
    r = password_login(service, account.username, account.password)
    # THEN the account waits, right password or not
    assert_problem(r, 429)
    assert int(r.headers["retry-after"]) >= 1, r.headers
    assert "mfa_token" not in r.text


def test_a_password_reset_by_mail_still_asks_for_the_code(store_service, mailbox):
    service = store_service
    # GIVEN a verified account with TOTP on
    mailed = verified_account(service, mailbox, "Grace Hopper")
    account = totp_account(service, user=(mailed.username, mailed.password, mailed.full_name),
                           email=mailed.email)
    # WHEN its password is reset through the mailed link
    since = mailbox.mark()
    token = reset_token(service, mailbox, mailed, since)
    password = new_password()
    r = reset(service, token, password)
    # THEN the reset gives no token
    assert r.status_code == 200, r.text
    assert "access_token" not in r.text
    # AND the new password still needs the code
    assert password_login(service, account.username, account.password).status_code == 401
    mfa_token = assert_mfa_required(password_login(service, account.username, password))
    tokens = assert_token_answer(otp_grant(service, mfa_token,
                                           account.authenticator.next_code()))
    assert amr(service, tokens["access_token"]) == AMR_MFA


def test_changing_the_password_needs_a_code_when_totp_is_on(store_service):
    service = store_service
    account = totp_account(service)
    access = account.access_token
    password = new_password()
    # WHEN the change comes without a code, or with a wrong one
    for code in (None, account.authenticator.wrong_code(), "aaaa-bbbb-cccc-dddd"):
        r = change_password(service, access, account.password, password, code)
        # THEN 422 naming `code`, and the password is unchanged
        assert_problem(r, 422, field="code")
    assert password_login(service, account.username, password).status_code == 401
    # WHEN it comes with a recovery code
    r = change_password(service, access, account.password, password, account.recovery_codes[0])
    # THEN the password changed, and the second factor is still on
    assert r.status_code == 200, r.text
    assert_mfa_required(password_login(service, account.username, password))


# --- At rest ---------------------------------------------------------------------------------


def secret_forms(secret: str) -> list[bytes]:
    """The TOTP secret as it could be written down unsealed: base32 in either case, the raw
    bytes, and their base64 (either alphabet, padded or not) and hex."""
    raw = base32_bytes(secret)
    forms = [secret.upper().encode(), secret.lower().encode(), raw, raw.hex().encode(),
             raw.hex().upper().encode()]
    for b64 in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        forms += [b64, b64.rstrip(b"=")]
    return forms


def recovery_forms(code: str) -> list[bytes]:
    plain = code.replace("-", "")
    return [form.encode() for form in (code, code.upper(), plain, plain.upper())]


def sqlite_bytes(service) -> dict[str, bytes]:
    """The SQLite database file and every file beside it that SQLite writes (the WAL above
    all, where recent writes are until a checkpoint), as bytes."""
    db = service.sqlite_path
    assert db is not None and db.exists(), db
    files = {db.name: db.read_bytes()}
    for suffix in ("-wal", "-journal", "-shm"):
        other = db.with_name(db.name + suffix)
        if other.exists():
            files[other.name] = other.read_bytes()
    return files


def dynamodb_bytes(service) -> dict[str, bytes]:
    """Every item of the service's table (a scan on moto), each attribute's string or bytes."""
    import boto3

    env = service.store_env
    table = env["AUTH_STORE"].removeprefix("dynamodb:")
    client = boto3.client(
        "dynamodb", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    parts: list[bytes] = []

    def walk(value) -> None:
        if isinstance(value, (bytes, bytearray)):
            parts.append(bytes(value))
        elif isinstance(value, str):
            parts.append(value.encode())
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(k)
                walk(v)
        elif isinstance(value, (list, tuple, set)):
            for v in value:
                walk(v)
        else:
            parts.append(str(value).encode())

    for page in client.get_paginator("scan").paginate(TableName=table):
        walk(page["Items"])
    return {f"table {table}": b"\n".join(parts)}


def test_the_secret_and_the_recovery_codes_are_not_in_the_store_or_the_log(store_service):
    """A copy of the store yields neither the TOTP secret (sealed with AES-256-GCM under
    AUTH_DATA_KEY) nor a recovery code (only hashes are kept): not the SQLite file, not its
    WAL, not the DynamoDB table; nor does the log."""
    service = store_service
    username, password, full_name = register(service)
    access = access_of(service, username, password)
    # GIVEN a pending enrolment, replaced by a second one that is confirmed
    r = enrol(service, access, password)
    assert r.status_code == 200, r.text
    replaced = assert_enrolment(r.json(), username)
    account = totp_account(service, user=(username, password, full_name))
    # AND a second set of recovery codes, and a two-factor login
    r = regenerate(service, access, password, account.recovery_codes[0])
    assert r.status_code == 200, r.text
    codes = account.recovery_codes + assert_recovery_codes(r.json())
    tokens = two_factor_login(service, account)
    accepted = account.authenticator.last_step

    # WHEN the store is read as bytes
    files = sqlite_bytes(service) if service.store == "sqlite" else dynamodb_bytes(service)
    files["log"] = service.log.read_bytes()
    # THEN none of the secrets, in any common encoding, is in it
    for name, content in files.items():
        for secret in (replaced, account.secret):
            for form in secret_forms(secret):
                assert form not in content, f"the TOTP secret in {name}"
        for code in codes:
            for form in recovery_forms(code):
                assert form not in content, f"a recovery code in {name}"

    if service.store == "sqlite":
        # AND the columns the design names hold the sealed secret, the switch, the last step
        # accepted, and the current set's hashes only
        import sqlite3
        from contextlib import closing

        user_id = access_claims(service, tokens["access_token"])["sub"]
        # (read only: nothing is written; the bytes above were read before it opened)
        with closing(sqlite3.connect(service.sqlite_path, timeout=30)) as db:
            sealed, enabled, last_step = db.execute(
                "SELECT totp_secret, totp_enabled, totp_last_step FROM users WHERE user_id = ?",
                (user_id,)).fetchone()
            (hashes,) = db.execute("SELECT count(*) FROM recovery_codes WHERE user_id = ?",
                                   (user_id,)).fetchone()
        # (after a version prefix such as "a1.", if any)
        payload = sealed.rsplit(".", 1)[-1]
        opened = base64.b64decode(payload + "=" * (-len(payload) % 4), altchars=b"-_"
                                  if "-" in payload or "_" in payload else None, validate=True)
        # A 12-byte nonce, the 20 bytes sealed, a 16-byte tag
        assert len(opened) >= 12 + 20 + 16, len(opened)
        assert base32_bytes(account.secret) not in opened
        assert enabled == 1, enabled
        assert last_step == accepted, (last_step, accepted)
        assert hashes == 10, hashes


# --- The hosted sign-in page ------------------------------------------------------------------


def form_with(page: Page, name: str) -> Form | None:
    """The page's one form that has a field `name` (None when none has)."""
    found = [f for f in page.forms if f.has(name)]
    assert len(found) <= 1, f"one form with {name!r}: {page.forms}"
    return found[0] if found else None


def otp_page(browser: requests.Session, url: str, username: str, password: str
             ) -> tuple[requests.Response, Page, Form]:
    """The sign-in page of the authorization URL `url`, its password typed in, then the page
    that asks for the code: checks it (no redirect, no browser session yet, no password in it,
    the labelled `otp` field as password managers and phones know it, a "Verify" button, a way
    to use a recovery code) and returns it with its form."""
    r, _, form = login_page(browser, url)
    answer = submit(browser, r.url, form, username=username, password=password)
    assert answer.status_code == 200, (answer.status_code, answer.headers.get("location"),
                                       answer.text[:2000])
    assert "location" not in answer.headers, answer.headers
    assert_page_headers(answer)
    assert set_cookie(answer, SESSION_COOKIE) is None, answer.headers
    assert password not in answer.text, "the password written into the page"
    page = Page(answer.text, answer.url)
    otp_form = form_with(page, "otp")
    assert otp_form is not None, answer.text[:3000]
    assert otp_form.method == "post", otp_form
    field = otp_form.field("otp")
    assert field.attrs.get("autocomplete") == "one-time-code", field
    assert field.attrs.get("inputmode") == "numeric", field
    assert field.labelled, field
    assert otp_form.submits(), otp_form
    assert "Verify" in page.text, page.text
    assert USE_RECOVERY_CODE in page.text, page.text
    return answer, page, otp_form


class _Buttons(HTMLParser):
    """The submit buttons of a page: (index of their form, attributes, text)."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[int | None, dict[str, str], str]] = []
        self._forms = -1
        self._in_form = False
        self._button: list | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            self._forms += 1
            self._in_form = True
        elif tag == "button" and (a.get("type") or "submit").lower() == "submit":
            self._button = [self._forms if self._in_form else None, a, ""]
        elif tag == "input" and (a.get("type") or "").lower() == "submit":
            self.found.append((self._forms if self._in_form else None, a, a.get("value", "")))

    def handle_endtag(self, tag):
        if tag == "form":
            self._in_form = False
        elif tag == "button" and self._button is not None:
            self._button[2] = " ".join(self._button[2].split())
            self.found.append(tuple(self._button))
            self._button = None

    def handle_data(self, data):
        if self._button is not None:
            self._button[2] += data


def recovery_code_form(browser: requests.Session, answer: requests.Response, page: Page
                       ) -> tuple[str, Form]:
    """The form with the `recovery_code` field that "Use a recovery code" leads to: on the
    same page, behind a link, or behind a submit button (its form posted with the button's
    name and value, as a browser does); returns the URL of the page that has it, and the
    form."""
    form = form_with(page, "recovery_code")
    if form is not None:
        return answer.url, form
    links = [href for href, text in page.links if text == USE_RECOVERY_CODE]
    if links:
        shown = browser.get(urljoin(answer.url, links[0]), allow_redirects=False,
                            timeout=TIMEOUT)
    else:
        buttons = [(i, attrs) for i, attrs, text in _Buttons(answer.text).found
                   if text == USE_RECOVERY_CODE and i is not None]
        assert len(buttons) == 1, f"a link or a button {USE_RECOVERY_CODE!r}: {answer.text}"
        index, attrs = buttons[0]
        owner = page.forms[index]
        data = owner.filled()
        if attrs.get("name"):
            data[attrs["name"]] = attrs.get("value", "")
        action = attrs.get("formaction") or owner.action or answer.url
        shown = browser.post(urljoin(answer.url, action), data=data, allow_redirects=False,
                             timeout=TIMEOUT)
    assert shown.status_code == 200, (shown.status_code, shown.text[:2000])
    assert_page_headers(shown)
    form = form_with(Page(shown.text, shown.url), "recovery_code")
    assert form is not None, shown.text[:3000]
    assert form.field("recovery_code").labelled, form
    return shown.url, form


def without_the_browser_session(browser: requests.Session) -> requests.Session:
    """A copy of the browser's cookies, to look at the provider's state without touching it."""
    copy = requests.Session()
    copy.cookies.update(browser.cookies)
    return copy


def test_the_hosted_sign_in_asks_for_the_code_before_it_redirects(oidc_service, oidc_clients):
    account = totp_account(oidc_service, "Katherine Johnson")
    app = account.authenticator
    doc = requests.get(oidc_service.url("/.well-known/openid-configuration"),
                       timeout=TIMEOUT).json()
    # GIVEN authlib as a public client with PKCE
    client = OAuth2Session(oidc_clients.spa, redirect_uri=oidc_clients.redirect_uri,
                           scope=SCOPE, code_challenge_method="S256",
                           token_endpoint_auth_method="none")
    verifier, nonce = generate_token(48), generate_token(20)
    url, state = client.create_authorization_url(doc["authorization_endpoint"],
                                                 code_verifier=verifier, nonce=nonce)

    # WHEN the person types the right password on the sign-in page
    browser = requests.Session()
    answer, page, form = otp_page(browser, url, account.username, account.password)
    # THEN the page asks for the code (checked by otp_page); there is no browser session
    # yet: a silent request still needs a login
    silent = auth_request(oidc_service, oidc_clients.spa, oidc_clients.redirect_uri,
                          prompt="none")
    assert authorize_redirect(without_the_browser_session(browser), silent)["error"] == (
        "login_required")

    # WHEN they type a wrong code
    failed = submit(browser, answer.url, form, otp=app.wrong_code())
    # THEN 401, the code's form again with an error, no redirect
    assert failed.status_code == 401, (failed.status_code, failed.text[:2000])
    assert "location" not in failed.headers, failed.headers
    assert_page_headers(failed)
    again_page = Page(failed.text, failed.url)
    again = form_with(again_page, "otp")
    assert again is not None, failed.text[:3000]
    assert again_page.text != page.text, "no error shown"

    # WHEN they type the authenticator's code
    done = submit(browser, failed.url, again, otp=app.next_code())
    # THEN they are sent back to the client with a code, the state and the issuer
    assert done.status_code == 303, (done.status_code, done.text[:2000])
    location = done.headers["location"]
    query = assert_redirect_to(location, oidc_clients.redirect_uri)
    assert query["state"] == state and query["iss"] == oidc_service.issuer, query
    assert set_cookie(done, SESSION_COOKIE), done.headers

    # WHEN authlib redeems the code
    token = dict(client.fetch_token(doc["token_endpoint"], authorization_response=location,
                                    state=state, code_verifier=verifier))
    # THEN the id_token and the access token say two factors
    claims = verify_id_token(oidc_service, token["id_token"], oidc_clients.spa, nonce,
                             token["access_token"])
    assert claims["amr"] == AMR_MFA, claims
    assert claims["preferred_username"] == account.username, claims
    assert amr(oidc_service, token["access_token"]) == AMR_MFA
    # AND so does a refresh
    refreshed = dict(client.refresh_token(doc["token_endpoint"]))
    assert amr(oidc_service, refreshed["access_token"]) == AMR_MFA
    # AND a single sign-on from that browser session, without a page
    sso = auth_request(oidc_service, oidc_clients.spa, oidc_clients.redirect_uri)
    code = authorize_redirect(browser, sso)["code"]
    r = redeem(oidc_service, sso, code)
    assert r.status_code == 200, r.text
    sso_claims = verify_id_token(oidc_service, r.json()["id_token"], oidc_clients.spa,
                                 sso.nonce, r.json()["access_token"])
    assert sso_claims["amr"] == AMR_MFA, sso_claims
    assert sso_claims["auth_time"] == claims["auth_time"], (sso_claims, claims)


def test_a_recovery_code_on_the_hosted_page_signs_in(oidc_service, oidc_clients):
    account = totp_account(oidc_service, "Dorothy Vaughan")
    browser = requests.Session()
    request = auth_request(oidc_service, oidc_clients.spa, oidc_clients.redirect_uri)
    answer, page, otp_form = otp_page(browser, request.url, account.username, account.password)
    # GIVEN the page's mfa_token (if it carries one) is bound to this sign-in: the token
    # endpoint refuses it, even with a good code
    hidden = otp_form.hidden().get("mfa_token")
    if hidden:
        assert_invalid_grant(otp_grant(oidc_service, hidden, account.authenticator.next_code()))
    # WHEN the person chooses "Use a recovery code" and types one
    at, form = recovery_code_form(browser, answer, page)
    done = submit(browser, at, form, recovery_code=account.recovery_codes[0])
    # THEN they are sent back with a code whose tokens say two factors
    assert done.status_code == 303, (done.status_code, done.text[:2000])
    query = assert_redirect_to(done.headers["location"], oidc_clients.redirect_uri)
    assert query["state"] == request.state, query
    r = redeem(oidc_service, request, query["code"])
    assert r.status_code == 200, r.text
    claims = verify_id_token(oidc_service, r.json()["id_token"], oidc_clients.spa,
                             request.nonce, r.json()["access_token"])
    assert "pwd" in claims["amr"] and "mfa" in claims["amr"], claims
    # AND the code was used up: the API refuses it now
    assert_invalid_grant(recovery_grant(oidc_service, mfa_token_for(oidc_service, account),
                                        account.recovery_codes[0]))


def test_five_wrong_codes_on_the_hosted_page_start_the_sign_in_over(oidc_service,
                                                                    oidc_clients):
    account = totp_account(oidc_service)
    app = account.authenticator
    browser = requests.Session()
    request = auth_request(oidc_service, oidc_clients.spa, oidc_clients.redirect_uri)
    answer, _, form = otp_page(browser, request.url, account.username, account.password)
    # WHEN five wrong codes are typed
    at = answer.url
    for attempt in range(1, MFA_TOKEN_FAILURES + 1):
        failed = submit(browser, at, form, otp=app.wrong_code())
        assert 400 <= failed.status_code < 500, (failed.status_code, failed.text[:2000])
        assert "location" not in failed.headers, failed.headers
        again = form_with(Page(failed.text, failed.url), "otp")
        if attempt < MFA_TOKEN_FAILURES:
            # (the fifth may already start over)
            assert failed.status_code == 401 and again is not None, failed.text[:2000]
        form = again or form
    # AND then the right one, on that form (a code good for a few requests more)
    code = app.next_code(valid_for=REUSED_CODE_SECONDS)
    over = submit(browser, at, form, otp=code)
    # THEN no redirect: the sign-in starts over, at the password
    assert 400 <= over.status_code < 500, (over.status_code, over.text[:2000])
    assert "location" not in over.headers, over.headers
    restart = Page(over.text, over.url)
    login = form_with(restart, "password")
    assert login is not None, over.text[:3000]
    assert set_cookie(over, SESSION_COOKIE) is None, over.headers
    # WHEN the person signs in again from there, with that same code (never accepted)
    second = submit(browser, over.url, login, username=account.username,
                    password=account.password)
    assert second.status_code == 200, (second.status_code, second.text[:2000])
    otp = form_with(Page(second.text, second.url), "otp")
    assert otp is not None, second.text[:3000]
    done = submit(browser, second.url, otp, otp=code)
    # THEN the client gets its code
    assert done.status_code == 303, (done.status_code, done.text[:2000])
    query = assert_redirect_to(done.headers["location"], oidc_clients.redirect_uri)
    assert query["state"] == request.state and query["code"], query

