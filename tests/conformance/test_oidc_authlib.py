"""The OpenID Connect provider, on each store (SQLite, then DynamoDB on moto), as an off-the-shelf
relying party sees it: authlib's OAuth2Session builds the authorization request (code flow,
PKCE S256, a nonce) from the discovery document, a `requests.Session` plays the person's
browser on the hosted login page (keeping its cookies, never following a redirect by itself),
authlib redeems the code at the token endpoint, PyJWT verifies the id_token from the published
key set (aud, nonce, at_hash, sid, auth_time, amr, name), and authlib refreshes, calls userinfo
and revokes.

Then what must not work: a code redeemed twice (which also ends what the first redemption
gave), or by eight clients at once; redirect URIs that are not exactly a registered one (an
error page, never a redirect); requests without PKCE; posts without the CSRF token; a refresh
or a revocation by another client. And the browser session: single sign-on, prompt=login,
max_age=0, end-session and prompt=none, the hosted registration page.

Clients are registered by the operator's CLI (conftest.py `oidc_clients`): public `spa` and
`mobile`, confidential `webapp`, coming back to a loopback callback server.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urlencode, urljoin, urlsplit

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from oidc_support import (
    CSRF_COOKIE,
    GENERIC_LOGIN_ERROR,
    SCOPE,
    SESSION_COOKIE,
    TIMEOUT,
    Page,
    assert_page_headers,
    assert_redirect_to,
    assert_tokens,
    auth_request,
    authorize_redirect,
    bearer_get,
    cookie_attributes,
    login_page,
    oauth_error,
    query_of,
    redeem,
    refresh,
    set_cookie,
    sign_in,
    submit,
    unique,
    verify_id_token,
)


@pytest.fixture
def discovery(oidc_service):
    r = requests.get(oidc_service.url("/.well-known/openid-configuration"), timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    return r.json()


def signed_in_tokens(service, clients, user, browser=None, client_id=None, scope=SCOPE):
    """A code flow through the login page for a public client; returns (tokens, request,
    browser). `browser` keeps the provider's cookies."""
    username, password, full_name = user
    browser = browser or requests.Session()
    request = auth_request(service, client_id or clients.spa, clients.redirect_uri, scope=scope)
    query = sign_in(browser, request, username, password)
    r = redeem(service, request, query["code"])
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert_tokens(service, tokens, request, username, full_name, scope=scope)
    return tokens, request, browser


# --- Discovery --------------------------------------------------------------------------------


def test_both_discovery_documents_describe_the_provider(oidc_service):
    """/.well-known/openid-configuration and /.well-known/oauth-authorization-server are the
    same document, naming this service's endpoints and what it supports."""
    # WHEN a relying party reads both discovery documents
    oidc = requests.get(oidc_service.url("/.well-known/openid-configuration"), timeout=TIMEOUT)
    oauth = requests.get(oidc_service.url("/.well-known/oauth-authorization-server"),
                         timeout=TIMEOUT)
    # THEN they are the same JSON
    assert oidc.status_code == 200, oidc.text
    assert oauth.status_code == 200, oauth.text
    assert oidc.headers["content-type"].startswith("application/json"), oidc.headers
    doc = oidc.json()
    assert oauth.json() == doc
    # AND point at this service
    iss = oidc_service.issuer
    assert doc["issuer"] == iss
    assert doc["authorization_endpoint"] == f"{iss}/authorize"
    assert doc["token_endpoint"] == f"{iss}/login"
    assert doc["userinfo_endpoint"] == f"{iss}/userinfo"
    assert doc["end_session_endpoint"] == f"{iss}/end-session"
    assert doc["revocation_endpoint"] == f"{iss}/logout"
    assert doc["jwks_uri"] == f"{iss}/.well-known/jwks.json"
    # AND say what the provider does
    assert doc["response_types_supported"] == ["code"]
    assert {"authorization_code", "refresh_token", "password"} <= set(
        doc["grant_types_supported"]), doc
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert set(doc["scopes_supported"]) == {"openid", "profile", "offline_access"}, doc
    assert set(doc["token_endpoint_auth_methods_supported"]) == {
        "none", "client_secret_basic", "client_secret_post"}, doc
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert "RS256" in doc["id_token_signing_alg_values_supported"], doc


# --- The code flow with authlib ---------------------------------------------------------------


