//! The login throttle, as one atomic claim before any password check.
//!
//! Three counters decide whether an attempt may go on to bcrypt:
//! - the **pair** (account, source address): the schedule of [`policy::wait_after`] — five free
//!   failures, then 1, 2, 4 … s, capped at 15 min — so a guessing address is slowed while the
//!   owner, from another address, is not;
//! - the **account**, from every source together ([`ThrottleLimits::account_per_hour`]):
//!   a distributed attacker meets it, and then every source waits for the window's end;
//! - the **source**, across accounts ([`ThrottleLimits::source_per_hour`]): password
//!   spraying, one guess at each of many names, meets it.
//!
//! Only failures fill them. An attempt claims its place up front, as if it were going to fail:
//! each hourly window by one atomic conditional add that refuses once the window is full, and
//! the pair by a compare-and-set. So N attempts sent at once, from one address or from N, cannot
//! reach bcrypt more often than the ceilings and the free failures allow, however many instances
//! serve them. An attempt whose claim cannot be recorded is refused (fail closed), never let
//! through. When the password turns out right, [`succeeded`] gives the claim back: the windows
//! lose the attempt again and the pair starts over, so correct logins never fill a ceiling.
//!
//! Counters of an account are keyed by its id, so a new account under a deleted one's name
//! starts with none; a name that is no account is throttled under the name itself, with the same
//! claims and the same writes (its consecutive count goes to a record that does not exist).

use crate::policy;
use crate::store::{
    AttemptClaim, AttemptSuccess, Counter, CounterStore, CredentialStore, Credentials, Follow,
    StoreError, Swap, WindowAdd,
};

/// Compare-and-set rounds an attempt may lose before it is told to wait: under that much
/// contention the account is being hammered, and the losers are refused, never let through.
const CLAIM_TRIES: usize = 8;

/// The hourly ceilings (`AUTH_ACCOUNT_FAILURES_PER_HOUR`, `AUTH_SOURCE_FAILURES_PER_HOUR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleLimits {
    /// Failures of one account from every address together before every address waits.
    pub account_per_hour: u32,
    /// Failed logins of one address across accounts before it waits.
    pub source_per_hour: u32,
}

impl Default for ThrottleLimits {
    fn default() -> Self {
        ThrottleLimits {
            account_per_hour: policy::ACCOUNT_FAILURE_CEILING,
            source_per_hour: policy::SOURCE_FAILURE_CEILING,
        }
    }
}

/// The address a request came from when the event names none (a hand-built request).
pub const UNKNOWN_SOURCE: &str = "unknown";

/// A claimed attempt: what [`succeeded`] gives back when the password is right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    subject: String,
    source: String,
    account_window: u64,
    source_window: u64,
}

/// What a login attempt may do.
#[derive(Debug)]
pub enum Attempt {
    /// No such account (the caller still pays a dummy verification), counted as a real one is.
    UnknownUser,
    /// Wait this many more seconds: answer 429 without checking the password.
    Wait(u64),
    /// Claimed: check the password against these credentials (read before the claim).
    Check(Box<Credentials>, Claim),
    /// Not the account that was expected (a re-authentication whose account is gone or was
    /// replaced): nothing was claimed or written.
    NotTheAccount,
}

/// Whose counters: an account's id, or a name that is no account.
pub fn subject(user: Option<&Credentials>, username_key: &str) -> String {
    match user {
        Some(user) => format!("id {}", user.id),
        None => format!("name {username_key}"),
    }
}

/// The counter of `source`'s failures against `subject` (see [`subject`]).
pub fn pair_key(subject: &str, source: &str) -> String {
    format!("pair {source} {subject}")
}

/// The counter of the failures against `subject` from every source.
pub fn account_key(subject: &str) -> String {
    format!("account {subject}")
}

/// The counter of `source`'s failures across accounts.
pub fn source_key(source: &str) -> String {
    format!("source {source}")
}

/// The source and subject of a pair counter's key, if `key` is one.
pub fn parse_pair_key(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix("pair ")?.split_once(' ')
}

/// Seconds every source must still wait for `subject` at `now`: the account-wide ceiling.
pub async fn account_wait<C: CounterStore>(
    store: &C,
    subject: &str,
    limits: &ThrottleLimits,
    now: u64,
) -> Result<Option<u64>, StoreError> {
    let counter = store.counters(&[&account_key(subject)], now).await?[0];
    Ok(window_wait(counter, limits.account_per_hour, now))
}

/// The wait a pair counter imposes at `now`.
pub fn pair_wait(pair: Option<Counter>, now: u64) -> Option<u64> {
    let pair = pair?;
    let until = pair.since.saturating_add(policy::wait_after(pair.failures));
    (now < until).then(|| until - now)
}

/// The wait a window counter imposes once it reached `ceiling`: until the window's end.
fn window_wait(counter: Option<Counter>, ceiling: u32, now: u64) -> Option<u64> {
    let counter = counter.filter(|c| c.failures >= ceiling)?;
    let until = counter.since.saturating_add(policy::WINDOW_SECONDS);
    (now < until).then(|| until - now)
}

