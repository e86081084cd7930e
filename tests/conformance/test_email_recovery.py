"""Email addresses and the password reset by mail, end to end on each store (SQLite, then
DynamoDB on moto), every message read back from the suite's own SMTP server on loopback
(conftest.py `mailbox`, aiosmtpd): the verification link of a registration and of an address
change, the notices to the old address and after a reset, the reset link by address and by name,
the hosted pages; and what must not happen: a second account verifying a taken address, a mail
to an unknown, an unverified or a throttled account, or an answer that tells those apart from a
verified one, a link consumed by a prefetching scanner or by a refused password, a token used
twice (also by eight requests at once), after its life, or after the password changed, and an
account lost because the mailer failed (the SMTP server refuses the recipient).

Every message is checked the same way (mail_support.py): multipart/alternative with a text and
an HTML part, from AUTH_MAIL_FROM to the one address, the token nowhere but in the link's
`token=`, no password anywhere.

The shared services keep reset tokens 30 minutes (mail_support.RESET_TOKEN_SECONDS says why);
the expiry test runs on a watch of its own whose tokens live seconds (`short_token_service`).

Every request comes from loopback, one source address, whose forgot-password ceiling conftest.py
lifts (AUTH_FORGOT_PER_SOURCE_HOUR, as AUTH_SOURCE_FAILURES_PER_HOUR for logins): beyond it a
request still answers 202 and sends nothing, which would look like a bug here. The per-account
throttle (a message a minute) is tested as it ships.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import requests

from mail_support import (
    CONFIRM,
    EMAIL_CHANGED,
    INVALID_LINK,
    MAIL_WAIT,
    NO_MAIL_GRACE,
    PASSWORD_CHANGED,
    REFUSED_PREFIX,
    RESET,
    SHORT_TOKEN_SECONDS,
    TIMEOUT,
    assert_forgot_answer,
    assert_notice,
    assert_problem,
    bearer,
    forgot,
    link_token,
    login,
    me,
    new_address,
    new_password,
    register_with_email,
    reset,
    reset_token,
    tokens_of,
    verification_token,
    verified_account,
    verify,
)
from oidc_support import (
    CSRF_COOKIE,
    Form,
    Page,
    assert_page_headers,
    oauth_error,
    refresh,
    submit,
)

ADDRESS_TAKEN = "This address cannot be verified for this account"


def put_email(service, access_token: str, email: str, password: str) -> requests.Response:
    return requests.put(service.url("/me/email"), headers=bearer(access_token), timeout=TIMEOUT,
                        json={"email": email, "password": password})


def resend(service, access_token: str) -> requests.Response:
    """POST /email/verify/resend with the bearer and no body."""
    return requests.post(service.url("/email/verify/resend"), headers=bearer(access_token),
                         timeout=TIMEOUT)


def page_get(service, path: str, token: str, browser: requests.Session | None = None
             ) -> requests.Response:
    """GET of a hosted page a link opens, as a mail scanner (or a browser) fetches it."""
    return (browser or requests).get(service.url(path), params={"token": token},
                                     allow_redirects=False, timeout=TIMEOUT)


def comparable(r: requests.Response) -> tuple:
    """What a caller sees of an answer, less what differs between any two answers: the Date
    and the request's own id (every header, repeated ones each, names lower-cased)."""

    def volatile(name: str) -> bool:
        n = name.lower()
        return n == "date" or any(s in n for s in ("request-id", "requestid", "trace-id",
                                                   "apigw-id"))

    headers = sorted((k.lower(), v) for k, v in r.raw.headers.items() if not volatile(k))
    return r.status_code, r.content, headers


def wait_for_log(service, text: str, timeout: float = MAIL_WAIT) -> None:
    deadline = time.monotonic() + timeout
    while text not in service.log_text():
        assert time.monotonic() < deadline, f"{text!r} never logged:\n{service.log_text()[-3000:]}"
        time.sleep(0.2)


# --- Verification ------------------------------------------------------------------------------


