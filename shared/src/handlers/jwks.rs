//! `GET /.well-known/jwks.json`, and the provider's metadata at `GET
//! /.well-known/openid-configuration` and `/.well-known/oauth-authorization-server`: the public
//! key and the metadata that API Gateway's JWT authorizer, JWT libraries and OpenID Connect
//! clients configure themselves from.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::json;

use crate::config::Issuer;
use crate::error::ApiError;
use crate::http;
use crate::state::JwksState;

/// How long clients may cache the key set and metadata.
const CACHE: &str = "public, max-age=300";

/// Handles one request; every failure becomes its problem response.
pub async fn handle(state: &JwksState, req: Request) -> Response<Body> {
    jwks(state, &req).unwrap_or_else(ApiError::into_response)
}

fn jwks(state: &JwksState, req: &Request) -> Result<Response<Body>, ApiError> {
    let path = http::path(req);
    if path.ends_with("/.well-known/jwks.json") {
        http::require_method(req, "GET")?;
        Ok(http::json_cached(StatusCode::OK, &state.keys.jwks(), CACHE))
    } else if path.ends_with("/.well-known/openid-configuration")
        || path.ends_with("/.well-known/oauth-authorization-server")
    {
        http::require_method(req, "GET")?;
        let issuer = &http::issuer(&state.issuer, req)?;
        Ok(http::json_cached(
            StatusCode::OK,
            &metadata(issuer),
            // Derived from the request, it describes that domain alone: no shared cache may
            // hand it to a request that arrived on another.
            match state.issuer {
                Issuer::Fixed(_) => CACHE,
                Issuer::FromRequest => "private, no-cache",
            },
        ))
    } else {
        Err(ApiError::NotFound(path.to_string()))
    }
}

/// The provider's metadata (OpenID Connect Discovery 1.0, RFC 8414): one document at both
/// well-known paths.
fn metadata(issuer: &str) -> serde_json::Value {
    let client_auth = ["none", "client_secret_basic", "client_secret_post"];
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/login"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "end_session_endpoint": format!("{issuer}/end-session"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "revocation_endpoint": format!("{issuer}/logout"),
        "revocation_endpoint_auth_methods_supported": client_auth,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            "password",
            super::login::MFA_OTP_GRANT,
            super::login::MFA_RECOVERY_GRANT,
        ],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": client_auth,
        "scopes_supported": crate::oauth::authorize::SCOPES,
        "prompt_values_supported": ["none", "login", "create"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr", "sid", "at_hash",
            "preferred_username", "name"
        ],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
    })
}