def test_authlib_public_client_code_flow_refresh_userinfo_and_revoke(
        oidc_service, oidc_clients, oidc_user, discovery):
    """The whole life of a public client's sign-in, with authlib doing the OAuth side."""
    username, password, full_name = oidc_user("Grace Hopper")
    # GIVEN authlib as a public client with PKCE, configured from discovery
    client = OAuth2Session(oidc_clients.spa, redirect_uri=oidc_clients.redirect_uri,
                           scope=SCOPE, code_challenge_method="S256",
                           token_endpoint_auth_method="none")
    verifier, nonce = generate_token(48), generate_token(20)
    url, state = client.create_authorization_url(discovery["authorization_endpoint"],
                                                 code_verifier=verifier, nonce=nonce)

    # WHEN the person opens it, and signs in on the provider's page
    browser = requests.Session()
    r, page, form = login_page(browser, url)
    answer = submit(browser, r.url, form, username=username, password=password)

    # THEN the browser is sent back to the client with a code, the state and the issuer
    assert answer.status_code == 303, answer.text[:2000]
    location = answer.headers["location"]
    query = assert_redirect_to(location, oidc_clients.redirect_uri)
    assert query["state"] == state
    assert query["iss"] == discovery["issuer"]
    assert query["code"]

    # WHEN authlib redeems the code with its verifier
    started = time.time()
    token = dict(client.fetch_token(discovery["token_endpoint"], authorization_response=location,
                                    state=state, code_verifier=verifier))
    # THEN it holds a bearer token, a refresh token and an id_token for this client
    assert token["token_type"] == "bearer"
    assert token["expires_in"] > 0
    assert set(token["scope"].split()) == set(SCOPE.split())
    assert token["refresh_token"]
    claims = verify_id_token(oidc_service, token["id_token"], oidc_clients.spa, nonce,
                             token["access_token"], now=started)
    assert claims["preferred_username"] == username
    assert claims["name"] == full_name
    assert claims["sub"] != username, "the subject is the immutable user id, not the name"

    # WHEN authlib refreshes
    refreshed = dict(client.refresh_token(discovery["token_endpoint"]))
    # THEN the tokens were rotated and the new access token opens userinfo
    assert refreshed["refresh_token"] != token["refresh_token"]
    assert refreshed["access_token"] != token["access_token"]
    info = client.get(discovery["userinfo_endpoint"], timeout=TIMEOUT)
    assert info.status_code == 200, info.text
    assert info.request.headers["Authorization"] == f"Bearer {refreshed['access_token']}"
    assert info.json() == {"sub": claims["sub"], "preferred_username": username,
                           "name": full_name}

    # WHEN authlib revokes the refresh token (its client_id in the body)
    revoked = client.revoke_token(discovery["revocation_endpoint"],
                                  token=refreshed["refresh_token"],
                                  token_type_hint="refresh_token")
    assert revoked.status_code == 200, revoked.text
    assert f"client_id={oidc_clients.spa}" in revoked.request.body
    # THEN the refresh token is dead
    with pytest.raises(OAuthError) as failure:
        client.refresh_token(discovery["token_endpoint"], refresh_token=refreshed["refresh_token"])
    assert failure.value.error == "invalid_grant"


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_authlib_confidential_client_code_flow(oidc_service, oidc_clients, oidc_user, discovery,
                                               auth_method):
    """A server-side client authenticates at the token endpoint with its secret, in the
    Authorization header or in the body, for the code and for the refresh."""
    username, password, full_name = oidc_user("Katherine Johnson")
    # GIVEN authlib as the confidential client `webapp`
    revocation_methods = discovery.get("revocation_endpoint_auth_methods_supported", ["none"])
    client = OAuth2Session(
        oidc_clients.webapp, oidc_clients.webapp_secret,
        redirect_uri=oidc_clients.redirect_uri, scope=SCOPE, code_challenge_method="S256",
        token_endpoint_auth_method=auth_method,
        revocation_endpoint_auth_method=(
            auth_method if auth_method in revocation_methods else "none"),
    )
    sent: list[requests.PreparedRequest] = []
    client.register_compliance_hook("access_token_response",
                                    lambda resp: sent.append(resp.request) or resp)
    verifier, nonce = generate_token(48), generate_token(20)
    url, state = client.create_authorization_url(discovery["authorization_endpoint"],
                                                 code_verifier=verifier, nonce=nonce)
    # WHEN the person signs in
    browser = requests.Session()
    r, _, form = login_page(browser, url)
    answer = submit(browser, r.url, form, username=username, password=password)
    assert answer.status_code == 303, answer.text[:2000]
    location = answer.headers["location"]
    assert query_of(location)["iss"] == oidc_service.issuer

    # AND the client redeems the code with its secret
    token = dict(client.fetch_token(discovery["token_endpoint"], authorization_response=location,
                                    state=state, code_verifier=verifier))
    # THEN the token request carried the secret the way asked
    (token_request,) = sent
    if auth_method == "client_secret_basic":
        assert token_request.headers["Authorization"].startswith("Basic ")
        assert "client_secret=" not in token_request.body
    else:
        assert "Authorization" not in token_request.headers
        assert "client_secret=" in token_request.body
    # AND the id_token is for `webapp`
    claims = verify_id_token(oidc_service, token["id_token"], oidc_clients.webapp, nonce,
                             token["access_token"])
    assert claims["name"] == full_name
    # AND the refresh authenticates the same way, and works
    refreshed = dict(client.refresh_token(discovery["token_endpoint"]))
    assert refreshed["access_token"] != token["access_token"]
    info = bearer_get(oidc_service, "/userinfo", refreshed["access_token"])
    assert info.status_code == 200, info.text
    assert info.json()["preferred_username"] == username
    # AND the revocation ends the refresh token
    revoked = client.revoke_token(discovery["revocation_endpoint"],
                                  token=refreshed["refresh_token"],
                                  token_type_hint="refresh_token")
    assert revoked.status_code == 200, revoked.text
    with pytest.raises(OAuthError) as failure:
        client.refresh_token(discovery["token_endpoint"], refresh_token=refreshed["refresh_token"])
    assert failure.value.error == "invalid_grant"