/// Claims one login attempt on the account `username_key` from `source` at `now`.
pub async fn claim<C: CredentialStore + CounterStore>(
    store: &C,
    username_key: &str,
    source: &str,
    limits: &ThrottleLimits,
    now: u64,
) -> Result<Attempt, StoreError> {
    claim_for(store, username_key, None, source, limits, now).await
}

/// [`claim`], for the account with id `expected_id` only when one is given (re-authentication
/// of a bearer): any other account, or none, is [`Attempt::NotTheAccount`] before any write, so
/// a token of a deleted account cannot fill the windows of a new one under its name.
pub async fn claim_for<C: CredentialStore + CounterStore>(
    store: &C,
    username_key: &str,
    expected_id: Option<&str>,
    source: &str,
    limits: &ThrottleLimits,
    now: u64,
) -> Result<Attempt, StoreError> {
    let user = store.credentials(username_key).await?;
    if let Some(expected) = expected_id
        && user.as_ref().is_none_or(|u| u.id != expected)
    {
        return Ok(Attempt::NotTheAccount);
    }
    let subject = subject(user.as_ref(), username_key);
    let pair_key = pair_key(&subject, source);
    let (account_key, source_key) = (account_key(&subject), source_key(source));
    let counters = store
        .counters(&[&pair_key, &account_key, &source_key], now)
        .await?;
    let (mut pair, mut account, mut from_source) = (counters[0], counters[1], counters[2]);
    let id = user.as_ref().map(|u| u.id.as_str());
    // The whole claim in one all-or-nothing write: both windows' places (each refused once
    // full), the pair's compare-and-set, and the consecutive count `auth-admin show` reports (a
    // made-up name's write goes to a record that does not exist: it changes nothing and takes
    // as long). Refused when anything moved since the read: read again and decide again.
    for round in 0..CLAIM_TRIES {
        let windows = [
            window_wait(from_source, limits.source_per_hour, now),
            window_wait(account, limits.account_per_hour, now),
        ];
        // A window filled since the first read took its last place from a concurrent attempt,
        // which may give it back at once: a second, and the next attempt reads the real wait.
        let window = windows.into_iter().flatten().max().map(|w| match round {
            0 => w,
            _ => 1,
        });
        if let Some(wait) = [window, pair_wait(pair, now)].into_iter().flatten().max() {
            return Ok(Attempt::Wait(wait));
        }
        let next = Counter {
            failures: pair.map_or(0, |p| p.failures) + 1,
            since: now,
        };
        let expires = now + policy::PAIR_MEMORY_SECONDS;
        let attempt = AttemptClaim {
            source: WindowAdd {
                key: &source_key,
                seen: from_source,
                ceiling: limits.source_per_hour,
                window: policy::WINDOW_SECONDS,
            },
            account: WindowAdd {
                key: &account_key,
                seen: account,
                ceiling: limits.account_per_hour,
                window: policy::WINDOW_SECONDS,
            },
            pair_key: &pair_key,
            pair: Swap::new(pair, next, expires, now),
            username_key,
            user_id: id,
            now,
        };
        if let Some((source_window, account_window)) = store.claim_attempt(&attempt).await? {
            let claim = Claim {
                subject,
                source: source.to_string(),
                account_window,
                source_window,
            };
            return Ok(match user {
                Some(user) => Attempt::Check(Box::new(user), claim),
                None => Attempt::UnknownUser,
            });
        }
        let counters = store
            .counters(&[&pair_key, &account_key, &source_key], now)
            .await?;
        (pair, account, from_source) = (counters[0], counters[1], counters[2]);
    }
    // Lost every round to concurrent attempts: the account is being hammered, and this one is
    // refused, never let through.
    Ok(Attempt::Wait(1))
}

/// After a success: the claim is given back (the windows count failures only), the address's
/// schedule against the account starts over, and so does the account's consecutive count;
/// `follow` (the session or `mfa_token` the success starts) is written with them.
pub async fn succeeded<C: CounterStore>(
    store: &C,
    user: &Credentials,
    claim: &Claim,
    rehash: Option<(&str, &str)>,
    follow: &Follow,
    now: u64,
) -> Result<(), StoreError> {
    let (account, source) = (account_key(&claim.subject), source_key(&claim.source));
    let pair = pair_key(&claim.subject, &claim.source);
    store
        .settle_success(&AttemptSuccess {
            windows: [
                (&account, claim.account_window),
                (&source, claim.source_window),
            ],
            pair_key: &pair,
            user,
            rehash,
            follow,
            now,
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_keys_name_their_source_and_subject() {
        let user_subject = subject(None, "alice");
        let key = pair_key(&user_subject, "192.0.2.1");
        assert_eq!(parse_pair_key(&key), Some(("192.0.2.1", "name alice")));
        assert_eq!(parse_pair_key(&account_key(&user_subject)), None);
    }
}
