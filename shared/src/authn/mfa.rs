//! The second factor: TOTP codes and recovery codes, checked against the account's sealed secret
//! (every accepted step recorded, so none is accepted twice), and the `mfa_token` that carries a
//! password login that was right to its second step.
//!
//! The `mfa_token` is a single-use ticket ([`TicketKind::MfaToken`]): 256 random bits, stored
//! hashed, alive [`MFA_TOKEN_SECONDS`], bound to the account and to the login it continues (the
//! password grant, or the hosted page's authorization request). Each wrong code counts in the
//! token's own window (dead after [`MFA_TOKEN_FAILURES`]) and in the account's hourly failure
//! window, so knowing the password buys no unlimited guesses across tokens. Success spends it.

use serde::{Deserialize, Serialize};

use super::email::{issue, peek, take};
use super::totp;
use crate::error::ApiError;
use crate::policy;
use crate::seal::{DataKey, SealError};
use crate::store::tickets::secret_hash;
use crate::store::{
    CounterStore, CredentialStore, Credentials, MfaStore, StoreError, TicketKind, TicketStore,
};
use crate::throttle::{self, ThrottleLimits};

/// How long an `mfa_token` waits for its code.
pub const MFA_TOKEN_SECONDS: u64 = 300;
/// Wrong codes an `mfa_token` survives.
pub const MFA_TOKEN_FAILURES: u32 = 5;