@pytest.mark.parametrize("how", ["basic-wrong-secret", "post-wrong-secret", "no-secret"])
def test_a_confidential_client_without_its_secret_is_invalid_client(
        oidc_service, oidc_clients, oidc_user, how):
    """The token endpoint refuses `webapp` when its secret is wrong (or missing): 401
    invalid_client, with no token."""
    username, password, _ = oidc_user()
    browser = requests.Session()
    request = auth_request(oidc_service, oidc_clients.webapp, oidc_clients.redirect_uri)
    code = sign_in(browser, request, username, password)["code"]
    wrong = "x" + oidc_clients.webapp_secret[1:]

    # WHEN the code is redeemed with a wrong secret (or none)
    if how == "basic-wrong-secret":
        r = redeem(oidc_service, request, code, auth=(oidc_clients.webapp, wrong))
    elif how == "post-wrong-secret":
        r = redeem(oidc_service, request, code, data={"client_secret": wrong})
    else:
        r = redeem(oidc_service, request, code)
    # THEN it is invalid_client: 401 when the secret was wrong
    assert oauth_error(r) == "invalid_client", (r.status_code, r.text)
    if how == "no-secret":
        assert r.status_code in (400, 401), r.text
    else:
        assert r.status_code == 401, r.text
    assert "access_token" not in r.text


# --- The login page ---------------------------------------------------------------------------


def test_the_login_page_carries_the_request_a_csrf_token_and_labelled_fields(
        oidc_service, oidc_clients):
    """What the hosted login page is made of: a form posting to /authorize with the
    authorization request in hidden fields, the CSRF token (the same as its cookie), the
    labelled username and password fields, a submit button, a 'Create account' link, its own
    stylesheet, and the headers of every page."""
    # GIVEN a browser with no session at the provider
    browser = requests.Session()
    request = auth_request(oidc_service, oidc_clients.spa, oidc_clients.redirect_uri)
    # WHEN it opens the authorization URL
    r, page, form = login_page(browser, request.url)

    # THEN the page is served under the strict headers
    assert_page_headers(r)
    # AND its form carries the authorization request
    sent = query_of(request.url)
    hidden = form.hidden()
    for name, value in sent.items():
        assert hidden.get(name) == value, (name, hidden)
    assert hidden["action"] == "login"
    # AND the CSRF token, which is also the auth_csrf cookie's value
    assert hidden["csrf"]
    cookie = set_cookie(r, CSRF_COOKIE)
    assert cookie, r.headers
    assert cookie.split(";", 1)[0].split("=", 1)[1] == hidden["csrf"]
    # AND the two labelled fields a password manager recognises
    user = form.field("username")
    assert user.attrs.get("autocomplete") == "username", user
    assert user.labelled, user
    secret = form.field("password")
    assert secret.type == "password", secret
    assert secret.attrs.get("autocomplete") == "current-password", secret
    assert secret.labelled, secret
    assert form.submits(), form
    # AND a link to create an account instead, for the same request
    href = page.link("Create account")
    assert query_of(urljoin(r.url, href)) == {**sent, "prompt": "create"}
    assert urlsplit(urljoin(r.url, href)).path == "/authorize"
    # AND one stylesheet, from the service itself, which it serves
    assert len(page.stylesheets) == 1, page.stylesheets
    css_url = urljoin(r.url, page.stylesheets[0])
    assert css_url.startswith(oidc_service.url("/")), css_url
    css = requests.get(css_url, timeout=TIMEOUT)
    assert css.status_code == 200, css.text
    assert css.headers["content-type"].startswith("text/css"), css.headers


@pytest.mark.parametrize("who", ["wrong-password", "unknown-user"])
def test_a_failed_login_shows_the_form_again_with_one_generic_message(
        oidc_service, oidc_clients, oidc_user, who):
    """A wrong password and an unknown name get the same 401 page: the form again and
    'Incorrect username or password'; the person can then sign in from that page."""
    username, password, _ = oidc_user()
    browser = requests.Session()
    request = auth_request(oidc_service, oidc_clients.spa, oidc_clients.redirect_uri)
    r, _, form = login_page(browser, request.url)

    # WHEN the person types a wrong password (or a name nobody has)
    name = username if who == "wrong-password" else unique("nobody")
    failed = submit(browser, r.url, form, username=name, password=f"{password}-not")

    # THEN the page comes back with the generic message, and nothing else happened
    assert failed.status_code == 401, failed.text[:2000]
    assert_page_headers(failed)
    assert "location" not in failed.headers
    assert set_cookie(failed, SESSION_COOKIE) is None
    again = Page(failed.text, failed.url)
    assert GENERIC_LOGIN_ERROR in again.text, again.text
    retry = again.form_posting_to("/authorize")
    assert retry.hidden()["state"] == request.state

    # WHEN they try again from that page with the right password
    answer = submit(browser, r.url, retry, username=username, password=password)
    # THEN they are signed in and back at the client
    assert answer.status_code == 303, answer.text[:2000]
    query = assert_redirect_to(answer.headers["location"], oidc_clients.redirect_uri)
    assert query["state"] == request.state and query["code"], query


