//! The hosted pages: server-rendered HTML (askama templates compiled into the binary: no file is
//! read at run time), their own stylesheet, their cookies and their headers. No script runs on
//! them, so they work without JavaScript and the CSP allows none.
//!
//! Cookies, all `HttpOnly`, `SameSite=Lax` and `Path=/`; on https they are `Secure` and carry
//! the `__Host-` prefix (so no subdomain can set or shadow them):
//! - `auth_session`: the browser's session on the provider (an opaque token of a session record,
//!   ended like any other session by logout, a password change or a deletion);
//! - `auth_csrf`: the double-submit token every form repeats; a post whose field does not match
//!   it does nothing.

use askama::Template;
use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Request, Response};
use subtle::ConstantTimeEq;
use url::Url;

use crate::error::{ApiError, PAGE_HEADERS};
use crate::http;

/// The stylesheet, served at [`STYLESHEET_PATH`] under the issuer.
pub const STYLESHEET: &str = include_str!("../assets/pages.css");
/// Where the stylesheet is served, under the issuer.
pub const STYLESHEET_PATH: &str = "/authorize/pages.css";

/// The cookies' names, for an issuer on https (`__Host-`) or on plain http (local runs).
#[derive(Debug, Clone, Copy)]
pub struct Cookies {
    /// Whether the issuer is on https: cookies are `Secure` and `__Host-`.
    pub secure: bool,
}

impl Cookies {
    /// The names for the issuer `iss`.
    pub fn for_issuer(iss: &str) -> Self {
        Cookies {
            secure: iss.starts_with("https://"),
        }
    }

    /// The browser-session cookie's name.
    pub fn session(&self) -> &'static str {
        if self.secure {
            "__Host-auth_session"
        } else {
            "auth_session"
        }
    }

    /// The CSRF cookie's name.
    pub fn csrf(&self) -> &'static str {
        if self.secure {
            "__Host-auth_csrf"
        } else {
            "auth_csrf"
        }
    }

    /// A `Set-Cookie` value for `name`=`value` living `max_age` seconds (0 deletes it).
    pub fn set(&self, name: &str, value: &str, max_age: u64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
    }
}

/// The value of cookie `name` in the request, if sent once (a second one, set by someone else,
/// makes it unusable).
pub fn cookie<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    let mut found = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v);
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

/// A new CSRF token: 256 random bits, base64url (a ticket's kind of secret).
pub fn new_csrf_token() -> String {
    crate::store::tickets::new_secret().expect("the OS random number generator is available")
}

/// Whether a CSRF token has the shape [`new_csrf_token`] gives (nothing else is echoed into a
/// page or compared).
pub fn is_csrf_token(value: &str) -> bool {
    crate::store::tickets::is_secret(value)
}

/// What every page of one request shares: the issuer, the pages' frame (name, stylesheet), where
/// its form posts, and the cookies' names for that issuer.
pub struct Frame<'a> {
    /// The issuer the request arrived for.
    pub iss: &'a str,
    /// `AUTH_APP_NAME`.
    pub app_name: &'a str,
    /// The stylesheet's URL.
    pub stylesheet: String,
    /// Where the page's form posts: `path` under the issuer.
    pub action: String,
    /// The cookies' names.
    pub cookies: Cookies,
}

impl<'a> Frame<'a> {
    /// The frame of a page at `path` under `iss`.
    pub fn new(iss: &'a str, app_name: &'a str, path: &str) -> Self {
        Frame {
            iss,
            app_name,
            stylesheet: format!("{iss}{STYLESHEET_PATH}"),
            action: format!("{iss}{path}"),
            cookies: Cookies::for_issuer(iss),
        }
    }

