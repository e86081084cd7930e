"""What the OpenID Connect tests share: the hosted pages read with the standard library's
html.parser (forms, their fields and labels, links, stylesheets), PKCE pairs, the authorization
request, a person signing in with a `requests.Session` as a browser would, the code redemption,
and the id_token checks of OpenID Connect Core (signature from the JWKS, aud, nonce, at_hash).

Not a test module (no test_ prefix): test_oidc_authlib.py and test_hosted_pages_chromium.py
import it, as conftest.py does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import jwt
import requests

SCOPE = "openid profile offline_access"
# The cookies of the hosted pages on an http:// issuer (on https: the __Host- names).
CSRF_COOKIE = "auth_csrf"
SESSION_COOKIE = "auth_session"
TIMEOUT = 60
GENERIC_LOGIN_ERROR = "Incorrect username or password"


# --- PKCE (RFC 7636) and the authorization request ----------------------------------------------

def pkce_pair() -> tuple[str, str]:
    """A fresh (code_verifier, S256 code_challenge)."""
    verifier = secrets.token_urlsafe(48)
    return verifier, s256(verifier)


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def at_hash(access_token: str) -> str:
    """OpenID Connect Core 3.1.3.6: base64url of the left half of SHA-256 of the ASCII token."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode("ascii")


@dataclass
class AuthRequest:
    """One authorization request: its URL and what the client keeps to check the answer."""

    url: str
    state: str
    nonce: str
    verifier: str
    redirect_uri: str
    client_id: str


def auth_request(service, client_id: str, redirect_uri: str, scope: str = SCOPE,
                 drop: tuple[str, ...] = (), **extra) -> AuthRequest:
    """The authorization URL of a code flow with PKCE S256, a fresh state and nonce. `extra`
    adds (or, as None, removes) parameters: prompt, max_age, code_challenge_method, ...;
    `drop` names parameters to leave out (client_id, redirect_uri)."""
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    for name, value in extra.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    for name in drop:
        params.pop(name)
    return AuthRequest(url=service.url("/authorize") + "?" + urlencode(params), state=state,
                       nonce=nonce, verifier=verifier, redirect_uri=redirect_uri,
                       client_id=client_id)


def query_of(location: str) -> dict[str, str]:
    """The query parameters of a redirect (each once)."""
    parsed = parse_qs(urlsplit(location).query, keep_blank_values=True)
    repeated = {k: v for k, v in parsed.items() if len(v) != 1}
    assert not repeated, f"repeated parameters in {location}: {repeated}"
    return {k: v[0] for k, v in parsed.items()}


def assert_redirect_to(location: str, target: str) -> dict[str, str]:
    """`location` is `target` (scheme, host, port and path exactly) plus a query, no fragment;
    returns the query."""
    got, want = urlsplit(location), urlsplit(target)
    assert (got.scheme, got.netloc, got.path) == (want.scheme, want.netloc, want.path), location
    assert not got.fragment, location
    return query_of(location)


# --- The hosted pages, read with html.parser ----------------------------------------------------

@dataclass
class Input:
    tag: str
    attrs: dict[str, str]
    # Whether a <label> names it: one with for= its id, or one around it.
    labelled: bool = False

    @property
    def name(self) -> str | None:
        return self.attrs.get("name")

    @property
    def type(self) -> str:
        return (self.attrs.get("type") or "text").lower()


@dataclass
class Form:
    method: str
    action: str | None
    inputs: list[Input] = field(default_factory=list)

    def field(self, name: str) -> Input:
        found = [i for i in self.inputs if i.name == name]
        assert len(found) == 1, f"one field {name!r} in the form, found {len(found)}"
        return found[0]

    def has(self, name: str) -> bool:
        return any(i.name == name for i in self.inputs)

    def hidden(self) -> dict[str, str]:
        return {i.name: i.attrs.get("value", "") for i in self.inputs
                if i.type == "hidden" and i.name}

    def submits(self) -> list[Input]:
        return [i for i in self.inputs
                if (i.tag == "button" and i.type in ("submit", "text")) or
                (i.tag == "input" and i.type == "submit")]

    def filled(self, **values: str) -> dict[str, str]:
        """What a browser posts: every named field's value as the page set it, `values` typed
        into the visible fields (each must exist)."""
        data = {}
        for i in self.inputs:
            if i.name and i.tag in ("input", "textarea", "select") and i.type not in (
                    "submit", "button", "checkbox", "radio", "image", "reset"):
                data[i.name] = i.attrs.get("value", "")
        for name, value in values.items():
            assert self.has(name), f"the form has a field {name!r}: {self.inputs}"
            data[name] = value
        return data