def test_signing_in_sets_an_http_only_same_site_session_cookie(oidc_service, oidc_clients,
                                                               oidc_user):
    username, password, _ = oidc_user()
    browser = requests.Session()
    request = auth_request(oidc_service, oidc_clients.spa, oidc_clients.redirect_uri)
    r, _, form = login_page(browser, request.url)
    # WHEN the person signs in
    answer = submit(browser, r.url, form, username=username, password=password)
    assert answer.status_code == 303, answer.text[:2000]
    # THEN the browser session is an HttpOnly, SameSite=Lax cookie (http: no __Host- prefix)
    cookie = set_cookie(answer, SESSION_COOKIE)
    assert cookie, answer.headers
    attributes = cookie_attributes(cookie)
    assert "httponly" in attributes, cookie
    assert attributes.get("samesite", "").lower() == "lax", cookie
    assert browser.cookies.get(SESSION_COOKIE), browser.cookies


# --- The code: single use, bound to its verifier ----------------------------------------------


def test_a_second_redemption_fails_and_ends_the_first_tokens(oidc_service, oidc_clients,
                                                             oidc_user):
    """RFC 6749 §4.1.2: a code used twice is refused, and what it gave the first time is
    revoked (someone else may have the code)."""
    username, password, full_name = oidc_user()
    browser = requests.Session()
    request = auth_request(oidc_service, oidc_clients.spa, oidc_clients.redirect_uri)
    code = sign_in(browser, request, username, password)["code"]
    # GIVEN the code was redeemed once and the tokens work
    first = redeem(oidc_service, request, code)
    assert first.status_code == 200, first.text
    tokens = first.json()
    assert_tokens(oidc_service, tokens, request, username, full_name)
    assert bearer_get(oidc_service, "/me", tokens["access_token"]).status_code == 200
    assert bearer_get(oidc_service, "/userinfo", tokens["access_token"]).status_code == 200

    # WHEN it is redeemed again
    second = redeem(oidc_service, request, code)
    # THEN invalid_grant
    assert second.status_code == 400, second.text
    assert oauth_error(second) == "invalid_grant", second.text
    # AND the first redemption's tokens are dead
    again = refresh(oidc_service, tokens["refresh_token"], client_id=oidc_clients.spa)
    assert again.status_code == 400 and oauth_error(again) == "invalid_grant", again.text
    assert bearer_get(oidc_service, "/me", tokens["access_token"]).status_code == 401
    assert bearer_get(oidc_service, "/userinfo", tokens["access_token"]).status_code == 401


def test_eight_concurrent_redemptions_of_one_code_give_one_token(oidc_service, oidc_clients,
                                                                 oidc_user):
    username, password, _ = oidc_user()
    browser = requests.Session()
    request = auth_request(oidc_service, oidc_clients.spa, oidc_clients.redirect_uri)
    code = sign_in(browser, request, username, password)["code"]
    # WHEN eight clients redeem the same code at the same moment
    barrier = threading.Barrier(8)
    results: list[requests.Response] = []
    lock = threading.Lock()

    def attempt():
        barrier.wait()
        r = redeem(oidc_service, request, code)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    # THEN exactly one got tokens, the seven others invalid_grant
    statuses = sorted(r.status_code for r in results)
    assert len(results) == 8, statuses
    assert statuses == [200] + [400] * 7, [(r.status_code, r.text[:300]) for r in results]
    assert all(oauth_error(r) == "invalid_grant" for r in results if r.status_code == 400)


@pytest.mark.parametrize("mismatch", ["code_verifier", "client_id", "redirect_uri"])
def test_a_code_redeemed_with_another_verifier_client_or_redirect_uri_is_invalid_grant(
        oidc_service, oidc_clients, oidc_user, mismatch):
    """The code is bound to the PKCE challenge, the client and the redirect URI of its
    request (RFC 7636 §4.6, RFC 6749 §4.1.3)."""
    username, password, _ = oidc_user()
    browser = requests.Session()
    request = auth_request(oidc_service, oidc_clients.spa, oidc_clients.redirect_uri)
    code = sign_in(browser, request, username, password)["code"]
    # WHEN the code comes with something else than its request had
    if mismatch == "code_verifier":
        r = redeem(oidc_service, request, code, verifier=generate_token(48))
    elif mismatch == "client_id":
        r = redeem(oidc_service, request, code, data={"client_id": oidc_clients.mobile})
    else:
        r = redeem(oidc_service, request, code,
                   data={"redirect_uri": oidc_clients.localhost_redirect_uri})
    # THEN invalid_grant, and no token
    assert r.status_code == 400, r.text
    assert oauth_error(r) == "invalid_grant", r.text


# --- The authorization request's errors -------------------------------------------------------

