//! `GET /me` with `Authorization: Bearer <token>` → 200 {username, full_name}.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::json;

use crate::error::ApiError;
use crate::http;
use crate::session;
use crate::state::MeState;
use crate::store::ProfileReader;
use crate::token::INVALID_TOKEN;

/// Handles one request; every failure becomes its problem response.
pub async fn handle<P: ProfileReader>(state: &MeState<P>, req: Request) -> Response<Body> {
    me(state, req).await.unwrap_or_else(ApiError::into_response)
}

async fn me<P: ProfileReader>(
    state: &MeState<P>,
    req: Request,
) -> Result<Response<Body>, ApiError> {
    http::require_method(&req, "GET")?;
    let iss = http::issuer(&state.issuer, &req)?;
    let claims = state.verifier.verify(http::bearer_token(&req)?, &iss)?;
    // A valid signature is not enough: the account must still exist (deleted, or replaced by a
    // new account of the same name, which has a new id) and the token's session must be open.
    let found = state
        .store
        .profile(&claims.sub, &claims.preferred_username, &claims.sid)
        .await?
        .filter(|found| session::is_open(found, &claims.sub, (state.clock)()))
        .ok_or(ApiError::InvalidToken(INVALID_TOKEN))?;
    Ok(http::json(
        StatusCode::OK,
        &json!({"username": found.profile.username, "full_name": found.profile.full_name}),
    ))
}