/// A second factor as presented.
#[derive(Debug, Clone, Copy)]
pub enum Proof<'a> {
    /// A TOTP code.
    Otp(&'a str),
    /// A recovery code.
    RecoveryCode(&'a str),
}

impl<'a> Proof<'a> {
    /// A code of either kind, told apart by its shape (a field that takes both).
    pub fn either(code: &'a str) -> Self {
        if totp::looks_like_recovery_code(code) {
            Proof::RecoveryCode(code)
        } else {
            Proof::Otp(code)
        }
    }
}

impl From<SealError> for ApiError {
    fn from(e: SealError) -> Self {
        match e {
            SealError::Unavailable(cause) => ApiError::Unavailable(cause),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<Failed> for ApiError {
    /// At a route that takes a code with the password: a wrong code names the field, a full
    /// window is the login throttle's 429.
    fn from(e: Failed) -> Self {
        match e {
            Failed::Wrong => ApiError::validation("code", "is not a valid code of this account"),
            Failed::Throttled(retry_after) => ApiError::TooManyAttempts { retry_after },
        }
    }
}

/// The data key, or the 500 of a deployment without one (a retry changes nothing: the
/// operator must set `AUTH_DATA_KEY`).
pub fn data_key(key: Option<&DataKey>) -> Result<&DataKey, ApiError> {
    key.ok_or_else(|| {
        ApiError::Internal("second factors are not configured: AUTH_DATA_KEY is not set".into())
    })
}

/// Whether `proof` is a second factor of `user` (TOTP on) at `now`: a TOTP code of a step later
/// than any accepted before (which it then records), or a recovery code not used before (which
/// it takes). `false` for anything else.
pub async fn verify<S: MfaStore>(
    store: &S,
    key: &DataKey,
    user: &Credentials,
    proof: Proof<'_>,
    now: u64,
) -> Result<bool, ApiError> {
    if !user.totp_enabled {
        return Ok(false);
    }
    match proof {
        Proof::Otp(code) => {
            let Some(sealed) = user.totp_secret.as_deref() else {
                return Ok(false);
            };
            let secret = key.open(&user.id, sealed).await?;
            match totp::matching_step(&secret, code, now) {
                Some(step) if step > user.totp_last_step => {
                    Ok(store.accept_step(user, step).await?)
                }
                _ => Ok(false),
            }
        }
        Proof::RecoveryCode(code) => {
            if !totp::looks_like_recovery_code(code) {
                return Ok(false);
            }
            Ok(store
                .take_recovery_code(user, &totp::recovery_hash(code))
                .await?)
        }
    }
}

/// Which login an `mfa_token` continues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Continues {
    /// The password grant.
    PasswordGrant,
    /// The hosted sign-in of an authorization request of this client and redirect URI.
    HostedSignIn {
        /// The client.
        client_id: String,
        /// Its redirect URI.
        redirect_uri: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct MfaRecord {
    user_id: String,
    username_key: String,
    /// The name as registered, for the code's page.
    #[serde(default)]
    username: String,
    continues: Continues,
}

/// A new `mfa_token` for `user`, whose password was just right, continuing `continues`.
pub async fn challenge<T: TicketStore>(
    store: &T,
    user: &Credentials,
    continues: Continues,
    now: u64,
) -> Result<String, StoreError> {
    let record = MfaRecord {
        user_id: user.id.clone(),
        username_key: user.username_key.clone(),
        username: user.username.clone(),
        continues,
    };
    issue(store, TicketKind::MfaToken, &record, MFA_TOKEN_SECONDS, now).await
}

fn failures_key(token: &str) -> String {
    format!("mfa token {}", secret_hash(token))
}

/// Why a counted check of a second factor did not pass.
#[derive(Debug)]
pub enum Failed {
    /// The code was wrong (it counted).
    Wrong,
    /// The account's hourly failure window is full: no code is checked until it ends.
    Throttled(u64),
}

/// [`verify`], counted as a login of the account: a place in the account's hourly failure
/// window is claimed before the code is checked (one atomic add, so concurrent guesses cannot
/// exceed the ceiling) and given back when the code is right. Every route that takes a code
/// checks it this way.
pub async fn verify_counted<S: MfaStore + CounterStore>(
    store: &S,
    key: &DataKey,
    limits: &ThrottleLimits,
    user: &Credentials,
    proof: Proof<'_>,
    now: u64,
) -> Result<Result<(), Failed>, ApiError> {
    let subject = throttle::subject(Some(user), &user.username_key);
    let window = throttle::account_key(&subject);
    let Some(since) = store
        .add_in_window(
            &window,
            limits.account_per_hour,
            policy::WINDOW_SECONDS,
            now,
        )
        .await?
    else {
        let wait = throttle::account_wait(store, &subject, limits, now)
            .await?
            .unwrap_or(1);
        return Ok(Err(Failed::Throttled(wait)));
    };
    if verify(store, key, user, proof, now).await? {
        store.give_back(&window, since).await?;
        return Ok(Ok(()));
    }
    tracing::info!(user_id = %user.id, "second factor failed");
    crate::metrics::record(crate::metrics::Outcome::LoginFailed);
    Ok(Err(Failed::Wrong))
}

/// Redeems `token` with `proof` for the login `continues`: the account, whose second factor
/// passed (the token is spent), or one `invalid_grant` for a wrong code, a spent, expired, dead
/// or foreign token. Each attempt claims one of the token's [`MFA_TOKEN_FAILURES`] places first
/// (atomically: concurrent attempts cannot check more codes than that), and its check is
/// counted in the account's window ([`verify_counted`]).
pub async fn redeem<S>(
    store: &S,
    key: &DataKey,
    limits: &ThrottleLimits,
    token: &str,
    continues: &Continues,
    proof: Proof<'_>,
    now: u64,
) -> Result<Credentials, ApiError>
where
    S: TicketStore + CredentialStore + CounterStore + MfaStore,
{
    let record: MfaRecord = peek(store, TicketKind::MfaToken, token, now)
        .await?
        .ok_or(ApiError::InvalidSecondFactor)?;
    if record.continues != *continues {
        return Err(ApiError::InvalidSecondFactor);
    }
    let kill = async || take::<_, MfaRecord>(store, TicketKind::MfaToken, token, now).await;
    let user = store
        .credentials(&record.username_key)
        .await?
        .filter(|u| u.id == record.user_id && u.totp_enabled);
    let Some(user) = user else {
        kill().await?;
        return Err(ApiError::InvalidSecondFactor);
    };
    let place = store
        .add_in_window(
            &failures_key(token),
            MFA_TOKEN_FAILURES,
            MFA_TOKEN_SECONDS,
            now,
        )
        .await?;
    if place.is_none() {
        // Every place went to a wrong code: the token is dead.
        kill().await?;
        return Err(ApiError::InvalidSecondFactor);
    }
    if verify_counted(store, key, limits, &user, proof, now)
        .await?
        .is_err()
    {
        return Err(ApiError::InvalidSecondFactor);
    }
    // Spent on success; a concurrent redemption that got here too lost the take.
    kill().await?.ok_or(ApiError::InvalidSecondFactor)?;
    tracing::info!(user_id = %user.id, "second factor passed");
    crate::metrics::record(crate::metrics::Outcome::SecondFactorPassed);
    Ok(user)
}

/// Whether `token` can still take a code: alive, and not out of places for wrong ones.
pub async fn is_usable<S: TicketStore + CounterStore>(
    store: &S,
    token: &str,
    now: u64,
) -> Result<Option<String>, StoreError> {
    let Some(record) = peek::<_, MfaRecord>(store, TicketKind::MfaToken, token, now).await? else {
        return Ok(None);
    };
    let used = store.counters(&[&failures_key(token)], now).await?[0];
    Ok(used
        .is_none_or(|c| c.failures < MFA_TOKEN_FAILURES)
        .then_some(record.username))
}