# Redirect URIs that are not one of spa's two (127.0.0.1 and localhost, /callback) byte for byte.
REDIRECT_VARIANTS = {
    "trailing-slash": lambda cb, lh: cb + "/",
    "host-case": lambda cb, lh: lh.replace("localhost", "LocalHost"),
    "scheme-case": lambda cb, lh: cb.replace("http://", "HTTP://"),
    "path-case": lambda cb, lh: cb.replace("/callback", "/Callback"),
    "extra-query": lambda cb, lh: cb + "?next=%2Fadmin",
    "prefix-of-registered": lambda cb, lh: cb[:-1],
    "registered-as-prefix": lambda cb, lh: cb + "-evil",
    "registered-as-path-prefix": lambda cb, lh: cb + "/../evil",
    # Another port is a different URI for `localhost` (RFC 8252 §7.3's any-port rule is for
    # loopback IP literals only; its 127.0.0.1 case is accepted, tested below).
    "localhost-different-port": lambda cb, lh: lh.replace(
        f":{urlsplit(lh).port}", f":{urlsplit(lh).port + 1}"),
    "different-port-and-path": lambda cb, lh: cb.replace(
        f":{urlsplit(cb).port}", f":{urlsplit(cb).port + 1}") + "x",
    "ipv6-loopback": lambda cb, lh: cb.replace("127.0.0.1", "[::1]"),
    "fragment": lambda cb, lh: cb + "#fragment",
    "percent-encoded": lambda cb, lh: cb.replace("/callback", "/%63allback"),
    "user-info": lambda cb, lh: cb.replace("http://", "http://evil@"),
    "other-host": lambda cb, lh: cb.replace("127.0.0.1", "attacker.example"),
}


def assert_error_page_without_redirect(r: requests.Response) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.headers.get("location"), r.text[:500])
    assert "location" not in r.headers, r.headers
    assert_page_headers(r)


@pytest.mark.parametrize("variant", list(REDIRECT_VARIANTS))
def test_a_redirect_uri_not_registered_exactly_gets_an_error_page(oidc_service, oidc_clients,
                                                                  variant):
    """Never a redirect to a URI the client did not register, however close to one."""
    uri = REDIRECT_VARIANTS[variant](oidc_clients.redirect_uri, oidc_clients.localhost_redirect_uri)
    assert uri not in (oidc_clients.redirect_uri, oidc_clients.localhost_redirect_uri)
    request = auth_request(oidc_service, oidc_clients.spa, uri)
    # WHEN the authorization request names it
    r = requests.get(request.url, allow_redirects=False, timeout=TIMEOUT)
    # THEN an HTML error page, and no Location
    assert_error_page_without_redirect(r)


def test_a_loopback_ip_redirect_is_accepted_on_any_port(oidc_service, oidc_clients):
    """RFC 8252 §7.3: a native app's loopback redirect to an IP literal may use any port."""
    cb = oidc_clients.redirect_uri
    assert urlsplit(cb).hostname == "127.0.0.1"
    other = cb.replace(f":{urlsplit(cb).port}", f":{urlsplit(cb).port + 1}")
    request = auth_request(oidc_service, oidc_clients.spa, other)
    # WHEN the authorization request names the registered loopback URI on another port
    r = requests.get(request.url, allow_redirects=False, timeout=TIMEOUT)
    # THEN the sign-in page (the request is the client's own)
    assert r.status_code == 200, r.text
    assert 'name="password"' in r.text


@pytest.mark.parametrize("case", ["unknown-client", "no-client-id", "no-redirect-uri"])
def test_an_unknown_client_or_a_missing_redirect_uri_gets_an_error_page(
        oidc_service, oidc_clients, case):
    """No client, or no redirect URI for a client with two registered: nowhere to send an
    error, so the page shows it (OpenID Connect Core 3.1.2.1: redirect_uri is required)."""
    if case == "unknown-client":
        request = auth_request(oidc_service, unique("nobody"), oidc_clients.redirect_uri)
    elif case == "no-client-id":
        request = auth_request(oidc_service, "x", oidc_clients.redirect_uri, drop=("client_id",))
    else:
        request = auth_request(oidc_service, oidc_clients.spa, "x", drop=("redirect_uri",))
    r = requests.get(request.url, allow_redirects=False, timeout=TIMEOUT)
    assert_error_page_without_redirect(r)


ERRORS_SENT_BACK = {
    "no-pkce": ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
    "no-challenge-method": ({"code_challenge_method": None}, "invalid_request"),
    "plain-pkce": ({"code_challenge_method": "plain"}, "invalid_request"),
    "unknown-scope": ({"scope": "openid superpowers"}, "invalid_scope"),
    "implicit": ({"response_type": "token"}, "unsupported_response_type"),
    "prompt-none-without-session": ({"prompt": "none"}, "login_required"),
}


@pytest.mark.parametrize("case", list(ERRORS_SENT_BACK))
def test_other_errors_go_back_to_the_client_with_state_and_iss(oidc_service, oidc_clients, case):
    """With a known client and one of its redirect URIs, an error is the client's to handle:
    a 303 to the redirect URI with error, error_description, state and iss (RFC 9207)."""
    extra, error = ERRORS_SENT_BACK[case]
    request = auth_request(oidc_service, oidc_clients.spa, oidc_clients.redirect_uri, **extra)
    # WHEN a browser without a session opens the faulty request
    query = authorize_redirect(requests.Session(), request)
    # THEN it is sent back with the error
    assert query["error"] == error, query
    assert query.get("error_description"), query
    assert query["state"] == request.state, query
    assert query["iss"] == oidc_service.issuer, query
    assert "code" not in query, query


