"""Off-the-shelf OAuth2 and JWT libraries work against the service with nothing but its
discovery document: authlib's password grant gets a token from /login, PyJWT verifies it from
the published key set, authlib refreshes it (when asked, and by itself when it expires) and
revokes it at the revocation endpoint."""

import time

import jwt
import pytest
import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session


def public_client(**settings) -> OAuth2Session:
    """authlib's client as a public one (no client secret), as this service expects."""
    return OAuth2Session(client_id="conformance-tests", token_endpoint_auth_method="none",
                         **settings)


def session_id(access_token: str) -> str:
    return jwt.decode(access_token, options={"verify_signature": False})["sid"]


@pytest.fixture
def discovery(service):
    r = requests.get(service.url("/.well-known/openid-configuration"), timeout=30)
    assert r.status_code == 200
    return r.json()


def test_discovery_points_at_this_service(service, discovery):
    assert discovery["issuer"] == service.issuer
    assert discovery["token_endpoint"] == service.url("/login")
    assert discovery["jwks_uri"] == service.url("/.well-known/jwks.json")
    assert set(discovery["grant_types_supported"]) == {
        "authorization_code", "refresh_token", "password",
        "urn:jwt-auth:grant-type:mfa-otp", "urn:jwt-auth:grant-type:mfa-recovery-code"}
    assert discovery["revocation_endpoint"] == service.url("/logout")
    assert "none" in discovery["revocation_endpoint_auth_methods_supported"]


def test_authlib_password_grant_then_pyjwt_verifies_the_token(service, discovery, new_user):
    username, password, full_name = new_user("Grace Hopper")

    # GIVEN a public OAuth2 client configured from the discovery document
    client = public_client()
    # WHEN it runs the password grant
    token = client.fetch_token(
        discovery["token_endpoint"], username=username, password=password, grant_type="password"
    )
    # THEN it holds a bearer token it can use as is
    assert token["token_type"] == "bearer"
    assert token["expires_in"] == 1800
    assert token["expires_at"] > 0
    me = client.get(service.url("/me"), timeout=30)
    assert me.status_code == 200, me.text
    assert me.json() == {"username": username, "full_name": full_name}

    # AND PyJWT verifies it with nothing but the published key set
    access_token = token["access_token"]
    jwks = jwt.PyJWKClient(discovery["jwks_uri"])
    signing_key = jwks.get_signing_key_from_jwt(access_token)
    claims = jwt.decode(
        access_token,
        signing_key.key,
        algorithms=discovery["id_token_signing_alg_values_supported"],
        audience=service.audience,
        issuer=discovery["issuer"],
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )
    header = jwt.get_unverified_header(access_token)
    assert header["alg"] == "RS256"
    assert header["typ"] == "at+jwt"
    assert claims["exp"] - claims["iat"] == token["expires_in"]
    assert claims["sub"] != username, "the subject is the immutable user id, not the name"

    # AND refuses it for another audience or issuer
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(access_token, signing_key.key, algorithms=["RS256"], audience="another-api",
                   issuer=discovery["issuer"])
    with pytest.raises(jwt.InvalidIssuerError):
        jwt.decode(access_token, signing_key.key, algorithms=["RS256"], audience=service.audience,
                   issuer="https://someone-else.example")


