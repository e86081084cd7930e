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
    let (mut pair, account, from_source) = (counters[0], counters[1], counters[2]);
    let waits = [
        window_wait(from_source, limits.source_per_hour, now),
        window_wait(account, limits.account_per_hour, now),
        pair_wait(pair, now),
    ];
    if let Some(wait) = waits.into_iter().flatten().max() {
        return Ok(Attempt::Wait(wait));
    }
    // Each window: one atomic add, refused once full (another attempt took the last place).
    let Some(source_window) = store
        .add_in_window(
            &source_key,
            limits.source_per_hour,
            policy::WINDOW_SECONDS,
            now,
        )
        .await?
    else {
        return Ok(Attempt::Wait(full_wait(
            from_source,
            limits.source_per_hour,
            now,
        )));
    };
    let Some(account_window) = store
        .add_in_window(
            &account_key,
            limits.account_per_hour,
            policy::WINDOW_SECONDS,
            now,
        )
        .await?
    else {
        store.give_back(&source_key, source_window).await?;
        return Ok(Attempt::Wait(full_wait(
            account,
            limits.account_per_hour,
            now,
        )));
    };
    let claim = Claim {
        subject,
        source: source.to_string(),
        account_window,
        source_window,
    };
    let mut claimed = false;
    for _ in 0..CLAIM_TRIES {
        if let Some(wait) = pair_wait(pair, now) {
            release(store, &claim).await?;
            return Ok(Attempt::Wait(wait));
        }
        let next = Counter {
            failures: pair.map_or(0, |p| p.failures) + 1,
            since: now,
        };
        let expires = now + policy::PAIR_MEMORY_SECONDS;
        if store
            .swap_counter(&pair_key, Swap::new(pair, next, expires, now))
            .await?
        {
            claimed = true;
            break;
        }
        pair = store.counters(&[&pair_key], now).await?[0];
    }
    if !claimed {
        release(store, &claim).await?;
        return Ok(Attempt::Wait(1));
    }
    // The consecutive count `auth-admin show` reports; a made-up name sends the same write to a
    // record that does not exist, so it changes nothing and takes as long.
    let id = user.as_ref().map_or("", |u| u.id.as_str());
    store.count_failure(username_key, id, now).await?;
    Ok(match user {
        Some(user) => Attempt::Check(Box::new(user), claim),
        None => Attempt::UnknownUser,
    })
}

/// The wait to report when a window's add was refused: until the end of the window read before
/// if it was full then; a second if it was not (the last place went to a concurrent attempt,
/// which may give it back at once: the next attempt's check reports the real wait).
fn full_wait(read: Option<Counter>, ceiling: u32, now: u64) -> u64 {
    read.filter(|c| c.failures >= ceiling)
        .map(|c| {
            c.since
                .saturating_add(policy::WINDOW_SECONDS)
                .saturating_sub(now)
        })
        .filter(|w| *w > 0)
        .unwrap_or(1)
}

/// Gives both windows' places back (the pair was not claimed).
async fn release<C: CounterStore>(store: &C, claim: &Claim) -> Result<(), StoreError> {
    store
        .give_back(&account_key(&claim.subject), claim.account_window)
        .await?;
    store
        .give_back(&source_key(&claim.source), claim.source_window)
        .await
}

/// After a success: the claim is given back (the windows count failures only), the address's
/// schedule against the account starts over, and so does the account's consecutive count.
pub async fn succeeded<C: CredentialStore + CounterStore>(
    store: &C,
    user: &Credentials,
    claim: &Claim,
    rehash: Option<(&str, &str)>,
) -> Result<(), StoreError> {
    release(store, claim).await?;
    store
        .reset_counter(&pair_key(&claim.subject, &claim.source))
        .await?;
    store.record_success(user, rehash).await
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

    #[test]
    fn a_refused_add_reports_the_window_read_or_one_second() {
        let read = Some(Counter {
            failures: 3,
            since: 100,
        });
        assert_eq!(full_wait(read, 3, 200), policy::WINDOW_SECONDS - 100);
        assert_eq!(full_wait(read, 4, 200), 1, "taken by a concurrent attempt");
        assert_eq!(full_wait(None, 3, 200), 1);
        assert_eq!(full_wait(read, 3, 100 + policy::WINDOW_SECONDS), 1);
    }
}
