//! The one error type every handler returns, and the one place it becomes an HTTP response:
//! an RFC 9457 problem document whose `detail` FastAPI clients already read.
//!
//! Internal causes (SQL text, I/O errors, key problems) are logged here and never sent.

use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Response};
use serde_json::json;

use crate::policy::PolicyError;
use crate::session::SessionError;
use crate::signer::SignError;
use crate::store::StoreError;
use crate::token::TokenError;

/// Message shared by the unknown-user and wrong-password cases, identical on purpose.
pub const BAD_CREDENTIALS: &str = "Incorrect username or password";

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body cannot be read as the declared format.
    #[error("{0}")]
    BadRequest(String),
    /// 404: no such route in this function.
    #[error("no route for {0}")]
    NotFound(String),
    /// 405: the route exists for another method; carries the allowed one.
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    /// 413: the body is over the size limit.
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 415: a content type the route does not take.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: a field is missing, of the wrong type, or breaks a rule.
    #[error("{field}: {reason}")]
    Validation {
        /// The offending field.
        field: String,
        /// Why it was refused.
        reason: String,
    },
    /// 409: the username is taken.
    #[error("Username already registered")]
    UsernameTaken,
    /// 409: the state changed under the request (a concurrent password change won).
    #[error("{0}")]
    Conflict(String),
    /// 403: re-authentication failed; the password given is not the account's.
    #[error("The password is incorrect")]
    IncorrectPassword,
    /// 401 with `WWW-Authenticate: Bearer`: unknown user or wrong password, indistinguishable.
    #[error("{BAD_CREDENTIALS}")]
    InvalidCredentials,
    /// 400 `invalid_grant`: a refresh token that is unknown, malformed, expired, revoked or
    /// reused; one answer for every cause.
    #[error("The refresh token is invalid, expired or revoked")]
    InvalidGrant,
    /// 401 with `WWW-Authenticate: Bearer` and no error code (RFC 6750 §3.1): the request
    /// carries no bearer credentials at all (no `Authorization`, or another scheme).
    #[error("Not authenticated")]
    Unauthenticated,
    /// 401 with `WWW-Authenticate: Bearer error="invalid_token"`: missing, malformed, forged,
    /// expired or orphaned bearer token.
    #[error("{0}")]
    InvalidToken(&'static str),
    /// 429 with `Retry-After`: too many failed logins for this account.
    #[error("too many failed login attempts")]
    TooManyAttempts {
        /// Seconds until the next attempt is considered.
        retry_after: u64,
    },
    /// 503: a backend (store, signer) is unreachable or busy.
    #[error("service temporarily unavailable")]
    Unavailable(String),
    /// 500: a real fault; the cause is logged, never returned.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// A 422 for `field`.
    pub fn validation(field: &str, reason: impl Into<String>) -> Self {
        ApiError::Validation {
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::InvalidGrant => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UsernameTaken | ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::IncorrectPassword => StatusCode::FORBIDDEN,
            ApiError::InvalidCredentials
            | ApiError::InvalidToken(_)
            | ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The RFC 6749 §5.2 / RFC 6750 §3.1 error code, so OAuth2 client libraries recognise the
    /// failure (`error` is an allowed extension member of a problem document).
    fn oauth_code(&self) -> Option<&'static str> {
        match self {
            ApiError::Validation { field, .. } if field == "grant_type" => {
                Some("unsupported_grant_type")
            }
            ApiError::BadRequest(_)
            | ApiError::PayloadTooLarge(_)
            | ApiError::UnsupportedMediaType(_)
            | ApiError::Validation { .. } => Some("invalid_request"),
            ApiError::InvalidCredentials | ApiError::InvalidGrant => Some("invalid_grant"),
            ApiError::InvalidToken(_) => Some("invalid_token"),
            _ => None,
        }
    }

    /// The RFC 9457 response. Server faults are logged with their cause; clients get a generic detail.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let detail = match &self {
            ApiError::Unavailable(cause) => {
                tracing::error!(cause = %cause, "backend unavailable");
                "The service is temporarily unavailable; retry shortly".to_string()
            }
            ApiError::Internal(cause) => {
                tracing::error!(cause = %cause, "internal error");
                "An unexpected error occurred".to_string()
            }
            other => {
                tracing::info!(status = status.as_u16(), detail = %other, "request refused");
                other.to_string()
            }
        };
        let mut body = json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail,
        });
        if let ApiError::Validation { field, .. } = &self {
            body["field"] = json!(field);
        }
        if let Some(code) = self.oauth_code() {
            body["error"] = json!(code);
            body["error_description"] = body["detail"].clone();
        }
        let mut builder = Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/problem+json")
            .header(header::CACHE_CONTROL, "no-store");
        match &self {
            ApiError::InvalidCredentials | ApiError::Unauthenticated => {
                builder = builder.header(header::WWW_AUTHENTICATE, "Bearer");
            }
            ApiError::InvalidToken(_) => {
                builder =
                    builder.header(header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#);
            }
            ApiError::TooManyAttempts { retry_after } => {
                builder = builder.header(header::RETRY_AFTER, retry_after.to_string());
            }
            ApiError::MethodNotAllowed(allow) => builder = builder.header(header::ALLOW, *allow),
            ApiError::Unavailable(_) => builder = builder.header(header::RETRY_AFTER, "1"),
            _ => {}
        }
        builder
            .body(Body::Text(body.to_string()))
            .expect("static headers are valid")
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Duplicate => ApiError::UsernameTaken,
            StoreError::Unavailable(cause) => ApiError::Unavailable(cause),
            StoreError::Fault(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> Self {
        ApiError::Validation {
            field: e.field,
            reason: e.reason,
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Invalid => ApiError::InvalidToken(crate::token::INVALID_TOKEN),
            TokenError::Expired => ApiError::InvalidToken(crate::token::EXPIRED_TOKEN),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Invalid => ApiError::InvalidGrant,
            SessionError::Store(e) => e.into(),
        }
    }
}

impl From<SignError> for ApiError {
    fn from(e: SignError) -> Self {
        match e {
            SignError::Unavailable(cause) => ApiError::Unavailable(cause),
            SignError::Fault(cause) => ApiError::Internal(cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(resp: &Response<Body>) -> serde_json::Value {
        serde_json::from_slice(resp.body().as_ref()).unwrap()
    }

    #[test]
    fn problem_bodies_carry_status_title_and_detail() {
        let resp =
            ApiError::validation("password", "must be at least 8 characters").into_response();
        assert_eq!(resp.status(), 422);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let b = body(&resp);
        assert_eq!(b["status"], 422);
        assert_eq!(b["title"], "Unprocessable Entity");
        assert_eq!(b["field"], "password");
        assert_eq!(b["detail"], "password: must be at least 8 characters");
    }

    #[test]
    fn internal_causes_never_reach_the_client() {
        for e in [
            ApiError::Internal("SELECT secret FROM users".into()),
            ApiError::Unavailable("database is locked".into()),
        ] {
            let resp = e.into_response();
            let text = String::from_utf8(resp.body().to_vec()).unwrap();
            assert!(
                !text.contains("SELECT") && !text.contains("locked"),
                "{text}"
            );
        }
    }

    #[test]
    fn auth_failures_carry_their_challenge() {
        let resp = ApiError::InvalidCredentials.into_response();
        assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(body(&resp)["detail"], BAD_CREDENTIALS);
        assert_eq!(body(&resp)["error"], "invalid_grant");
        let resp = ApiError::Unauthenticated.into_response();
        assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert!(
            body(&resp).get("error").is_none(),
            "no error code without credentials"
        );
        let resp = ApiError::InvalidToken("token expired").into_response();
        assert_eq!(
            resp.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer error="invalid_token""#
        );
        let resp = ApiError::TooManyAttempts { retry_after: 8 }.into_response();
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "8");
    }
}
