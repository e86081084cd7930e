//! Storage, laid out by capability: one module per kind of record, each with its trait(s), split
//! by what each function needs (and may be allowed in IAM), and both implementations:
//! - [`users`]: accounts, credentials and login outcomes, profiles, password changes;
//! - [`sessions`]: sessions and their refresh-token generations;
//! - [`counters`]: the throttle's counters;
//! - [`tickets`]: single-use secrets (codes, login steps, mail links, MFA tokens), taken once;
//! - [`clients`]: registered OAuth clients;
//! - [`email`]: accounts' addresses and their verification;
//! - [`admin`]: what only the operator's `auth-admin` does.
//!
//! The backend plumbing (connection, migrations, the DynamoDB key scheme) is in `sqlite/` and
//! `dynamodb/`; one contract suite ([`contract`]) runs against both.

pub mod admin;
pub mod clients;
pub mod counters;
mod dynamodb;
pub mod email;
pub mod mfa;
pub mod sessions;
mod sqlite;
pub mod tickets;
pub mod users;

#[cfg(any(test, feature = "testing"))]
pub mod contract;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use clients::ClientStore;
pub use counters::{
    AttemptClaim, AttemptSuccess, Counter, CounterStore, Follow, Swap, TicketWrite, WindowAdd,
};
pub use dynamodb::{DynamoStore, TTL_ATTRIBUTE};
pub use email::{EmailStore, Verified};
pub use mfa::MfaStore;
pub use sessions::{
    CodeSession, Holder, PreviousGeneration, SessionLife, SessionRecord, SessionStore,
};
pub use sqlite::SqliteStore;
pub use tickets::{TicketKind, TicketStore};
pub use users::{
    AccountStore, CredentialStore, Credentials, NewUser, Profile, ProfileReader,
    ProfileWithSession, UserWriter,
};

/// A storage failure, classified by what the client should be told.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key is taken (a username's case-insensitive key, a client id, a live ticket's hash):
    /// detected by the store's uniqueness constraint, never by a read before the write.
    #[error("duplicate username")]
    Duplicate,
    /// The store is unreachable, locked or throttling: a 503.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a 500.
    #[error("store fault: {0}")]
    Fault(String),
}