def test_a_wrong_password_gets_the_same_401_whatever_the_client(service, new_user):
    username, _, _ = new_user()
    r = requests.post(service.url("/login"), timeout=30, data={
        "grant_type": "password", "username": username, "password": "not-the-password"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == "Incorrect username or password"


def test_oauth2_clients_see_a_wrong_password_as_invalid_grant(discovery, new_user):
    username, _, _ = new_user()
    client = public_client()
    with pytest.raises(OAuthError) as failure:
        client.fetch_token(discovery["token_endpoint"], username=username,
                           password="not-the-password", grant_type="password")
    assert failure.value.error == "invalid_grant"


def test_authlib_refreshes_when_asked_and_the_new_tokens_work(service, discovery, new_user):
    username, password, full_name = new_user("Katherine Johnson")
    client = public_client(token_endpoint=discovery["token_endpoint"])
    first = dict(client.fetch_token(username=username, password=password, grant_type="password"))
    assert first["refresh_token"]

    # WHEN the client refreshes explicitly
    second = dict(client.refresh_token())
    # THEN the refresh token was rotated, within the same session
    assert second["token_type"] == "bearer"
    assert second["expires_in"] == 1800
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert session_id(second["access_token"]) == session_id(first["access_token"])
    # AND the client uses the new access token, which works
    me = client.get(service.url("/me"), timeout=30)
    assert me.status_code == 200, me.text
    assert me.json() == {"username": username, "full_name": full_name}
    assert me.request.headers["Authorization"] == f"Bearer {second['access_token']}"

    # AND a retry with the replaced token (an answer lost on the way) gets the same successor
    retry = dict(client.refresh_token(refresh_token=first["refresh_token"]))
    assert retry["refresh_token"] == second["refresh_token"]


def test_authlib_refreshes_by_itself_once_the_access_token_expires(service, discovery, new_user):
    username, password, full_name = new_user("Dorothy Vaughan")
    updates = []
    client = public_client(
        token_endpoint=discovery["token_endpoint"],
        update_token=lambda token, refresh_token=None, access_token=None: updates.append(
            (dict(token), refresh_token)),
    )
    first = dict(client.fetch_token(username=username, password=password, grant_type="password"))
    # GIVEN the client holds an access token it knows to have expired
    client.token["expires_at"] = int(time.time()) - 1

    # WHEN it calls the API
    me = client.get(service.url("/me"), timeout=30)

    # THEN it refreshed first, told the application, and the call used the new access token
    assert me.status_code == 200, me.text
    assert me.json() == {"username": username, "full_name": full_name}
    assert len(updates) == 1, updates
    new, presented = updates[0]
    assert presented == first["refresh_token"]
    assert new["refresh_token"] != first["refresh_token"]
    assert new["access_token"] != first["access_token"]
    assert new["expires_at"] > time.time()
    assert me.request.headers["Authorization"] == f"Bearer {new['access_token']}"
    assert client.token["refresh_token"] == new["refresh_token"]


def test_authlib_revokes_the_refresh_token_and_the_session_ends(service, discovery, new_user):
    username, password, _ = new_user()
    client = public_client(token_endpoint=discovery["token_endpoint"])
    token = dict(client.fetch_token(username=username, password=password, grant_type="password"))

    # WHEN the client revokes its refresh token at the revocation endpoint (RFC 7009)
    r = client.revoke_token(discovery["revocation_endpoint"], token=token["refresh_token"],
                            token_type_hint="refresh_token")
    assert r.status_code == 200, r.text
    assert r.json() == {"message": "Logged out"}

    # THEN the refresh token is refused as OAuth2 clients expect
    with pytest.raises(OAuthError) as failure:
        client.refresh_token(refresh_token=token["refresh_token"])
    assert failure.value.error == "invalid_grant"
    # AND the session's access token no longer opens /me
    me = client.get(service.url("/me"), timeout=30)
    assert me.status_code == 401, me.text
    assert me.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    # AND revoking it again is still a success (nothing a client could act on)
    again = client.revoke_token(discovery["revocation_endpoint"], token=token["refresh_token"])
    assert again.status_code == 200, again.text


def test_a_global_logout_with_the_bearer_token_ends_every_session(service, discovery, new_user):
    username, password, _ = new_user()
    laptop, phone = (public_client(token_endpoint=discovery["token_endpoint"]) for _ in range(2))
    for client in (laptop, phone):
        client.fetch_token(username=username, password=password, grant_type="password")
    phone_refresh = phone.token["refresh_token"]

    # WHEN the laptop logs out everywhere with its access token (no body, scope in the query)
    r = laptop.post(discovery["revocation_endpoint"], params={"scope": "global"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"message": "Logged out"}

    # THEN the phone's session has ended too: /me refuses its access token, /login its refresh token
    assert phone.get(service.url("/me"), timeout=30).status_code == 401
    with pytest.raises(OAuthError) as failure:
        phone.refresh_token(refresh_token=phone_refresh)
    assert failure.value.error == "invalid_grant"
    # AND the laptop's bearer token cannot log out again
    assert laptop.post(discovery["revocation_endpoint"], timeout=30).status_code == 401
