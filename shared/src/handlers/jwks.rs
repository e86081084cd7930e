//! `GET /.well-known/jwks.json` and `GET /.well-known/openid-configuration`: the public key and
//! the issuer metadata that API Gateway's JWT authorizer and JWT libraries use to verify tokens.

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
    } else if path.ends_with("/.well-known/openid-configuration") {
        http::require_method(req, "GET")?;
        let issuer = &http::issuer(&state.issuer, req)?;
        Ok(http::json_cached(
            StatusCode::OK,
            &json!({
                "issuer": issuer,
                "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
                "token_endpoint": format!("{issuer}/login"),
                "revocation_endpoint": format!("{issuer}/logout"),
                "revocation_endpoint_auth_methods_supported": ["none"],
                "grant_types_supported": ["password", "refresh_token"],
                "token_endpoint_auth_methods_supported": ["none"],
                "response_types_supported": ["token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
                "claims_supported": ["iss", "aud", "sub", "exp", "iat", "jti", "sid"],
            }),
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
