//! Handler tests: each function's handler driven in-process with real event shapes and a real
//! SQLite file, exactly as the Lambda runtime would call it.

/// Runs each rule (an async fn taking a `TestApp`) as `sqlite::<rule>` and `dynamodb::<rule>`.
macro_rules! on_both_backends {
    ($($rule:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $rule() { super::$rule(crate::helpers::SqliteApp::new().await).await; })*
        }
        mod dynamodb {
            $(#[tokio::test] async fn $rule() { super::$rule(crate::helpers::DynamoApp::dynamo().await).await; })*
        }
    };
}

mod helpers;

mod account;
mod account_protection;
mod discovery;
mod events;
mod login;
mod me;
mod register;
mod sessions;
