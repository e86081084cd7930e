//! The `docs` Lambda function: serves the API description (`GET /openapi.json`) and Swagger UI
//! over it (`GET /docs`, with its files at `GET /docs/{asset}`). It needs no key, no store and no
//! setting: everything it serves is embedded in the binary.

mod docs;

use lambda_http::{Error, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_logging();
    let docs = docs::Docs::new();
    lambda_http::run(service_fn(async |req| {
        Ok::<_, std::convert::Infallible>(docs.handle(&req))
    }))
    .await
}
