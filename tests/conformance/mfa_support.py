"""What the TOTP tests share: an authenticator app (pyotp, an implementation independent of the
service's) that hands out each step's code once and in order, the enrolment and second-factor
calls of the API, an account with TOTP on, and the checks of the `mfa_required` answer and of
the tokens' `amr`.

Codes: RFC 6238, SHA-1, 6 digits, 30 s steps, and the service accepts one step either side of
its own. It never accepts a step twice for an account, nor one earlier than the last it accepted,
so a test needs a new step for every code that must pass. Without waiting, three are to hand:
the previous step (while enough of the current one is left for the request to arrive within
it), the current one and the next one (pyotp's `at(now + 30)`). `Authenticator.next_code` gives
them out in that order and waits for the clock only beyond them: the tests are written to need
at most three each, and use recovery codes where any code will do.

Not a test module (no test_ prefix): test_mfa_totp.py and test_hosted_pages_chromium.py import
it.
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import requests

from mail_support import APP_NAME, assert_problem, bearer
from oidc_support import access_claims, oauth_error

TIMEOUT = 60

OTP_GRANT = "urn:jwt-auth:grant-type:mfa-otp"
RECOVERY_GRANT = "urn:jwt-auth:grant-type:mfa-recovery-code"
# RFC 8176: a password, a one-time password, more than one factor.
AMR_MFA = ["pwd", "otp", "mfa"]
AMR_PASSWORD = ["pwd"]
# AUTH_APP_NAME, which the suite leaves at its default.
ISSUER = APP_NAME

STEP_SECONDS = 30
DIGITS = 6
RECOVERY_CODES = 10
# "xxxx-xxxx-xxxx-xxxx": 16 base32 characters, lower case, 80 bits.
RECOVERY_CODE_SHAPE = re.compile(r"[a-z2-7]{4}(-[a-z2-7]{4}){3}")
# 256 random bits, base64url without padding, a dot, and the account it continues (base64url).
MFA_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]+")
# The previous step is used only while this much of the current one is left: a request sent
# later might reach the service in the next step, where the previous one is two steps old.
PREVIOUS_STEP_MARGIN = 5.0


# --- The authenticator app ------------------------------------------------------------------


class Authenticator:
    """pyotp's TOTP for one secret, which never hands out a step twice nor an earlier one than
    it last handed out (as the service accepts them)."""

    def __init__(self, secret: str):
        self.totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
        self.last_step: int | None = None

    @staticmethod
    def step_at(t: float) -> int:
        return int(t // STEP_SECONDS)

    def code_at_step(self, step: int) -> str:
        return self.totp.at(step * STEP_SECONDS)

    def next_step(self, valid_for: float = PREVIOUS_STEP_MARGIN) -> int:
        """The earliest step the service accepts now and for `valid_for` seconds more, and
        later than the last handed out; waits for the clock when that is beyond the next step
        (at most PREVIOUS_STEP_MARGIN seconds in a test that needs three codes)."""
        now = time.time()
        current = self.step_at(now)
        left = (current + 1) * STEP_SECONDS - now
        earliest = current - 1 if left >= valid_for else current
        step = earliest if self.last_step is None else max(earliest, self.last_step + 1)
        if step > current + 1:
            # Accepted once the service's step is step - 1.
            time.sleep(max(0.0, (step - 1) * STEP_SECONDS + 0.5 - time.time()))
        self.last_step = step
        return step

    def next_code(self, valid_for: float = PREVIOUS_STEP_MARGIN) -> str:
        """The code of `next_step` (counted as used: the caller expects it to pass)."""
        return self.code_at_step(self.next_step(valid_for))

    def wrong_code(self) -> str:
        """Six digits that are the code of no step anywhere near now."""
        current = self.step_at(time.time())
        near = {self.code_at_step(s) for s in range(current - 3, current + 4)}
        candidate = int(self.code_at_step(current))
        while f"{candidate:06d}" in near:
            candidate = (candidate + 500_001) % 10**DIGITS
        return f"{candidate:06d}"


# --- The API calls --------------------------------------------------------------------------


def password_login(service, username: str, password: str) -> requests.Response:
    """The password grant (form-encoded, as an OAuth2 client sends it)."""
    return requests.post(service.url("/login"), timeout=TIMEOUT, data={
        "grant_type": "password", "username": username, "password": password})


def otp_grant(service, mfa_token: str, otp: str) -> requests.Response:
    return requests.post(service.url("/login"), timeout=TIMEOUT, data={
        "grant_type": OTP_GRANT, "mfa_token": mfa_token, "otp": otp})


def recovery_grant(service, mfa_token: str, recovery_code: str) -> requests.Response:
    return requests.post(service.url("/login"), timeout=TIMEOUT, data={
        "grant_type": RECOVERY_GRANT, "mfa_token": mfa_token, "recovery_code": recovery_code})


def enrol(service, access_token: str, password: str) -> requests.Response:
    """POST /me/mfa/totp {"password"}."""
    return requests.post(service.url("/me/mfa/totp"), headers=bearer(access_token),
                         json={"password": password}, timeout=TIMEOUT)


def confirm(service, access_token: str, code: str) -> requests.Response:
    """POST /me/mfa/totp/confirm {"code"}."""
    return requests.post(service.url("/me/mfa/totp/confirm"), headers=bearer(access_token),
                         json={"code": code}, timeout=TIMEOUT)


def disable(service, access_token: str, password: str, code: str | None) -> requests.Response:
    """DELETE /me/mfa/totp {"password", "code"} (without "code" when None)."""
    body = {"password": password} if code is None else {"password": password, "code": code}
    return requests.delete(service.url("/me/mfa/totp"), headers=bearer(access_token), json=body,
                           timeout=TIMEOUT)


def regenerate(service, access_token: str, password: str, code: str) -> requests.Response:
    """POST /me/mfa/recovery-codes {"password", "code"}."""
    return requests.post(service.url("/me/mfa/recovery-codes"), headers=bearer(access_token),
                         json={"password": password, "code": code}, timeout=TIMEOUT)


def change_password(service, access_token: str, current: str, new: str,
                    code: str | None = None) -> requests.Response:
    """PUT /me/password {"current_password", "new_password"} (and "code" when given)."""
    body = {"current_password": current, "new_password": new}
    if code is not None:
        body["code"] = code
    return requests.put(service.url("/me/password"), headers=bearer(access_token), json=body,
                        timeout=TIMEOUT)


# --- What the answers are -------------------------------------------------------------------


def assert_enrolment(body: dict, username: str) -> str:
    """POST /me/mfa/totp's answer: a base32 secret of at least 160 bits, the otpauth URI of
    that secret naming the issuer (AUTH_APP_NAME) and the account, and an SVG; returns the
    secret."""
    assert set(body) >= {"secret", "otpauth_uri", "qr_svg"}, body
    secret = body["secret"]
    assert re.fullmatch(r"[A-Za-z2-7]+", secret), f"base32 without padding: {secret!r}"
    raw = base32_bytes(secret)
    assert len(raw) * 8 >= 160, f"{len(raw) * 8} bits"

    uri = body["otpauth_uri"]
    split = urlsplit(uri)
    assert (split.scheme, split.netloc) == ("otpauth", "totp"), uri
    # The label: "issuer:account" (Key Uri Format), percent-encoded.
    assert unquote(split.path) == f"/{ISSUER}:{username}", uri
    query = {k: v[0] for k, v in parse_qs(split.query).items()}
    assert query["secret"].upper() == secret.upper(), uri
    assert query["issuer"] == ISSUER, uri
    # Absent parameters mean these values (the Key Uri Format's defaults).
    assert query.get("algorithm", "SHA1").upper() == "SHA1", uri
    assert query.get("digits", str(DIGITS)) == str(DIGITS), uri
    assert query.get("period", str(STEP_SECONDS)) == str(STEP_SECONDS), uri
    # An authenticator app reads it the same way (pyotp's parser).
    parsed = pyotp.parse_uri(uri)
    assert isinstance(parsed, pyotp.TOTP), uri
    assert parsed.issuer == ISSUER and parsed.name == username, (parsed.issuer, parsed.name)
    assert parsed.digits == DIGITS and parsed.interval == STEP_SECONDS, uri
    assert parsed.at(1_000_000_000) == pyotp.TOTP(secret).at(1_000_000_000)

    assert_svg(body["qr_svg"])
    return secret


def assert_svg(svg: str) -> None:
    """An SVG document drawing something, with nothing that runs."""
    import xml.etree.ElementTree as ET

    assert isinstance(svg, str) and "<svg" in svg[:500], svg[:200]
    root = ET.fromstring(svg.encode())
    assert root.tag in ("svg", "{http://www.w3.org/2000/svg}svg"), root.tag
    assert len(list(root.iter())) > 1, svg[:500]
    assert "<script" not in svg.lower() and "javascript:" not in svg.lower(), svg[:500]


def base32_bytes(secret: str) -> bytes:
    s = secret.upper()
    return base64.b32decode(s + "=" * (-len(s) % 8))


def assert_recovery_codes(body: dict) -> list[str]:
    """The answer of confirm or regenerate: ten distinct codes of the documented shape."""
    codes = body.get("recovery_codes")
    assert isinstance(codes, list) and len(codes) == RECOVERY_CODES, body
    for code in codes:
        assert isinstance(code, str) and RECOVERY_CODE_SHAPE.fullmatch(code), code
    assert len(set(codes)) == RECOVERY_CODES, codes
    return codes


def assert_mfa_required(r: requests.Response) -> str:
    """403 mfa_required with an mfa_token and no token; returns the mfa_token."""
    body = assert_problem(r, 403)
    assert body.get("error") == "mfa_required", body
    assert body.get("error_description"), body
    token = body.get("mfa_token")
    assert isinstance(token, str) and MFA_TOKEN_SHAPE.fullmatch(token), body
    for name in ("access_token", "refresh_token", "id_token"):
        assert name not in body, body
    return token


def assert_invalid_grant(r: requests.Response) -> None:
    assert r.status_code == 400, (r.status_code, r.text)
    assert oauth_error(r) == "invalid_grant", r.text
    assert "access_token" not in r.text, r.text


def assert_token_answer(r: requests.Response) -> dict:
    """200 with the password grant's fields."""
    assert r.status_code == 200, (r.status_code, r.text)
    tokens = r.json()
    assert tokens.get("token_type") == "bearer", tokens
    assert tokens.get("access_token") and tokens.get("refresh_token"), tokens
    assert isinstance(tokens.get("expires_in"), int) and tokens["expires_in"] > 0, tokens
    return tokens


