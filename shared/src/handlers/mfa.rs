//! Enrolling a second factor, on the `account` function; each step behind the bearer, and the
//! ones that change or remove the factor behind the password too (counted by the login
//! throttle, as every re-authentication is):
//! - `POST /me/mfa/totp` {password} → 200 {secret, otpauth_uri, qr_svg}: a pending enrolment
//!   (login is unchanged until it is confirmed; enrolling again replaces it; 409 when TOTP is on);
//! - `POST /me/mfa/totp/confirm` {code} → 200 {recovery_codes}: ten codes, shown once; TOTP on;
//! - `DELETE /me/mfa/totp` {password, code} → 204 (the code may be a recovery code);
//! - `POST /me/mfa/recovery-codes` {password, code} → 200 {recovery_codes}: the old set is void.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::json;

use crate::authn::mfa::{self, Proof};
use crate::authn::totp;
use crate::error::ApiError;
use crate::http::{self, BodyFormat};
use crate::signer::Signer;
use crate::state::AccountState;
use crate::state::stores;
use crate::store::Credentials;

/// The routes of this module, or `None` for a path that is not one of them.
pub(super) async fn route<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    req: &Request,
    path: &str,
) -> Option<Result<Response<Body>, ApiError>> {
    Some(if path.ends_with("/me/mfa/totp/confirm") {
        match http::require_method(req, "POST") {
            Ok(()) => confirm(state, req).await,
            Err(e) => Err(e),
        }
    } else if path.ends_with("/me/mfa/totp") {
        match *req.method() {
            Method::POST => enrol(state, req).await,
            Method::DELETE => disable(state, req).await,
            _ => Err(ApiError::MethodNotAllowed("POST, DELETE")),
        }
    } else if path.ends_with("/me/mfa/recovery-codes") {
        match http::require_method(req, "POST") {
            Ok(()) => regenerate(state, req).await,
            Err(e) => Err(e),
        }
    } else {
        return None;
    })
}

fn already_on() -> ApiError {
    ApiError::Conflict("TOTP is already on for this account".into())
}

fn not_on() -> ApiError {
    ApiError::Conflict("TOTP is not on for this account".into())
}

/// The new recovery codes, and their hashes for the store.
fn recovery_codes() -> (Vec<String>, Vec<String>) {
    let codes = totp::new_recovery_codes();
    let hashes = codes.iter().map(|c| totp::recovery_hash(c)).collect();
    (codes, hashes)
}

/// The bearer's account, read afresh (no password asked).
async fn bearer_account<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    req: &Request,
    now: u64,
) -> Result<Credentials, ApiError> {
    let (_, user) =
        super::bearer_credentials(&state.verifier, &state.issuer, &state.store, now, req).await?;
    Ok(user)
}

/// The bearer's account, re-authenticated with the body's `password`, and the body.
async fn reauthenticated<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    req: &Request,
    now: u64,
) -> Result<(Credentials, http::Fields), ApiError> {
    let (claims, _) =
        super::authenticate(&state.verifier, &state.issuer, &state.store, now, req).await?;
    let fields = http::read_fields(req, &[BodyFormat::Json])?;
    let password = fields.string("password")?;
    let user = super::account::reauthenticate(state, &claims, password, req, now).await?;
    Ok((user, fields))
}

async fn enrol<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let now = (state.clock)();
    let (user, _) = reauthenticated(state, req, now).await?;
    let key = mfa::data_key(state.data_key.as_ref())?;
    if user.totp_enabled {
        return Err(already_on());
    }
    let secret = totp::new_secret();
    let sealed = key.seal(&user.id, &secret).await?;
    if !state.store.set_pending_totp(&user, &sealed).await? {
        return Err(already_on());
    }
    let uri = totp::otpauth_uri(&secret, &state.outbox.app_name, &user.username)
        .ok_or_else(|| ApiError::Internal("no otpauth URI".into()))?;
    let svg = totp::qr_svg(&uri).ok_or_else(|| ApiError::Internal("no QR code".into()))?;
    tracing::info!(user_id = %user.id, "TOTP enrolment started");
    Ok(http::json(
        StatusCode::OK,
        &json!({"secret": totp::base32(&secret), "otpauth_uri": uri, "qr_svg": svg}),
    ))
}

async fn confirm<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let now = (state.clock)();
    let user = bearer_account(state, req, now).await?;
    let key = mfa::data_key(state.data_key.as_ref())?;
    let fields = http::read_fields(req, &[BodyFormat::Json])?;
    let code = fields.string("code")?;
    if user.totp_enabled {
        return Err(already_on());
    }
    let Some(sealed) = user.totp_secret.clone() else {
        return Err(ApiError::Conflict(
            "There is no TOTP enrolment to confirm".into(),
        ));
    };
    let secret = key.open(&user.id, &sealed).await?;
    // Counted as every code check is.
    let check = async { Ok(totp::matching_step(&secret, code, now)) };
    let step = mfa::counted(&state.store, &state.throttle, &user, now, check).await??;
    let (codes, hashes) = recovery_codes();
    if !state
        .store
        .enable_totp(&user, &sealed, step, &hashes)
        .await?
    {
        return Err(ApiError::Conflict(
            "The enrolment changed meanwhile; start again".into(),
        ));
    }
    tracing::info!(user_id = %user.id, "TOTP on");
    Ok(http::json(
        StatusCode::OK,
        &json!({"recovery_codes": codes}),
    ))
}

/// The body's `code` (a TOTP code or a recovery code), checked as a second factor of `user`.
async fn second_factor<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    user: &Credentials,
    fields: &http::Fields,
    now: u64,
) -> Result<(), ApiError> {
    let key = mfa::data_key(state.data_key.as_ref())?;
    let code = fields.string("code")?;
    let proof = Proof::either(code);
    Ok(mfa::verify_counted(&state.store, key, &state.throttle, user, proof, now).await??)
}

/// The bearer's account with TOTP on, after the body's `password` and then its `code`.
async fn with_password_and_code<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    req: &Request,
    now: u64,
) -> Result<Credentials, ApiError> {
    let (user, fields) = reauthenticated(state, req, now).await?;
    if !user.totp_enabled {
        return Err(not_on());
    }
    second_factor(state, &user, &fields, now).await?;
    Ok(user)
}

async fn disable<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let now = (state.clock)();
    let user = with_password_and_code(state, req, now).await?;
    state.store.disable_totp(&user).await?;
    tracing::info!(user_id = %user.id, "TOTP off");
    Ok(http::no_content())
}

async fn regenerate<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let now = (state.clock)();
    let user = with_password_and_code(state, req, now).await?;
    let (codes, hashes) = recovery_codes();
    if !state.store.replace_recovery_codes(&user, &hashes).await? {
        return Err(not_on());
    }
    tracing::info!(user_id = %user.id, "recovery codes replaced");
    Ok(http::json(
        StatusCode::OK,
        &json!({"recovery_codes": codes}),
    ))
}

/// What a password change needs beside the current password when TOTP is on: the body's `code`.
pub(super) async fn check_for_change<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    user: &Credentials,
    fields: &http::Fields,
    now: u64,
) -> Result<(), ApiError> {
    if !user.totp_enabled {
        return Ok(());
    }
    if fields.optional_string("code")?.is_none() {
        return Err(ApiError::validation(
            "code",
            "is required: the account has a second factor",
        ));
    }
    second_factor(state, user, fields, now).await
}
