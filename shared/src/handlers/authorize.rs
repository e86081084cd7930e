//! The OpenID Connect provider's browser side:
//! - `GET /authorize`: the authorization endpoint. A request whose client or redirect URI is not
//!   registered gets an HTML error page; any other error redirects to the client. With a browser
//!   session (SSO) it redirects with a code at once; otherwise it shows the sign-in page (or the
//!   registration page, `prompt=create`).
//! - `POST /authorize`: the hosted forms (`action=login` or `action=register`), which repeat the
//!   authorization request; a success starts the browser session and redirects with a code.
//!   `action=continue` is a signed-in browser's confirmation for a client whose redirect is a
//!   private-use scheme (which another app may claim, RFC 8252 §8.6): SSO answers such a
//!   client only after it.
//! - `GET`/`POST /end-session`: RP-initiated logout.
//! - `GET /authorize/pages.css`: the pages' stylesheet.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};

use crate::authn::mfa::{self, Continues, Proof};
use crate::authn::password::{self, Checker, Purpose, Refusal};
use crate::authn::registration::{self, Application};
use crate::error::{ApiError, BAD_CREDENTIALS, RedirectTarget, Render, with_query};
use crate::http;
use crate::oauth::authorize::{self, AuthorizationRequest, Prompt, Refused};
use crate::oauth::code::{self, CodeGrant};
use crate::pages::{self, ContinuePage, LoginPage, OtpPage, RegisterPage};
use crate::session::{self, BrowserSession};
use crate::state::AuthorizeState;
use crate::state::stores;
use crate::store::{ClientStore, Holder};
use crate::throttle;

/// Handles one request; every failure becomes a page or a redirect to the client.
pub async fn handle<C: stores::Authorize>(
    state: &AuthorizeState<C>,
    req: Request,
) -> Response<Body> {
    let iss = match http::issuer(&state.issuer, &req) {
        Ok(iss) => iss,
        Err(e) => return e.into_response(),
    };
    let page = frame(state, &iss);
    let path = http::path(&req);
    let result = if path.ends_with(pages::STYLESHEET_PATH) {
        http::require_method(&req, "GET").map(|_| pages::stylesheet())
    } else if path.ends_with("/end-session") {
        end_session(state, &page, &req).await
    } else if path.ends_with("/authorize") {
        match *req.method() {
            Method::GET => authorize(state, &page, &req).await,
            Method::POST => submit(state, &page, &req).await,
            _ => Err(ApiError::MethodNotAllowed("GET, POST")),
        }
    } else {
        Err(ApiError::NotFound(path.to_string()))
    };
    result.unwrap_or_else(|e| e.render(Render::Page(page.context())))
}

/// The frame of the authorization endpoint's pages.
type Page<'a> = pages::Frame<'a>;

fn frame<'a, C>(state: &'a AuthorizeState<C>, iss: &'a str) -> Page<'a> {
    pages::Frame::new(iss, &state.app_name, "/authorize")
}

/// Checks the authorization request, or answers its error where it may go.
async fn check_request<S: ClientStore>(
    store: &S,
    page: &Page<'_>,
    params: &[(String, String)],
) -> Result<AuthorizationRequest, Response<Body>> {
    match authorize::check(store, params).await {
        Ok((request, _client)) => Ok(request),
        Err(Refused::Page(e)) => Err(e.render(Render::Page(page.context()))),
        Err(Refused::Redirect {
            error,
            redirect_uri,
            state,
        }) => Err(error.render(Render::Redirect(RedirectTarget {
            redirect_uri: &redirect_uri,
            state: state.as_deref(),
            iss: page.iss,
        }))),
    }
}

/// The redirect of an error for a checked request.
fn redirect_error(page: &Page<'_>, request: &AuthorizationRequest, e: ApiError) -> Response<Body> {
    e.render(Render::Redirect(RedirectTarget {
        redirect_uri: &request.redirect_uri,
        state: request.state.as_deref(),
        iss: page.iss,
    }))
}

/// `GET /authorize`.
async fn authorize<C: stores::Authorize>(
    state: &AuthorizeState<C>,
    page: &Page<'_>,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let params = pages::parameters(req)?;
    let request = match check_request(&state.store, page, &params).await {
        Ok(request) => request,
        Err(response) => return Ok(response),
    };
    let now = (state.clock)();
    if request.prompt == Prompt::Create {
        return Ok(form(
            page,
            req,
            &request,
            Form::Register,
            None,
            StatusCode::OK,
        ));
    }
    let browser = browser_session(state, page, req, now).await?;
    // max_age=0 is prompt=login (Core §3.1.2.1), even within the sign-in's own second.
    let fresh = browser.filter(|b| {
        request.prompt != Prompt::Login
            && request
                .max_age
                .is_none_or(|max| max > 0 && now.saturating_sub(b.auth_time) <= max)
    });
    if let Some(browser) = fresh {
        if request.redirect_proves_the_client() {
            return Ok(code_redirect(state, page, &request, &browser, &[], now).await);
        }
        if request.prompt == Prompt::None {
            return Ok(redirect_error(
                page,
                &request,
                ApiError::InteractionRequired,
            ));
        }
        return Ok(confirm(page, req, &request, &browser));
    }
    if request.prompt == Prompt::None {
        return Ok(redirect_error(page, &request, ApiError::LoginRequired));
    }
    Ok(form(page, req, &request, Form::Login, None, StatusCode::OK))
}

