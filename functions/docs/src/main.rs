//! The `docs` Lambda function: serves the API description (`GET /openapi.json`) and Swagger UI
//! over it (`GET /docs`). It needs no key and no store; `AUTH_DOCS_ASSETS_URL` may point the page
//! at another copy of the `swagger-ui-dist` assets.

mod docs;

use lambda_http::{Error, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_logging();
    let docs = shared::telemetry::or_exit(docs::Docs::from_env());
    lambda_http::run(service_fn(async |req| {
        Ok::<_, std::convert::Infallible>(docs.handle(&req))
    }))
    .await
}