def amr(service, access_token: str) -> list[str]:
    """The access token's `amr`, its signature checked against the published keys."""
    return access_claims(service, access_token).get("amr")


def mfa_token_for(service, account: "TotpAccount") -> str:
    return assert_mfa_required(password_login(service, account.username, account.password))


# --- An account with TOTP on ----------------------------------------------------------------


@dataclass
class TotpAccount:
    username: str
    password: str
    full_name: str
    # A bearer token from before the enrolment (still valid: enrolling ends no session).
    access_token: str
    secret: str
    authenticator: Authenticator
    recovery_codes: list[str] = field(default_factory=list)
    email: str | None = None


def register(service, full_name: str = "Ada Lovelace") -> tuple[str, str, str]:
    username = f"user-{uuid.uuid4().hex[:12]}"
    password = f"orbit-{uuid.uuid4().hex[:8]}-lantern-quartz"
    r = requests.post(service.url("/register"), timeout=TIMEOUT, json={
        "username": username, "password": password, "full_name": full_name})
    assert r.status_code == 201, r.text
    return username, password, full_name


def totp_account(service, full_name: str = "Ada Lovelace", user: tuple[str, str, str] | None = None,
                 email: str | None = None) -> TotpAccount:
    """An account (a new one, or `user` = (username, password, full_name)) that enrolled and
    confirmed TOTP with the authenticator's first code; its recovery codes kept."""
    username, password, full_name = user or register(service, full_name)
    r = password_login(service, username, password)
    assert r.status_code == 200, r.text
    access = r.json()["access_token"]
    r = enrol(service, access, password)
    assert r.status_code == 200, r.text
    secret = assert_enrolment(r.json(), username)
    authenticator = Authenticator(secret)
    r = confirm(service, access, authenticator.next_code())
    assert r.status_code == 200, r.text
    codes = assert_recovery_codes(r.json())
    return TotpAccount(username=username, password=password, full_name=full_name,
                       access_token=access, secret=secret, authenticator=authenticator,
                       recovery_codes=codes, email=email)


def two_factor_login(service, account: TotpAccount) -> dict:
    """Password, then the authenticator's next code: the token answer."""
    token = mfa_token_for(service, account)
    return assert_token_answer(otp_grant(service, token, account.authenticator.next_code()))
