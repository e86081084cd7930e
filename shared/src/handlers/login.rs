//! `POST /login`, the token endpoint (RFC 6749): the password grant (the OAuth2 form, or JSON,
//! with or without `grant_type`), the refresh grant (`grant_type=refresh_token`) and the
//! authorization code grant (`grant_type=authorization_code`, with PKCE). All answer 200
//! {access_token, token_type, expires_in, refresh_token}; a code grant adds `scope`, and
//! `id_token` with `openid`, and has a refresh token only with `offline_access`.
//!
//! Code grant: the client authenticates (`none` with `client_id` for a public client,
//! `client_secret_basic` or `client_secret_post` for a confidential one: a wrong secret is 401
//! `invalid_client`); the code is redeemed once ([`code::redeem`]); a second redemption is
//! `invalid_grant` and ends the session the first one started.
//!
//! Password grant: the one password check ([`password::check`]: unknown users and wrong
//! passwords indistinguishable, the throttle's claim before bcrypt, 429 during a wait); a
//! success starts a session ([`session::start`]).
//!
//! Second factor: for an account with TOTP on, a right password answers 403 `mfa_required` with
//! an `mfa_token` and no token; the second step is `grant_type=`[`MFA_OTP_GRANT`] (`mfa_token`,
//! `otp`) or [`MFA_RECOVERY_GRANT`] (`mfa_token`, `recovery_code`), whose session carries `amr`
//! `["pwd", "otp", "mfa"]` ([`mfa::redeem`]: every refusal is one 400 `invalid_grant`).
//!
//! Refresh grant: rotates the session's refresh token ([`session::refresh`]); every refusal is
//! one 400 `invalid_grant`.

use lambda_http::{Body, Request, Response};

use crate::authn::mfa::{self, Continues, Proof};
use crate::authn::password::{self, Checker, Purpose};
use crate::error::ApiError;
use crate::http::{self, BodyFormat, Fields};
use crate::metrics::{self, Outcome};
use crate::oauth::client::{self, Client};
use crate::oauth::code::{self, CodeGrant};
use crate::session::{self, Grant};
use crate::signer::Signer;
use crate::state::LoginState;
use crate::state::stores;
use crate::store::tickets;
use crate::store::{ClientStore, CodeSession, Credentials, Follow, Holder, TicketKind};
use crate::throttle;

/// Handles one request; every failure becomes its problem response.
pub async fn handle<C: stores::Login, S: Signer>(
    state: &LoginState<C, S>,
    req: Request,
) -> Response<Body> {
    token(state, req)
        .await
        .unwrap_or_else(ApiError::into_response)
}

async fn token<C: stores::Login, S: Signer>(
    state: &LoginState<C, S>,
    req: Request,
) -> Result<Response<Body>, ApiError> {
    http::require_method(&req, "POST")?;
    let iss = http::issuer(&state.issuer, &req)?;
    let fields = http::read_fields(&req, &[BodyFormat::Form, BodyFormat::Json])?;
    let grant = match fields.optional_string("grant_type")? {
        None | Some("password") => password_grant(state, &fields, http::source_ip(&req)).await?,
        Some("refresh_token") => refresh_grant(state, &fields, &req).await?,
        Some("authorization_code") => return code_grant(state, &fields, &req, &iss).await,
        Some(MFA_OTP_GRANT) => {
            second_factor(state, &fields, Proof::Otp(fields.string("otp")?)).await?
        }
        Some(MFA_RECOVERY_GRANT) => {
            let code = fields.string("recovery_code")?;
            second_factor(state, &fields, Proof::RecoveryCode(code)).await?
        }
        Some(_) => {
            return Err(ApiError::UnsupportedGrantType(
                "\"password\", \"refresh_token\", \"authorization_code\" and the two MFA grants are accepted",
            ));
        }
    };
    super::token_response(&state.tokens, &iss, &grant, None, (state.clock)()).await
}

async fn password_grant<C: stores::Login, S: Signer>(
    state: &LoginState<C, S>,
    fields: &Fields,
    source_ip: Option<&str>,
) -> Result<Grant, ApiError> {
    let username = fields.string("username")?;
    let password = fields.string("password")?;
    let now = (state.clock)();
    let source = source_ip.unwrap_or(throttle::UNKNOWN_SOURCE);
    let checker = Checker {
        hasher: &state.hasher,
        limits: &state.throttle,
    };
    let purpose = Purpose::Login { username };
    // What the right password starts, written with the throttle's give-back: a second factor
    // first, when the account has one (an mfa_token), else the session. The one place a
    // password login ends.
    let follow = |user: &Credentials| {
        Ok(if user.totp_enabled {
            let (mfa_token, ticket) = mfa::challenge_ticket(user, Continues::PasswordGrant, now)?;
            (Follow::Ticket(ticket), Err(mfa_token))
        } else {
            let (record, grant) = session::prepare_password(user, &state.sessions, false, now);
            (Follow::Session(Box::new(record)), Ok(grant))
        })
    };
    // Unknown names and wrong passwords: one 401 (`From<Refusal>`).
    let (_, started) = password::check_then(
        &state.store,
        checker,
        purpose,
        password,
        source,
        now,
        follow,
    )
    .await?;
    let grant = started.map_err(|mfa_token| ApiError::MfaRequired { mfa_token })?;
    session::started(&grant);
    Ok(grant)
}

