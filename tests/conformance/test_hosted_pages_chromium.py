"""The provider's hosted pages in headless Chromium, on each store (SQLite, then DynamoDB on
moto): a person opens an authorization URL (a code flow with PKCE S256, built here as a client
would), types a username and password into the login page, submits, and lands on the client's
callback page (a loopback server, conftest.py `callback`) with a code, the state and the issuer,
which the test then redeems with requests. Then single sign-on, end-session, a wrong password's
generic message, and the "Create account" path. And the way back in by mail (the suite's SMTP
server, conftest.py `mailbox`): "Forgot password?" on the sign-in page, the form that sends a
reset link, and the page the mailed link opens, where the new password is set. And an account
with TOTP on (mfa_support.py): the code typed into the page that follows the password.

Chromium, unlike a test client, enforces the pages' Content-Security-Policy: its form-action
directive applies also to the redirect that answers the form's post, so landing on the
127.0.0.1 callback (another origin) after the post proves the policy lets the real flow through;
and the console shows no violation (the stylesheet, the page's own file, is applied).
Screenshots are left in target/conformance/oidc-*-<store>.png (forgot-password-* and
reset-password-* for the way back in, oidc-otp-page-* for the second factor).
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

import requests
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from mail_support import (
    RESET,
    assert_forgot_answer,
    forgot,
    mail_link,
    new_password,
    verified_account,
)
from mail_support import login as password_login
from mfa_support import AMR_MFA, amr, totp_account
from oidc_support import (
    GENERIC_LOGIN_ERROR,
    assert_redirect_to,
    assert_tokens,
    auth_request,
    redeem,
    unique,
    verify_id_token,
)

WAIT = 60


def console(browser) -> list[str]:
    """What the console logged since the last call."""
    return [e["message"] for e in browser.get_log("browser")]


def csp_violations(messages: list[str]) -> list[str]:
    return [m for m in messages if "Content Security Policy" in m or "Refused to" in m]


def open_page_with_field(browser, url: str, name: str) -> None:
    browser.get(url)
    WebDriverWait(browser, WAIT).until(ec.presence_of_element_located((By.NAME, name)))


def hosted_form(browser, path: str = "/authorize"):
    """The page's one form posting to `path`."""
    forms = [f for f in browser.find_elements(By.TAG_NAME, "form")
             if urlsplit(f.get_attribute("action") or "").path == path
             and (f.get_attribute("method") or "").lower() == "post"]
    assert len(forms) == 1, browser.page_source[:3000]
    return forms[0]


def wait_for_text(browser, text: str) -> None:
    """Waits until the page's body shows `text` (the page may be replaced while it looks)."""
    WebDriverWait(browser, WAIT, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda b: text in b.find_element(By.TAG_NAME, "body").text)


def labelled_field(browser, form, name: str):
    """The form's field `name`, which a <label> names (as a screen reader finds it)."""
    field = form.find_element(By.NAME, name)
    labels = browser.execute_script(
        "return [...arguments[0].labels].map(l => l.textContent.trim())", field)
    assert labels and all(labels), (name, labels)
    return field


def type_into(field, text: str) -> None:
    field.clear()
    field.send_keys(text)


def press_submit(form) -> None:
    buttons = form.find_elements(
        By.CSS_SELECTOR, "button[type=submit], button:not([type]), input[type=submit]")
    assert buttons, form.get_attribute("outerHTML")[:3000]
    buttons[0].click()


def wait_for_url(browser, prefix: str, messages: list[str]) -> str:
    """Waits until the browser is at a URL starting with `prefix`; on failure says where it
    is and what the console logged (a blocked form-action shows there)."""
    try:
        WebDriverWait(browser, WAIT).until(lambda b: b.current_url.startswith(prefix))
    except TimeoutException:
        messages.extend(console(browser))
        raise AssertionError(
            f"never reached {prefix}: at {browser.current_url}\nconsole: {messages}\n"
            f"{browser.page_source[:3000]}") from None
    return browser.current_url


