//! The one error type every handler returns, and the one place it becomes an HTTP response,
//! in the form its caller reads ([`Render`]): an RFC 9457 problem document whose `detail`
//! FastAPI clients already read (the JSON APIs), an HTML error page (the hosted pages), or an
//! OAuth error redirect with `error`, `error_description`, `state` and `iss` (RFC 6749 §4.1.2.1,
//! RFC 9207: the authorization endpoint, once the redirect URI is known to be registered).
//!
//! Internal causes (SQL text, I/O errors, key problems) are logged here and never sent.

use askama::Template;
use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Response};
use serde_json::json;

use crate::authn::password::Refusal;
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
    /// 422 `unsupported_grant_type` (field `grant_type`): a grant the token endpoint does not
    /// offer.
    #[error("grant_type: unsupported grant type; {0}")]
    UnsupportedGrantType(&'static str),
    /// 401 `invalid_client` with `WWW-Authenticate: Basic`: an unknown client, or a wrong or
    /// missing client secret.
    #[error("Client authentication failed")]
    InvalidClient,
    /// 400 `unsupported_response_type`: an authorization request for other than a code.
    #[error("response_type must be code")]
    UnsupportedResponseType,
    /// 400 `unauthorized_client`: a token presented by a client it was not issued to.
    #[error("{0}")]
    UnauthorizedClient(String),
    /// 400 `invalid_scope`: a scope the client may not ask for.
    #[error("{0}")]
    InvalidScope(String),
    /// 403 `access_denied`: the user or the policy refused the request.
    #[error("{0}")]
    AccessDenied(String),
    /// 400 `login_required` (`prompt=none` without a browser session).
    #[error("The user must sign in")]
    LoginRequired,
    /// 400 `interaction_required` (`prompt=none`, but the user must confirm first).
    #[error("The user must confirm on the provider's page")]
    InteractionRequired,
    /// 403 `mfa_required`: the password was right, a second factor is needed; carries the
    /// token of that second step.
    #[error("A second factor is required")]
    MfaRequired {
        /// The opaque token of the second step.
        mfa_token: String,
    },
    /// 403 `insufficient_scope` (RFC 6750 §3.1): a client's token granted without the scope the
    /// resource needs (userinfo: `openid`).
    #[error("The token was not granted the {0} scope")]
    InsufficientScope(&'static str),
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
    /// 400 `invalid_grant`: an authorization code that is unknown, expired, spent, of another
    /// client or redirect URI, or whose verifier is wrong; one answer for every cause.
    #[error("The authorization code is invalid, expired or spent")]
    InvalidCode,
    /// 400 `invalid_grant`: an `mfa_token` that is unknown, spent, expired, dead after too many
    /// wrong codes or of another login, or a wrong code; one answer for every cause.
    #[error("The mfa_token or the code is invalid, expired or spent")]
    InvalidSecondFactor,
    /// 400: a mailed link (verification, reset) that is unknown, spent, expired or no longer
    /// the account's; one answer for every cause.
    #[error("The link is invalid or has expired")]
    InvalidLink,
    /// 429 with `Retry-After`: the account's mail windows are full.
    #[error("Too many messages were sent to this account; try again later")]
    TooManyMessages {
        /// Seconds until the next message may go.
        retry_after: u64,
    },
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
            ApiError::BadRequest(_)
            | ApiError::InvalidGrant
            | ApiError::InvalidCode
            | ApiError::InvalidSecondFactor
            | ApiError::InvalidLink
            | ApiError::InvalidScope(_)
            | ApiError::UnsupportedResponseType
            | ApiError::UnauthorizedClient(_)
            | ApiError::LoginRequired
            | ApiError::InteractionRequired => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedGrantType(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::InvalidClient => StatusCode::UNAUTHORIZED,
            ApiError::AccessDenied(_)
            | ApiError::MfaRequired { .. }
            | ApiError::InsufficientScope(_) => StatusCode::FORBIDDEN,
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
            ApiError::TooManyAttempts { .. } | ApiError::TooManyMessages { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The RFC 6749 §5.2 / RFC 6750 §3.1 error code, so OAuth2 client libraries recognise the
    /// failure (`error` is an allowed extension member of a problem document).
    pub fn oauth_code(&self) -> Option<&'static str> {
        match self {
            ApiError::UnsupportedGrantType(_) => Some("unsupported_grant_type"),
            ApiError::InvalidClient => Some("invalid_client"),
            ApiError::InvalidScope(_) => Some("invalid_scope"),
            ApiError::UnsupportedResponseType => Some("unsupported_response_type"),
            ApiError::UnauthorizedClient(_) => Some("unauthorized_client"),
            ApiError::AccessDenied(_) => Some("access_denied"),
            ApiError::LoginRequired => Some("login_required"),
            ApiError::InteractionRequired => Some("interaction_required"),
            ApiError::MfaRequired { .. } => Some("mfa_required"),
            ApiError::BadRequest(_)
            | ApiError::PayloadTooLarge(_)
            | ApiError::UnsupportedMediaType(_)
            | ApiError::Validation { .. } => Some("invalid_request"),
            ApiError::InvalidCredentials
            | ApiError::InvalidGrant
            | ApiError::InvalidCode
            | ApiError::InvalidSecondFactor => Some("invalid_grant"),
            ApiError::InvalidToken(_) => Some("invalid_token"),
            ApiError::InsufficientScope(_) => Some("insufficient_scope"),
            _ => None,
        }
    }

    /// The field a 422 names.
    fn field(&self) -> Option<&str> {
        match self {
            ApiError::Validation { field, .. } => Some(field),
            ApiError::UnsupportedGrantType(_) => Some("grant_type"),
            _ => None,
        }
    }

    /// The response in the form `how` asks for.
    pub fn render(self, how: Render<'_>) -> Response<Body> {
        match how {
            Render::Problem => self.into_response(),
            Render::Page(page) => self.into_page(page),
            Render::Redirect(to) => self.into_redirect(to),
        }
    }

    /// What the client may read of this error, logged as it is: server faults with their cause
    /// (the client gets a generic detail), refusals at info.
    fn public_detail(&self) -> String {
        let status = self.status();
        match self {
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
        }
    }

    /// The RFC 9457 response. Server faults are logged with their cause; clients get a generic detail.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let detail = self.public_detail();
        let mut body = json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail,
        });
        if let Some(field) = self.field() {
            body["field"] = json!(field);
        }
        if let ApiError::MfaRequired { mfa_token } = &self {
            body["mfa_token"] = json!(mfa_token);
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
            ApiError::InvalidClient => {
                builder = builder.header(header::WWW_AUTHENTICATE, r#"Basic realm="token""#);
            }
            ApiError::InvalidToken(_) => {
                builder =
                    builder.header(header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#);
            }
            ApiError::InsufficientScope(scope) => {
                builder = builder.header(
                    header::WWW_AUTHENTICATE,
                    format!(r#"Bearer error="insufficient_scope", scope="{scope}""#),
                );
            }
            ApiError::TooManyAttempts { retry_after }
            | ApiError::TooManyMessages { retry_after } => {
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

impl ApiError {
    /// An HTML page with the status and the public detail, under the hosted pages' headers.
    fn into_page(self, page: PageContext<'_>) -> Response<Body> {
        let status = self.status();
        let html = ErrorPage {
            app_name: page.app_name,
            stylesheet: page.stylesheet,
            title: status.canonical_reason().unwrap_or("Error"),
            detail: &self.public_detail(),
        }
        .render()
        .unwrap_or_else(|_| "<!doctype html><title>Error</title>".into());
        let mut builder = Response::builder().status(status);
        for (name, value) in PAGE_HEADERS {
            builder = builder.header(*name, *value);
        }
        match &self {
            ApiError::TooManyAttempts { retry_after }
            | ApiError::TooManyMessages { retry_after } => {
                builder = builder.header(header::RETRY_AFTER, retry_after.to_string());
            }
            ApiError::MethodNotAllowed(allow) => builder = builder.header(header::ALLOW, *allow),
            _ => {}
        }
        builder
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(Body::Text(html))
            .expect("static headers are valid")
    }

    /// A 303 to the client's registered redirect URI with the error in its query (RFC 6749
    /// §4.1.2.1) and `iss` (RFC 9207). A server fault is `server_error`, a refusal without an
    /// OAuth code `invalid_request`.
    fn into_redirect(self, to: RedirectTarget<'_>) -> Response<Body> {
        let code = match &self {
            ApiError::Internal(_) => "server_error",
            ApiError::Unavailable(_) => "temporarily_unavailable",
            other => match other.oauth_code() {
                Some("invalid_grant" | "invalid_token") | None => "invalid_request",
                Some(code) => code,
            },
        };
        let description = self.public_detail();
        let mut query: Vec<(&str, &str)> =
            vec![("error", code), ("error_description", &description)];
        if let Some(state) = to.state {
            query.push(("state", state));
        }
        query.push(("iss", to.iss));
        let location = with_query(to.redirect_uri, &query);
        Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header(header::LOCATION, location)
            .header(header::CACHE_CONTROL, "no-store")
            .header("referrer-policy", "no-referrer")
            .body(Body::Empty)
            .expect("a URI built from a registered one is a valid header")
    }
}

/// `uri` with `query` appended (after its own query, if it has one), form-encoded.
pub fn with_query(uri: &str, query: &[(&str, &str)]) -> String {
    let encoded = serde_urlencoded::to_string(query).unwrap_or_default();
    // Registered redirect URIs carry no fragment (RFC 6749 §3.1.2); one would hide the query.
    let base = uri.split('#').next().unwrap_or(uri);
    let joiner = if base.contains('?') { '&' } else { '?' };
    format!("{base}{joiner}{encoded}")
}

/// How an error is shown to its caller.
#[derive(Debug, Clone, Copy)]
pub enum Render<'a> {
    /// RFC 9457 problem+json: the JSON APIs.
    Problem,
    /// An HTML error page: the hosted pages, and the authorization endpoint when the client or
    /// its redirect URI is not known to be registered (never a redirect then).
    Page(PageContext<'a>),
    /// A redirect back to a registered redirect URI: the authorization endpoint's other errors.
    Redirect(RedirectTarget<'a>),
}

/// What every hosted page shows around its content.
#[derive(Debug, Clone, Copy)]
pub struct PageContext<'a> {
    /// `AUTH_APP_NAME`.
    pub app_name: &'a str,
    /// Where the pages' own stylesheet is served.
    pub stylesheet: &'a str,
}

/// Where an OAuth error redirect goes.
#[derive(Debug, Clone, Copy)]
pub struct RedirectTarget<'a> {
    /// The client's registered redirect URI, matched exactly.
    pub redirect_uri: &'a str,
    /// The client's `state`, returned as given.
    pub state: Option<&'a str>,
    /// This issuer (RFC 9207).
    pub iss: &'a str,
}

/// The headers of every hosted page: nothing runs but our own stylesheet, no framing, no
/// caching, no referrer.
pub const PAGE_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    ),
    ("cache-control", "no-store"),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
];

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    app_name: &'a str,
    stylesheet: &'a str,
    title: &'a str,
    detail: &'a str,
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

impl From<Refusal> for ApiError {
    /// The answers every caller shares; each caller maps the wrong-credentials and gone cases
    /// itself (401 at login, 403 at re-authentication).
    fn from(e: Refusal) -> Self {
        match e {
            Refusal::WrongCredentials | Refusal::AccountGone => ApiError::InvalidCredentials,
            Refusal::Throttled(retry_after) => ApiError::TooManyAttempts { retry_after },
            Refusal::Store(e) => e.into(),
            Refusal::Hash(e) => ApiError::Internal(e.to_string()),
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
    fn every_oauth_code_comes_from_its_variant() {
        for (e, code, status) in [
            (
                ApiError::UnsupportedGrantType("x"),
                "unsupported_grant_type",
                422,
            ),
            (ApiError::InvalidClient, "invalid_client", 401),
            (ApiError::InvalidScope("email".into()), "invalid_scope", 400),
            (ApiError::AccessDenied("no".into()), "access_denied", 403),
            (ApiError::LoginRequired, "login_required", 400),
            (
                ApiError::UnsupportedResponseType,
                "unsupported_response_type",
                400,
            ),
            (
                ApiError::UnauthorizedClient("x".into()),
                "unauthorized_client",
                400,
            ),
            (ApiError::InvalidCode, "invalid_grant", 400),
            (
                ApiError::MfaRequired {
                    mfa_token: "t".into(),
                },
                "mfa_required",
                403,
            ),
        ] {
            let resp = e.into_response();
            assert_eq!(resp.status(), status);
            assert_eq!(body(&resp)["error"], code);
        }
        // A validation error of a field that happens to be called grant_type is just that.
        let resp = ApiError::validation("grant_type", "x").into_response();
        assert_eq!(body(&resp)["error"], "invalid_request");
    }

    #[test]
    fn pages_escape_their_text_and_carry_the_page_headers() {
        let page = PageContext {
            app_name: "Acme <b>",
            stylesheet: "/static/auth.css",
        };
        let resp =
            ApiError::BadRequest("<script>alert(1)</script>".into()).render(Render::Page(page));
        assert_eq!(resp.status(), 400);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        for (name, value) in PAGE_HEADERS {
            assert_eq!(resp.headers()[*name], *value);
        }
        let html = String::from_utf8(resp.body().to_vec()).unwrap();
        assert!(
            !html.contains("<script>") && !html.contains("<b>"),
            "{html}"
        );
        assert!(html.contains("&#60;script&#62;"), "{html}");
    }

    #[test]
    fn redirects_carry_error_state_and_issuer_and_keep_the_uris_query() {
        let to = RedirectTarget {
            redirect_uri: "https://app.example/cb?tenant=7",
            state: Some("s t&"),
            iss: "https://auth.example",
        };
        let resp =
            ApiError::validation("code_challenge", "is required").render(Render::Redirect(to));
        assert_eq!(resp.status(), 303);
        let location = resp.headers()[header::LOCATION].to_str().unwrap();
        assert!(
            location.starts_with("https://app.example/cb?tenant=7&error=invalid_request&"),
            "{location}"
        );
        assert!(location.contains("state=s+t%26"), "{location}");
        assert!(
            location.ends_with("iss=https%3A%2F%2Fauth.example"),
            "{location}"
        );
        let resp = ApiError::Internal("db".into()).render(Render::Redirect(to));
        let location = resp.headers()[header::LOCATION].to_str().unwrap();
        assert!(
            location.contains("error=server_error") && !location.contains("db"),
            "{location}"
        );
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
