//! `POST /login`, the token endpoint (RFC 6749): the password grant (the OAuth2 form, or JSON,
//! with or without `grant_type`) and the refresh grant (`grant_type=refresh_token`). Both answer
//! 200 {access_token, token_type, expires_in, refresh_token}.
//!
//! Password grant: unknown users and wrong passwords are indistinguishable (same status, body,
//! and one bcrypt verification each). Each attempt on a known account first claims its place in
//! the throttle ([`throttle::claim`]), so concurrent guesses cannot outrun it; attempts during a
//! wait are answered 429 without a bcrypt. A success starts a session ([`session::start`]).
//!
//! Refresh grant: rotates the session's refresh token ([`session::refresh`]); every refusal is
//! one 400 `invalid_grant`.

use lambda_http::{Body, Request, Response};

use crate::error::ApiError;
use crate::http::{self, BodyFormat, Fields};
use crate::metrics::{self, Outcome};
use crate::password::Verification;
use crate::policy;
use crate::session::{self, Grant};
use crate::signer::Signer;
use crate::state::LoginState;
use crate::store::{CounterStore, CredentialStore, SessionStore};
use crate::throttle::{self, Attempt};

/// Handles one request; every failure becomes its problem response.
pub async fn handle<C: CredentialStore + SessionStore + CounterStore, S: Signer>(
    state: &LoginState<C, S>,
    req: Request,
) -> Response<Body> {
    token(state, req)
        .await
        .unwrap_or_else(ApiError::into_response)
}

async fn token<C: CredentialStore + SessionStore + CounterStore, S: Signer>(
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
            return Err(ApiError::validation(
                "grant_type",
                "unsupported grant type; \"password\" and \"refresh_token\" are accepted",
            ));
        }
    };
    super::token_response(&state.tokens, &iss, &grant).await
}

async fn password_grant<C: CredentialStore + SessionStore + CounterStore, S: Signer>(
    state: &LoginState<C, S>,
    fields: &Fields,
    source_ip: Option<&str>,
) -> Result<Grant, ApiError> {
    let username = fields.string("username")?;
    let password = fields.string("password")?;
    // Measured as registration measures it (after NFKC), so a password that registers always
    // gets as far as its check.
    if crate::password::normalize(password).chars().count() > policy::PASSWORD_MAX_CHARS
        || username.chars().count() > policy::USERNAME_MAX_CHARS * 4
    {
        // Longer than anything registration accepts: refused before any lookup or bcrypt.
        return Err(ApiError::InvalidCredentials);
    }
    let now = (state.clock)();
    let source = source_ip.unwrap_or(throttle::UNKNOWN_SOURCE);
    let key = policy::username_key(username);
    let user = match throttle::claim(&state.store, &key, source, &state.throttle, now).await? {
        Attempt::UnknownUser => {
            state.hasher.dummy_verify(password);
            // No name in the line: a user who typed the password into the name field.
            tracing::info!(source_ip = %source, "login failed: no such account");
            metrics::record(Outcome::LoginFailed);
            return Err(ApiError::InvalidCredentials);
        }
        Attempt::Wait(retry_after) => {
            metrics::record(Outcome::LoginThrottled);
            return Err(ApiError::TooManyAttempts { retry_after });
        }
        Attempt::Check(user) => user,
    };
    match state.hasher.verify(password, &user.password_hash) {
        Verification::Mismatch => {
            // Already counted by the claim.
            let failures = user.failed_logins + 1;
            tracing::info!(user_id = %user.id, failures, source_ip = %source, "login failed");
            metrics::record(Outcome::LoginFailed);
            Err(ApiError::InvalidCredentials)
        }
        Verification::Match { needs_rehash } => {
            let upgraded = if needs_rehash {
                Some(
                    state
                        .hasher
                        .hash(password)
                        .map_err(|e| ApiError::Internal(e.to_string()))?,
                )
            } else {
                None
            };
            let rehash = upgraded
                .as_deref()
                .map(|new| (user.password_hash.as_str(), new));
            throttle::succeeded(&state.store, &user, source, rehash).await?;
            tracing::info!(user_id = %user.id, rehashed = needs_rehash, "login succeeded");
            metrics::record(Outcome::LoginSucceeded);
            Ok(session::start(&state.store, &user, &state.sessions, now).await?)
        }
    }
}

async fn refresh_grant<C: CredentialStore + SessionStore + CounterStore, S: Signer>(
    state: &LoginState<C, S>,
    fields: &Fields,
) -> Result<Grant, ApiError> {
    let presented = fields
        .optional_string("refresh_token")
        .map_err(|_| ApiError::BadRequest("refresh_token must be a string".into()))?
        .ok_or_else(|| ApiError::BadRequest("refresh_token is required".into()))?;
    let grant = session::refresh(&state.store, presented, &state.sessions, (state.clock)()).await?;
    metrics::record(Outcome::Refreshed);
    Ok(grant)
}