/// Which hosted form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Login,
    Register,
}

/// What a re-shown form keeps of what was typed (never the password).
#[derive(Debug, Default)]
struct Typed<'a> {
    username: &'a str,
    full_name: &'a str,
    error: Option<&'a str>,
}

/// The sign-in or registration page of `request`, with a CSRF token (the browser's, or a new
/// one set as a cookie).
fn form(
    page: &Page<'_>,
    req: &Request,
    request: &AuthorizationRequest,
    which: Form,
    typed: Option<Typed<'_>>,
    status: StatusCode,
) -> Response<Body> {
    let typed = typed.unwrap_or_default();
    let fields = request.form_fields();
    let link = |prompt: Option<&str>| {
        let mut query: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
        if let Some(prompt) = prompt {
            query.push(("prompt", prompt));
        }
        with_query(&page.action, &query)
    };
    let username = if typed.username.is_empty() {
        request.login_hint.as_deref().unwrap_or("")
    } else {
        typed.username
    };
    let forgot_link = format!("{}{}", page.iss, crate::authn::recovery::FORGOT_PAGE);
    page.form_page(
        req,
        status,
        Some(&request.redirect_uri),
        |csrf| match which {
            Form::Login => pages::render(&LoginPage {
                app_name: page.app_name,
                stylesheet: &page.stylesheet,
                client_id: &request.client_id,
                action: &page.action,
                fields: &fields,
                csrf,
                username,
                error: typed.error,
                create_link: &link(Some("create")),
                forgot_link: &forgot_link,
            }),
            Form::Register => pages::render(&RegisterPage {
                app_name: page.app_name,
                stylesheet: &page.stylesheet,
                client_id: &request.client_id,
                action: &page.action,
                fields: &fields,
                csrf,
                username: typed.username,
                full_name: typed.full_name,
                error: typed.error,
                login_link: &link(Some("login")),
            }),
        },
    )
}

/// The "continue as …" page: a signed-in browser confirms before a code goes to a private-use
/// scheme.
fn confirm(
    page: &Page<'_>,
    req: &Request,
    request: &AuthorizationRequest,
    browser: &BrowserSession,
) -> Response<Body> {
    let fields = request.form_fields();
    let mut query: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
    query.push(("prompt", "login"));
    let login_link = with_query(&page.action, &query);
    page.form_page(req, StatusCode::OK, Some(&request.redirect_uri), |csrf| {
        pages::render(&ContinuePage {
            app_name: page.app_name,
            stylesheet: &page.stylesheet,
            client_id: &request.client_id,
            username: &browser.user.username,
            action: &page.action,
            fields: &fields,
            csrf,
            login_link: &login_link,
        })
    })
}