def assert_stylesheet_applied(browser, service) -> None:
    """Every stylesheet the page links is the service's own and was loaded (the policy did
    not block it), and nothing came from elsewhere."""
    sheets = browser.execute_script(
        "return [...document.querySelectorAll('link[rel~=stylesheet]')]"
        ".map(l => [l.href, l.sheet ? l.sheet.cssRules.length : -1])")
    assert sheets, browser.page_source[:3000]
    for href, rules in sheets:
        assert href.startswith(service.url("/")), sheets
        assert rules > 0, f"{href} was not applied: {sheets}"
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    elsewhere = [url for url in loaded if not url.startswith(service.url("/"))]
    assert not elsewhere, elsewhere


def sign_in_in_chromium(browser, service, username: str, password: str, messages: list[str],
                        screenshot=None) -> None:
    """On the login page: types the name and password into the labelled fields, submits."""
    form = hosted_form(browser)
    assert_stylesheet_applied(browser, service)
    type_into(labelled_field(browser, form, "username"), username)
    type_into(labelled_field(browser, form, "password"), password)
    if screenshot:
        browser.save_screenshot(str(screenshot))
    messages.extend(console(browser))
    press_submit(form)


def redeem_landing(service, request, url: str, username: str, full_name: str) -> dict:
    query = assert_redirect_to(url, request.redirect_uri)
    assert "error" not in query, query
    assert query["state"] == request.state, query
    assert query["iss"] == service.issuer, query
    r = redeem(service, request, query["code"])
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert_tokens(service, tokens, request, username, full_name)
    return tokens


def test_sign_in_lands_on_the_callback_then_sso_and_end_session(
        oidc_service, oidc_clients, oidc_user, callback, chromium, artifacts):
    store = oidc_service.store
    username, password, full_name = oidc_user("Ada Lovelace")
    messages: list[str] = []
    # GIVEN a client's authorization URL, opened in a browser with no session
    request = auth_request(oidc_service, oidc_clients.spa, oidc_clients.redirect_uri)
    open_page_with_field(chromium, request.url, "username")

    # WHEN the person types their name and password and submits
    sign_in_in_chromium(chromium, oidc_service, username, password, messages,
                        screenshot=artifacts / f"oidc-login-page-{store}.png")

    # THEN the browser lands on the client's callback page with the code, state and issuer
    landed = wait_for_url(chromium, oidc_clients.redirect_uri + "?", messages)
    wait_for_text(chromium, "signed in")
    chromium.save_screenshot(str(artifacts / f"oidc-login-{store}.png"))
    split = urlsplit(landed)
    assert f"{split.path}?{split.query}" in callback.hits, callback.hits[-5:]
    # AND the code redeems for the tokens
    tokens = redeem_landing(oidc_service, request, landed, username, full_name)
    # AND the pages' policy blocked nothing on the way
    messages.extend(console(chromium))
    assert not csp_violations(messages), messages

    # WHEN the same browser opens another authorization URL
    second = auth_request(oidc_service, oidc_clients.spa, oidc_clients.redirect_uri)
    chromium.get(second.url)
    # THEN it comes straight back with a code (single sign-on)
    landed = wait_for_url(chromium, oidc_clients.redirect_uri + "?", messages)
    redeem_landing(oidc_service, second, landed, username, full_name)

    # WHEN the client sends it to end-session
    chromium.get(oidc_service.url("/end-session") + "?" + urlencode({
        "id_token_hint": tokens["id_token"],
        "post_logout_redirect_uri": oidc_clients.post_logout_redirect_uri,
        "state": "xyz"}))
    # THEN it lands on the signed-out page, with the state
    landed = wait_for_url(chromium, oidc_clients.post_logout_redirect_uri + "?", messages)
    assert assert_redirect_to(landed, oidc_clients.post_logout_redirect_uri)["state"] == "xyz"
    # AND the next authorization request shows the login page again
    open_page_with_field(chromium, auth_request(oidc_service, oidc_clients.spa,
                                                oidc_clients.redirect_uri).url, "password")
    messages.extend(console(chromium))
    assert not csp_violations(messages), messages