    /// What an error page shows around its message.
    pub fn context(&self) -> crate::error::PageContext<'_> {
        crate::error::PageContext {
            app_name: self.app_name,
            stylesheet: &self.stylesheet,
        }
    }

    /// A page with a title and one sentence, setting `cookies`.
    pub fn message(
        &self,
        status: StatusCode,
        title: &str,
        detail: &str,
        cookies: &[String],
    ) -> Response<Body> {
        let html = render(&MessagePage {
            app_name: self.app_name,
            stylesheet: &self.stylesheet,
            title,
            detail,
        });
        respond(status, html, &csp(None), cookies)
    }

    /// The parameters of a form this page's browser posted: refused (403, nothing done) unless
    /// its `csrf` field is the browser's CSRF cookie.
    pub fn checked_form(&self, req: &Request) -> Result<Vec<(String, String)>, ApiError> {
        let params = parameters(req)?;
        if !csrf_holds(self.cookies, req, &params) {
            return Err(ApiError::AccessDenied(
                "This form has expired or was not sent from this site; go back and try again"
                    .into(),
            ));
        }
        Ok(params)
    }

    /// `page`'s HTML under the pages' headers, with the browser's CSRF token set if it has
    /// none; `redirect_uri` widens the CSP's `form-action` for a form that ends at a client.
    pub fn form_page(
        &self,
        req: &Request,
        status: StatusCode,
        redirect_uri: Option<&str>,
        page: impl FnOnce(&str) -> String,
    ) -> Response<Body> {
        let (csrf, cookies) = csrf_token(self.cookies, req);
        respond(status, page(&csrf), &csp(redirect_uri), &cookies)
    }
}

/// The browser's CSRF token, or a new one and the cookie that sets it.
pub fn csrf_token(cookies: Cookies, req: &Request) -> (String, Vec<String>) {
    match cookie(req, cookies.csrf()).filter(|c| is_csrf_token(c)) {
        Some(token) => (token.to_string(), Vec::new()),
        None => {
            let token = new_csrf_token();
            let cookie = cookies.set(cookies.csrf(), &token, 3600);
            (token, vec![cookie])
        }
    }
}

/// Whether the form's `csrf` field is the browser's CSRF cookie (compared in constant time).
pub fn csrf_holds(cookies: Cookies, req: &Request, params: &[(String, String)]) -> bool {
    let cookie = cookie(req, cookies.csrf()).filter(|c| is_csrf_token(c));
    match (cookie, first(params, "csrf")) {
        (Some(cookie), Some(field)) => cookie.as_bytes().ct_eq(field.as_bytes()).into(),
        _ => false,
    }
}

/// The request's parameters: the query of a GET, the form of a POST.
pub fn parameters(req: &Request) -> Result<Vec<(String, String)>, ApiError> {
    let raw = if req.method() == Method::POST {
        if http::media_type(req).as_deref() != Some("application/x-www-form-urlencoded") {
            return Err(ApiError::UnsupportedMediaType(
                "The hosted forms post application/x-www-form-urlencoded".into(),
            ));
        }
        let body = http::body_bytes(req);
        if body.len() > http::MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge(http::MAX_BODY_BYTES));
        }
        std::str::from_utf8(body)
            .map_err(|_| ApiError::BadRequest("The form is not UTF-8".into()))?
            .to_string()
    } else {
        req.uri().query().unwrap_or("").to_string()
    };
    serde_urlencoded::from_str::<Vec<(String, String)>>(&raw)
        .map_err(|_| ApiError::BadRequest("The parameters cannot be read".into()))
}

/// The first non-empty value of parameter `name`.
pub fn first<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// The Content-Security-Policy of a page whose form may end in a redirect to `redirect_uri`:
/// Chromium applies `form-action` to the redirects that follow a form post, so the client's
/// origin (or its private-use scheme) is allowed beside our own.
pub fn csp(redirect_uri: Option<&str>) -> String {
    let target = redirect_uri
        .and_then(|uri| Url::parse(uri).ok())
        .map(|url| match url.scheme() {
            "http" | "https" => url.origin().ascii_serialization(),
            scheme => format!("{scheme}:"),
        })
        .filter(|t| {
            t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b":/.-+[]".contains(&b))
        });
    let form_action = match target {
        Some(target) => format!("'self' {target}"),
        None => "'self'".into(),
    };
    format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action {form_action}; \
         frame-ancestors 'none'; base-uri 'none'"
    )
}