def test_registration_with_an_address_mails_a_link_that_verifies_it_once(store_service, mailbox):
    service = store_service
    # GIVEN an address whose domain is typed in capitals
    local = new_address("Ada.Lovelace").split("@")[0]
    typed, normalised = f"{local}@Example.TEST", f"{local}@example.test"
    since = mailbox.mark()
    # WHEN an account registers with it
    account = register_with_email(service, email=typed)
    # THEN its profile shows the address normalised (the domain lower-cased) and unverified
    access = tokens_of(service, account)["access_token"]
    r = me(service, access)
    assert r.status_code == 200, r.text
    assert r.json() == {"username": account.username, "full_name": account.full_name,
                        "email": normalised, "email_verified": False}
    # AND a verification link went to it: /verify-email?token=..., and nothing but the link
    # carries the token
    token = verification_token(service, mailbox, account, since, to=normalised)

    # WHEN a mail scanner fetches the link twice
    for _ in range(2):
        page = page_get(service, "/verify-email", token)
        # THEN it gets the page with a "Confirm address" button posting the token, each time
        assert page.status_code == 200, page.text[:2000]
        assert_page_headers(page)
        parsed = Page(page.text, page.url)
        form = parsed.form_posting_to("/verify-email")
        assert form.hidden().get("token") == token, form.inputs
        assert "Confirm address" in parsed.text, parsed.text

    # WHEN the token is posted to the API
    r = verify(service, token)
    # THEN the address is verified (the scanner consumed nothing)
    assert r.status_code == 200, r.text
    assert r.json() == {"message": "Email address verified", "email": normalised}
    assert me(service, access).json() == {
        "username": account.username, "full_name": account.full_name, "email": normalised,
        "email_verified": True}
    # AND the token was single use
    assert_problem(verify(service, token), 400, INVALID_LINK)
    # AND a verified address needs no new link
    assert resend(service, access).status_code == 409
    # AND the token was never logged
    assert token not in service.log_text()


@pytest.mark.parametrize("email", [
    pytest.param("not-an-address", id="no-at"),
    pytest.param("two@@example.test", id="two-ats"),
    pytest.param("x" * 250 + "@example.test", id="over-254-characters"),
])
def test_an_invalid_address_is_refused_at_registration(store_service, email):
    """An address the parser refuses, or over 254 characters: 422 naming `email`, no account."""
    username, password = f"user-{uuid.uuid4().hex[:12]}", new_password()
    r = requests.post(store_service.url("/register"), timeout=TIMEOUT, json={
        "username": username, "password": password, "email": email})
    assert_problem(r, 422, field="email")
    assert login(store_service, username, password).status_code == 401


def test_an_account_without_an_address_keeps_its_profile_and_has_nothing_to_resend(
        store_service, oidc_user):
    username, password, full_name = oidc_user()
    access = login(store_service, username, password).json()["access_token"]
    # The profile is the tutorial's, without email fields
    assert me(store_service, access).json() == {"username": username, "full_name": full_name}
    # No address: nothing to resend (409); no bearer: 401
    assert resend(store_service, access).status_code == 409
    assert requests.post(store_service.url("/email/verify/resend"),
                         timeout=TIMEOUT).status_code == 401


def test_resend_mails_a_new_link_then_is_limited_to_one_a_minute(store_service, mailbox):
    service = store_service
    since = mailbox.mark()
    account = register_with_email(service)
    first = verification_token(service, mailbox, account, since)
    access = tokens_of(service, account)["access_token"]
    # WHEN the owner asks for a new link
    since = mailbox.mark()
    r = resend(service, access)
    # THEN 202, and a new link is mailed
    assert r.status_code == 202, r.text
    assert r.json() == {"message": "A new verification link is on its way"}
    second = verification_token(service, mailbox, account, since)
    assert second != first
    # WHEN they ask again within the minute
    again = resend(service, access)
    # THEN 429 with Retry-After, and no message
    assert_problem(again, 429)
    assert 1 <= int(again.headers["retry-after"]) <= 3600, again.headers
    time.sleep(NO_MAIL_GRACE)
    assert len(mailbox.find(account.email, CONFIRM, since=since)) == 1
    # AND the new link verifies the address
    assert verify(service, second).status_code == 200
    assert me(service, access).json()["email_verified"] is True


