//! `POST /register` {username, password, full_name?} → 201 {"message":"User registered successfully"}.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::json;

use crate::error::ApiError;
use crate::http::{self, BodyFormat};
use crate::policy;
use crate::state::RegisterState;
use crate::state::stores;
use crate::store::NewUser;

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
    let username = policy::username(fields.string("username")?)?;
    let password = fields.string("password")?;
    let full_name = policy::full_name(fields.optional_string("full_name")?)?;
    // Every check above is cheap; only a valid request pays for bcrypt.
    policy::password(password, &username, full_name.as_deref())?;
    let password_hash = state
        .hasher
        .hash(password)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let user = NewUser {
        id: uuid::Uuid::new_v4().simple().to_string(),
        username: username.display,
        username_key: username.key,
        password_hash,
        full_name,
    };
    state.store.create(&user).await?;
    tracing::info!(user_id = %user.id, "user registered");
    crate::metrics::record(crate::metrics::Outcome::Registered);
    Ok(http::json(
        StatusCode::CREATED,
        &json!({"message": "User registered successfully"}),
    ))
}
