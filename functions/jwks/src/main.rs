//! The `jwks` Lambda function: publishes the public key and issuer metadata. It loads only the
//! public key (`AUTH_PUBLIC_KEY`, or the public half of `AUTH_SIGNING_KEY`).

use lambda_http::{Error, service_fn};
use shared::handlers::discovery;
use shared::state::DiscoveryState;
use shared::telemetry;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let config = telemetry::start();
    let state = telemetry::or_exit(DiscoveryState::from_config(&config).await);
    lambda_http::run(service_fn(async |req| {
        Ok::<_, std::convert::Infallible>(discovery::handle(&state, req).await)
    }))
    .await
}