def test_an_address_verified_on_one_account_cannot_be_verified_on_another(store_service,
                                                                          mailbox):
    service = store_service
    # GIVEN an account whose address is verified
    owner = verified_account(service, mailbox, "Grace Hopper")
    # AND a second account registered with the same address (which gets its own link)
    since = mailbox.mark()
    other = register_with_email(service, email=owner.email, full_name="Mallory")
    token = verification_token(service, mailbox, other, since)
    # WHEN the second account's link is used
    r = verify(service, token)
    # THEN 409 with the neutral message
    assert_problem(r, 409, ADDRESS_TAKEN)
    # AND the first account keeps the address, verified; the second's stays unverified
    owner_me = me(service, tokens_of(service, owner)["access_token"]).json()
    assert (owner_me["email"], owner_me["email_verified"]) == (owner.email, True), owner_me
    other_me = me(service, tokens_of(service, other)["access_token"]).json()
    assert (other_me["email"], other_me["email_verified"]) == (owner.email, False), other_me
    # AND a reset asked for by the second account's name sends nothing to that mailbox
    since = mailbox.mark()
    assert_forgot_answer(forgot(service, username=other.username))
    mailbox.assert_nothing_for(owner.email, RESET, since=since)


def test_changing_the_address_needs_the_password_and_tells_the_old_one(store_service, mailbox):
    service = store_service
    # GIVEN an account whose address is verified, signed in
    account = verified_account(service, mailbox)
    access = tokens_of(service, account)["access_token"]
    new = new_address("moved")
    since = mailbox.mark()
    # WHEN the change comes with a wrong password
    r = put_email(service, access, new, account.password + "x")
    # THEN 403, and nothing changes
    assert_problem(r, 403)
    assert me(service, access).json()["email"] == account.email
    # WHEN it names the current address, or no address at all
    # THEN 422 naming `email`
    assert_problem(put_email(service, access, account.email, account.password), 422,
                   field="email")
    assert_problem(put_email(service, access, "not-an-address", account.password), 422,
                   field="email")
    mailbox.assert_nothing_for(new, since=since, grace=0)

    # WHEN it comes with the password
    r = put_email(service, access, new, account.password)
    # THEN the new address is set, unverified
    assert r.status_code == 200, r.text
    assert r.json() == {"email": new, "email_verified": False}
    assert me(service, access).json() == {
        "username": account.username, "full_name": account.full_name, "email": new,
        "email_verified": False}
    # AND the old, verified address is told, without a link
    notice = mailbox.wait_for(account.email, EMAIL_CHANGED, since=since)
    assert_notice(notice, account.email, EMAIL_CHANGED, never=(account.password,))
    # AND the new one gets a verification link
    token = verification_token(service, mailbox, account, since, to=new)

    # WHEN the person confirms on the hosted page the link opens (a form posting the token)
    browser = requests.Session()
    page = page_get(service, "/verify-email", token, browser)
    assert page.status_code == 200, page.text[:2000]
    parsed = Page(page.text, page.url)
    done = submit(browser, page.url, parsed.form_posting_to("/verify-email"))
    # THEN the page says so and the new address is verified
    assert done.status_code == 200, done.text[:2000]
    assert_page_headers(done)
    assert "Address verified" in Page(done.text, done.url).text
    assert me(service, access).json()["email_verified"] is True


# --- Forgot -------------------------------------------------------------------------------------


def test_forgot_by_address_or_by_name_mails_a_reset_link(store_service, mailbox):
    service = store_service
    by_address = verified_account(service, mailbox)
    by_name = verified_account(service, mailbox)
    since = mailbox.mark()
    # WHEN one asks by address (JSON, the domain in capitals) and the other by name (a form)
    local, domain = by_address.email.split("@")
    assert_forgot_answer(forgot(service, email=f"{local}@{domain.upper()}"))
    r = requests.post(service.url("/password/forgot"), data={"username": by_name.username},
                      timeout=TIMEOUT)
    assert_forgot_answer(r)
    # THEN each gets a reset link to /reset-password, the token only in it
    for account in (by_address, by_name):
        mail = mailbox.wait_for(account.email, RESET, since=since)
        link_token(mail, service, "/reset-password", never=(account.password,))