/// The MFA grant with a TOTP code.
pub const MFA_OTP_GRANT: &str = "urn:jwt-auth:grant-type:mfa-otp";
/// The MFA grant with a recovery code.
pub const MFA_RECOVERY_GRANT: &str = "urn:jwt-auth:grant-type:mfa-recovery-code";

/// The second step of a password login: the `mfa_token` with `proof`.
async fn second_factor<C: stores::Login, S: Signer>(
    state: &LoginState<C, S>,
    fields: &Fields,
    proof: Proof<'_>,
) -> Result<Grant, ApiError> {
    let token = fields.string("mfa_token")?;
    let now = (state.clock)();
    let key = mfa::data_key(state.data_key.as_ref())?;
    // The session that passed the second factor, started with the token's take.
    let follow = |user: &Credentials| {
        let (record, grant) = session::prepare_password(user, &state.sessions, true, now);
        Ok((Follow::Session(Box::new(record)), grant))
    };
    let (_, grant) = mfa::redeem_then(
        &state.store,
        key,
        &state.throttle,
        token,
        &Continues::PasswordGrant,
        proof,
        now,
        follow,
    )
    .await?;
    session::started(&grant);
    Ok(grant)
}

async fn refresh_grant<C: stores::Login, S: Signer>(
    state: &LoginState<C, S>,
    fields: &Fields,
    req: &Request,
) -> Result<Grant, ApiError> {
    let presented = fields
        .optional_string("refresh_token")
        .map_err(|_| ApiError::BadRequest("refresh_token must be a string".into()))?
        .ok_or_else(|| ApiError::BadRequest("refresh_token is required".into()))?;
    let client = presenting_client(&state.store, fields, req).await?;
    let seal_key = state.tokens.seal_key().await?;
    let grant = session::refresh(
        &state.store,
        presented,
        client.as_ref().map(|c| c.client_id.as_str()),
        &state.sessions,
        &seal_key,
        (state.clock)(),
    )
    .await?;
    metrics::record(Outcome::Refreshed);
    Ok(grant)
}

/// The client presenting a token, if it names one: a registered client, authenticated as its
/// kind requires (a wrong or missing secret is `invalid_client`). A `client_id` that names no
/// registered client and comes without a secret is no client (the password grant's callers send
/// any id they like): the tokens of a client's session are then refused.
pub(crate) async fn presenting_client<C: ClientStore>(
    store: &C,
    fields: &Fields,
    req: &Request,
) -> Result<Option<Client>, ApiError> {
    let Some((client_id, secret)) = client_credentials(fields, req)? else {
        return Ok(None);
    };
    let client = if client::is_client_id(&client_id) {
        store.client(&client_id).await?
    } else {
        None
    };
    match (client, secret) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(ApiError::InvalidClient),
        (Some(client), secret) => authenticate(client, secret.as_deref()).map(Some),
    }
}

/// A client's credentials: HTTP Basic (RFC 6749 §2.3.1: form-encoded id and secret), or
/// `client_id` and `client_secret` in the body; both at once is `invalid_request`.
fn client_credentials(
    fields: &Fields,
    req: &Request,
) -> Result<Option<(String, Option<String>)>, ApiError> {
    let body_id = fields.optional_string("client_id")?;
    // An empty secret is none (libraries send `client_secret=` for public clients).
    let body_secret = fields
        .optional_string("client_secret")?
        .filter(|s| !s.is_empty());
    let basic = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then(|| rest.trim())
        });
    let Some(basic) = basic else {
        return Ok(body_id.map(|id| (id.to_string(), body_secret.map(str::to_string))));
    };
    if body_secret.is_some() {
        return Err(ApiError::BadRequest(
            "Authenticate the client one way: HTTP Basic or client_secret, not both".into(),
        ));
    }
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic)
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .ok_or(ApiError::InvalidClient)?;
    let (id, secret) = decoded.split_once(':').ok_or(ApiError::InvalidClient)?;
    let decode = |part: &str| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={part}"))
            .ok()
            .and_then(|mut v| v.pop())
            .map(|(_, v)| v)
            .ok_or(ApiError::InvalidClient)
    };
    let (id, secret) = (decode(id)?, decode(secret)?);
    if body_id.is_some_and(|b| b != id) {
        return Err(ApiError::InvalidClient);
    }
    Ok(Some((id, Some(secret).filter(|s| !s.is_empty()))))
}

