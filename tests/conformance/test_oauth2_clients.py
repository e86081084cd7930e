"""Off-the-shelf OAuth2 and JWT libraries work against the service with nothing but its
discovery document: authlib's password grant gets a token from /login, PyJWT verifies it from
the published key set."""

import jwt
import pytest
import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session


@pytest.fixture
def discovery(service):
    r = requests.get(service.url("/.well-known/openid-configuration"), timeout=30)
    assert r.status_code == 200
    return r.json()


def test_discovery_points_at_this_service(service, discovery):
    assert discovery["issuer"] == service.issuer
    assert discovery["token_endpoint"] == service.url("/login")
    assert discovery["jwks_uri"] == service.url("/.well-known/jwks.json")
    assert discovery["grant_types_supported"] == ["password"]


def test_authlib_password_grant_then_pyjwt_verifies_the_token(service, discovery, new_user):
    username, password, full_name = new_user("Grace Hopper")

    # GIVEN a public OAuth2 client configured from the discovery document
    client = OAuth2Session(client_id="conformance-tests", token_endpoint_auth_method="none")
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
    client = OAuth2Session(client_id="conformance-tests", token_endpoint_auth_method="none")
    with pytest.raises(OAuthError) as failure:
        client.fetch_token(discovery["token_endpoint"], username=username,
                           password="not-the-password", grant_type="password")
    assert failure.value.error == "invalid_grant"