/// A page response: `html` under the pages' headers with `csp`, setting `cookies`.
pub fn respond(status: StatusCode, html: String, csp: &str, cookies: &[String]) -> Response<Body> {
    let mut builder = Response::builder().status(status);
    for (name, value) in PAGE_HEADERS {
        if *name != "content-security-policy" {
            builder = builder.header(*name, *value);
        }
    }
    builder = builder
        .header("content-security-policy", csp)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8");
    for cookie in cookies {
        builder = builder.header(header::SET_COOKIE, cookie);
    }
    builder
        .body(Body::Text(html))
        .expect("page headers are valid")
}

/// A 303 to `location` (a registered redirect URI with its query), setting `cookies`.
pub fn redirect(location: &str, cookies: &[String]) -> Response<Body> {
    let mut builder = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, location)
        .header(header::CACHE_CONTROL, "no-store")
        .header("referrer-policy", "no-referrer");
    for cookie in cookies {
        builder = builder.header(header::SET_COOKIE, cookie);
    }
    builder
        .body(Body::Empty)
        .expect("a registered URI is a valid header")
}

/// The stylesheet's response.
pub fn stylesheet() -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/css; charset=utf-8")
        .header(header::CACHE_CONTROL, "public, max-age=3600")
        .header("x-content-type-options", "nosniff")
        .body(Body::Text(STYLESHEET.into()))
        .expect("static headers are valid")
}

/// The sign-in page.
#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    /// `AUTH_APP_NAME`.
    pub app_name: &'a str,
    /// The stylesheet's URL.
    pub stylesheet: &'a str,
    /// The client asking.
    pub client_id: &'a str,
    /// Where the form posts (the authorization endpoint).
    pub action: &'a str,
    /// The authorization request, repeated as hidden fields.
    pub fields: &'a [(&'static str, String)],
    /// The CSRF token.
    pub csrf: &'a str,
    /// The username to fill in (`login_hint`, or the one just tried).
    pub username: &'a str,
    /// The error to show, if any.
    pub error: Option<&'a str>,
    /// The registration page of the same request.
    pub create_link: &'a str,
    /// The "forgot password" page.
    pub forgot_link: &'a str,
}

/// The registration page.
#[derive(Template)]
#[template(path = "register.html")]
pub struct RegisterPage<'a> {
    /// `AUTH_APP_NAME`.
    pub app_name: &'a str,
    /// The stylesheet's URL.
    pub stylesheet: &'a str,
    /// The client asking.
    pub client_id: &'a str,
    /// Where the form posts.
    pub action: &'a str,
    /// The authorization request, repeated as hidden fields.
    pub fields: &'a [(&'static str, String)],
    /// The CSRF token.
    pub csrf: &'a str,
    /// The username to fill in again after an error.
    pub username: &'a str,
    /// The full name to fill in again after an error.
    pub full_name: &'a str,
    /// The error to show, if any.
    pub error: Option<&'a str>,
    /// The sign-in page of the same request.
    pub login_link: &'a str,
}

/// The confirmation a signed-in browser gives before a code goes to a private-use scheme (RFC
/// 8252 §8.6): another app on the device may claim the scheme.
#[derive(Template)]
#[template(path = "continue.html")]
pub struct ContinuePage<'a> {
    /// `AUTH_APP_NAME`.
    pub app_name: &'a str,
    /// The stylesheet's URL.
    pub stylesheet: &'a str,
    /// The client asking.
    pub client_id: &'a str,
    /// The signed-in account's name.
    pub username: &'a str,
    /// Where the form posts.
    pub action: &'a str,
    /// The authorization request, repeated as hidden fields.
    pub fields: &'a [(&'static str, String)],
    /// The CSRF token.
    pub csrf: &'a str,
    /// The sign-in page of the same request (`prompt=login`).
    pub login_link: &'a str,
}