# --- CSRF -------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["login", "register"])
@pytest.mark.parametrize("forgery", ["no-csrf-field", "wrong-csrf-field", "no-csrf-cookie"])
def test_a_post_without_the_matching_csrf_token_does_nothing(oidc_service, oidc_clients,
                                                             oidc_user, forgery, page):
    """A login (or registration) post whose csrf field is missing or does not match the
    auth_csrf cookie is a 403 page, even with the right password: no redirect, no session, no
    account."""
    username, password, _ = oidc_user()
    browser = requests.Session()
    if page == "login":
        request = auth_request(oidc_service, oidc_clients.spa, oidc_clients.redirect_uri)
        r, _, form = login_page(browser, request.url)
        data = form.filled(username=username, password=password)
    else:
        request = auth_request(oidc_service, oidc_clients.spa, oidc_clients.redirect_uri,
                               prompt="create")
        r, _, form = login_page(browser, request.url)
        assert form.hidden()["action"] == "register"
        username = unique("forged")
        data = form.filled(username=username, password=password, full_name="Forged Account")
    poster = browser
    # GIVEN a post of good credentials that is forged one way or another
    if forgery == "no-csrf-field":
        del data["csrf"]
    elif forgery == "wrong-csrf-field":
        data["csrf"] = generate_token(len(data["csrf"]) or 32)
    else:
        poster = requests.Session()  # another site's page posting into the victim's browser
    # WHEN it reaches /authorize
    answer = poster.post(urljoin(r.url, form.action), data=data, allow_redirects=False,
                         timeout=TIMEOUT)
    # THEN 403, an HTML page, nothing more
    assert answer.status_code == 403, (answer.status_code, answer.text[:2000])
    assert "location" not in answer.headers, answer.headers
    assert_page_headers(answer)
    assert set_cookie(answer, SESSION_COOKIE) is None, answer.headers
    assert "code=" not in answer.text
    # AND no browser session came of it: the authorization request still shows the login page
    login_page(poster, auth_request(oidc_service, oidc_clients.spa,
                                    oidc_clients.redirect_uri).url)
    # AND a forged registration made no account
    if page == "register":
        login = requests.post(oidc_service.url("/login"), timeout=TIMEOUT, data={
            "grant_type": "password", "username": username, "password": password})
        assert login.status_code == 401, login.text


@pytest.mark.parametrize("tampered", ["redirect_uri", "client_id"])
def test_a_post_with_a_tampered_request_never_redirects_elsewhere(oidc_service, oidc_clients,
                                                                  oidc_user, tampered):
    """The posted form's hidden request is checked again: a redirect_uri swapped for one the
    client never registered (or a client swapped for an unknown one) gets the error page, even
    with the right password and CSRF token."""
    username, password, _ = oidc_user()
    browser = requests.Session()
    request = auth_request(oidc_service, oidc_clients.spa, oidc_clients.redirect_uri)
    r, _, form = login_page(browser, request.url)
    data = form.filled(username=username, password=password)
    if tampered == "redirect_uri":
        data["redirect_uri"] = "https://attacker.example/callback"
    else:
        data["client_id"] = unique("nobody")
    answer = browser.post(urljoin(r.url, form.action), data=data, allow_redirects=False,
                          timeout=TIMEOUT)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.headers, answer.text[:500])
    assert "location" not in answer.headers, answer.headers
    assert_page_headers(answer)


# --- The browser session ----------------------------------------------------------------------


def test_single_sign_on_then_prompt_login_and_max_age(oidc_service, oidc_clients, oidc_user):
    """Once signed in, the next authorization request gets a code without a page; prompt=login
    and max_age=0 ask for the password again."""
    user = oidc_user("Mary Jackson")
    username, password, full_name = user
    tokens, first_request, browser = signed_in_tokens(oidc_service, oidc_clients, user)
    first = verify_id_token(oidc_service, tokens["id_token"], oidc_clients.spa,
                            first_request.nonce, tokens["access_token"])

    # WHEN the client insists on a fresh login, right after the sign-in (max_age=0 is
    # prompt=login, OpenID Connect Core 3.1.2.1, even within the second of the sign-in)
    for extra in ({"max_age": "0"}, {"prompt": "login"}):
        request = auth_request(oidc_service, oidc_clients.spa, oidc_clients.redirect_uri, **extra)
        # THEN the login page again
        r, _, form = login_page(browser, request.url)
        assert_page_headers(r)
        assert form.hidden()["state"] == request.state

    # WHEN the same browser comes with a new request (another client even)
    for client_id, extra in [(oidc_clients.spa, {}), (oidc_clients.mobile, {}),
                             (oidc_clients.spa, {"prompt": "none"}),
                             (oidc_clients.spa, {"max_age": "3600"})]:
        request = auth_request(oidc_service, client_id, oidc_clients.redirect_uri, **extra)
        query = authorize_redirect(browser, request)
        # THEN a code comes straight back
        assert "error" not in query, (extra, query)
        assert query["state"] == request.state and query["iss"] == oidc_service.issuer, query
        r = redeem(oidc_service, request, query["code"])
        assert r.status_code == 200, r.text
        claims = assert_tokens(oidc_service, r.json(), request, username, full_name)
        # AND the id_token tells when the person actually authenticated: the first time
        assert claims["auth_time"] == first["auth_time"], (claims, first)
        assert claims["sub"] == first["sub"]

    # AND signing in on the prompt=login page gives a new authentication time
    time.sleep(1.1)
    request = auth_request(oidc_service, oidc_clients.spa, oidc_clients.redirect_uri,
                           prompt="login")
    query = sign_in(browser, request, username, password)
    r = redeem(oidc_service, request, query["code"])
    assert r.status_code == 200, r.text
    claims = assert_tokens(oidc_service, r.json(), request, username, full_name)
    assert claims["auth_time"] > first["auth_time"], (claims, first)


