//! The tests' way into stored state (`--features testing`): seeding and inspecting raw records
//! as another tool or an operator would, implemented beside each backend so that the schema
//! lives in one place per backend and no test file writes SQL or DynamoDB items of its own.

use std::future::Future;

/// Raw state a test may seed or inspect. Failures panic: this is test code.
pub trait TestSeam: Send + Sync {
    /// Inserts a user as another tool wrote it (the FastAPI tutorial's plain bcrypt hash, or one
    /// made at another cost): a given id, no counters.
    fn seed_user(
        &self,
        id: &str,
        username: &str,
        hash: &str,
        full_name: Option<&str>,
    ) -> impl Future<Output = ()> + Send;

    /// The stored hash and failure count of the account `username_key`, if it exists.
    fn stored(&self, username_key: &str) -> impl Future<Output = Option<(String, u32)>> + Send;

    /// Sets the failure count and last failure time of `username_key`, as a long attack leaves them.
    fn set_failures(
        &self,
        username_key: &str,
        count: u32,
        at: u64,
    ) -> impl Future<Output = ()> + Send;

    /// Deletes every user behind the service's back (sessions stay, as after a manual delete).
    fn delete_all_users(&self) -> impl Future<Output = ()> + Send;

    /// How many users are stored.
    fn user_count(&self) -> impl Future<Output = usize> + Send;
}
