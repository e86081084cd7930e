//! The `account` Lambda function: builds its state once, then serves requests.

use lambda_http::{Error, service_fn};
use shared::handlers::account;
use shared::state::AccountState;
use shared::telemetry;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let config = telemetry::start();
    let state = telemetry::or_exit(AccountState::from_config(&config).await);
    lambda_http::run(service_fn(async |req| {
        Ok::<_, std::convert::Infallible>(account::handle(&state, req).await)
    }))
    .await
}