def test_end_session_ends_the_browser_session(oidc_service, oidc_clients, oidc_user):
    """RP-initiated logout: /end-session with the id_token and a registered post-logout URI
    ends the browser session and comes back with the state; afterwards prompt=none is
    login_required and the login page is shown, even to a copy of the old cookie."""
    user = oidc_user()
    tokens, _, browser = signed_in_tokens(oidc_service, oidc_clients, user)
    old_cookie = browser.cookies.get(SESSION_COOKIE)
    assert old_cookie
    # GIVEN single sign-on works
    assert authorize_redirect(browser, auth_request(
        oidc_service, oidc_clients.spa, oidc_clients.redirect_uri, prompt="none")).get("code")

    # WHEN the client sends the browser to end-session
    params = {"id_token_hint": tokens["id_token"],
              "post_logout_redirect_uri": oidc_clients.post_logout_redirect_uri,
              "state": "xyz", "client_id": oidc_clients.spa}
    r = browser.get(oidc_service.url("/end-session") + "?" + urlencode(params),
                    allow_redirects=False, timeout=TIMEOUT)
    # THEN it is sent back to the registered post-logout URI with the state
    assert r.status_code == 303, (r.status_code, r.text[:2000])
    query = assert_redirect_to(r.headers["location"], oidc_clients.post_logout_redirect_uri)
    assert query["state"] == "xyz", query

    # AND there is no browser session any more: prompt=none is login_required
    request = auth_request(oidc_service, oidc_clients.spa, oidc_clients.redirect_uri,
                           prompt="none")
    query = authorize_redirect(browser, request)
    assert query["error"] == "login_required", query
    assert query["state"] == request.state and query["iss"] == oidc_service.issuer, query
    # AND a plain request shows the login page
    login_page(browser, auth_request(oidc_service, oidc_clients.spa,
                                     oidc_clients.redirect_uri).url)
    # AND so it does for anyone still holding the old cookie: the session ended at the server
    replay = requests.Session()
    replay.cookies.set(SESSION_COOKIE, old_cookie)
    login_page(replay, auth_request(oidc_service, oidc_clients.spa,
                                    oidc_clients.redirect_uri).url)


def test_end_session_never_redirects_to_an_unregistered_uri(oidc_service, oidc_clients,
                                                            oidc_user):
    tokens, _, browser = signed_in_tokens(oidc_service, oidc_clients, oidc_user())
    for uri in (oidc_clients.post_logout_redirect_uri + "/", "https://attacker.example/",
                oidc_clients.redirect_uri):
        params = {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": uri,
                  "state": "xyz"}
        # WHEN end-session names a post-logout URI the client did not register
        r = browser.get(oidc_service.url("/end-session") + "?" + urlencode(params),
                        allow_redirects=False, timeout=TIMEOUT)
        # THEN an HTML page, never a redirect
        assert r.status_code in (200, 400), (uri, r.status_code, r.text[:500])
        assert "location" not in r.headers, (uri, r.headers)
        assert_page_headers(r)


# --- Hosted registration ----------------------------------------------------------------------


def test_create_account_from_the_login_page_then_the_code_flow_completes(
        oidc_service, oidc_clients):
    """A newcomer follows 'Create account', fills the registration page, and is signed in:
    the client gets a code whose id_token names the new account, which also logs in by
    password afterwards."""
    browser = requests.Session()
    request = auth_request(oidc_service, oidc_clients.spa, oidc_clients.redirect_uri)
    r, page, _ = login_page(browser, request.url)
    # WHEN the person follows the link
    reg = browser.get(urljoin(r.url, page.link("Create account")), allow_redirects=False,
                      timeout=TIMEOUT)
    # THEN the registration page, with its own form
    assert reg.status_code == 200, reg.text[:2000]
    assert_page_headers(reg)
    form = Page(reg.text, reg.url).form_posting_to("/authorize")
    assert form.hidden()["action"] == "register"
    assert form.hidden()["state"] == request.state
    assert form.hidden()["csrf"]
    assert form.field("password").type == "password"
    assert form.field("password").attrs.get("autocomplete") == "new-password"
    assert form.field("full_name").attrs.get("autocomplete") == "name"
    assert form.field("username").labelled and form.field("password").labelled
    assert form.field("full_name").labelled

    # WHEN they register
    username = unique("newcomer")
    password = f"orbit-{generate_token(8)}-lantern-quartz"
    answer = submit(browser, reg.url, form, username=username, password=password,
                    full_name="Annie Easley")
    # THEN they are signed in and sent back with a code, as after a login
    assert answer.status_code == 303, (answer.status_code, answer.text[:2000])
    query = assert_redirect_to(answer.headers["location"], oidc_clients.redirect_uri)
    assert query["state"] == request.state and query["iss"] == oidc_service.issuer, query
    assert set_cookie(answer, SESSION_COOKIE), answer.headers
    tokens = redeem(oidc_service, request, query["code"])
    assert tokens.status_code == 200, tokens.text
    assert_tokens(oidc_service, tokens.json(), request, username, "Annie Easley")
    # AND the account is a real one
    login = requests.post(oidc_service.url("/login"), timeout=TIMEOUT,
                          data={"grant_type": "password", "username": username,
                                "password": password})
    assert login.status_code == 200, login.text