def test_forgot_answers_alike_and_mails_nothing_when_no_verified_address_matches(
        store_service, mailbox, oidc_user):
    """Enumeration safety: the same status, body and headers (all but Date and a request id),
    held to the same minimum time, whether the name or address is unknown, unverified or
    verified; only the last gets a message."""
    service = store_service
    verified = verified_account(service, mailbox)
    unverified = register_with_email(service)
    no_address, _, _ = oidc_user()
    unknown_address = new_address("nobody")
    since = mailbox.mark()
    # WHEN a reset is asked for each
    answers = {
        "verified": forgot(service, email=verified.email),
        "unknown address": forgot(service, email=unknown_address),
        "unknown name": forgot(service, username=f"nobody-{uuid.uuid4().hex[:12]}"),
        "unverified address": forgot(service, email=unverified.email),
        "unverified, by name": forgot(service, username=unverified.username),
        "no address, by name": forgot(service, username=no_address),
    }
    # THEN every answer is the same 202, none sooner than AUTH_FORGOT_MIN_MS
    for r in answers.values():
        assert_forgot_answer(r)
    baseline = comparable(answers["verified"])
    for case, r in answers.items():
        assert comparable(r) == baseline, (case, comparable(r), baseline)
    # AND only the verified address got a message
    mailbox.wait_for(verified.email, RESET, since=since)
    mailbox.assert_nothing_for(unknown_address, since=since)
    mailbox.assert_nothing_for(unverified.email, RESET, since=since, grace=0)


def test_forgot_without_a_name_or_address_is_refused(store_service):
    assert_problem(forgot(store_service), 422)
    assert_problem(forgot(store_service, email=42), 422, field="email")  # type: ignore[arg-type]


def test_a_second_forgot_within_the_minute_sends_nothing_and_a_reset_kills_the_earlier_link(
        store_service, mailbox):
    """The per-account throttle (one message a minute) answers as ever and sends nothing; a
    minute later a new link comes, and once it resets the password the first link, alive until
    then, dies with the old password. The one test that waits out the minute."""
    service = store_service
    account = verified_account(service, mailbox)
    since = mailbox.mark()
    first = reset_token(service, mailbox, account, since)
    # WHEN the owner asks again at once, by address and by name
    since = mailbox.mark()
    again = forgot(service, email=account.email)
    by_name = forgot(service, username=account.username)
    # THEN the same answer, and no second message
    assert_forgot_answer(again)
    assert_forgot_answer(by_name)
    asked = time.monotonic()
    mailbox.assert_nothing_for(account.email, RESET, since=since)

    # WHEN they ask once more after the minute (counted from the last request, in case the
    # throttle counts requests rather than messages)
    time.sleep(max(0.0, asked + 61 - time.monotonic()))
    since = mailbox.mark()
    second = reset_token(service, mailbox, account, since)
    # THEN a new link comes; the first still opens the form (both alive)
    assert second != first
    assert page_get(service, "/reset-password", first).status_code == 200
    # WHEN the second one resets the password
    password = new_password()
    assert reset(service, second, password).status_code == 200
    # THEN the first is dead: the API and the page refuse it
    assert_problem(reset(service, first, new_password()), 400, INVALID_LINK)
    assert page_get(service, "/reset-password", first).status_code == 400
    assert login(service, account.username, password).status_code == 200


# --- Reset --------------------------------------------------------------------------------------


