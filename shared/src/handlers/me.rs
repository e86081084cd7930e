//! `GET /me` with `Authorization: Bearer <token>` → 200 {username, full_name} (and `email`,
//! `email_verified` when the account has an address); and the OpenID
//! Connect `GET`/`POST /userinfo` (Core §5.3) → 200 {sub, preferred_username, name}, through the
//! same session-aware bearer check.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::json;

use crate::error::ApiError;
use crate::http;
use crate::state::MeState;
use crate::state::stores;

/// Handles one request; every failure becomes its problem response.
pub async fn handle<P: stores::Me>(state: &MeState<P>, req: Request) -> Response<Body> {
    me(state, req).await.unwrap_or_else(ApiError::into_response)
}

async fn me<P: stores::Me>(state: &MeState<P>, req: Request) -> Result<Response<Body>, ApiError> {
    if http::path(&req).ends_with("/userinfo") {
        return userinfo(state, req).await;
    }
    // DELETE /me is the account function's; every other method is wrong here.
    if req.method() != lambda_http::http::Method::GET {
        return Err(ApiError::MethodNotAllowed("GET, DELETE"));
    }
    let now = (state.clock)();
    let (_, found) =
        super::authenticate(&state.verifier, &state.issuer, &state.store, now, &req).await?;
    let profile = found.profile;
    let mut body = json!({"username": profile.username, "full_name": profile.full_name});
    if let Some(email) = profile.email {
        body["email"] = json!(email);
        body["email_verified"] = json!(profile.email_verified);
    }
    Ok(http::json(StatusCode::OK, &body))
}

async fn userinfo<P: stores::Me>(
    state: &MeState<P>,
    req: Request,
) -> Result<Response<Body>, ApiError> {
    use lambda_http::http::Method;
    if req.method() != Method::GET && req.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed("GET, POST"));
    }
    let now = (state.clock)();
    let (claims, found) =
        super::authenticate(&state.verifier, &state.issuer, &state.store, now, &req).await?;
    // A client's token answers only with `openid` granted (Core §5.3); the password grant's
    // tokens carry no scope and answer as at /me.
    if claims
        .scope
        .as_deref()
        .is_some_and(|scope| !crate::oauth::authorize::has_scope(scope, "openid"))
    {
        return Err(ApiError::InsufficientScope("openid"));
    }
    let mut body = json!({"sub": claims.sub});
    // The profile claims with `profile` granted, as in the id_token (and always for the
    // password grant's tokens, as at /me).
    let profile = claims
        .scope
        .as_deref()
        .is_none_or(|scope| crate::oauth::authorize::has_scope(scope, "profile"));
    if profile {
        body["preferred_username"] = json!(found.profile.username);
        if let Some(name) = found.profile.full_name {
            body["name"] = json!(name);
        }
    }
    Ok(http::json(StatusCode::OK, &body))
}
