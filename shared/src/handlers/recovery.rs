//! Addresses and recovery, on the `account` function:
//! - `POST /email/verify` {token} → 200; `POST /email/verify/resend` (bearer) → 202;
//! - `POST /password/forgot` {email} or {username} → 202, the same answer in the same time
//!   whatever it matched; `POST /password/reset` {token, new_password} → 200;
//! - the hosted pages the mailed links open, server-rendered and without script:
//!   `GET`/`POST /forgot-password`, `/reset-password` and `/verify-email`. Opening a link (GET)
//!   changes nothing, since mail scanners open links before their readers do; the page's form
//!   (CSRF-protected like the sign-in page's) does the work.

use std::time::Instant;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::json;

use crate::authn::email::{self, claim_mail};
use crate::authn::recovery::{self, FORGOT_PAGE, RESET_PAGE, Reset, Who};
use crate::error::{ApiError, Render};
use crate::http::{self, BodyFormat};
use crate::pages::{self, ForgotPage, ResetPage, VerifyPage};
use crate::policy;
use crate::signer::Signer;
use crate::state::AccountState;
use crate::state::stores;

/// What `POST /password/forgot` answers, always.
pub const FORGOT_ANSWER: &str = "If the account has a verified address, a reset link is on its way";

/// The routes of this module, or `None` for a path that is not one of them.
pub(super) async fn route<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    req: &Request,
    path: &str,
) -> Option<Response<Body>> {
    let api = if path.ends_with("/email/verify/resend") {
        resend(state, req).await
    } else if path.ends_with("/email/verify") {
        verify(state, req).await
    } else if path.ends_with("/password/forgot") {
        forgot(state, req).await
    } else if path.ends_with("/password/reset") {
        reset(state, req).await
    } else {
        return page(state, req, path).await;
    };
    Some(api.unwrap_or_else(ApiError::into_response))
}

async fn verify<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    http::require_method(req, "POST")?;
    let fields = http::read_fields(req, &[BodyFormat::Json])?;
    let token = fields.string("token")?;
    let address = email::verify(&state.store, token, (state.clock)()).await?;
    Ok(http::json(
        StatusCode::OK,
        &json!({"message": "Email address verified", "email": address}),
    ))
}

async fn resend<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    http::require_method(req, "POST")?;
    let now = (state.clock)();
    let (_, user) =
        super::bearer_credentials(&state.verifier, &state.issuer, &state.store, now, req).await?;
    let Some(address) = user.email.clone() else {
        return Err(ApiError::Conflict(
            "The account has no address to verify".into(),
        ));
    };
    if user.email_verified {
        return Err(ApiError::Conflict("The address is already verified".into()));
    }
    let claim = match claim_mail(&state.store, &user.id, now).await? {
        Ok(claim) => claim,
        Err(retry_after) => return Err(ApiError::TooManyMessages { retry_after }),
    };
    let iss = http::issuer(&state.issuer, req)?;
    if !email::send_verification(&state.store, &state.outbox, &iss, &user, &address, now).await {
        // Not sent: the places go back, so a retry does not wait for a mail that never went.
        claim.give_back(&state.store).await?;
        return Err(ApiError::Unavailable("the mailer failed".into()));
    }
    Ok(http::json(
        StatusCode::ACCEPTED,
        &json!({"message": "A new verification link is on its way"}),
    ))
}

/// Whom a forgot-password request names: an address (anything with an `@`) or a username.
fn who(email: Option<&str>, username: Option<&str>, field: &str) -> Result<Who, ApiError> {
    match (email, username) {
        (Some(address), _) => Ok(Who::Email(
            policy::email(address).map_err(|e| e.for_field(field))?,
        )),
        (None, Some(name)) => Ok(Who::Username(name.to_string())),
        (None, None) => Err(ApiError::validation(field, "is required")),
    }
}

/// Runs a forgot-password request and holds its answer to `AUTH_FORGOT_MIN_MS`, so neither
/// the answer nor its time tells whether anything matched.
async fn forgot_in_constant_time<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    req: &Request,
    who: &Who,
) -> Result<(), ApiError> {
    let started = Instant::now();
    let iss = http::issuer(&state.issuer, req)?;
    let source = http::source_ip(req).unwrap_or(crate::throttle::UNKNOWN_SOURCE);
    let outcome = recovery::forgot(
        &state.store,
        &state.outbox,
        &iss,
        who,
        source,
        (state.clock)(),
    )
    .await;
    tokio::time::sleep_until((started + state.outbox.forgot_min).into()).await;
    Ok(outcome?)
}

async fn forgot<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    http::require_method(req, "POST")?;
    let fields = http::read_fields(req, &[BodyFormat::Json, BodyFormat::Form])?;
    let who = who(
        fields.optional_string("email")?,
        fields.optional_string("username")?,
        "email",
    )?;
    forgot_in_constant_time(state, req, &who).await?;
    Ok(http::json(
        StatusCode::ACCEPTED,
        &json!({"message": FORGOT_ANSWER}),
    ))
}

async fn reset<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    http::require_method(req, "POST")?;
    let fields = http::read_fields(req, &[BodyFormat::Json])?;
    let token = fields.string("token")?;
    let new_password = fields.string("new_password")?;
    recovery::reset(
        &state.store,
        resetting(state, req),
        token,
        new_password,
        (state.clock)(),
    )
    .await?;
    Ok(http::json(
        StatusCode::OK,
        &json!({"message": "Your password has been reset"}),
    ))
}

