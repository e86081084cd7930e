//! User and session storage behind traits split by what each function needs (and may be allowed
//! in IAM): `register` writes users, `login` reads credentials, claims attempts and starts and
//! rotates sessions, `me` reads a profile together with the session of its token, `logout` ends
//! sessions.

pub mod admin;
mod dynamodb;
mod sqlite;

#[cfg(any(test, feature = "testing"))]
pub mod contract;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::future::Future;

pub use dynamodb::{DynamoStore, TTL_ATTRIBUTE};
pub use sqlite::SqliteStore;

/// A storage failure, classified by what the client should be told.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The username (its case-insensitive key) is taken: detected by the store's uniqueness
    /// constraint, never by a read before the write.
    #[error("duplicate username")]
    Duplicate,
    /// The store is unreachable, locked or throttling: a 503.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a 500.
    #[error("store fault: {0}")]
    Fault(String),
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Random immutable id, the `sub` of this user's tokens.
    pub id: String,
    /// The name as registered (NFKC).
    pub username: String,
    /// The case-insensitive unique key.
    pub username_key: String,
    /// The password hash.
    pub password_hash: String,
    /// Optional display name.
    pub full_name: Option<String>,
}

/// What login needs of a user. `Debug` leaves the hash out.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user's id.
    pub id: String,
    /// The case-insensitive key the user was found by.
    pub username_key: String,
    /// The name as registered: it goes into tokens as `preferred_username`.
    pub username: String,
    /// The stored hash.
    pub password_hash: String,
    /// Consecutive failed logins since the last success.
    pub failed_logins: u32,
    /// When the last failure happened, seconds since the epoch.
    pub last_failed_at: Option<u64>,
    /// The account's session epoch: a global logout increments it, ending every session started
    /// under an earlier epoch in one write.
    pub session_epoch: u64,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("failed_logins", &self.failed_logins)
            .field("last_failed_at", &self.last_failed_at)
            .field("session_epoch", &self.session_epoch)
            .finish_non_exhaustive()
    }
}

/// What `/me` returns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Profile {
    /// The name as registered.
    pub username: String,
    /// Optional display name.
    pub full_name: Option<String>,
}

/// Creating users (the `register` function).
pub trait UserWriter: Send + Sync {
    /// Inserts `user`, or fails with [`StoreError::Duplicate`] when its key is taken.
    fn create(&self, user: &NewUser) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Reading credentials and recording login outcomes (the `login` function).
pub trait CredentialStore: Send + Sync {
    /// The credentials of the user with this username key.
    fn credentials(
        &self,
        username_key: &str,
    ) -> impl Future<Output = Result<Option<Credentials>, StoreError>> + Send;

    /// Counts one more consecutive failure of the account `username_key` whose id is `user_id`
    /// (what `auth-admin show` reports), in one atomic add; nothing happens when there is no such
    /// account (a made-up name sends the same write). The throttle's own decisions rest on
    /// [`CounterStore`].
    fn count_failure(
        &self,
        username_key: &str,
        user_id: &str,
        at: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Resets the failure count after a successful login and, when `rehash` is given as
    /// `(old, new)`, replaces the hash only if it is still `old` (a concurrent change wins).
    fn record_success(
        &self,
        user: &Credentials,
        rehash: Option<(&str, &str)>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A throttle counter: failures, and when the last one happened (or its window began).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// Failures counted.
    pub failures: u32,
    /// Seconds since the epoch: the last failure (schedules) or the window's start (ceilings).
    pub since: u64,
}

/// A compare-and-set on a counter: `next` (gone at `expires_at`) replaces it only if it is still
/// `seen` (`None`: absent, or expired at `now`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swap {
    /// What the writer read.
    pub seen: Option<Counter>,
    /// What it writes.
    pub next: Counter,
    /// When the new value expires, seconds since the epoch.
    pub expires_at: u64,
    /// The time of the write.
    pub now: u64,
}

impl Swap {
    /// `seen` → `next` (gone at `expires_at`), written at `now`.
    pub fn new(seen: Option<Counter>, next: Counter, expires_at: u64, now: u64) -> Self {
        Swap {
            seen,
            next,
            expires_at,
            now,
        }
    }
}

/// Throttle counters keyed by name (`pair …`, `source …`), beside the accounts' own: each is
/// replaced only by a compare-and-set, and carries its own expiry, after which the backend
/// deletes it by itself (DynamoDB's TTL; SQLite prunes as it writes).
pub trait CounterStore: Send + Sync {
    /// The counters named `keys`, in order (`None`: absent or expired at `now`), in one round
    /// trip.
    fn counters(
        &self,
        keys: &[&str],
        now: u64,
    ) -> impl Future<Output = Result<Vec<Option<Counter>>, StoreError>> + Send;

