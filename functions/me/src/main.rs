//! The `me` Lambda function (the profile of the bearer; loads only the public key): builds its state once per cold start, for the
//! configured store's concrete backend, then serves requests.

use lambda_http::{Error, service_fn};
use shared::handlers::me;
use shared::telemetry;
use shared::wiring::Wiring;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let wiring = Wiring::new(telemetry::start());
    shared::with_store!(wiring, |store| {
        let state = telemetry::or_exit(wiring.me(store).await);
        lambda_http::run(service_fn(async |req| {
            Ok::<_, std::convert::Infallible>(me::handle(&state, req).await)
        }))
        .await
    })
}
