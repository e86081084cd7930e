//! Authorization codes: a single-use ticket ([`TicketKind::AuthorizationCode`]) that the
//! hosted login page issues after a sign-in and the token endpoint redeems once, bound to the
//! client, the exact redirect URI and the PKCE challenge of the authorization request. The code
//! is 256 random bits; the store keeps only its SHA-256, so a copy of the store redeems nothing.

use serde::{Deserialize, Serialize};

use super::pkce;
use crate::store::tickets;
use crate::store::{StoreError, TicketKind, TicketStore};

/// How long a code may wait for its exchange (RFC 6749 §4.1.2 recommends at most 10 minutes;
/// a browser redirect and one request need seconds).
pub const CODE_SECONDS: u64 = 60;

/// What a code stands for: the sign-in it ends and the request it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeGrant {
    /// The client it was issued to.
    pub client_id: String,
    /// The redirect URI of the authorization request, exactly.
    pub redirect_uri: String,
    /// The PKCE `S256` challenge.
    pub code_challenge: String,
    /// The scopes granted (space-separated).
    pub scope: String,
    /// The OpenID Connect `nonce`, returned in the id_token.
    pub nonce: Option<String>,
    /// The account (`sub`).
    pub user_id: String,
    /// The account's key, to find its record.
    pub username_key: String,
    /// The account's name as registered (`preferred_username`).
    pub username: String,
    /// The session the sign-in started (`sid`).
    pub sid: String,
    /// When the user signed in (`auth_time`), seconds since the epoch.
    pub auth_time: u64,
    /// How (`amr`, RFC 8176).
    pub amr: Vec<String>,
    /// The account's session epoch at the sign-in: the session the exchange starts is under it,
    /// and the exchange holds only while the account and the browser session still are.
    #[serde(default)]
    pub epoch: u64,
    /// The account's full name at the sign-in (`name`, with `profile`).
    #[serde(default)]
    pub full_name: Option<String>,
    /// The client's secret's SHA-256 when it is confidential (as registered when the code was
    /// issued): the exchange authenticates the client without reading it again.
    #[serde(default)]
    pub client_secret_hash: Option<String>,
}

/// Why a code is not exchanged: every case is one `invalid_grant` at the token endpoint.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    /// Unknown, spent, expired, of another client or redirect URI, or a wrong verifier.
    #[error("the authorization code is invalid, expired or spent")]
    Invalid,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Issues a code for `grant` at `now`: the code to put in the redirect.
pub async fn issue<T: TicketStore>(
    store: &T,
    grant: &CodeGrant,
    now: u64,
) -> Result<String, StoreError> {
    tickets::issue(
        store,
        TicketKind::AuthorizationCode,
        grant,
        CODE_SECONDS,
        now,
    )
    .await
}

/// The grant `code` stands for, if it is a live code, left in place (the exchange takes it
/// with the session it starts, [`crate::store::SessionStore::start_code_session`]).
pub async fn peek<T: TicketStore>(
    store: &T,
    code: &str,
    now: u64,
) -> Result<Option<CodeGrant>, StoreError> {
    tickets::peek(store, TicketKind::AuthorizationCode, code, now).await
}

/// Whether `grant` was issued for `client_id` at `redirect_uri`, and `verifier` is the PKCE
/// verifier of its challenge.
pub fn binds(grant: &CodeGrant, client_id: &str, redirect_uri: &str, verifier: &str) -> bool {
    grant.client_id == client_id
        && grant.redirect_uri == redirect_uri
        && pkce::verifies(&grant.code_challenge, verifier)
}

/// Redeems `code` for `client_id` at `redirect_uri` with the PKCE `verifier`: spent by the first
/// attempt, right or wrong (a code that reached the wrong hands is dead either way).
pub async fn redeem<T: TicketStore>(
    store: &T,
    code: &str,
    client_id: &str,
    redirect_uri: &str,
    verifier: &str,
    now: u64,
) -> Result<CodeGrant, CodeError> {
    let grant: CodeGrant = tickets::take(store, TicketKind::AuthorizationCode, code, now)
        .await?
        .ok_or(CodeError::Invalid)?;
    if !binds(&grant, client_id, redirect_uri, verifier) {
        return Err(CodeError::Invalid);
    }
    Ok(grant)
}