def test_a_wrong_password_shows_the_generic_message_then_the_right_one_signs_in(
        oidc_service, oidc_clients, oidc_user, chromium, artifacts):
    store = oidc_service.store
    username, password, full_name = oidc_user("Grace Hopper")
    messages: list[str] = []
    request = auth_request(oidc_service, oidc_clients.spa, oidc_clients.redirect_uri)
    open_page_with_field(chromium, request.url, "username")

    # WHEN the person mistypes the password
    sign_in_in_chromium(chromium, oidc_service, username, password + "x", messages)
    # THEN the page says so, in the one generic message, and stays on the provider
    wait_for_text(chromium, GENERIC_LOGIN_ERROR)
    chromium.save_screenshot(str(artifacts / f"oidc-wrong-password-{store}.png"))
    assert chromium.current_url.startswith(oidc_service.url("/authorize")), chromium.current_url
    assert_stylesheet_applied(chromium, oidc_service)
    messages.extend(console(chromium))
    assert not csp_violations(messages), messages

    # WHEN they type the right one on that page
    sign_in_in_chromium(chromium, oidc_service, username, password, messages)
    # THEN they land on the callback, and the code works
    landed = wait_for_url(chromium, oidc_clients.redirect_uri + "?", messages)
    redeem_landing(oidc_service, request, landed, username, full_name)
    messages.extend(console(chromium))
    assert not csp_violations(messages), messages


def test_create_account_from_the_login_page(oidc_service, oidc_clients, chromium, artifacts):
    store = oidc_service.store
    messages: list[str] = []
    request = auth_request(oidc_service, oidc_clients.spa, oidc_clients.redirect_uri)
    open_page_with_field(chromium, request.url, "username")

    # WHEN a newcomer follows "Create account"
    chromium.find_element(By.LINK_TEXT, "Create account").click()
    WebDriverWait(chromium, WAIT).until(ec.presence_of_element_located((By.NAME, "full_name")))
    form = hosted_form(chromium)
    assert_stylesheet_applied(chromium, oidc_service)
    # AND fills in the registration page
    username = unique("newcomer")
    password = f"orbit-{unique('x')}-lantern-quartz"
    type_into(labelled_field(chromium, form, "username"), username)
    type_into(labelled_field(chromium, form, "full_name"), "Annie Easley")
    type_into(labelled_field(chromium, form, "password"), password)
    chromium.save_screenshot(str(artifacts / f"oidc-register-{store}.png"))
    messages.extend(console(chromium))
    press_submit(form)

    # THEN they are signed in and land on the callback with a code for the new account
    landed = wait_for_url(chromium, oidc_clients.redirect_uri + "?", messages)
    redeem_landing(oidc_service, request, landed, username, "Annie Easley")
    messages.extend(console(chromium))
    assert not csp_violations(messages), messages
    # AND the account logs in by password too
    login = requests.post(oidc_service.url("/login"), timeout=60, data={
        "grant_type": "password", "username": username, "password": password})
    assert login.status_code == 200, login.text


def test_forgot_password_on_the_sign_in_page_mails_a_reset_link(
        oidc_service, oidc_clients, mailbox, chromium, artifacts):
    store = oidc_service.store
    account = verified_account(oidc_service, mailbox, "Mary Jackson")
    messages: list[str] = []
    request = auth_request(oidc_service, oidc_clients.spa, oidc_clients.redirect_uri)
    open_page_with_field(chromium, request.url, "username")

    # WHEN the person follows "Forgot password?" on the sign-in page
    chromium.find_element(By.LINK_TEXT, "Forgot password?").click()
    # THEN they are on the provider's /forgot-password form
    WebDriverWait(chromium, WAIT).until(ec.presence_of_element_located((By.NAME, "login")))
    at = urlsplit(chromium.current_url)
    assert at.scheme + "://" + at.netloc == oidc_service.issuer, chromium.current_url
    assert at.path == "/forgot-password", chromium.current_url
    form = hosted_form(chromium, "/forgot-password")
    assert_stylesheet_applied(chromium, oidc_service)
    # WHEN they type their address and send
    since = mailbox.mark()
    type_into(labelled_field(chromium, form, "login"), account.email)
    chromium.save_screenshot(str(artifacts / f"forgot-password-{store}.png"))
    messages.extend(console(chromium))
    press_submit(form)
    # THEN the page tells them to check their mail
    wait_for_text(chromium, "Check your mail")
    chromium.save_screenshot(str(artifacts / f"forgot-password-sent-{store}.png"))
    # AND the reset link is in their mailbox
    mail_link(mailbox.wait_for(account.email, RESET, since=since), oidc_service,
              "/reset-password", never=(account.password,))
    messages.extend(console(chromium))
    assert not csp_violations(messages), messages