/// `POST /authorize`: a hosted form.
async fn submit<C: stores::Authorize>(
    state: &AuthorizeState<C>,
    page: &Page<'_>,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    // Before anything else, and before the request is even looked at: a post the browser's own
    // page did not make changes nothing.
    let params = page.checked_form(req)?;
    let request = match check_request(&state.store, page, &params).await {
        Ok(request) => request,
        Err(response) => return Ok(response),
    };
    let now = (state.clock)();
    let username = pages::first(&params, "username").unwrap_or("");
    let password = pages::first(&params, "password").unwrap_or("");
    let current = browser_session(state, page, req, now).await?;
    if pages::first(&params, "action") == Some("continue") {
        // The signed-in browser confirmed: the code goes out for its session, if it still is
        // one (else it signs in again).
        return Ok(match current {
            Some(browser) => code_redirect(state, page, &request, &browser, &[], now).await,
            None => form(page, req, &request, Form::Login, None, StatusCode::OK),
        });
    }
    let mut second_factor = false;
    let user = match pages::first(&params, "action") {
        Some(action @ ("otp" | "recovery")) => {
            let token = pages::first(&params, "mfa_token").unwrap_or("");
            let proof = match action {
                "otp" => Proof::Otp(pages::first(&params, "otp").unwrap_or("")),
                _ => Proof::RecoveryCode(pages::first(&params, "recovery_code").unwrap_or("")),
            };
            let key = mfa::data_key(state.data_key.as_ref())?;
            let continues = hosted_sign_in(&request);
            match mfa::redeem(
                &state.store,
                key,
                &state.throttle,
                token,
                &continues,
                proof,
                now,
            )
            .await
            {
                Ok(user) => {
                    second_factor = true;
                    user
                }
                Err(ApiError::InvalidSecondFactor) => {
                    let usable = mfa::is_usable(&state.store, token, now).await?;
                    return Ok(if let Some(username) = usable {
                        otp_form(page, req, &request, token, &username, Some(WRONG_CODE))
                    } else {
                        let typed = Typed {
                            username: "",
                            full_name: "",
                            error: Some(SIGN_IN_AGAIN),
                        };
                        form(
                            page,
                            req,
                            &request,
                            Form::Login,
                            Some(typed),
                            StatusCode::UNAUTHORIZED,
                        )
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Some("login") => {
            let checker = Checker {
                hasher: &state.hasher,
                limits: &state.throttle,
            };
            let source = http::source_ip(req).unwrap_or(throttle::UNKNOWN_SOURCE);
            let purpose = Purpose::Login { username };
            match password::check(&state.store, checker, purpose, password, source, now).await {
                // A second factor first: the right password buys its form, no session yet.
                Ok(user) if user.totp_enabled => {
                    let continues = hosted_sign_in(&request);
                    let token = mfa::challenge(&state.store, &user, continues, now).await?;
                    let mut response = otp_form(page, req, &request, &token, &user.username, None);
                    *response.status_mut() = StatusCode::OK;
                    return Ok(response);
                }
                Ok(user) => user,
                Err(refusal) => return Ok(login_refused(page, req, &request, username, refusal)),
            }
        }
        Some("register") => {
            let full_name = pages::first(&params, "full_name");
            let application = Application {
                username,
                password,
                full_name,
                email: None,
            };
            match registration::register(&state.store, &state.hasher, application).await {
                Ok(user) => user,
                Err(e @ (ApiError::Validation { .. } | ApiError::UsernameTaken)) => {
                    let detail = e.to_string();
                    let typed = Typed {
                        username,
                        full_name: full_name.unwrap_or(""),
                        error: Some(&detail),
                    };
                    return Ok(form(
                        page,
                        req,
                        &request,
                        Form::Register,
                        Some(typed),
                        e.status(),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        _ => {
            return Err(ApiError::BadRequest(
                "action must be login, register or continue".into(),
            ));
        }
    };
    // A new sign-in replaces the browser's session: the old one ends, not left open.
    if let Some(old) = current {
        state.store.end_session(&old.sid).await?;
    }
    let (cookie, browser) =
        session::start_browser(&state.store, &user, &state.sessions, second_factor, now).await?;
    let set = page
        .cookies
        .set(page.cookies.session(), &cookie, state.sessions.max);
    Ok(code_redirect(state, page, &request, &browser, &[set], now).await)
}

const WRONG_CODE: &str = "That code is not right; try again";
const SIGN_IN_AGAIN: &str = "The sign-in expired or had too many wrong codes; sign in again";

/// The login an `mfa_token` of the hosted page continues.
fn hosted_sign_in(request: &AuthorizationRequest) -> Continues {
    Continues::HostedSignIn {
        client_id: request.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
    }
}

/// The second step's page (401 with `error`: a wrong code).
fn otp_form(
    page: &Page<'_>,
    req: &Request,
    request: &AuthorizationRequest,
    mfa_token: &str,
    username: &str,
    error: Option<&str>,
) -> Response<Body> {
    let fields = request.form_fields();
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    page.form_page(req, status, Some(&request.redirect_uri), |csrf| {
        pages::render(&OtpPage {
            app_name: page.app_name,
            stylesheet: &page.stylesheet,
            username,
            action: &page.action,
            fields: &fields,
            csrf,
            mfa_token,
            error,
        })
    })
}

/// The sign-in page again after a refused password: one generic message for unknown names and
/// wrong passwords (401), the wait of the throttle (429).
fn login_refused(
    page: &Page<'_>,
    req: &Request,
    request: &AuthorizationRequest,
    username: &str,
    refusal: Refusal,
) -> Response<Body> {
    let (status, detail, retry_after) = match refusal {
        Refusal::WrongCredentials | Refusal::AccountGone => {
            (StatusCode::UNAUTHORIZED, BAD_CREDENTIALS.to_string(), None)
        }
        Refusal::Throttled(wait) => (
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many attempts; try again in {wait} seconds"),
            Some(wait),
        ),
        other => return ApiError::from(other).render(Render::Page(page.context())),
    };
    let typed = Typed {
        username,
        full_name: "",
        error: Some(&detail),
    };
    let mut response = form(page, req, request, Form::Login, Some(typed), status);
    if let Some(wait) = retry_after {
        response
            .headers_mut()
            .insert(lambda_http::http::header::RETRY_AFTER, wait.into());
    }
    response
}

/// The browser session the request's cookie names, if it is one that is still open.
async fn browser_session<C: stores::Authorize>(
    state: &AuthorizeState<C>,
    page: &Page<'_>,
    req: &Request,
    now: u64,
) -> Result<Option<BrowserSession>, ApiError> {
    Ok(match pages::cookie(req, page.cookies.session()) {
        Some(cookie) => session::open_browser(&state.store, cookie, now).await?,
        None => None,
    })
}

/// Issues a code for `browser`'s sign-in and redirects to the client with it, setting
/// `cookies`; a failure to issue it is the client's error redirect.
async fn code_redirect<C: stores::Authorize>(
    state: &AuthorizeState<C>,
    page: &Page<'_>,
    request: &AuthorizationRequest,
    browser: &BrowserSession,
    cookies: &[String],
    now: u64,
) -> Response<Body> {
    let grant = CodeGrant {
        client_id: request.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
        scope: request.scope.clone(),
        nonce: request.nonce.clone(),
        user_id: browser.user.id.clone(),
        username_key: browser.user.username_key.clone(),
        username: browser.user.username.clone(),
        sid: browser.sid.clone(),
        auth_time: browser.auth_time,
        amr: crate::token::amr(browser.mfa),
        epoch: browser.user.session_epoch,
        full_name: browser.user.full_name.clone(),
        client_secret_hash: request.client_secret_hash.clone(),
    };
    let code = match code::issue(&state.store, &grant, now).await {
        Ok(code) => code,
        Err(e) => return redirect_error(page, request, e.into()),
    };
    tracing::info!(user_id = %browser.user.id, client_id = %request.client_id, "authorization code issued");
    let mut query = vec![("code", code.as_str())];
    if let Some(s) = &request.state {
        query.push(("state", s));
    }
    query.push(("iss", page.iss));
    pages::redirect(&with_query(&request.redirect_uri, &query), cookies)
}

/// `GET`/`POST /end-session` (RP-Initiated Logout 1.0): ends the browser session, then redirects
/// to a post-logout URI only if the client registered it, else shows a page.
async fn end_session<C: stores::Authorize>(
    state: &AuthorizeState<C>,
    page: &Page<'_>,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::GET && req.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed("GET, POST"));
    }
    let params = pages::parameters(req)?;
    let hint =
        match pages::first(&params, "id_token_hint") {
            Some(token) => Some(state.verifier.id_token_hint(token, page.iss).ok_or_else(
                || ApiError::BadRequest("id_token_hint is not an id_token of ours".into()),
            )?),
            None => None,
        };
    let client_id = match (pages::first(&params, "client_id"), &hint) {
        (Some(id), Some(hint)) if id != hint.aud => {
            return Err(ApiError::BadRequest(
                "client_id is not the id_token_hint's audience".into(),
            ));
        }
        (Some(id), _) => Some(id.to_string()),
        (None, Some(hint)) => Some(hint.aud.clone()),
        (None, None) => None,
    };
    let now = (state.clock)();
    // The browser's own session, and the one the hint names (its holder may end it).
    let mut ended = Vec::new();
    if let Some(browser) = browser_session(state, page, req, now).await? {
        ended.push(browser.sid);
    }
    if let Some(hint) = &hint
        && !ended.contains(&hint.sid)
        && let Some(record) = state.store.session(&hint.sid).await?
        && record.holder == Holder::Browser
        && record.life.user_id == hint.sub
    {
        ended.push(hint.sid.clone());
    }
    for sid in &ended {
        state.store.end_session(sid).await?;
        tracing::info!(session_id = %sid, "browser session ended (RP-initiated logout)");
    }
    let clear = vec![page.cookies.set(page.cookies.session(), "", 0)];
    let Some(uri) = pages::first(&params, "post_logout_redirect_uri") else {
        return Ok(page.message(StatusCode::OK, "Signed out", "You are signed out.", &clear));
    };
    let registered = match &client_id {
        Some(id) if crate::oauth::client::is_client_id(id) => state
            .store
            .client(id)
            .await?
            .is_some_and(|c| c.allows_post_logout_redirect_uri(uri)),
        _ => false,
    };
    if !registered {
        return Ok(page.message(
            StatusCode::BAD_REQUEST,
            "Signed out",
            "You are signed out. The page that sent you here is not registered to be sent back to.",
            &clear,
        ));
    }
    let mut query = Vec::new();
    if let Some(s) = pages::first(&params, "state") {
        query.push(("state", s));
    }
    let location = if query.is_empty() {
        uri.to_string()
    } else {
        with_query(uri, &query)
    };
    Ok(pages::redirect(&location, &clear))
}
