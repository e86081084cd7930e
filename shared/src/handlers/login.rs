//! `POST /login`, the token endpoint (RFC 6749): the password grant (the OAuth2 form, or JSON,
//! with or without `grant_type`) and the refresh grant (`grant_type=refresh_token`). Both answer
//! 200 {access_token, token_type, expires_in, refresh_token}.
//!
//! Password grant: the one password check ([`password::check`]: unknown users and wrong
//! passwords indistinguishable, the throttle's claim before bcrypt, 429 during a wait); a
//! success starts a session ([`session::start`]).
//!
//! Refresh grant: rotates the session's refresh token ([`session::refresh`]); every refusal is
//! one 400 `invalid_grant`.

use lambda_http::{Body, Request, Response};

use crate::authn::password::{self, Checker, Purpose};
use crate::error::ApiError;
use crate::http::{self, BodyFormat, Fields};
use crate::metrics::{self, Outcome};
use crate::session::{self, Grant};
use crate::signer::Signer;
use crate::state::LoginState;
use crate::state::stores;
use crate::throttle;

/// Handles one request; every failure becomes its problem response.
pub async fn handle<C: stores::Login, S: Signer>(
    state: &LoginState<C, S>,
    req: Request,
) -> Response<Body> {
    token(state, req)
        .await
        .unwrap_or_else(ApiError::into_response)
}

async fn token<C: stores::Login, S: Signer>(
    state: &LoginState<C, S>,
    req: Request,
) -> Result<Response<Body>, ApiError> {
    http::require_method(&req, "POST")?;
    let iss = http::issuer(&state.issuer, &req)?;
    let fields = http::read_fields(&req, &[BodyFormat::Form, BodyFormat::Json])?;
    let grant = match fields.optional_string("grant_type")? {
        None | Some("password") => password_grant(state, &fields, http::source_ip(&req)).await?,
        Some("refresh_token") => refresh_grant(state, &fields).await?,
        Some(_) => {
            return Err(ApiError::UnsupportedGrantType(
                "\"password\" and \"refresh_token\" are accepted",
            ));
        }
    };
    super::token_response(&state.tokens, &iss, &grant, (state.clock)()).await
}

async fn password_grant<C: stores::Login, S: Signer>(
    state: &LoginState<C, S>,
    fields: &Fields,
    source_ip: Option<&str>,
) -> Result<Grant, ApiError> {
    let username = fields.string("username")?;
    let password = fields.string("password")?;
    let now = (state.clock)();
    let source = source_ip.unwrap_or(throttle::UNKNOWN_SOURCE);
    let checker = Checker {
        hasher: &state.hasher,
        limits: &state.throttle,
    };
    let purpose = Purpose::Login { username };
    // Unknown names and wrong passwords: one 401 (`From<Refusal>`).
    let user = password::check(&state.store, checker, purpose, password, source, now).await?;
    // The one place a password login ends: here it starts a session.
    Ok(session::start(&state.store, &user, &state.sessions, now).await?)
}

async fn refresh_grant<C: stores::Login, S: Signer>(
    state: &LoginState<C, S>,
    fields: &Fields,
) -> Result<Grant, ApiError> {
    let presented = fields
        .optional_string("refresh_token")
        .map_err(|_| ApiError::BadRequest("refresh_token must be a string".into()))?
        .ok_or_else(|| ApiError::BadRequest("refresh_token is required".into()))?;
    let seal_key = state.tokens.seal_key().await?;
    let grant = session::refresh(
        &state.store,
        presented,
        &state.sessions,
        &seal_key,
        (state.clock)(),
    )
    .await?;
    metrics::record(Outcome::Refreshed);
    Ok(grant)
}
