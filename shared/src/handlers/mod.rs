//! The HTTP edge: one module per route family (request in, domain calls, response out; no
//! storage or crypto details), and the bearer check the protected routes share.

pub mod account;
pub mod jwks;
pub mod login;
pub mod logout;
pub mod me;
pub mod register;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::json;

use crate::config::Issuer;
use crate::error::ApiError;
use crate::http;
use crate::session::{self, Grant};
use crate::signer::Signer;
use crate::store::{ProfileReader, ProfileWithSession};
use crate::token::{Claims, INVALID_TOKEN, TokenIssuer, TokenVerifier};

/// The token endpoint's answer (RFC 6749 §5.1) for a session's grant: a new access token of
/// that session from `iss`, and the refresh token that goes with it.
pub(crate) async fn token_response<S: Signer>(
    tokens: &TokenIssuer<S>,
    iss: &str,
    grant: &Grant,
    now: u64,
) -> Result<Response<Body>, ApiError> {
    let token = tokens
        .issue(iss, &grant.user_id, &grant.username, &grant.sid, now)
        .await?;
    Ok(http::json(
        StatusCode::OK,
        &json!({
            "access_token": token.access_token,
            "token_type": "bearer",
            "expires_in": token.expires_in,
            "refresh_token": grant.refresh_token,
        }),
    ))
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