def test_a_reset_link_survives_prefetching_and_a_refused_password_then_ends_every_session(
        store_service, mailbox):
    service = store_service
    # GIVEN a verified account with an open session
    account = verified_account(service, mailbox)
    session = tokens_of(service, account)
    assert session["refresh_token"], session
    since = mailbox.mark()
    token = reset_token(service, mailbox, account, since)

    # WHEN a mail scanner fetches the link twice
    for _ in range(2):
        page = page_get(service, "/reset-password", token)
        # THEN it gets the form each time: the token hidden, a new-password field
        assert page.status_code == 200, page.text[:2000]
        assert_page_headers(page)
        parsed = Page(page.text, page.url)
        form = parsed.form_posting_to("/reset-password")
        assert form.hidden().get("token") == token, form.inputs
        field = form.field("new_password")
        assert field.type == "password", field
        assert field.attrs.get("autocomplete") == "new-password", field
        assert "Set password" in parsed.text, parsed.text

    # WHEN a password the registration policy refuses is posted
    r = reset(service, token, "short")
    # THEN 422 naming new_password, and the token is not spent
    assert_problem(r, 422, field="new_password")
    mailbox.assert_nothing_for(account.email, PASSWORD_CHANGED, since=since, grace=0)

    # WHEN a good one is posted with the same token
    password = new_password()
    r = reset(service, token, password)
    # THEN the password is reset
    assert r.status_code == 200, r.text
    assert r.json() == {"message": "Your password has been reset"}
    assert "no-store" in r.headers.get("cache-control", ""), r.headers
    # AND every session ended: the refresh token is invalid_grant, the access token refused
    old = refresh(service, session["refresh_token"])
    assert old.status_code == 400 and oauth_error(old) == "invalid_grant", old.text
    assert me(service, session["access_token"]).status_code == 401
    # AND the old password is refused, the new one logs in
    assert login(service, account.username, account.password).status_code == 401
    assert login(service, account.username, password).status_code == 200
    # AND the owner is told, with no link and neither password
    notice = mailbox.wait_for(account.email, PASSWORD_CHANGED, since=since)
    assert_notice(notice, account.email, PASSWORD_CHANGED, never=(account.password, password))
    # AND the token was single use, at the API and on the page
    assert_problem(reset(service, token, new_password()), 400, INVALID_LINK)
    assert page_get(service, "/reset-password", token).status_code == 400
    # AND neither the token nor a password was logged
    log = service.log_text()
    assert token not in log and password not in log and account.password not in log


def test_a_reset_clears_the_login_throttle(store_service, mailbox):
    """The owner proved control of the mailbox: a guesser's failures no longer hold them off."""
    service = store_service
    account = verified_account(service, mailbox)
    since = mailbox.mark()
    token = reset_token(service, mailbox, account, since)
    # GIVEN seven consecutive failures from this address (5 free, then waits of 1, 2, 4 s),
    # waited out as Retry-After says
    failures, deadline = 0, time.monotonic() + 120
    while failures < 7:
        assert time.monotonic() < deadline, "the failures never counted"
        r = login(service, account.username, "not-the-password")
        if r.status_code == 429:
            time.sleep(max(1, int(r.headers["retry-after"])))
        else:
            assert r.status_code == 401, r.text
            failures += 1
    # AND so even the right password must wait now
    waiting = login(service, account.username, account.password)
    assert waiting.status_code == 429, waiting.text
    # WHEN the password is reset
    password = new_password()
    assert reset(service, token, password).status_code == 200
    # THEN the new one logs in at once
    r = login(service, account.username, password)
    assert r.status_code == 200, (r.status_code, r.text, waiting.headers.get("retry-after"))


def test_a_reset_link_dies_when_the_password_is_changed_otherwise(store_service, mailbox):
    service = store_service
    account = verified_account(service, mailbox)
    access = tokens_of(service, account)["access_token"]
    since = mailbox.mark()
    token = reset_token(service, mailbox, account, since)
    # WHEN the owner changes the password while signed in
    r = requests.put(service.url("/me/password"), headers=bearer(access), timeout=TIMEOUT,
                     json={"current_password": account.password, "new_password": new_password()})
    assert r.status_code == 200, r.text
    # THEN the link is dead (it was bound to the old password)
    assert page_get(service, "/reset-password", token).status_code == 400
    assert_problem(reset(service, token, new_password()), 400, INVALID_LINK)