/// The second step of a hosted sign-in: a TOTP code, or a recovery code.
#[derive(Template)]
#[template(path = "otp.html")]
pub struct OtpPage<'a> {
    /// `AUTH_APP_NAME`.
    pub app_name: &'a str,
    /// The stylesheet's URL.
    pub stylesheet: &'a str,
    /// The account signing in.
    pub username: &'a str,
    /// Where the forms post (the authorization endpoint).
    pub action: &'a str,
    /// The authorization request, repeated as hidden fields.
    pub fields: &'a [(&'static str, String)],
    /// The CSRF token.
    pub csrf: &'a str,
    /// The token of this second step.
    pub mfa_token: &'a str,
    /// The error to show, if any.
    pub error: Option<&'a str>,
}

/// A page with a title and one sentence (signed out, and the like).
#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage<'a> {
    /// `AUTH_APP_NAME`.
    pub app_name: &'a str,
    /// The stylesheet's URL.
    pub stylesheet: &'a str,
    /// The heading.
    pub title: &'a str,
    /// The sentence.
    pub detail: &'a str,
}

/// The "forgot password" page: a username or an address.
#[derive(Template)]
#[template(path = "forgot.html")]
pub struct ForgotPage<'a> {
    /// `AUTH_APP_NAME`.
    pub app_name: &'a str,
    /// The stylesheet's URL.
    pub stylesheet: &'a str,
    /// Where the form posts.
    pub action: &'a str,
    /// The CSRF token.
    pub csrf: &'a str,
    /// What was typed, after an error.
    pub login: &'a str,
    /// The error to show, if any.
    pub error: Option<&'a str>,
}

/// The page of a mailed reset link: the new password.
#[derive(Template)]
#[template(path = "reset.html")]
pub struct ResetPage<'a> {
    /// `AUTH_APP_NAME`.
    pub app_name: &'a str,
    /// The stylesheet's URL.
    pub stylesheet: &'a str,
    /// Where the form posts.
    pub action: &'a str,
    /// The CSRF token.
    pub csrf: &'a str,
    /// The link's token, repeated as a hidden field.
    pub token: &'a str,
    /// The account's name (for password managers).
    pub username: &'a str,
    /// The error to show, if any.
    pub error: Option<&'a str>,
}

/// The page of a mailed verification link: one button (opening the link changes nothing).
#[derive(Template)]
#[template(path = "verify.html")]
pub struct VerifyPage<'a> {
    /// `AUTH_APP_NAME`.
    pub app_name: &'a str,
    /// The stylesheet's URL.
    pub stylesheet: &'a str,
    /// Where the form posts.
    pub action: &'a str,
    /// The CSRF token.
    pub csrf: &'a str,
    /// The link's token, repeated as a hidden field.
    pub token: &'a str,
}

/// Renders `page`, or a bare page if the template fails (it cannot: its inputs are strings).
pub fn render(page: &impl Template) -> String {
    page.render()
        .unwrap_or_else(|_| "<!doctype html><title>Error</title>".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_action_allows_the_clients_origin_or_scheme() {
        assert!(
            csp(Some("http://127.0.0.1:8080/cb?x=1"))
                .contains("form-action 'self' http://127.0.0.1:8080;")
        );
        assert!(csp(Some("com.example.app:/cb")).contains("form-action 'self' com.example.app:;"));
        assert!(csp(None).contains("form-action 'self';"));
        assert!(csp(None).contains("default-src 'none'"));
        assert!(csp(None).contains("frame-ancestors 'none'"));
    }

    #[test]
    fn https_cookies_are_host_prefixed_and_secure() {
        let c = Cookies::for_issuer("https://auth.example");
        assert_eq!(c.session(), "__Host-auth_session");
        assert!(
            c.set(c.session(), "v", 10)
                .ends_with("SameSite=Lax; Secure")
        );
        let local = Cookies::for_issuer("http://127.0.0.1:9000");
        assert_eq!(local.csrf(), "auth_csrf");
        assert!(!local.set("auth_csrf", "v", 10).contains("Secure"));
    }
}
