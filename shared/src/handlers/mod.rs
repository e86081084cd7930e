//! The HTTP edge: one module per route family (request in, domain calls, response out; no
//! storage or crypto details), and the bearer check the protected routes share.

pub mod account;
pub mod authorize;
pub mod jwks;
pub mod login;
pub mod logout;
pub mod me;
pub mod mfa;
pub mod recovery;
pub mod register;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::json;

use crate::config::Issuer;
use crate::error::ApiError;
use crate::http;
use crate::oauth::authorize::has_scope;
use crate::oauth::code::CodeGrant;
use crate::session::{self, Grant};
use crate::signer::Signer;
use crate::store::{Holder, ProfileReader, ProfileWithSession};
use crate::token::{
    Claims, INVALID_TOKEN, IdTokenClaims, Subject, TokenIssuer, TokenVerifier, at_hash,
};

/// What an id_token is made from: the code's sign-in, and the account's full name.
pub(crate) struct IdToken<'a> {
    pub(crate) grant: &'a CodeGrant,
    pub(crate) full_name: Option<&'a str>,
}

/// The token endpoint's answer (RFC 6749 §5.1) for a session's grant: a new access token of
/// that session from `iss`, and the refresh token that goes with it. A client's session (the
/// code grant, and its refreshes) adds `scope`, keeps the refresh token for `offline_access`
/// only, and with `id_token` (a code exchange with `openid`) adds the id_token.
pub(crate) async fn token_response<S: Signer>(
    tokens: &TokenIssuer<S>,
    iss: &str,
    grant: &Grant,
    id_token: Option<IdToken<'_>>,
    now: u64,
) -> Result<Response<Body>, ApiError> {
    let client = match &grant.holder {
        Holder::Client { client_id, scope } => Some((client_id.as_str(), scope.as_str())),
        _ => None,
    };
    let subject = Subject {
        user_id: &grant.user_id,
        username: &grant.username,
        sid: &grant.sid,
        client,
        mfa: grant.mfa,
    };
    let token = tokens.issue_to(iss, &subject, now).await?;
    let mut body = json!({
        "access_token": token.access_token,
        "token_type": "bearer",
        "expires_in": token.expires_in,
    });
    let Some((client_id, scope)) = client else {
        body["refresh_token"] = json!(grant.refresh_token);
        return Ok(http::json(StatusCode::OK, &body));
    };
    body["scope"] = json!(scope);
    if has_scope(scope, "offline_access") {
        body["refresh_token"] = json!(grant.refresh_token);
    }
    if let Some(id) = id_token.filter(|_| has_scope(scope, "openid")) {
        let profile = has_scope(scope, "profile");
        let claims = IdTokenClaims {
            iss: iss.to_string(),
            sub: grant.user_id.clone(),
            aud: client_id.to_string(),
            exp: now + tokens.ttl_seconds(),
            iat: now,
            auth_time: id.grant.auth_time,
            nonce: id.grant.nonce.clone(),
            amr: id.grant.amr.clone(),
            sid: id.grant.sid.clone(),
            at_hash: Some(at_hash(&token.access_token)),
            preferred_username: profile.then(|| grant.username.clone()),
            name: id.full_name.filter(|_| profile).map(str::to_string),
        };
        body["id_token"] = json!(tokens.id_token(&claims).await?);
    }
    Ok(http::json(StatusCode::OK, &body))
}

/// The bearer's claims and credentials, read afresh ([`authenticate`], then the account's own
/// record): for routes that act on the account's secrets (its address, its second factor).
pub(crate) async fn bearer_credentials<P: ProfileReader + crate::store::CredentialStore>(
    verifier: &TokenVerifier,
    issuer: &Issuer,
    store: &P,
    now: u64,
    req: &Request,
) -> Result<(Claims, crate::store::Credentials), ApiError> {
    let (claims, _) = authenticate(verifier, issuer, store, now, req).await?;
    let user = store
        .credentials(&crate::policy::login_key(&claims.preferred_username))
        .await?
        .filter(|u| u.id == claims.sub)
        .ok_or(ApiError::InvalidToken(INVALID_TOKEN))?;
    Ok((claims, user))
}

/// The bearer's claims and account, if its token verifies, its account still exists and its
/// session is open at `now`: the check of every protected route, in one store round trip.
pub(crate) async fn authenticate<P: ProfileReader>(
    verifier: &TokenVerifier,
    issuer: &Issuer,
    store: &P,
    now: u64,
    req: &Request,
) -> Result<(Claims, ProfileWithSession), ApiError> {
    let iss = http::issuer(issuer, req)?;
    let claims = verifier.verify(http::bearer_token(req)?, &iss)?;
    // A valid signature is not enough: the account must still exist (deleted, or replaced by a
    // new account of the same name, which has a new id) and the token's session must be open.
    let found = store
        .profile(&claims.sub, &claims.preferred_username, &claims.sid)
        .await?
        .filter(|found| session::is_open(found, &claims.sub, now))
        .ok_or(ApiError::InvalidToken(INVALID_TOKEN))?;
    Ok((claims, found))
}