class Page(HTMLParser):
    """A hosted page: its forms (with their inputs and whether each has a label), links,
    stylesheets, scripts and visible text."""

    def __init__(self, html: str, url: str):
        super().__init__(convert_charrefs=True)
        self.url = url
        self.forms: list[Form] = []
        self.links: list[tuple[str, str]] = []
        self.stylesheets: list[str] = []
        self.scripts: list[dict[str, str]] = []
        self.inline_styles = 0
        self.text_parts: list[str] = []
        self._form: Form | None = None
        self._label_for: set[str] = set()
        self._in_label = 0
        self._labelled_inside: list[Input] = []
        self._link: list | None = None
        self._skip = 0
        self._all_inputs: list[Input] = []
        self.feed(html)
        self.close()
        for i in self._all_inputs:
            if i.attrs.get("id") in self._label_for:
                i.labelled = True

    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            self._form = Form(method=(a.get("method") or "get").lower(), action=a.get("action"))
            self.forms.append(self._form)
        elif tag in ("input", "button", "textarea", "select"):
            i = Input(tag=tag, attrs=a, labelled=bool(self._in_label))
            self._all_inputs.append(i)
            if self._form is not None:
                self._form.inputs.append(i)
        elif tag == "label":
            self._in_label += 1
            if a.get("for"):
                self._label_for.add(a["for"])
        elif tag == "a" and "href" in a:
            self._link = [a["href"], ""]
        elif tag == "link" and "stylesheet" in (a.get("rel") or "").lower().split():
            self.stylesheets.append(a.get("href", ""))
        elif tag == "script":
            self.scripts.append(a)
            self._skip += 1
        elif tag == "style":
            self.inline_styles += 1
            self._skip += 1

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "label":
            self._in_label = max(0, self._in_label - 1)
        elif tag == "a" and self._link is not None:
            self.links.append((self._link[0], " ".join(self._link[1].split())))
            self._link = None
        elif tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)

    def handle_data(self, data):
        if self._skip:
            return
        if self._link is not None:
            self._link[1] += data
        self.text_parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.text_parts).split())

    def form_posting_to(self, path: str = "/authorize") -> Form:
        """The page's one form posting to `path` on the page's own origin (its action written
        as the path or as the absolute URL)."""
        page = urlsplit(self.url)
        found = [f for f in self.forms if f.method == "post" and f.action is not None and (
            lambda to: (to.scheme, to.netloc, to.path, to.query) ==
            (page.scheme, page.netloc, path, ""))(urlsplit(urljoin(self.url, f.action)))]
        assert len(found) == 1, f"one <form method=post action={path}>: {self.forms}"
        return found[0]

    def link(self, text: str) -> str:
        found = [href for href, shown in self.links if shown == text]
        assert len(found) == 1, f"one link {text!r}: {self.links}"
        return found[0]


def assert_page_headers(r: requests.Response) -> None:
    """What every hosted page is served with: HTML, never cached, no referrer, and a policy
    that loads nothing by default, cannot be framed and limits where forms go."""
    assert r.headers.get("content-type", "").startswith("text/html"), r.headers
    csp = r.headers.get("content-security-policy", "")
    directives = {d.strip().split()[0]: d.strip().split()[1:] for d in csp.split(";") if d.strip()}
    assert directives.get("default-src") == ["'none'"], csp
    assert directives.get("frame-ancestors") == ["'none'"], csp
    assert "form-action" in directives, csp
    assert "no-store" in r.headers.get("cache-control", ""), r.headers
    assert r.headers.get("referrer-policy") == "no-referrer", r.headers