def test_eight_concurrent_resets_with_one_token_give_one_success(store_service, mailbox):
    service = store_service
    account = verified_account(service, mailbox)
    since = mailbox.mark()
    token = reset_token(service, mailbox, account, since)
    # WHEN eight requests reset with the same token at the same moment, each its own password
    passwords = [new_password() for _ in range(8)]
    barrier = threading.Barrier(8)
    results: dict[str, requests.Response] = {}
    lock = threading.Lock()

    def attempt(password: str):
        barrier.wait()
        r = reset(service, token, password)
        with lock:
            results[password] = r

    threads = [threading.Thread(target=attempt, args=(p,)) for p in passwords]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    # THEN exactly one succeeded, the seven others got the invalid-link 400
    statuses = sorted(r.status_code for r in results.values())
    assert len(results) == 8, statuses
    assert statuses == [200] + [400] * 7, [(r.status_code, r.text[:300])
                                           for r in results.values()]
    for r in results.values():
        if r.status_code == 400:
            assert_problem(r, 400, INVALID_LINK)
    # AND the winner's password is the account's (checked first: the losers' count as failures)
    winner = next(p for p, r in results.items() if r.status_code == 200)
    assert login(service, account.username, winner).status_code == 200
    loser = next(p for p, r in results.items() if r.status_code == 400)
    assert login(service, account.username, loser).status_code == 401
    # AND one notice went out
    mailbox.wait_for(account.email, PASSWORD_CHANGED, since=since)
    time.sleep(NO_MAIL_GRACE)
    assert len(mailbox.find(account.email, PASSWORD_CHANGED, since=since)) == 1


def test_the_hosted_forgot_and_reset_pages(store_service, mailbox):
    """The pages a person without an app of the team's uses: the form that sends a link, and the
    page the link opens, each with its CSRF double-submit token, refusing a weak password (the
    form again) and a spent link."""
    service = store_service
    account = verified_account(service, mailbox)
    browser = requests.Session()

    def forgot_page() -> tuple[Page, Form]:
        r = browser.get(service.url("/forgot-password"), allow_redirects=False, timeout=TIMEOUT)
        assert r.status_code == 200, r.text[:2000]
        assert_page_headers(r)
        page = Page(r.text, r.url)
        return page, page.form_posting_to("/forgot-password")

    # GIVEN the "forgot password" page: one `login` field, the CSRF token in field and cookie
    page, form = forgot_page()
    assert form.field("login").labelled, form.inputs
    assert form.hidden().get("csrf") == browser.cookies.get(CSRF_COOKIE), form.inputs
    assert "Send reset link" in page.text, page.text
    assert page.stylesheets, "the sign-in page's stylesheet"
    since = mailbox.mark()
    # WHEN it is posted without the CSRF token
    forged = form.filled(login=account.username)
    del forged["csrf"]
    r = browser.post(service.url("/forgot-password"), data=forged, allow_redirects=False,
                     timeout=TIMEOUT)
    # THEN a 403 page, and nothing is sent
    assert r.status_code == 403, r.text[:2000]
    mailbox.assert_nothing_for(account.email, RESET, since=since)
    # WHEN the page, opened again, is posted with the address
    page, form = forgot_page()
    r = submit(browser, page.url, form, login=account.email)
    # THEN "Check your mail", and the link comes
    assert r.status_code == 200, r.text[:2000]
    assert_page_headers(r)
    assert "Check your mail" in Page(r.text, r.url).text
    token = link_token(mailbox.wait_for(account.email, RESET, since=since), service,
                       "/reset-password", never=(account.password,))

    # GIVEN a made-up token: the page says the link is invalid (400), with no form
    r = page_get(service, "/reset-password", "A" * 43, browser)
    assert r.status_code == 400, r.text[:2000]
    assert_page_headers(r)
    assert not [f for f in Page(r.text, r.url).forms if f.has("new_password")]

    def reset_page() -> tuple[Page, Form]:
        r = page_get(service, "/reset-password", token, browser)
        assert r.status_code == 200, r.text[:2000]
        page = Page(r.text, r.url)
        return page, page.form_posting_to("/reset-password")

    # GIVEN the page the real link opens
    page, form = reset_page()
    assert form.field("new_password").labelled, form.inputs
    # WHEN it is posted without the CSRF token: 403, nothing done
    forged = form.filled(new_password=new_password())
    del forged["csrf"]
    r = browser.post(service.url("/reset-password"), data=forged, allow_redirects=False,
                     timeout=TIMEOUT)
    assert r.status_code == 403, r.text[:2000]
    # WHEN a weak password is typed in (the page opened again): 422, the form again, the token
    # still there
    page, form = reset_page()
    r = submit(browser, page.url, form, new_password="short")
    assert r.status_code == 422, r.text[:2000]
    assert_page_headers(r)
    again = Page(r.text, r.url)
    form = again.form_posting_to("/reset-password")
    assert form.hidden().get("token") == token, form.inputs
    # WHEN a good one is typed into that form
    password = new_password()
    r = submit(browser, again.url, form, new_password=password)
    # THEN "Password changed", and it logs in
    assert r.status_code == 200, r.text[:2000]
    assert_page_headers(r)
    assert "Password changed" in Page(r.text, r.url).text
    assert login(service, account.username, password).status_code == 200
    assert login(service, account.username, account.password).status_code == 401
    # AND the link now opens the 400 page (it is spent)
    r = page_get(service, "/reset-password", token, browser)
    assert r.status_code == 400, r.text[:2000]
    assert_page_headers(r)


