//! The second factor: TOTP codes and recovery codes, checked against the account's sealed secret
//! (every accepted step recorded, so none is accepted twice), and the `mfa_token` that carries a
//! password login that was right to its second step.
//!
//! The `mfa_token` is a single-use ticket ([`TicketKind::MfaToken`]): 256 random bits, stored
//! hashed, alive [`MFA_TOKEN_SECONDS`], bound to the account and to the login it continues (the
//! password grant, or the hosted page's authorization request). Each wrong code counts in the
//! token's own window (dead after [`MFA_TOKEN_FAILURES`]) and in the account's hourly failure
//! window, so knowing the password buys no unlimited guesses across tokens. Success spends it.

use std::future::Future;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::totp;
use crate::error::ApiError;
use crate::policy;
use crate::seal::{DataKey, SealError};
use crate::store::mfa::SecondStepPass;
use crate::store::tickets::{self, secret_hash};
use crate::store::{
    CounterStore, CredentialStore, Credentials, Follow, MfaStore, SessionStore, StoreError,
    TicketKind, TicketStore, TicketWrite, WindowAdd,
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

/// The data key, or the 503 of a deployment without one (the operator sets `AUTH_DATA_KEY`).
pub fn data_key(key: Option<&DataKey>) -> Result<&DataKey, ApiError> {
    key.ok_or_else(|| {
        ApiError::Unavailable("second factors are not configured: AUTH_DATA_KEY is not set".into())
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
    Ok(match check(store, key, user, proof, now).await? {
        Some(Some(step)) => store.accept_step(user, step).await?,
        Some(None) => true,
        None => false,
    })
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
    /// The password's tag when it was right: a change of password kills the token.
    #[serde(default)]
    password_tag: String,
    continues: Continues,
}

/// A new `mfa_token` for `user`, whose password was just right, continuing `continues`.
pub async fn challenge<T: TicketStore>(
    store: &T,
    user: &Credentials,
    continues: Continues,
    now: u64,
) -> Result<String, StoreError> {
    let (token, t) = challenge_ticket(user, continues, now)?;
    store
        .put_ticket(t.kind, &t.hash, &t.record, t.expires_at, now)
        .await?;
    Ok(token)
}

/// [`challenge`], not yet stored: the `mfa_token` and the ticket to store (with the login's
/// other writes).
///
/// The token is a 256-bit secret, `.`, and the account it continues (base64url of its id and
/// key), so that its second step reads the ticket, the account and its windows in one round
/// trip. The store keeps only the SHA-256 of the whole token: a token whose account part was
/// changed names no ticket.
pub fn challenge_ticket(
    user: &Credentials,
    continues: Continues,
    now: u64,
) -> Result<(String, TicketWrite), StoreError> {
    let record = MfaRecord {
        user_id: user.id.clone(),
        username_key: user.username_key.clone(),
        username: user.username.clone(),
        password_tag: user.password_tag(),
        continues,
    };
    let account = URL_SAFE_NO_PAD.encode(format!("{} {}", user.id, user.username_key));
    let token = format!("{}.{account}", tickets::new_secret()?);
    let record = serde_json::to_string(&record).map_err(|e| StoreError::Fault(e.to_string()))?;
    let ticket = TicketWrite {
        kind: TicketKind::MfaToken,
        hash: secret_hash(&token),
        record,
        expires_at: now + MFA_TOKEN_SECONDS,
    };
    Ok((token, ticket))
}

/// The account an `mfa_token` names, (id, key), if it has the shape of one.
fn token_account(token: &str) -> Option<(String, String)> {
    let (secret, account) = token.split_once('.')?;
    if !tickets::is_secret(secret) || account.len() > 512 {
        return None;
    }
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(account).ok()?).ok()?;
    let (id, key) = text.split_once(' ')?;
    Some((id.to_string(), key.to_string()))
}

/// The counter of an `mfa_token`'s wrong codes, by the token's hash.
fn failures_key(token_hash: &str) -> String {
    format!("mfa token {token_hash}")
}

/// Why a counted check of a second factor did not pass.
#[derive(Debug)]
pub enum Failed {
    /// The code was wrong (it counted).
    Wrong,
    /// The account's hourly failure window is full: no code is checked until it ends.
    Throttled(u64),
}

/// The window of an account's wrong second factors: beside the account's own window, which a
/// reset by mail clears, this one is not, so a reset buys no fresh guesses.
fn second_factor_key(user: &Credentials) -> String {
    second_factor_key_of(&user.id)
}

fn second_factor_key_of(user_id: &str) -> String {
    format!("second factor id {user_id}")
}

/// Runs `check` (a code's check) counted as a login of the account: a place in the account's
/// second-factor window is claimed first (one atomic add, so concurrent guesses cannot exceed
/// `AUTH_ACCOUNT_FAILURES_PER_HOUR`), a wrong code also counts in the account's login window,
/// and a right one gives both back. Every route that takes a code checks it this way.
pub async fn counted<S, T>(
    store: &S,
    limits: &ThrottleLimits,
    user: &Credentials,
    now: u64,
    check: impl Future<Output = Result<Option<T>, ApiError>>,
) -> Result<Result<T, Failed>, ApiError>
where
    S: CounterStore,
{
    let ceiling = limits.account_per_hour;
    let key = second_factor_key(user);
    let Some(since) = store
        .add_in_window(&key, ceiling, policy::WINDOW_SECONDS, now)
        .await?
    else {
        let window = store.counters(&[&key], now).await?[0];
        let wait = window.map_or(1, |w| {
            (w.since + policy::WINDOW_SECONDS)
                .saturating_sub(now)
                .max(1)
        });
        return Ok(Err(Failed::Throttled(wait)));
    };
    // The account's login window sees the attempt too (a password login waits once it is full).
    let subject = throttle::subject(Some(user), &user.username_key);
    let login_window = throttle::account_key(&subject);
    let login_since = store
        .add_in_window(&login_window, ceiling, policy::WINDOW_SECONDS, now)
        .await?;
    if let Some(found) = check.await? {
        store.give_back(&key, since).await?;
        if let Some(login_since) = login_since {
            store.give_back(&login_window, login_since).await?;
        }
        return Ok(Ok(found));
    }
    tracing::info!(user_id = %user.id, "second factor failed");
    crate::metrics::record(crate::metrics::Outcome::LoginFailed);
    Ok(Err(Failed::Wrong))
}

/// [`verify`], [`counted`].
pub async fn verify_counted<S: MfaStore + CounterStore>(
    store: &S,
    key: &DataKey,
    limits: &ThrottleLimits,
    user: &Credentials,
    proof: Proof<'_>,
    now: u64,
) -> Result<Result<(), Failed>, ApiError> {
    let check = async { Ok(verify(store, key, user, proof, now).await?.then_some(())) };
    counted(store, limits, user, now, check).await
}

/// Redeems `token` with `proof` for the login `continues`: the account, whose second factor
/// passed (the token is spent), or one `invalid_grant` for a wrong code, a spent, expired, dead
/// or foreign token. Each attempt claims one of the token's [`MFA_TOKEN_FAILURES`] places and
/// one in the account's second-factor window before its code is checked (all or nothing: of
/// concurrent attempts no more are checked than the places allow), and counts in the account's
/// login window too; a right code gives the windows' places back.
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
    S: TicketStore + CredentialStore + CounterStore + MfaStore + SessionStore,
{
    let nothing = |_: &Credentials| Ok((Follow::Nothing, ()));
    let (user, ()) = redeem_then(store, key, limits, token, continues, proof, now, nothing).await?;
    Ok(user)
}

/// Rounds a second step may lose to concurrent ones (each loss reads again) before it is
/// refused.
const STEP_TRIES: usize = 4;

/// [`redeem`], and what `follow` makes of the account (the session), written with the token's
/// take: on DynamoDB three round trips in all (the read, the claim, the pass).
#[allow(clippy::too_many_arguments)]
pub async fn redeem_then<S, T>(
    store: &S,
    key: &DataKey,
    limits: &ThrottleLimits,
    token: &str,
    continues: &Continues,
    proof: Proof<'_>,
    now: u64,
    follow: impl FnOnce(&Credentials) -> Result<(Follow, T), StoreError>,
) -> Result<(Credentials, T), ApiError>
where
    S: TicketStore + CredentialStore + CounterStore + MfaStore + SessionStore,
{
    let (user_id, username_key) = token_account(token).ok_or(ApiError::InvalidSecondFactor)?;
    let hash = secret_hash(token);
    let kill = async || store.take_ticket(TicketKind::MfaToken, &hash, now).await;
    let places = failures_key(&hash);
    let factor = second_factor_key_of(&user_id);
    let login = throttle::account_key(&format!("id {user_id}"));
    let ceiling = limits.account_per_hour;
    for _ in 0..STEP_TRIES {
        let read = store
            .second_step(&hash, &username_key, &[&places, &factor, &login], now)
            .await?;
        let record: Option<MfaRecord> = read
            .record
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok());
        let Some(record) = record.filter(|r| r.continues == *continues) else {
            return Err(ApiError::InvalidSecondFactor);
        };
        let user = read.user.filter(|u| {
            u.id == record.user_id
                && u.id == user_id
                && u.totp_enabled
                && bool::from(
                    u.password_tag()
                        .as_bytes()
                        .ct_eq(record.password_tag.as_bytes()),
                )
        });
        let Some(user) = user else {
            kill().await?;
            return Err(ApiError::InvalidSecondFactor);
        };
        let (used, factor_window, login_window) =
            (read.counters[0], read.counters[1], read.counters[2]);
        if used.is_some_and(|c| c.failures >= MFA_TOKEN_FAILURES) {
            // Every place went to a wrong code: the token is dead.
            kill().await?;
            return Err(ApiError::InvalidSecondFactor);
        }
        if factor_window.is_some_and(|c| c.failures >= ceiling) {
            return Err(ApiError::InvalidSecondFactor);
        }
        let mut adds = vec![
            WindowAdd {
                key: &places,
                seen: used,
                ceiling: MFA_TOKEN_FAILURES,
                window: MFA_TOKEN_SECONDS,
            },
            WindowAdd {
                key: &factor,
                seen: factor_window,
                ceiling,
                window: policy::WINDOW_SECONDS,
            },
        ];
        // The login window sees the attempt too, unless it is full (a password login waits).
        if login_window.is_none_or(|c| c.failures < ceiling) {
            adds.push(WindowAdd {
                key: &login,
                seen: login_window,
                ceiling,
                window: policy::WINDOW_SECONDS,
            });
        }
        let Some(starts) = store.claim_places(&adds, now).await? else {
            continue;
        };
        let Some(step) = check(store, key, &user, proof, now).await? else {
            tracing::info!(user_id = %user.id, "second factor failed");
            crate::metrics::record(crate::metrics::Outcome::LoginFailed);
            return Err(ApiError::InvalidSecondFactor);
        };
        // The token's own place is spent with it; the windows' go back.
        let give_back: Vec<(&str, u64)> = adds[1..]
            .iter()
            .zip(&starts[1..])
            .map(|(add, since)| (add.key, *since))
            .collect();
        let (follow, started) = follow(&user)?;
        let pass = SecondStepPass {
            user: &user,
            step,
            ticket_hash: &hash,
            give_back: &give_back,
            follow: &follow,
            now,
        };
        // A concurrent redemption that took the step or the token first wins.
        if !store.pass_second_step(&pass).await? {
            return Err(ApiError::InvalidSecondFactor);
        }
        tracing::info!(user_id = %user.id, "second factor passed");
        crate::metrics::record(crate::metrics::Outcome::SecondFactorPassed);
        return Ok((user, started));
    }
    Err(ApiError::InvalidSecondFactor)
}

/// Whether `proof` is a second factor of `user` at `now`, before anything is written for a
/// TOTP code: `Some(Some(step))` for a code of a step later than the last accepted (the pass
/// accepts it), `Some(None)` for a recovery code (taken here, once), `None` for anything else.
async fn check<S: MfaStore>(
    store: &S,
    key: &DataKey,
    user: &Credentials,
    proof: Proof<'_>,
    now: u64,
) -> Result<Option<Option<u64>>, ApiError> {
    match proof {
        Proof::Otp(code) => {
            let Some(sealed) = user.totp_secret.as_deref() else {
                return Ok(None);
            };
            let secret = key.open(&user.id, sealed).await?;
            Ok(totp::matching_step(&secret, code, now)
                .filter(|step| *step > user.totp_last_step)
                .map(Some))
        }
        Proof::RecoveryCode(code) => {
            let taken = totp::looks_like_recovery_code(code)
                && store
                    .take_recovery_code(user, &totp::recovery_hash(code))
                    .await?;
            Ok(taken.then_some(None))
        }
    }
}

/// Whether `token` can still take a code: alive, and not out of places for wrong ones.
pub async fn is_usable<S: TicketStore + CounterStore>(
    store: &S,
    token: &str,
    now: u64,
) -> Result<Option<String>, StoreError> {
    if token_account(token).is_none() {
        return Ok(None);
    }
    let hash = secret_hash(token);
    let record = store.peek_ticket(TicketKind::MfaToken, &hash, now).await?;
    let Some(record) = record.and_then(|r| serde_json::from_str::<MfaRecord>(&r).ok()) else {
        return Ok(None);
    };
    let used = store.counters(&[&failures_key(&hash)], now).await?[0];
    Ok(used
        .is_none_or(|c| c.failures < MFA_TOKEN_FAILURES)
        .then_some(record.username))
}
