//! The AWS SDK set-up shared by the DynamoDB store and the KMS signer: loaded once per cold start,
//! only when a `dynamodb:` or `kms:` backend is configured, with retries and timeouts bounded so a
//! backend that stays unreachable turns into a 503 well inside the function timeout.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// Attempts per call, the first included (the SDK backs off between them, with jitter).
const MAX_ATTEMPTS: u32 = 3;
/// The whole call, retries included.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(4);
/// One attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1500);
/// Opening a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Region, credentials and endpoint from the standard sources (`AWS_REGION`, the Lambda role,
/// `AWS_ENDPOINT_URL` for emulators such as moto), with bounded retries and timeouts.
pub async fn load() -> SdkConfig {
    load_with(aws_config::defaults(BehaviorVersion::latest())).await
}

/// Applies the service's HTTPS client, retry and timeout bounds to `loader` (tests use it to
/// point elsewhere).
///
/// The client is hyper 1 with rustls on ring, the crypto the rest of the binary already links;
/// the trust store (the system roots) is read on the first call, not here, so building it costs
/// nothing at init.
pub async fn load_with(loader: aws_config::ConfigLoader) -> SdkConfig {
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    loader
        .http_client(https)
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(OPERATION_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .connect_timeout(CONNECT_TIMEOUT)
                .build(),
        )
        .load()
        .await
}

/// Whether an SDK failure means "the service is unreachable or busy" (a 503) rather than a
/// request or configuration fault (a 500).
pub fn is_transient<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => matches!(
            service.err().code(),
            Some(
                "ThrottlingException"
                    | "ProvisionedThroughputExceededException"
                    | "RequestLimitExceeded"
                    | "InternalServerError"
                    | "ServiceUnavailable"
                    | "KMSInternalException"
                    | "DependencyTimeoutException"
                    | "TransactionConflictException"
            )
        ),
        _ => false,
    }
}

/// A one-line description of an SDK failure for the logs (never sent to clients).
pub fn describe<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match err {
        SdkError::ServiceError(service) => format!(
            "{}: {}",
            service.err().code().unwrap_or("ServiceError"),
            service.err().message().unwrap_or("")
        ),
        other => format!("{other:?}").chars().take(300).collect(),
    }
}