# --- The mailer failing, and the tokens' life -----------------------------------------------------


def test_a_failing_mailer_still_creates_the_account(store_service, mailbox):
    """The server refuses the recipient (550): the account exists all the same, the address is
    kept unverified, and the failure is logged as the MailFailed metric."""
    service = store_service
    email = new_address(REFUSED_PREFIX.rstrip("-"))
    assert email.startswith(REFUSED_PREFIX)
    account = register_with_email(service, email=email)
    access = tokens_of(service, account)["access_token"]
    profile = me(service, access).json()
    assert (profile["email"], profile["email_verified"]) == (email, False), profile
    wait_for_log(service, "MailFailed")
    assert account.password not in service.log_text()


def test_links_expire(short_token_service, mailbox):
    """On a watch whose verification and reset tokens live SHORT_TOKEN_SECONDS: a link used
    later is refused as any invalid one (API and page), and a fresh one works at once."""
    service = short_token_service
    # GIVEN an account verified at once through its link
    since = mailbox.mark()
    started = time.monotonic()
    owner = register_with_email(service)
    r = verify(service, verification_token(service, mailbox, owner, since))
    assert r.status_code == 200, (r.text, f"{time.monotonic() - started:.1f} s after registering")
    # AND another whose link is left unused
    since = mailbox.mark()
    late = register_with_email(service)
    late_token = verification_token(service, mailbox, late, since)
    # AND a reset link for the first, which opens the form while it lives
    since = mailbox.mark()
    token = reset_token(service, mailbox, owner, since)
    assert page_get(service, "/reset-password", token).status_code == 200
    # WHEN both outlive their life
    time.sleep(SHORT_TOKEN_SECONDS + 2)
    # THEN the reset link is refused, by the page and by the API, and nothing changed
    assert page_get(service, "/reset-password", token).status_code == 400
    assert_problem(reset(service, token, new_password()), 400, INVALID_LINK)
    assert login(service, owner.username, owner.password).status_code == 200
    # AND so is the verification link
    assert_problem(verify(service, late_token), 400, INVALID_LINK)
    # AND a fresh link verifies at once (its age was the cause)
    access = tokens_of(service, late)["access_token"]
    since = mailbox.mark()
    assert resend(service, access).status_code == 202
    assert verify(service, verification_token(service, mailbox, late, since)).status_code == 200
    assert me(service, access).json()["email_verified"] is True
