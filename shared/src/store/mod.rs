//! User storage behind traits split by what each function needs (and may be allowed in IAM):
//! `register` writes, `login` reads credentials and records outcomes, `me` reads profiles.

mod dynamodb;
mod sqlite;

#[cfg(any(test, feature = "testing"))]
pub mod contract;

use std::future::Future;

pub use dynamodb::DynamoStore;
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
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("failed_logins", &self.failed_logins)
            .field("last_failed_at", &self.last_failed_at)
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

    /// Atomically counts one more failed login of `user` at `at`; returns the new count.
    fn record_failure(
        &self,
        user: &Credentials,
        at: u64,
    ) -> impl Future<Output = Result<u32, StoreError>> + Send;

    /// Resets the failure count after a successful login and, when `rehash` is given as
    /// `(old, new)`, replaces the hash only if it is still `old` (a concurrent change wins).
    fn record_success(
        &self,
        user: &Credentials,
        rehash: Option<(&str, &str)>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Reading profiles by user id (the `me` function).
pub trait ProfileReader: Send + Sync {
    /// The profile of the user with this id and name, if that account still exists (a new
    /// account under the same name has another id and does not match).
    fn profile(
        &self,
        id: &str,
        username: &str,
    ) -> impl Future<Output = Result<Option<Profile>, StoreError>> + Send;
}
