//! The `jwks` Lambda function: publishes the public key and issuer metadata. It loads only the
//! public key (`AUTH_PUBLIC_KEY`, or the public half of `AUTH_SIGNING_KEY`) and opens no store.

use lambda_http::{Error, service_fn};
use shared::handlers::jwks;
use shared::telemetry;
use shared::wiring::Wiring;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let wiring = Wiring::new(telemetry::start());
    let state = telemetry::or_exit(wiring.jwks().await);
    lambda_http::run(service_fn(async |req| {
        Ok::<_, std::convert::Infallible>(jwks::handle(&state, req).await)
    }))
    .await
}