def test_the_mailed_reset_link_sets_a_new_password_in_the_browser(
        oidc_service, mailbox, chromium, artifacts):
    store = oidc_service.store
    # GIVEN a reset link mailed to a verified address
    account = verified_account(oidc_service, mailbox, "Dorothy Vaughan")
    since = mailbox.mark()
    assert_forgot_answer(forgot(oidc_service, email=account.email))
    link = mail_link(mailbox.wait_for(account.email, RESET, since=since), oidc_service,
                     "/reset-password", never=(account.password,))
    messages: list[str] = []

    # WHEN the person opens it
    open_page_with_field(chromium, link, "new_password")
    # THEN the page asks for a new password, in a labelled field a password manager fills in
    form = hosted_form(chromium, "/reset-password")
    assert_stylesheet_applied(chromium, oidc_service)
    field = labelled_field(chromium, form, "new_password")
    assert field.get_attribute("type") == "password"
    assert field.get_attribute("autocomplete") == "new-password"
    # WHEN they type one and press "Set password"
    password = new_password()
    type_into(field, password)
    chromium.save_screenshot(str(artifacts / f"reset-password-{store}.png"))
    messages.extend(console(chromium))
    press_submit(form)
    # THEN the page says the password changed
    wait_for_text(chromium, "Password changed")
    chromium.save_screenshot(str(artifacts / f"reset-password-done-{store}.png"))
    messages.extend(console(chromium))
    assert not csp_violations(messages), messages
    # AND the new password logs in over the API, the old one no longer
    assert password_login(oidc_service, account.username, password).status_code == 200
    assert password_login(oidc_service, account.username, account.password).status_code == 401


def test_an_account_with_totp_types_the_code_then_lands_on_the_callback(
        oidc_service, oidc_clients, chromium, artifacts):
    """The second factor in a browser: after the password, the page asks for the code in a
    labelled `otp` field an authenticator or a phone's keyboard fills in (autocomplete
    one-time-code, numeric); the code typed in (pyotp's), the browser lands on the callback,
    and the tokens say two factors."""
    store = oidc_service.store
    account = totp_account(oidc_service, "Mary Jackson")
    messages: list[str] = []
    request = auth_request(oidc_service, oidc_clients.spa, oidc_clients.redirect_uri)
    open_page_with_field(chromium, request.url, "username")

    # WHEN the person signs in with their password
    sign_in_in_chromium(chromium, oidc_service, account.username, account.password, messages)
    # THEN the page asks for the code, still on the provider
    WebDriverWait(chromium, WAIT).until(ec.presence_of_element_located((By.NAME, "otp")))
    assert chromium.current_url.startswith(oidc_service.url("/authorize")), chromium.current_url
    field = chromium.find_element(By.NAME, "otp")
    form = field.find_element(By.XPATH, "./ancestor::form")
    assert urlsplit(form.get_attribute("action") or "").path == "/authorize", (
        form.get_attribute("outerHTML")[:3000])
    field = labelled_field(chromium, form, "otp")
    assert field.get_attribute("autocomplete") == "one-time-code"
    assert field.get_attribute("inputmode") == "numeric"
    assert "Use a recovery code" in chromium.find_element(By.TAG_NAME, "body").text
    assert_stylesheet_applied(chromium, oidc_service)
    # WHEN they type the authenticator's code and press "Verify"
    type_into(field, account.authenticator.next_code())
    chromium.save_screenshot(str(artifacts / f"oidc-otp-page-{store}.png"))
    messages.extend(console(chromium))
    press_submit(form)

    # THEN they land on the callback with a code, whose tokens say two factors
    landed = wait_for_url(chromium, oidc_clients.redirect_uri + "?", messages)
    wait_for_text(chromium, "signed in")
    tokens = redeem_landing(oidc_service, request, landed, account.username, account.full_name)
    claims = verify_id_token(oidc_service, tokens["id_token"], oidc_clients.spa, request.nonce,
                             tokens["access_token"])
    assert claims["amr"] == AMR_MFA, claims
    assert amr(oidc_service, tokens["access_token"]) == AMR_MFA
    messages.extend(console(chromium))
    assert not csp_violations(messages), messages
