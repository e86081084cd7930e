//! `POST /login`: the OAuth2 password grant (form) or a JSON body → 200 {access_token,
//! token_type, expires_in}.
//!
//! Unknown users and wrong passwords are indistinguishable (same status, body, and one bcrypt
//! verification each). After [`FREE_FAILURES`] consecutive failures an account waits
//! 2^(n−5) seconds (capped at [`MAX_WAIT_SECONDS`]) between attempts; attempts during a wait are
//! answered 429 without a bcrypt and without being counted.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::json;

use crate::error::ApiError;
use crate::http::{self, BodyFormat};
use crate::password::Verification;
use crate::policy;
use crate::signer::Signer;
use crate::state::LoginState;
use crate::store::CredentialStore;

/// Consecutive failures allowed before waits begin.
pub const FREE_FAILURES: u32 = 5;
/// The longest wait, in seconds (15 minutes).
pub const MAX_WAIT_SECONDS: u64 = 15 * 60;

/// Seconds an account with `failures` consecutive failures must wait after the last one.
pub fn wait_after(failures: u32) -> u64 {
    if failures < FREE_FAILURES {
        0
    } else {
        let exp = failures - FREE_FAILURES;
        if exp >= 10 {
            MAX_WAIT_SECONDS
        } else {
            (1u64 << exp).min(MAX_WAIT_SECONDS)
        }
    }
}

/// Handles one request; every failure becomes its problem response.
pub async fn handle<C: CredentialStore, S: Signer>(
    state: &LoginState<C, S>,
    req: Request,
) -> Response<Body> {
    login(state, req)
        .await
        .unwrap_or_else(ApiError::into_response)
}

async fn login<C: CredentialStore, S: Signer>(
    state: &LoginState<C, S>,
    req: Request,
) -> Result<Response<Body>, ApiError> {
    http::require_method(&req, "POST")?;
    let iss = http::issuer(&state.issuer, &req)?;
    let fields = http::read_fields(&req, &[BodyFormat::Form, BodyFormat::Json])?;
    if let Some(grant) = fields.optional_string("grant_type")?
        && grant != "password"
    {
        return Err(ApiError::validation(
            "grant_type",
            "unsupported grant type; only \"password\" is accepted",
        ));
    }
    let username = fields.string("username")?;
    let password = fields.string("password")?;
    if password.chars().count() > policy::PASSWORD_MAX_CHARS
        || username.chars().count() > policy::USERNAME_MAX_CHARS * 4
    {
        // Longer than anything registration accepts: refused before any lookup or bcrypt.
        return Err(ApiError::InvalidCredentials);
    }

    let Some(user) = state
        .store
        .credentials(&policy::username_key(username))
        .await?
    else {
        state.hasher.dummy_verify(password);
        return Err(ApiError::InvalidCredentials);
    };
    let now = (state.clock)();
    if let Some(last) = user.last_failed_at {
        let until = last.saturating_add(wait_after(user.failed_logins));
        if now < until {
            return Err(ApiError::TooManyAttempts {
                retry_after: until - now,
            });
        }
    }
    match state.hasher.verify(password, &user.password_hash) {
        Verification::Mismatch => {
            let failures = state.store.record_failure(&user, now).await?;
            tracing::info!(user_id = %user.id, failures, "login failed");
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
            state.store.record_success(&user, rehash).await?;
            let token = state.tokens.issue(&iss, &user.id, &user.username).await?;
            tracing::info!(user_id = %user.id, rehashed = needs_rehash, "login succeeded");
            Ok(http::json(
                StatusCode::OK,
                &json!({
                    "access_token": token.access_token,
                    "token_type": "bearer",
                    "expires_in": token.expires_in,
                }),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_after_five_failures_and_stop_at_fifteen_minutes() {
        let waits: Vec<u64> = (0..=16).map(wait_after).collect();
        assert_eq!(
            waits,
            [
                0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900
            ]
        );
        assert_eq!(wait_after(u32::MAX), MAX_WAIT_SECONDS);
    }

    #[test]
    fn the_schedule_keeps_failures_under_100_an_hour() {
        // An attacker who retries the moment each wait ends.
        let (mut t, mut failures) = (0u64, 0u32);
        while t < 3600 {
            failures += 1;
            t += wait_after(failures).max(1);
        }
        assert!(failures < 100, "{failures} failures in an hour");
    }
}
