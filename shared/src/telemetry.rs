//! Logging and the cold-start steps every function's `main` shares.

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{EnvFilter, FilterExt, LevelFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

use crate::config::Config;

/// Crates whose debug and trace output carries what must never be logged: the runtime logs
/// whole events at those levels (login bodies with passwords, `Authorization` headers, tokens
/// in answers) and the AWS SDK and HTTP stacks log requests and credentials. They are held at
/// INFO whatever `RUST_LOG` or `AWS_LAMBDA_LOG_LEVEL` say; the service's own crate is not.
pub const CAPPED_TARGETS: &[&str] = &[
    "lambda_runtime",
    "lambda_http",
    "lambda_runtime_api_client",
    "aws_smithy",
    "aws_sdk",
    "aws_config",
    "aws_credential_types",
    "aws_runtime",
    "aws_sigv4",
    "hyper",
    "h2",
    "rustls",
    "tower",
];

/// Whether a span or event may be recorded at all (see [`CAPPED_TARGETS`]).
pub fn may_log(meta: &Metadata<'_>) -> bool {
    *meta.level() <= Level::INFO || !CAPPED_TARGETS.iter().any(|t| meta.target().starts_with(t))
}

/// Starts logging as Lambda expects (level from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`, JSON lines
/// when `AWS_LAMBDA_LOG_FORMAT=JSON`), with [`CAPPED_TARGETS`] held at INFO, and reads the
/// configuration, exiting with one clear line if it is invalid. The runtime opens one span per
/// invocation carrying the request id, so every line a request logs can be found by it.
pub fn start() -> Config {
    init_logging();
    or_exit(Config::from_env())
}

/// The subscriber of [`start`], for functions that read no [`Config`] (the docs function).
pub fn init_logging() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy()
        .and(filter_fn(may_log));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // No colour codes: CloudWatch shows them as text.
    let layer = fmt::layer()
        .with_target(false)
        .without_time()
        .with_ansi(false);
    let registry = tracing_subscriber::registry();
    if json {
        registry.with(layer.json().with_filter(filter)).init();
    } else {
        registry.with(layer.with_filter(filter)).init();
    }
}

/// The built state, or one line naming the cause and a non-zero exit (Lambda reports the init
/// as failed).
pub fn or_exit<T, E: std::fmt::Display>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|e| {
        tracing::error!("cold start failed: {e}");
        std::process::exit(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::callsite::Identifier;
    use tracing::field::FieldSet;
    use tracing::metadata::Kind;

    struct Site;
    impl tracing::callsite::Callsite for Site {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            unimplemented!()
        }
    }
    static SITE: Site = Site;

    fn meta(target: &'static str, level: Level) -> Metadata<'static> {
        Metadata::new(
            "event",
            target,
            level,
            None,
            None,
            None,
            FieldSet::new(&[], Identifier(&SITE)),
            Kind::EVENT,
        )
    }

    #[test]
    fn the_runtime_and_the_sdk_are_capped_at_info_and_the_service_is_not() {
        for target in [
            "lambda_runtime::layers::api_response",
            "aws_smithy_runtime::client",
            "hyper_util",
        ] {
            assert!(may_log(&meta(target, Level::INFO)), "{target}");
            assert!(!may_log(&meta(target, Level::DEBUG)), "{target}");
            assert!(!may_log(&meta(target, Level::TRACE)), "{target}");
        }
        assert!(may_log(&meta("shared::handlers::login", Level::TRACE)));
    }
}