def test_prompt_create_shows_registration_and_a_weak_password_gets_a_422_page(
        oidc_service, oidc_clients):
    browser = requests.Session()
    request = auth_request(oidc_service, oidc_clients.spa, oidc_clients.redirect_uri,
                           prompt="create")
    # WHEN the client asks for the registration page
    r = browser.get(request.url, allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 200, r.text[:2000]
    assert_page_headers(r)
    form = Page(r.text, r.url).form_posting_to("/authorize")
    assert form.hidden()["action"] == "register"
    # AND the person picks a password anyone would guess
    answer = submit(browser, r.url, form, username=unique("weak"), password="password1",
                    full_name="Weak Password")
    # THEN 422, the page again with the error, no redirect and no session
    assert answer.status_code == 422, (answer.status_code, answer.text[:2000])
    assert_page_headers(answer)
    assert "location" not in answer.headers
    assert set_cookie(answer, SESSION_COOKIE) is None
    again = Page(answer.text, answer.url)
    assert again.form_posting_to("/authorize").hidden()["action"] == "register"
    # (the page's text grew by the error; the fields' values are attributes, not text)
    assert again.text != Page(r.text, r.url).text, again.text


# --- Tokens belong to their client ------------------------------------------------------------


def test_another_clients_refresh_is_invalid_grant(oidc_service, oidc_clients, oidc_user):
    tokens, _, _ = signed_in_tokens(oidc_service, oidc_clients, oidc_user())
    # WHEN another public client presents spa's refresh token
    r = refresh(oidc_service, tokens["refresh_token"], client_id=oidc_clients.mobile)
    # THEN invalid_grant
    assert r.status_code == 400, r.text
    assert oauth_error(r) == "invalid_grant", r.text
    # AND so for the confidential client, authenticated as itself
    r = refresh(oidc_service, tokens["refresh_token"],
                auth=(oidc_clients.webapp, oidc_clients.webapp_secret))
    assert r.status_code == 400, r.text
    assert oauth_error(r) == "invalid_grant", r.text
    # AND spa itself still can (beyond the contract's words: a wrong client's attempt must not
    # let it burn another client's session)
    r = refresh(oidc_service, tokens["refresh_token"], client_id=oidc_clients.spa)
    assert r.status_code == 200, r.text


def test_a_revocation_with_another_client_id_is_refused(oidc_service, oidc_clients, oidc_user):
    tokens, _, _ = signed_in_tokens(oidc_service, oidc_clients, oidc_user())
    # WHEN mobile asks to revoke spa's refresh token
    r = requests.post(oidc_service.url("/logout"), timeout=TIMEOUT,
                      data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token",
                            "client_id": oidc_clients.mobile})
    # THEN it is refused
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    # AND the token still works for spa
    again = refresh(oidc_service, tokens["refresh_token"], client_id=oidc_clients.spa)
    assert again.status_code == 200, again.text
    # WHEN spa revokes it itself THEN it is dead
    r = requests.post(oidc_service.url("/logout"), timeout=TIMEOUT,
                      data={"token": again.json()["refresh_token"],
                            "token_type_hint": "refresh_token", "client_id": oidc_clients.spa})
    assert r.status_code == 200, r.text
    dead = refresh(oidc_service, again.json()["refresh_token"], client_id=oidc_clients.spa)
    assert dead.status_code == 400 and oauth_error(dead) == "invalid_grant", dead.text


# --- userinfo and scopes ----------------------------------------------------------------------


def test_userinfo_needs_a_valid_bearer_token(oidc_service, oidc_clients, oidc_user):
    user = oidc_user("Dorothy Vaughan")
    tokens, request, _ = signed_in_tokens(oidc_service, oidc_clients, user)
    url = oidc_service.url("/userinfo")
    # WHEN userinfo is asked without a token, or with a made-up one
    for headers in ({}, {"Authorization": "Bearer not-a-token"},
                    {"Authorization": f"Basic {tokens['access_token']}"}):
        r = requests.get(url, headers=headers, timeout=TIMEOUT)
        # THEN 401 with the bearer challenge
        assert r.status_code == 401, (headers, r.status_code, r.text)
        assert r.headers.get("www-authenticate", "").startswith("Bearer"), r.headers
    # WHEN with the access token, by GET or POST THEN the claims
    sub = verify_id_token(oidc_service, tokens["id_token"], oidc_clients.spa,
                          request.nonce, tokens["access_token"])["sub"]
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    for method in ("GET", "POST"):
        r = requests.request(method, url, headers=bearer, timeout=TIMEOUT)
        assert r.status_code == 200, (method, r.text)
        assert r.json() == {"sub": sub, "preferred_username": user[0], "name": user[2]}


def test_without_offline_access_there_is_no_refresh_token(oidc_service, oidc_clients,
                                                          oidc_user):
    """The scopes asked for are the ones granted: openid profile gives an id_token with the
    name but no refresh token."""
    tokens, _, _ = signed_in_tokens(oidc_service, oidc_clients, oidc_user("Evelyn Boyd"),
                                    scope="openid profile")
    assert "refresh_token" not in tokens
