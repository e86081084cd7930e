//! The one password check every route uses: the password grant, re-authentication before an
//! account change, and (later) the hosted login page. In order: the length guard (before any
//! lookup or bcrypt), the throttle's claim ([`throttle::claim`]), one bcrypt verification (a
//! dummy one for a name that is no account), the log line and metric, and on success the
//! throttle's give-back and the rehash to the configured cost.

use crate::metrics::{self, Outcome};
use crate::password::{self, HashError, PasswordHasher, Verification};
use crate::policy;
use crate::store::{CounterStore, CredentialStore, Credentials, Follow, StoreError};
use crate::throttle::{self, Attempt, ThrottleLimits};

/// Who is being checked, and for what.
#[derive(Debug, Clone, Copy)]
pub enum Purpose<'a> {
    /// A login: the name as typed (unknown names pay a dummy verification; the hash is upgraded
    /// to the configured cost on success).
    Login {
        /// The name as typed.
        username: &'a str,
    },
    /// Re-authentication of a bearer: the account its token names, which must still be that
    /// account (no rehash, so a conditional change of the hash that follows still holds).
    Reauthenticate {
        /// `preferred_username` of the token.
        username: &'a str,
        /// `sub` of the token.
        user_id: &'a str,
    },
}

/// Why a password check did not pass.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No such account, or the wrong password: one answer for both.
    #[error("wrong credentials")]
    WrongCredentials,
    /// The throttle makes this attempt wait this many seconds (no bcrypt was run).
    #[error("throttled for {0} s")]
    Throttled(u64),
    /// Re-authentication of an account that is gone or was replaced since its token was issued.
    #[error("the bearer's account is gone")]
    AccountGone,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing the upgraded hash failed.
    #[error(transparent)]
    Hash(#[from] HashError),
}

/// What a check needs beside the store: the hasher and the throttle's ceilings.
#[derive(Debug, Clone, Copy)]
pub struct Checker<'a> {
    /// Verifies, and upgrades, password hashes.
    pub hasher: &'a PasswordHasher,
    /// The throttle's hourly ceilings.
    pub limits: &'a ThrottleLimits,
}

/// Checks `password` for `purpose` from `source` at `now`: the account, or why not.
pub async fn check<C: CredentialStore + CounterStore>(
    store: &C,
    checker: Checker<'_>,
    purpose: Purpose<'_>,
    password: &str,
    source: &str,
    now: u64,
) -> Result<Credentials, Refusal> {
    let nothing = |_: &Credentials| Ok((Follow::Nothing, ()));
    let (user, ()) = check_then(store, checker, purpose, password, source, now, nothing).await?;
    Ok(user)
}

/// [`check`], and on success what `follow` makes of the account (a session, an `mfa_token`),
/// written in the same step as the throttle's give-back: one transaction on DynamoDB.
pub async fn check_then<C: CredentialStore + CounterStore, T>(
    store: &C,
    checker: Checker<'_>,
    purpose: Purpose<'_>,
    password: &str,
    source: &str,
    now: u64,
    follow: impl FnOnce(&Credentials) -> Result<(Follow, T), StoreError>,
) -> Result<(Credentials, T), Refusal> {
    let (username, expected_id) = match purpose {
        Purpose::Login { username } => (username, None),
        Purpose::Reauthenticate { username, user_id } => (username, Some(user_id)),
    };
    // Measured as registration measures it (after NFKC), so a password that registers always
    // gets as far as its check; anything longer is refused before any lookup or bcrypt.
    if password::normalize(password).chars().count() > policy::PASSWORD_MAX_CHARS {
        return Err(Refusal::WrongCredentials);
    }
    // A name no account can have gets a stand-in key: answered as an unknown name.
    let key = policy::login_key(username);
    let attempt = throttle::claim_for(store, &key, expected_id, source, checker.limits, now);
    let (user, claim) = match attempt.await? {
        Attempt::Wait(retry_after) => {
            metrics::record(Outcome::LoginThrottled);
            return Err(Refusal::Throttled(retry_after));
        }
        Attempt::NotTheAccount => return Err(Refusal::AccountGone),
        Attempt::UnknownUser => {
            checker.hasher.dummy_verify(password);
            // No name in the line: a user who typed the password into the name field.
            tracing::info!(source_ip = %source, "login failed: no such account");
            metrics::record(Outcome::LoginFailed);
            return Err(Refusal::WrongCredentials);
        }
        Attempt::Check(user, claim) => (*user, claim),
    };
    let what = if expected_id.is_some() {
        "re-authentication"
    } else {
        "login"
    };
    match checker.hasher.verify(password, &user.password_hash) {
        Verification::Mismatch => {
            // Already counted by the claim.
            let failures = user.failed_logins + 1;
            tracing::info!(user_id = %user.id, failures, source_ip = %source, "{what} failed");
            metrics::record(Outcome::LoginFailed);
            Err(Refusal::WrongCredentials)
        }
        Verification::Match { needs_rehash } => {
            // A failed upgrade must not keep the claim of a right password: log it, keep the
            // stored hash, and give the claim back all the same.
            let upgraded = match needs_rehash && expected_id.is_none() {
                true => checker
                    .hasher
                    .hash(password)
                    .inspect_err(
                        |e| tracing::warn!(user_id = %user.id, error = %e, "rehash failed"),
                    )
                    .ok(),
                false => None,
            };
            let rehash = upgraded
                .as_deref()
                .map(|new| (user.password_hash.as_str(), new));
            let (follow, started) = follow(&user)?;
            throttle::succeeded(store, &user, &claim, rehash, &follow, now).await?;
            if expected_id.is_none() {
                tracing::info!(user_id = %user.id, rehashed = upgraded.is_some(), "login succeeded");
                metrics::record(Outcome::LoginSucceeded);
            }
            Ok((user, started))
        }
    }
}