    /// Applies `swap` to `key`; `false` when another writer got there first.
    fn swap_counter(
        &self,
        key: &str,
        swap: Swap,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Adds one failure to the hourly window `key` in one atomic conditional write, unless it
    /// already holds `ceiling` (then `None`: refused, nothing written). A window that is absent
    /// or over (`window` seconds after it began) starts again at `now` with this one failure.
    /// The window's start, to give the place back with [`CounterStore::give_back`].
    fn add_in_window(
        &self,
        key: &str,
        ceiling: u32,
        window: u64,
        now: u64,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Takes back one failure added to the window `key` that began at `since` (a login that
    /// turned out right); nothing happens once that window is over or empty.
    fn give_back(
        &self,
        key: &str,
        since: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes `key` (a success resets its schedule).
    fn reset_counter(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Reading profiles by user id together with the token's session (the `me` function).
pub trait ProfileReader: Send + Sync {
    /// The profile of the user with this id and name, if that account still exists (a new
    /// account under the same name has another id and does not match), with the state of
    /// session `sid`, in one round trip to the store.
    fn profile(
        &self,
        id: &str,
        username: &str,
        sid: &str,
    ) -> impl Future<Output = Result<Option<ProfileWithSession>, StoreError>> + Send;
}

/// A profile and what decides whether a token's session is still open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileWithSession {
    /// What `/me` shows.
    pub profile: Profile,
    /// The account's current session epoch.
    pub account_epoch: u64,
    /// The session, if it is still stored.
    pub session: Option<SessionLife>,
}

/// The part of a session record that decides whether it is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLife {
    /// The account the session belongs to.
    pub user_id: String,
    /// The account's session epoch when the session started.
    pub epoch: u64,
    /// When the session ends (idle or absolute limit, whichever is first), seconds since the epoch.
    pub expires_at: u64,
}

/// One login's session: the refresh token's current generation and the one before it, stored as
/// hashes only (see [`crate::session`]). `Debug` leaves the key material out.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Random session id: the access tokens' `sid`.
    pub sid: String,
    /// The account's key, to find its record.
    pub username_key: String,
    /// When the session started, the account it belongs to, its epoch and its end.
    pub life: SessionLife,
    /// Key of the MAC that every refresh token of this session carries: proves that an old
    /// generation presented again was really issued (reuse), without being able to mint a
    /// current one.
    pub family_key: String,
    /// The current generation number (1 at login).
    pub generation: u32,
    /// SHA-256 of the current refresh token, base64url.
    pub current_hash: String,
    /// The generation before the current one, for the reuse interval.
    pub previous: Option<PreviousGeneration>,
    /// When the session started, seconds since the epoch.
    pub created_at: u64,
}

impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("sid", &self.sid)
            .field("life", &self.life)
            .field("generation", &self.generation)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// The generation a rotation replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousGeneration {
    /// SHA-256 of its refresh token, base64url.
    pub hash: String,
    /// The current token's secret, sealed with a key only the previous token yields: a retry with
    /// the previous token gets the same successor, a copy of the store gets nothing presentable.
    pub sealed_next: String,
    /// When it was rotated, seconds since the epoch.
    pub rotated_at: u64,
}

/// Changing and deleting accounts (the `account` function).
pub trait AccountStore: Send + Sync {
    /// Replaces `user`'s hash by `new_hash` only if the stored hash is still `user`'s (of two
    /// racing changes one wins), resets the failure count and moves the session epoch on, ending
    /// every session, all in one write. The new epoch, or `None` when the hash changed meanwhile
    /// or the account is gone.
    fn change_password(
        &self,
        user: &Credentials,
        new_hash: &str,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Deletes `user`'s account (only if it is still that account) and, where the backend keeps
    /// no TTL, its sessions; sessions left behind are refused at once (their account is gone).
    /// `false` when it was already gone.
    fn delete_account(
        &self,
        user: &Credentials,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Storing, rotating and ending sessions (the `login` and `logout` functions).
pub trait SessionStore: Send + Sync {
    /// Stores a new session; pruning ended ones is the backend's business (TTL, or deletes).
    fn create_session(
        &self,
        session: &SessionRecord,
        now: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The session `sid`, if stored.
    fn session(
        &self,
        sid: &str,
    ) -> impl Future<Output = Result<Option<SessionRecord>, StoreError>> + Send;

    /// Replaces `from` by `to` (same `sid`) in one conditional write that holds only if the
    /// stored generation and current hash are still `from`'s *and* the account `from` belongs to
    /// still exists under its id with the session's epoch: `false` when a concurrent rotation, an
    /// end, a password change, a global logout or a deletion won. `to == from` writes nothing new
    /// but checks the same (a retry within the reuse interval).
    fn rotate_session(
        &self,
        from: &SessionRecord,
        to: &SessionRecord,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes session `sid` (nothing happens if it is gone).
    fn end_session(&self, sid: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Ends every session of the account `user` in one write (its epoch goes up by one) and
    /// returns the new epoch; `None` when the account is gone.
    fn end_all_sessions(
        &self,
        user_id: &str,
        username_key: &str,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;
}
