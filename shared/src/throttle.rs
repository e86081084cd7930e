//! The login throttle as one atomic step before any password check.
//!
//! Each attempt on a known account first claims its place: it reads the failure count, refuses
//! while the account waits ([`policy::wait_after`]), and otherwise counts itself as a failure in
//! a compare-and-set on that count ([`CredentialStore::claim_attempt`]); a success resets the
//! count afterwards. Of N attempts sent at once, each count is claimed by one of them, so no more
//! than the free attempts reach bcrypt before the first wait, however many instances serve them.

use crate::policy;
use crate::store::{CredentialStore, Credentials, StoreError};

/// Compare-and-set rounds an attempt may lose before it is told to wait: under that much
/// contention the account is being hammered, and the losers are refused, never let through.
const CLAIM_TRIES: usize = 8;

/// What a login attempt may do.
#[derive(Debug)]
pub enum Attempt {
    /// No such account (the caller still pays a dummy verification).
    UnknownUser,
    /// The account waits this many more seconds: answer 429 without checking the password.
    Wait(u64),
    /// Claimed: check the password against these credentials (read before the claim).
    Check(Credentials),
}

/// Seconds `user` must still wait at `now`, if any.
pub fn remaining_wait(user: &Credentials, now: u64) -> Option<u64> {
    let until = user
        .last_failed_at?
        .saturating_add(policy::wait_after(user.failed_logins));
    (now < until).then(|| until - now)
}

/// Claims one login attempt on the account `username_key` at `now`.
pub async fn claim<C: CredentialStore>(
    store: &C,
    username_key: &str,
    now: u64,
) -> Result<Attempt, StoreError> {
    for _ in 0..CLAIM_TRIES {
        let Some(user) = store.credentials(username_key).await? else {
            return Ok(Attempt::UnknownUser);
        };
        if let Some(wait) = remaining_wait(&user, now) {
            return Ok(Attempt::Wait(wait));
        }
        if store.claim_attempt(&user, now).await? {
            return Ok(Attempt::Check(user));
        }
    }
    Ok(Attempt::Wait(1))
}
