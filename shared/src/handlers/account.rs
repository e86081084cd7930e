//! The account's own life, each step behind the bearer *and* the current password
//! (re-authentication, ASVS 7.5.1):
//! - `PUT /me/password` {current_password, new_password} → 200 with a new session for the caller;
//!   every other session ends and no access token issued before passes `/me` (ASVS 3.3.3);
//! - `DELETE /me` {password} → 204; the account and its sessions are gone (ASVS 7.4.2);
//! - `PUT /me/email` {email, password} → 200; the new address is unverified until its mailed
//!   link is used, and a verified old address is told of the change.
//!
//! The addresses' verification and the password reset by mail are in [`super::recovery`],
//! served by the same function.
//!
//! A wrong password counts as a failed login of the account, through the same throttle
//! ([`throttle::claim`]), so these routes are no side door for guessing.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::json;

use crate::authn::email;
use crate::mail::Letter;

use crate::authn::{self, password::Checker, password::Purpose, password::Refusal};
use crate::error::ApiError;
use crate::http::{self, BodyFormat};
use crate::password;
use crate::policy::{self, Username};
use crate::session;
use crate::signer::Signer;
use crate::state::AccountState;
use crate::state::stores;
use crate::store::{Credentials, ProfileWithSession};
use crate::throttle;
use crate::token::{Claims, INVALID_TOKEN};

/// Handles one request; every failure becomes its problem response.
pub async fn handle<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    req: Request,
) -> Response<Body> {
    let path = http::path(&req).trim_end_matches('/').to_string();
    if let Some(response) = super::recovery::route(state, &req, &path).await {
        return response;
    }
    if let Some(result) = super::mfa::route(state, &req, &path).await {
        return result.unwrap_or_else(ApiError::into_response);
    }
    route(state, req)
        .await
        .unwrap_or_else(ApiError::into_response)
}

async fn route<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    req: Request,
) -> Result<Response<Body>, ApiError> {
    let path = http::path(&req).trim_end_matches('/');
    if path.ends_with("/me/password") {
        http::require_method(&req, "PUT")?;
        change_password(state, req).await
    } else if path.ends_with("/me/email") {
        http::require_method(&req, "PUT")?;
        change_email(state, req).await
    } else if path.ends_with("/me") {
        if req.method() != Method::DELETE {
            return Err(ApiError::MethodNotAllowed("GET, DELETE"));
        }
        delete_account(state, req).await
    } else {
        Err(ApiError::NotFound(path.to_string()))
    }
}

async fn change_password<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    req: Request,
) -> Result<Response<Body>, ApiError> {
    let now = (state.clock)();
    let (claims, found) =
        super::authenticate(&state.verifier, &state.issuer, &state.store, now, &req).await?;
    let fields = http::read_fields(&req, &[BodyFormat::Json])?;
    let current = fields.string("current_password")?;
    let new = fields.string("new_password")?;
    // Every check of the new password is cheap and comes before any bcrypt.
    check_new_password(new, current, &claims, &found)?;
    let user = reauthenticate(state, &claims, current, &req, now).await?;
    // A password change with TOTP on also needs a code: the password alone changes nothing.
    super::mfa::check_for_change(state, &user, &fields, now).await?;
    let new_hash = state
        .hasher
        .hash(new)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let epoch = state
        .store
        .change_password(&user, &new_hash)
        .await?
        .ok_or_else(|| ApiError::Conflict("The password was changed meanwhile".into()))?;
    tracing::info!(user_id = %user.id, "password changed");
    email::notify(
        &state.outbox,
        &user,
        Letter::PasswordChanged,
        "password-changed",
    )
    .await;
    // The caller's new session: a second factor was just checked when the account has one.
    let changed = Credentials {
        session_epoch: epoch,
        ..user
    };
    let grant = if changed.totp_enabled {
        session::start_with_second_factor(&state.store, &changed, &state.sessions, now).await?
    } else {
        session::start(&state.store, &changed, &state.sessions, now).await?
    };
    let iss = http::issuer(&state.issuer, &req)?;
    super::token_response(&state.tokens, &iss, &grant, None, (state.clock)()).await
}

