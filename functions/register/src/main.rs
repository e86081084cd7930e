//! The `register` Lambda function: builds its state once, then serves requests.

use lambda_http::{Error, service_fn};
use shared::handlers::register;
use shared::state::RegisterState;
use shared::telemetry;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let config = telemetry::start();
    let state = telemetry::or_exit(RegisterState::from_config(&config).await);
    lambda_http::run(service_fn(async |req| {
        Ok::<_, std::convert::Infallible>(register::handle(&state, req).await)
    }))
    .await
}