def set_cookies(r: requests.Response) -> list[str]:
    """Each Set-Cookie header of the response as sent (requests joins them with commas)."""
    return list(r.raw.headers.getlist("Set-Cookie"))


def set_cookie(r: requests.Response, name: str) -> str | None:
    found = [c for c in set_cookies(r) if c.split("=", 1)[0].strip() == name]
    assert len(found) <= 1, found
    return found[0] if found else None


def cookie_attributes(header: str) -> dict[str, str]:
    """The attributes of one Set-Cookie header, names lower-cased."""
    parts = [p.strip() for p in header.split(";")]
    out = {}
    for p in parts[1:]:
        name, _, value = p.partition("=")
        out[name.strip().lower()] = value.strip()
    return out


def login_page(browser: requests.Session, url: str) -> tuple[requests.Response, Page, Form]:
    """GETs an authorization URL expecting the login page; returns it, parsed, and its form."""
    r = browser.get(url, allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 200, (r.status_code, r.headers.get("location"), r.text[:2000])
    page = Page(r.text, r.url)
    return r, page, page.form_posting_to("/authorize")


def submit(browser: requests.Session, page_url: str, form: Form, **values: str
           ) -> requests.Response:
    """Posts the form as a browser would (its fields as the page built them, `values` typed
    in), not following the answer's redirect."""
    return browser.post(urljoin(page_url, form.action), data=form.filled(**values),
                        allow_redirects=False, timeout=TIMEOUT)


def sign_in(browser: requests.Session, request: AuthRequest, username: str, password: str
            ) -> dict[str, str]:
    """A person with no session at the provider goes through its login page and comes back
    to the client: checks the redirect, its state and iss, and returns its query."""
    r, _, form = login_page(browser, request.url)
    answer = submit(browser, r.url, form, username=username, password=password)
    assert answer.status_code == 303, (answer.status_code, answer.text[:2000])
    query = assert_redirect_to(answer.headers["location"], request.redirect_uri)
    assert "error" not in query, query
    assert query["state"] == request.state, query
    assert query["code"], query
    return query


def authorize_redirect(browser: requests.Session, request: AuthRequest) -> dict[str, str]:
    """GETs an authorization URL expecting an immediate 303 back to the client (an error, or
    a code from the browser session); returns the redirect's query."""
    r = browser.get(request.url, allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 303, (r.status_code, r.text[:2000])
    return assert_redirect_to(r.headers["location"], request.redirect_uri)


# --- The token endpoint and the tokens ----------------------------------------------------------

def redeem(service, request: AuthRequest, code: str, verifier: str | None = None,
           auth: tuple[str, str] | None = None, data: dict | None = None) -> requests.Response:
    """POST /login with grant_type=authorization_code, as a public client (client_id in the
    body) unless `auth` (HTTP Basic) or `data` say otherwise."""
    body = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": request.redirect_uri,
        "code_verifier": verifier if verifier is not None else request.verifier,
    }
    if auth is None:
        body["client_id"] = request.client_id
    body.update(data or {})
    return requests.post(service.url("/login"), data=body, auth=auth, timeout=TIMEOUT)


def refresh(service, refresh_token: str, client_id: str | None = None,
            auth: tuple[str, str] | None = None) -> requests.Response:
    body = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if client_id is not None:
        body["client_id"] = client_id
    return requests.post(service.url("/login"), data=body, auth=auth, timeout=TIMEOUT)


def bearer_get(service, path: str, access_token: str) -> requests.Response:
    return requests.get(service.url(path), headers={"Authorization": f"Bearer {access_token}"},
                        timeout=TIMEOUT)


def oauth_error(r: requests.Response) -> str | None:
    try:
        return r.json().get("error")
    except ValueError:
        return None


_JWKS: dict[str, jwt.PyJWKClient] = {}


def verify_id_token(service, id_token: str, client_id: str, nonce: str, access_token: str,
                    now: float | None = None) -> dict:
    """Verifies an id_token as an OpenID Connect relying party does: RS256 signature from the
    published key set, iss, aud = the client, exp, iat, nonce and at_hash; returns its claims
    after checking the rest of the contract (auth_time, amr with pwd, sid)."""
    jwks_uri = service.url("/.well-known/jwks.json")
    jwks = _JWKS.setdefault(jwks_uri, jwt.PyJWKClient(jwks_uri, cache_keys=False))
    header = jwt.get_unverified_header(id_token)
    assert header["alg"] == "RS256", header
    claims = jwt.decode(
        id_token,
        jwks.get_signing_key_from_jwt(id_token).key,
        algorithms=["RS256"],
        audience=client_id,
        issuer=service.issuer,
        options={"require": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr",
                             "sid", "at_hash"]},
    )
    now = time.time() if now is None else now
    assert claims["nonce"] == nonce, claims
    assert claims["at_hash"] == at_hash(access_token), claims
    aud = claims["aud"]
    assert aud == client_id or aud == [client_id], claims
    if isinstance(aud, list) or "azp" in claims:
        assert claims.get("azp", client_id) == client_id, claims
    assert isinstance(claims["auth_time"], int), claims
    assert claims["auth_time"] <= claims["iat"] + 1, claims
    assert now - 600 < claims["auth_time"] <= now + 5, claims
    assert claims["exp"] > now, claims
    assert isinstance(claims["amr"], list) and "pwd" in claims["amr"], claims
    assert isinstance(claims["sid"], str) and claims["sid"], claims
    return claims


