"""schemathesis hooks for test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS)."""

import base64
import json
import uuid

import requests
import schemathesis

# The operations that re-authenticate, and the body field that carries the account's password.
REAUTHENTICATING = {
    ("PUT", "/me/password"): "current_password",
    ("DELETE", "/me"): "password",
    ("PUT", "/me/email"): "password",
    # The second factor's (issue 21): their wrong passwords count in the login throttle too,
    # which would soon make the signed-up account's own logins wait.
    ("POST", "/me/mfa/totp"): "password",
    ("DELETE", "/me/mfa/totp"): "password",
    ("POST", "/me/mfa/recovery-codes"): "password",
}
# A password the registration rules accept, for a throwaway account when the request's own is
# refused (too short, too common, not a string, ...).
SPARE_PASSWORD = "umber-quokka-trellis-5307"


@schemathesis.hook
def filter_body(context, body):
    """Drops request bodies that are not UTF-8 at all.

    schemathesis sometimes replaces a JSON body with random bytes. When those bytes are not UTF-8,
    `cargo lambda watch` cannot put them into the Lambda event and answers 500 text/plain itself,
    before any function runs; the handlers never see such a request locally. (Bytes that are UTF-8
    but not JSON still go through and must get the handlers' 400.)
    """
    if isinstance(body, (bytes, bytearray)):
        try:
            bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


@schemathesis.hook
def before_call(context, case, kwargs):
    """Keeps alive the account and the session every secured operation is tested with.

    schemathesis signs up and logs in once (POST /register, POST /login) and sends that access
    token with every operation that takes a bearer token; it also logs that account in again
    with its password, and the stateful phase's links then carry those tokens and that password
    to the operations that end sessions.
    """
    operation = (case.operation.method.upper(), case.operation.path)
    if operation == ("POST", "/login"):
        _refresh_as_no_client(case)
    elif operation == ("POST", "/logout"):
        _cut_bearer(case)
    elif operation in REAUTHENTICATING:
        _move_off_the_signed_up_account(case, REAUTHENTICATING[operation])


def _refresh_as_no_client(case):
    """The refresh grant of a password-grant session refreshes for any caller, but client
    credentials it carries are checked first: a made-up `client_secret` is 401 `invalid_client`,
    a rule across fields no schema can express. The stateful phase's Refresh link would then
    never get its new tokens, so a refresh goes without the generated client fields (the
    fuzzing phases still send them, and must get the documented 401)."""
    body = case.body
    if isinstance(body, dict) and body.get("grant_type") == "refresh_token" and (
            "refresh_token" in body and str(body.get("refresh_token", "")).count(".") == 0
            and len(str(body.get("refresh_token", ""))) >= 90):
        body.pop("client_id", None)
        body.pop("client_secret", None)


def _cut_bearer(case):
    """A bearer token sent to POST /logout would end its session (with `scope=global`, every
    session of the account), and every later GET /me would get 401. So /logout gets it with its
    signature cut short: the bearer path is still tested, and must answer the documented 401 (or
    400/422 for the body); ending sessions is tested by the stateful phase's LogOut link and by
    test_oauth2_clients.py."""
    for name in _authorization_headers(case):
        case.headers[name] = case.headers[name][:-8]


def _move_off_the_signed_up_account(case, password_field):
    """PUT /me/password with the right password would end every session of the signed-up
    account, and DELETE /me would delete it. So a request that carries a token of that account
    (the bootstrapped token, or one from a stateful login with its password) goes, unchanged, to
    a throwaway account instead: one registered with the password the request gives, when the
    registration rules take it, so the request can succeed exactly when it would have for the
    signed-up account; otherwise with a spare password, so the request gets the 403 of a wrong
    password. Every other request (no token, a broken one, or one of an account the stateful
    phase registered) is sent as it is.
    """
    signed_up = {_subject(auth.bearer) for auth in case.operation.schema.bootstrapped_auth.values()}
    for name in _authorization_headers(case):
        scheme, _, token = case.headers[name].partition(" ")
        if _subject(token) in signed_up - {None}:
            body = case.body if isinstance(case.body, dict) else {}
            token = _throwaway_account(case.operation.schema.get_base_url(),
                                       body.get(password_field))
            case.headers[name] = f"{scheme} {token}"


def _authorization_headers(case):
    return [name for name in case.headers or {} if name.lower() == "authorization"]


def _subject(token):
    """The `sub` of an access token, read without verification; None for anything else."""
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None


def _throwaway_account(base_url, password):
    """Registers an account with `password` (or, if refused, the spare one), logs it in and
    returns its access token."""
    username = f"throwaway-{uuid.uuid4().hex[:12]}"
    for candidate in (password, SPARE_PASSWORD):
        if not isinstance(candidate, str):
            continue
        r = requests.post(f"{base_url}/register", timeout=60,
                          json={"username": username, "password": candidate})
        if r.status_code == 201:
            break
    else:
        raise AssertionError(f"cannot register a throwaway account: {r.status_code} {r.text}")
    r = requests.post(f"{base_url}/login", timeout=60,
                      json={"username": username, "password": candidate})
    assert r.status_code == 200, f"cannot log the throwaway account in: {r.status_code} {r.text}"
    return r.json()["access_token"]
