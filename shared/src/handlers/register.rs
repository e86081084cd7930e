//! `POST /register` {username, password, full_name?, email?} → 201 {"message":"User registered
//! successfully"}. With an address, its verification link is mailed (a mailer that fails loses
//! nothing: the account exists, and the link can be sent again).

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::json;

use crate::authn::email;
use crate::authn::registration::{self, Application};
use crate::error::ApiError;
use crate::http::{self, BodyFormat};
use crate::state::RegisterState;
use crate::state::stores;

/// Handles one request; every failure becomes its problem response.
pub async fn handle<W: stores::Register>(state: &RegisterState<W>, req: Request) -> Response<Body> {
    register(state, req)
        .await
        .unwrap_or_else(ApiError::into_response)
}

async fn register<W: stores::Register>(
    state: &RegisterState<W>,
    req: Request,
) -> Result<Response<Body>, ApiError> {
    http::require_method(&req, "POST")?;
    let fields = http::read_fields(&req, &[BodyFormat::Json])?;
    let application = Application {
        username: fields.string("username")?,
        password: fields.string("password")?,
        full_name: fields.optional_string("full_name")?,
        email: fields.optional_string("email")?,
    };
    let iss = http::issuer(&state.issuer, &req)?;
    let user = registration::register(&state.store, &state.hasher, application).await?;
    if let Some(address) = &user.email {
        let now = (state.clock)();
        email::send_verification(&state.store, &state.outbox, &iss, &user, address, now).await;
    }
    Ok(http::json(
        StatusCode::CREATED,
        &json!({"message": "User registered successfully"}),
    ))
}