/// `client`, if `secret` is what its kind requires: a confidential client's own secret, and
/// none for a public client.
fn authenticate(client: Client, secret: Option<&str>) -> Result<Client, ApiError> {
    let ok = match (client.confidential, secret) {
        (true, Some(secret)) => client.verify_secret(secret),
        (false, None) => true,
        _ => false,
    };
    if ok {
        Ok(client)
    } else {
        Err(ApiError::InvalidClient)
    }
}

/// `grant_type=authorization_code`: the code read (left in place), the client authenticated
/// against what the code carries of it (a wrong secret spends nothing), then the code taken with
/// the session it starts, in one step that holds only while the account and the browser session
/// are still those of the sign-in.
async fn code_grant<C: stores::Login, S: Signer>(
    state: &LoginState<C, S>,
    fields: &Fields,
    req: &Request,
    iss: &str,
) -> Result<Response<Body>, ApiError> {
    let (client_id, secret) = client_credentials(fields, req)?.ok_or(ApiError::InvalidClient)?;
    let required = |name: &str| {
        fields
            .optional_string(name)?
            .ok_or_else(|| ApiError::BadRequest(format!("{name} is required")))
    };
    let presented = required("code")?;
    let redirect_uri = required("redirect_uri")?;
    let verifier = required("code_verifier")?;
    let now = (state.clock)();
    let sid = session::code_session_sid(presented);
    let spent = async || -> Result<Response<Body>, ApiError> {
        // A spent code presented again: whoever holds it, the session its first redemption
        // started is no longer safe (RFC 6749 §4.1.2).
        state.store.end_session(&sid).await?;
        Err(ApiError::InvalidCode)
    };
    let Some(grant) = code::peek(&state.store, presented, now).await? else {
        // Unknown, spent or expired. A client that does not authenticate hears that first.
        presenting_client(&state.store, fields, req)
            .await?
            .ok_or(ApiError::InvalidClient)?;
        return spent().await;
    };
    if grant.client_id != client_id {
        // Another client's code: that client must authenticate, and the code is spent.
        presenting_client(&state.store, fields, req)
            .await?
            .ok_or(ApiError::InvalidClient)?;
        tickets::take::<_, CodeGrant>(&state.store, TicketKind::AuthorizationCode, presented, now)
            .await?;
        return Err(ApiError::InvalidCode);
    }
    authenticate_code_client(&grant, secret.as_deref())?;
    if !code::binds(&grant, &client_id, redirect_uri, verifier) {
        // Spent by the first attempt, right or wrong.
        tickets::take::<_, CodeGrant>(&state.store, TicketKind::AuthorizationCode, presented, now)
            .await?;
        return Err(ApiError::InvalidCode);
    }
    let user = code_account(&grant);
    let holder = Holder::Client {
        client_id: grant.client_id.clone(),
        scope: grant.scope.clone(),
    };
    let mfa = grant.amr.iter().any(|m| m == "mfa");
    let (record, session_grant) =
        session::prepare_code(&user, &state.sessions, holder, presented, mfa, now);
    let hash = tickets::secret_hash(presented);
    match state
        .store
        .start_code_session(&hash, &record, &grant.sid, now)
        .await?
    {
        CodeSession::Started => {}
        CodeSession::Spent => return spent().await,
        CodeSession::Refused => return Err(ApiError::InvalidCode),
    }
    session::started(&session_grant);
    metrics::record(Outcome::CodeExchanged);
    super::token_response(
        &state.tokens,
        iss,
        &session_grant,
        Some(super::IdToken {
            grant: &grant,
            full_name: grant.full_name.as_deref(),
        }),
        now,
    )
    .await
}

/// The client of `grant`, authenticated as it was registered when the code was issued: a
/// confidential client by its secret, a public one by presenting none.
fn authenticate_code_client(grant: &CodeGrant, secret: Option<&str>) -> Result<(), ApiError> {
    let client = Client {
        client_id: grant.client_id.clone(),
        redirect_uris: Vec::new(),
        post_logout_redirect_uris: Vec::new(),
        confidential: grant.client_secret_hash.is_some(),
        secret_hash: grant.client_secret_hash.clone(),
        created_at: 0,
    };
    authenticate(client, secret).map(|_| ())
}

/// The account a code names, as the sign-in saw it: what a session is started from (its id,
/// key, name and epoch); the redemption's conditional write proves it is still so.
fn code_account(grant: &CodeGrant) -> crate::store::Credentials {
    crate::store::Credentials {
        id: grant.user_id.clone(),
        username_key: grant.username_key.clone(),
        username: grant.username.clone(),
        password_hash: String::new(),
        failed_logins: 0,
        last_failed_at: None,
        session_epoch: grant.epoch,
        email: None,
        email_verified: false,
        totp_secret: None,
        totp_enabled: false,
        totp_last_step: 0,
        full_name: grant.full_name.clone(),
    }
}
