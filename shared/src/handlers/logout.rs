//! `POST /logout` (RFC 7009 semantics for public clients):
//! - `token=<refresh token>` (form or JSON; `token_type_hint` ignored) ends that token's session,
//!   and answers 200 whatever the token was, since a client cannot act on the difference; the
//!   token of an OAuth client's session only for that client (`client_id`, and its secret when
//!   confidential), another client's is 400 `unauthorized_client`;
//! - `Authorization: Bearer <access token>` alone ends that token's session; with `scope=global`
//!   (form, JSON or query) every session of the account.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;

use crate::error::ApiError;
use crate::http::{self, BodyFormat, Fields};
use crate::policy;
use crate::session::{self, Revoked};
use crate::state::LogoutState;
use crate::state::stores;

/// Handles one request; every failure becomes its problem response.
pub async fn handle<S: stores::Logout>(state: &LogoutState<S>, req: Request) -> Response<Body> {
    logout(state, req)
        .await
        .unwrap_or_else(ApiError::into_response)
}

async fn logout<S: stores::Logout>(
    state: &LogoutState<S>,
    req: Request,
) -> Result<Response<Body>, ApiError> {
    http::require_method(&req, "POST")?;
    let fields = if http::has_body(&req) {
        http::read_fields(&req, &[BodyFormat::Form, BodyFormat::Json])?
    } else {
        Fields::default()
    };
    let done = || http::json(StatusCode::OK, &json!({"message": "Logged out"}));
    let scope = match fields.optional_string("scope")? {
        Some(scope) => Some(scope.to_string()),
        None => req
            .query_string_parameters_ref()
            .and_then(|q| q.first("scope"))
            .map(str::to_string),
    };
    let global = match scope.as_deref() {
        None | Some("" | "local") => false,
        Some("global") => true,
        Some(_) => {
            return Err(ApiError::validation(
                "scope",
                "must be \"global\" or \"local\"",
            ));
        }
    };
    if let Some(token) = fields.optional_string("token")? {
        // A refresh token names one session: `scope` does not widen it. A client's session is
        // the client's to end (RFC 7009 §2.1).
        let client = super::login::presenting_client(&state.store, &fields, &req).await?;
        let client_id = client.as_ref().map(|c| c.client_id.as_str());
        if session::end_by_token(&state.store, token, client_id).await? == Revoked::NotTheClients {
            return Err(ApiError::UnauthorizedClient(
                "The token was not issued to this client".into(),
            ));
        }
        crate::metrics::record(crate::metrics::Outcome::LoggedOut);
        return Ok(done());
    }
    if req.headers().get("authorization").is_none() {
        return Err(ApiError::BadRequest(
            "Send the refresh token as `token`, or an access token as a bearer".into(),
        ));
    }
    // Only a token whose session is still open may end sessions.
    let now = (state.clock)();
    let (claims, _) =
        super::authenticate(&state.verifier, &state.issuer, &state.store, now, &req).await?;
    if global {
        let key = policy::username_key(&claims.preferred_username);
        state.store.end_all_sessions(&claims.sub, &key).await?;
        tracing::info!(user_id = %claims.sub, "every session ended (global logout)");
    } else {
        state.store.end_session(&claims.sid).await?;
        tracing::info!(user_id = %claims.sub, session_id = %claims.sid, "session ended");
    }
    crate::metrics::record(crate::metrics::Outcome::LoggedOut);
    Ok(done())
}
