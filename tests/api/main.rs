//! Handler tests: each function's handler driven in-process with real event shapes and a real
//! SQLite file, exactly as the Lambda runtime would call it.
//!
//! The DynamoDB half exists only with the `moto` feature (on by default; `make check` builds
//! without it): a test that needs moto cannot even compile into the quick loop.

/// Runs each rule (an async fn taking a `TestApp`) as `sqlite::<rule>` and, with the `moto`
/// feature, `dynamodb::<rule>`.
macro_rules! on_both_backends {
    ($($rule:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $rule() { super::$rule(crate::helpers::SqliteApp::new().await).await; })*
        }
        #[cfg(feature = "moto")]
        mod dynamodb {
            $(#[tokio::test] async fn $rule() { super::$rule(crate::helpers::DynamoApp::dynamo().await).await; })*
        }
    };
}

mod helpers;

mod account;
mod account_protection;
mod discovery;
mod email;
mod events;
mod login;
mod me;
mod mfa;
mod oidc;
mod register;
#[cfg(feature = "moto")]
mod round_trips;
mod sessions;