def access_claims(service, access_token: str) -> dict:
    """The access token as the API checks it: the configured audience, not the client."""
    jwks_uri = service.url("/.well-known/jwks.json")
    jwks = _JWKS.setdefault(jwks_uri, jwt.PyJWKClient(jwks_uri, cache_keys=False))
    return jwt.decode(access_token, jwks.get_signing_key_from_jwt(access_token).key,
                      algorithms=["RS256"], audience=service.audience, issuer=service.issuer,
                      options={"require": ["exp", "iat", "iss", "aud", "sub"]})


def assert_tokens(service, tokens: dict, request: AuthRequest, username: str, full_name: str,
                  scope: str = SCOPE) -> dict:
    """The token response of a code flow for `request`: its fields, the id_token, the access
    token's claims; returns the id_token's claims."""
    assert tokens["token_type"] == "bearer", tokens
    assert isinstance(tokens["expires_in"], int) and tokens["expires_in"] > 0, tokens
    assert set(tokens["scope"].split()) == set(scope.split()), tokens
    if "offline_access" in scope.split():
        assert tokens.get("refresh_token"), tokens
    else:
        assert "refresh_token" not in tokens, tokens
    claims = verify_id_token(service, tokens["id_token"], request.client_id, request.nonce,
                             tokens["access_token"])
    if "profile" in scope.split():
        assert claims["preferred_username"] == username, claims
        assert claims["name"] == full_name, claims
    access = access_claims(service, tokens["access_token"])
    assert access["aud"] == service.audience or access["aud"] == [service.audience], access
    assert access["client_id"] == request.client_id, access
    assert set(access["scope"].split()) == set(scope.split()), access
    assert access["sub"] == claims["sub"], (access, claims)
    return claims


# --- Clients, registered with the operator's CLI ------------------------------------------------

CLI_TIMEOUT = 900


def auth_admin(service, root, *args: str) -> dict:
    """Runs `cargo run -q -p auth-admin -- ARGS` against the service's store; returns the JSON
    it printed."""
    import os

    env = {**os.environ, **service.store_env}
    done = subprocess.run(["cargo", "run", "-q", "-p", "auth-admin", "--", *args], cwd=root,
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT)
    assert done.returncode == 0, (args, done.returncode, done.stdout, done.stderr[-5000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass
class Clients:
    """The clients registered in one service's store, and where they come back to."""

    spa: str
    mobile: str
    webapp: str
    webapp_secret: str
    redirect_uri: str
    localhost_redirect_uri: str
    post_logout_redirect_uri: str


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
