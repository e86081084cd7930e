//! Logging and the cold-start steps every function's `main` shares.

use crate::config::Config;

/// Starts logging as Lambda expects (level from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`, JSON lines
/// when `AWS_LAMBDA_LOG_FORMAT=JSON`) and reads the configuration, exiting with one clear line if
/// it is invalid. The runtime opens one span per invocation carrying the request id, so every
/// line a request logs can be found by it.
pub fn start() -> Config {
    lambda_http::tracing::init_default_subscriber();
    or_exit(Config::from_env())
}

/// The built state, or one line naming the cause and a non-zero exit (Lambda reports the init
/// as failed).
pub fn or_exit<T, E: std::fmt::Display>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|e| {
        tracing::error!("cold start failed: {e}");
        std::process::exit(1)
    })
}