async fn change_email<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    req: Request,
) -> Result<Response<Body>, ApiError> {
    let now = (state.clock)();
    let (claims, found) =
        super::authenticate(&state.verifier, &state.issuer, &state.store, now, &req).await?;
    let fields = http::read_fields(&req, &[BodyFormat::Json])?;
    let address = policy::email(fields.string("email")?)?;
    let password = fields.string("password")?;
    if found.profile.email.as_deref() == Some(address.as_str()) {
        return Err(ApiError::validation(
            "email",
            "is already the account's address",
        ));
    }
    let user = reauthenticate(state, &claims, password, &req, now).await?;
    if !state.store.set_email(&user, &address).await? {
        return Err(ApiError::Conflict(
            "The account changed meanwhile; try again".into(),
        ));
    }
    tracing::info!(user_id = %user.id, "email changed");
    let iss = http::issuer(&state.issuer, &req)?;
    email::send_verification(&state.store, &state.outbox, &iss, &user, &address, now).await;
    if user.email.as_deref() != Some(address.as_str()) {
        email::notify(&state.outbox, &user, Letter::EmailChanged, "email-changed").await;
    }
    Ok(http::json(
        StatusCode::OK,
        &json!({"email": address, "email_verified": false}),
    ))
}

async fn delete_account<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    req: Request,
) -> Result<Response<Body>, ApiError> {
    let now = (state.clock)();
    let (claims, _) =
        super::authenticate(&state.verifier, &state.issuer, &state.store, now, &req).await?;
    let fields = http::read_fields(&req, &[BodyFormat::Json])?;
    let password = fields.string("password")?;
    let user = reauthenticate(state, &claims, password, &req, now).await?;
    if !state.store.delete_account(&user).await? {
        // Deleted by a concurrent request: the bearer's account is gone either way.
        return Err(ApiError::InvalidToken(INVALID_TOKEN));
    }
    tracing::info!(user_id = %user.id, "account deleted");
    Ok(http::no_content())
}

/// The policy for a new password: the registration rules, named `new_password`, and not the
/// current one.
fn check_new_password(
    new: &str,
    current: &str,
    claims: &Claims,
    found: &ProfileWithSession,
) -> Result<(), ApiError> {
    let username = Username {
        display: found.profile.username.clone(),
        key: policy::username_key(&claims.preferred_username),
    };
    policy::password(new, &username, found.profile.full_name.as_deref())
        .map_err(|e| e.for_field("new_password"))?;
    if password::normalize(new) == password::normalize(current) {
        return Err(ApiError::validation(
            "new_password",
            "must differ from the current password",
        ));
    }
    Ok(())
}

/// Checks `password` as a login of the bearer's account would ([`password::check`]), from the
/// address `req` came from: throttled, counted on failure, given back on success.
pub(super) async fn reauthenticate<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    claims: &Claims,
    password: &str,
    req: &Request,
    now: u64,
) -> Result<Credentials, ApiError> {
    let source = http::source_ip(req).unwrap_or(throttle::UNKNOWN_SOURCE);
    let checker = Checker {
        hasher: &state.hasher,
        limits: &state.throttle,
    };
    let purpose = Purpose::Reauthenticate {
        username: &claims.preferred_username,
        user_id: &claims.sub,
    };
    authn::password::check(&state.store, checker, purpose, password, source, now)
        .await
        .map_err(|refusal| match refusal {
            Refusal::WrongCredentials => ApiError::IncorrectPassword,
            // Gone or replaced since the bearer check.
            Refusal::AccountGone => ApiError::InvalidToken(INVALID_TOKEN),
            other => other.into(),
        })
}
