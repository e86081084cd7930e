//! The login throttle, as one atomic step before any password check.
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
//! An attempt claims its place in a compare-and-set on the pair counter, counting itself as a
//! failure up front (and in the account's and the source's windows); a success resets the pair
//! (and the account's consecutive count, which `auth-admin` shows). Of N attempts sent at
//! once from one address, each count is claimed by one of them, so no more than the free ones
//! reach bcrypt before the first wait, however many instances serve them. Pair and source
//! counters expire by themselves.

use crate::policy;
use crate::store::{Counter, CounterStore, CredentialStore, Credentials, StoreError, Swap};

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

/// What a login attempt may do.
#[derive(Debug)]
pub enum Attempt {
    /// No such account (the caller still pays a dummy verification), counted as a real one is.
    UnknownUser,
    /// Wait this many more seconds: answer 429 without checking the password.
    Wait(u64),
    /// Claimed: check the password against these credentials (read before the claim).
    Check(Credentials),
}

/// The counter of `source`'s failures against the account `username_key`.
pub fn pair_key(username_key: &str, source: &str) -> String {
    format!("pair {source} {username_key}")
}

/// The counter of the failures against the account `username_key` from every source.
pub fn account_key(username_key: &str) -> String {
    format!("account {username_key}")
}

/// The counter of `source`'s failures across accounts.
pub fn source_key(source: &str) -> String {
    format!("source {source}")
}

/// Seconds every source must still wait for the account `username_key` at `now`: the
/// account-wide ceiling.
pub async fn account_wait<C: CounterStore>(
    store: &C,
    username_key: &str,
    limits: &ThrottleLimits,
    now: u64,
) -> Result<Option<u64>, StoreError> {
    let counter = store.counters(&[&account_key(username_key)], now).await?[0];
    Ok(window_wait(counter, limits.account_per_hour, now))
}

fn pair_wait(pair: Option<Counter>, now: u64) -> Option<u64> {
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
    let pair_key = pair_key(username_key, source);
    let (account_key, source_key) = (account_key(username_key), source_key(source));
    for _ in 0..CLAIM_TRIES {
        let user = store.credentials(username_key).await?;
        let counters = store
            .counters(&[&pair_key, &account_key, &source_key], now)
            .await?;
        let (pair, account, from_source) = (counters[0], counters[1], counters[2]);
        if let Some(wait) = window_wait(from_source, limits.source_per_hour, now) {
            return Ok(Attempt::Wait(wait));
        }
        // A made-up name is throttled exactly as a real one (the same waits, the same writes but
        // the account's own count), so neither a 429 nor the time an answer takes tells them apart.
        let account_wait = window_wait(account, limits.account_per_hour, now);
        if let Some(wait) = account_wait.or_else(|| pair_wait(pair, now)) {
            return Ok(Attempt::Wait(wait));
        }
        let next = Counter {
            failures: pair.map_or(0, |p| p.failures) + 1,
            since: now,
        };
        let expires = now + policy::PAIR_MEMORY_SECONDS;
        if !store
            .swap_counter(&pair_key, Swap::new(pair, next, expires, now))
            .await?
        {
            continue;
        }
        if let Some(user) = &user {
            count_for_account(store, user, now).await?;
        }
        count_in_window(store, &account_key, account, now).await?;
        count_in_window(store, &source_key, from_source, now).await?;
        return Ok(match user {
            Some(user) => Attempt::Check(user),
            None => Attempt::UnknownUser,
        });
    }
    Ok(Attempt::Wait(1))
}

/// After a success: the address's schedule against the account, and the account's count, start
/// over (a source's window does not: it counts failures only).
pub async fn succeeded<C: CredentialStore + CounterStore>(
    store: &C,
    user: &Credentials,
    source: &str,
    rehash: Option<(&str, &str)>,
) -> Result<(), StoreError> {
    store
        .reset_counter(&pair_key(&user.username_key, source))
        .await?;
    store.record_success(user, rehash).await
}

/// Counts one more consecutive failure of `user` (what `auth-admin show` reports).
async fn count_for_account<C: CredentialStore>(
    store: &C,
    user: &Credentials,
    now: u64,
) -> Result<(), StoreError> {
    let mut seen = user.clone();
    for _ in 0..CLAIM_TRIES {
        if store.claim_attempt(&seen, now).await? {
            return Ok(());
        }
        match store.credentials(&seen.username_key).await? {
            Some(fresh) if fresh.id == seen.id => seen = fresh,
            // Deleted or replaced meanwhile: nothing to count against.
            _ => return Ok(()),
        }
    }
    Ok(())
}

/// Counts one more failure in the window counter `key` (a new window once the last is over).
async fn count_in_window<C: CounterStore>(
    store: &C,
    key: &str,
    mut seen: Option<Counter>,
    now: u64,
) -> Result<(), StoreError> {
    for _ in 0..CLAIM_TRIES {
        let next = match seen {
            Some(c) if now < c.since.saturating_add(policy::WINDOW_SECONDS) => Counter {
                failures: c.failures + 1,
                since: c.since,
            },
            _ => Counter {
                failures: 1,
                since: now,
            },
        };
        let expires = next.since + policy::WINDOW_SECONDS;
        if store
            .swap_counter(key, Swap::new(seen, next, expires, now))
            .await?
        {
            return Ok(());
        }
        seen = store.counters(&[key], now).await?[0];
    }
    Ok(())
}