fn resetting<'a, A, S>(state: &'a AccountState<A, S>, req: &'a Request) -> Reset<'a> {
    Reset {
        hasher: &state.hasher,
        outbox: &state.outbox,
        source: http::source_ip(req).unwrap_or(crate::throttle::UNKNOWN_SOURCE),
    }
}

// The hosted pages.

type Page<'a> = pages::Frame<'a>;

async fn page<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    req: &Request,
    path: &str,
) -> Option<Response<Body>> {
    let which = [FORGOT_PAGE, RESET_PAGE, email::VERIFY_PAGE]
        .into_iter()
        .find(|p| path.ends_with(p))?;
    let iss = match http::issuer(&state.issuer, req) {
        Ok(iss) => iss,
        Err(e) => return Some(e.into_response()),
    };
    let page = pages::Frame::new(&iss, &state.outbox.app_name, which);
    let result = match (which, req.method().clone()) {
        (FORGOT_PAGE, Method::GET) => Ok(forgot_form(&page, req, "", None, StatusCode::OK)),
        (FORGOT_PAGE, Method::POST) => forgot_submit(state, &page, req).await,
        (RESET_PAGE, Method::GET) => reset_form(state, &page, req).await,
        (RESET_PAGE, Method::POST) => reset_submit(state, &page, req).await,
        (_, Method::GET) => verify_form(state, &page, req).await,
        (_, Method::POST) => verify_submit(state, &page, req).await,
        _ => Err(ApiError::MethodNotAllowed("GET, POST")),
    };
    Some(result.unwrap_or_else(|e| e.render(Render::Page(page.context()))))
}

fn forgot_form(
    page: &Page<'_>,
    req: &Request,
    login: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response<Body> {
    page.form_page(req, status, None, |csrf| {
        pages::render(&ForgotPage {
            app_name: page.app_name,
            stylesheet: &page.stylesheet,
            action: &page.action,
            csrf,
            login,
            error,
        })
    })
}

async fn forgot_submit<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    page: &Page<'_>,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let params = page.checked_form(req)?;
    let login = pages::first(&params, "login").unwrap_or("").trim();
    let who = match who(
        Some(login).filter(|l| l.contains('@')),
        Some(login).filter(|l| !l.is_empty() && !l.contains('@')),
        "login",
    ) {
        Ok(who) => who,
        Err(e @ ApiError::Validation { .. }) => {
            let message = e.to_string();
            let status = e.status();
            return Ok(forgot_form(page, req, login, Some(&message), status));
        }
        Err(e) => return Err(e),
    };
    forgot_in_constant_time(state, req, &who).await?;
    Ok(page.message(
        StatusCode::OK,
        "Check your mail",
        "If the account has a verified address, a link to choose a new password is on its way. It works once.",
        &[],
    ))
}

fn reset_page(
    page: &Page<'_>,
    req: &Request,
    token: &str,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response<Body> {
    page.form_page(req, status, None, |csrf| {
        pages::render(&ResetPage {
            app_name: page.app_name,
            stylesheet: &page.stylesheet,
            action: &page.action,
            csrf,
            token,
            username,
            error,
        })
    })
}

async fn reset_form<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    page: &Page<'_>,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let params = pages::parameters(req)?;
    let token = pages::first(&params, "token").unwrap_or("");
    // Read, never taken: a scanner that opens the link spends nothing.
    let user = recovery::link_account(&state.store, token, (state.clock)())
        .await?
        .ok_or(ApiError::InvalidLink)?;
    Ok(reset_page(
        page,
        req,
        token,
        &user.username,
        None,
        StatusCode::OK,
    ))
}

async fn reset_submit<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    page: &Page<'_>,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let params = page.checked_form(req)?;
    let token = pages::first(&params, "token").unwrap_or("");
    let new_password = pages::first(&params, "new_password").unwrap_or("");
    let now = (state.clock)();
    match recovery::reset(&state.store, resetting(state, req), token, new_password, now).await {
        Ok(_) => Ok(page.message(
            StatusCode::OK,
            "Password changed",
            "Your password has been reset and every session signed in before has ended. Sign in with the new password.",
            &[],
        )),
        Err(e @ ApiError::Validation { .. }) => {
            let username = pages::first(&params, "username").unwrap_or("");
            let message = e.to_string();
            Ok(reset_page(page, req, token, username, Some(&message), e.status()))
        }
        Err(e) => Err(e),
    }
}

async fn verify_form<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    page: &Page<'_>,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let params = pages::parameters(req)?;
    let token = pages::first(&params, "token").unwrap_or("");
    if !email::link_alive(&state.store, token, (state.clock)()).await? {
        return Err(ApiError::InvalidLink);
    }
    Ok(page.form_page(req, StatusCode::OK, None, |csrf| {
        pages::render(&VerifyPage {
            app_name: page.app_name,
            stylesheet: &page.stylesheet,
            action: &page.action,
            csrf,
            token,
        })
    }))
}

async fn verify_submit<A: stores::Account, S: Signer>(
    state: &AccountState<A, S>,
    page: &Page<'_>,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let params = page.checked_form(req)?;
    let token = pages::first(&params, "token").unwrap_or("");
    let address = email::verify(&state.store, token, (state.clock)()).await?;
    Ok(page.message(
        StatusCode::OK,
        "Address verified",
        &format!("{address} is now the verified address of your account."),
        &[],
    ))
}
