//! Sessions: one per login, carried by an opaque refresh token that rotates at every use.
//!
//! A refresh token is base64url(`sid` 16 bytes ‖ generation 4 bytes ‖ secret 32 bytes ‖ tag 16
//! bytes): the secret comes from the OS CSPRNG, and the tag is an HMAC under the session's family
//! key. The store keeps only SHA-256 hashes of the current and the previous generation, so a copy
//! of it holds no token that works:
//! - the current generation refreshes: one conditional write rotates it (compare-and-set on the
//!   generation and hash), so concurrent refreshes make exactly one new generation;
//! - the previous generation, within [`SessionLimits::reuse`] seconds of its rotation, answers
//!   with the same successor (tabs racing, a retry after a lost answer): the successor's secret is
//!   stored sealed under a key derived from the previous token, which only its holder has;
//! - any older generation, or the previous one later, is reuse (RFC 9700 §4.14): the session ends.
//!   The tag proves such a token was really issued, so a guessed or mangled token changes nothing.
//!
//! Ending: a session is refused once its record is gone (logout, reuse), its time is up (idle or
//! absolute limit), or its account's epoch moved on (global logout, password change).

mod bearer;
mod token;

pub use bearer::is_open;
pub use token::REFRESH_TOKEN_CHARS;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::store::{
    CredentialStore, Credentials, Holder, PreviousGeneration, SessionLife, SessionRecord,
    SessionStore, StoreError,
};
use token::{RefreshToken, b64, ct_eq, random};

/// Rotations lost to concurrent ones before giving up (each loss re-reads the record).
const ROTATION_TRIES: usize = 3;

/// How long sessions last and how long a rotated refresh token stays good for a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// `AUTH_REFRESH_IDLE_SECONDS`: a session ends this long after its last refresh.
    pub idle: u64,
    /// `AUTH_SESSION_MAX_SECONDS`: and at the latest this long after its login.
    pub max: u64,
    /// `AUTH_REFRESH_REUSE_SECONDS`: a rotated token may be presented again this long.
    pub reuse: u64,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            idle: 7 * 24 * 3600,
            max: 30 * 24 * 3600,
            reuse: 10,
        }
    }
}

impl SessionLimits {
    fn expires_at(&self, created_at: u64, refreshed_at: u64) -> u64 {
        refreshed_at
            .saturating_add(self.idle)
            .min(created_at.saturating_add(self.max))
    }
}

/// A refresh grant that cannot be honoured.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Unknown, malformed, expired, revoked or reused: one answer for all (`invalid_grant`).
    #[error("invalid refresh token")]
    Invalid,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new or rotated session, as the token endpoint answers it.
#[derive(Debug)]
pub struct Grant {
    /// The account's id (`sub`).
    pub user_id: String,
    /// The account's name (`preferred_username`).
    pub username: String,
    /// The session id (`sid`).
    pub sid: String,
    /// The refresh token to hand out.
    pub refresh_token: String,
    /// Who holds it: the client and scopes of a code grant's session.
    pub holder: Holder,
    /// Whether the session's sign-in passed a second factor.
    pub mfa: bool,
}

/// Starts a password-grant session for `user` (just authenticated): stores its record, returns
/// its first token.
pub async fn start<S: SessionStore>(
    store: &S,
    user: &Credentials,
    limits: &SessionLimits,
    now: u64,
) -> Result<Grant, StoreError> {
    start_for(store, user, limits, Holder::Password, random(), false, now).await
}

/// Starts a password-grant session for `user`, who also passed a second factor.
pub async fn start_with_second_factor<S: SessionStore>(
    store: &S,
    user: &Credentials,
    limits: &SessionLimits,
    now: u64,
) -> Result<Grant, StoreError> {
    start_for(store, user, limits, Holder::Password, random(), true, now).await
}

/// Starts a session of `holder` with the id `sid` for `user`: a browser's (its token is the
/// cookie), or a client's, whose id the code grant derives from the code ([`code_session_id`]).
pub async fn start_for<S: SessionStore>(
    store: &S,
    user: &Credentials,
    limits: &SessionLimits,
    holder: Holder,
    sid: [u8; token::SID_BYTES],
    mfa: bool,
    now: u64,
) -> Result<Grant, StoreError> {
    let (record, grant) = prepare(user, limits, holder, sid, mfa, now);
    store.create_session(&record, now).await?;
    started(&grant);
    Ok(grant)
}

/// A password-grant session for `user` (`mfa`: who also passed a second factor), not yet
/// stored: the record to store (with the login's other writes) and its first token.
pub fn prepare_password(
    user: &Credentials,
    limits: &SessionLimits,
    mfa: bool,
    now: u64,
) -> (SessionRecord, Grant) {
    prepare(user, limits, Holder::Password, random(), mfa, now)
}

/// A code grant's session for `user`, not yet stored: its id derives from `code`
/// ([`code_session_id`]), and it is started with the code's redemption.
pub fn prepare_code(
    user: &Credentials,
    limits: &SessionLimits,
    holder: Holder,
    code: &str,
    mfa: bool,
    now: u64,
) -> (SessionRecord, Grant) {
    prepare(user, limits, holder, code_session_id(code), mfa, now)
}

/// The log line of a session that was stored.
pub fn started(grant: &Grant) {
    tracing::info!(user_id = %grant.user_id, session_id = %grant.sid, holder = ?grant.holder, "session started");
}

fn prepare(
    user: &Credentials,
    limits: &SessionLimits,
    holder: Holder,
    sid: [u8; token::SID_BYTES],
    mfa: bool,
    now: u64,
) -> (SessionRecord, Grant) {
    let family_key: [u8; 32] = random();
    let token = RefreshToken::new(sid, 1, &family_key);
    let record = SessionRecord {
        sid: token.sid(),
        username_key: user.username_key.clone(),
        username: Some(user.username.clone()),
        life: SessionLife {
            user_id: user.id.clone(),
            epoch: user.session_epoch,
            expires_at: limits.expires_at(now, now),
        },
        family_key: b64(&family_key),
        generation: 1,
        current_hash: token.hash(),
        previous: None,
        created_at: now,
        holder,
        mfa,
    };
    let grant = Grant {
        user_id: user.id.clone(),
        username: user.username.clone(),
        sid: record.sid.clone(),
        refresh_token: token.encode(),
        holder: record.holder.clone(),
        mfa: record.mfa,
    };
    (record, grant)
}

/// The id of the session that redeeming `code` starts: derived from the code, so a second
/// redemption (the code was stolen, or replayed) finds and ends the session of the first
/// without any record of it (RFC 6749 §4.1.2, RFC 9700 §4.2.4). Unpredictable without the code.
pub fn code_session_id(code: &str) -> [u8; token::SID_BYTES] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"jwt-auth code session v1\0")
        .chain_update(code.as_bytes())
        .finalize();
    let mut sid = [0u8; token::SID_BYTES];
    sid.copy_from_slice(&digest[..token::SID_BYTES]);
    sid
}

/// The session id `code_session_id` gives, in the form records and tokens carry it.
pub fn code_session_sid(code: &str) -> String {
    token::sid_string(&code_session_id(code))
}

/// A browser's session on the hosted pages, opened from its cookie.
#[derive(Debug)]
pub struct BrowserSession {
    /// The session id (the id_token's `sid`).
    pub sid: String,
    /// When the user signed in (`auth_time`).
    pub auth_time: u64,
    /// The account, still under the session's id and epoch.
    pub user: Credentials,
    /// Whether its sign-in passed a second factor.
    pub mfa: bool,
}

/// Starts a browser's session for `user`: the cookie's value, and the session.
pub async fn start_browser<S: SessionStore>(
    store: &S,
    user: &Credentials,
    limits: &SessionLimits,
    mfa: bool,
    now: u64,
) -> Result<(String, BrowserSession), StoreError> {
    let grant = start_for(store, user, limits, Holder::Browser, random(), mfa, now).await?;
    let session = BrowserSession {
        sid: grant.sid,
        auth_time: now,
        user: user.clone(),
        mfa,
    };
    Ok((grant.refresh_token, session))
}

/// The browser session `cookie` names, if it is a genuine token of a stored browser session
/// that is still open at `now` and whose account still exists under its id and epoch.
pub async fn open_browser<S: SessionStore + CredentialStore>(
    store: &S,
    cookie: &str,
    now: u64,
) -> Result<Option<BrowserSession>, StoreError> {
    let Some(token) = RefreshToken::parse(cookie) else {
        return Ok(None);
    };
    let Some(record) = store.session(&token.sid()).await? else {
        return Ok(None);
    };
    let genuine = issued_for(&token, &record);
    let current =
        token.generation == record.generation && ct_eq(&token.hash(), &record.current_hash);
    if record.holder != Holder::Browser || !genuine || !current || now >= record.life.expires_at {
        return Ok(None);
    }
    match open_account(store, &record).await {
        Ok(user) => Ok(Some(BrowserSession {
            sid: record.sid,
            auth_time: record.created_at,
            user,
            mfa: record.mfa,
        })),
        Err(SessionError::Invalid) => Ok(None),
        Err(SessionError::Store(e)) => Err(e),
    }
}

/// The refresh grant: rotates the session of `presented`, or answers a retry of the previous
/// generation with the same successor, or ends the session on reuse. `seal_key` is the
/// server-held key of [`crate::token::TokenIssuer::seal_key`].
///
/// `client` is the client that presents it (authenticated when confidential): a client's
/// session refreshes only for that client, a browser's never, the password grant's for anyone.
pub async fn refresh<S: SessionStore + CredentialStore>(
    store: &S,
    presented: &str,
    client: Option<&str>,
    limits: &SessionLimits,
    seal_key: &[u8; 32],
    now: u64,
) -> Result<Grant, SessionError> {
    let token = RefreshToken::parse(presented).ok_or(SessionError::Invalid)?;
    let sid = token.sid();
    for _ in 0..ROTATION_TRIES {
        let record = store.session(&sid).await?.ok_or(SessionError::Invalid)?;
        if !record.holder.may_refresh(client) {
            return Err(SessionError::Invalid);
        }
        let family_key = URL_SAFE_NO_PAD
            .decode(&record.family_key)
            .map_err(|_| StoreError::Fault("session family key is not base64url".into()))?;
        if !token.is_genuine(&family_key) || now >= record.life.expires_at {
            return Err(SessionError::Invalid);
        }
        let hash = token.hash();
        if token.generation == record.generation && ct_eq(&hash, &record.current_hash) {
            let user = holder_of(store, &record).await?;
            let successor = RefreshToken::new(token.sid, token.generation + 1, &family_key);
            let rotated = SessionRecord {
                generation: successor.generation,
                current_hash: successor.hash(),
                previous: Some(PreviousGeneration {
                    hash,
                    sealed_next: token.seal_successor(&successor, seal_key),
                    rotated_at: now,
                }),
                life: SessionLife {
                    expires_at: limits.expires_at(record.created_at, now),
                    ..record.life.clone()
                },
                ..record.clone()
            };
            // Conditional on the account's id and epoch too: a password change, global logout or
            // deletion that lands between the read above and this write wins.
            if store.rotate_session(&record, &rotated).await? {
                tracing::info!(user_id = %user.id, session_id = %sid, generation = successor.generation, "session rotated");
                return Ok(grant(user, sid, &successor, record.holder, record.mfa));
            }
            // A concurrent refresh rotated first: read again, this token is now the previous one.
            continue;
        }
        // Past the interval a sealed successor is never opened again.
        let previous = record.previous.as_ref();
        let is_previous = token.generation.checked_add(1) == Some(record.generation)
            && previous.is_some_and(|p| ct_eq(&hash, &p.hash));
        if let Some(previous) = previous.filter(|_| is_previous)
            && now.saturating_sub(previous.rotated_at) <= limits.reuse
        {
            let successor = token
                .unseal_successor(&previous.sealed_next, &family_key, seal_key)
                .filter(|s| ct_eq(&s.hash(), &record.current_hash))
                .ok_or(SessionError::Invalid)?;
            let user = holder_of(store, &record).await?;
            // The same conditional write as a rotation, changing nothing: it holds only while the
            // generation, the account and its epoch are still the ones read.
            if !store.rotate_session(&record, &record).await? {
                continue;
            }
            tracing::info!(user_id = %user.id, session_id = %sid, "rotated refresh token retried within the reuse interval");
            return Ok(grant(user, sid, &successor, record.holder, record.mfa));
        }
        if token.generation < record.generation {
            // Genuine (the tag holds) but rotated away: presented by someone it was stolen from, or
            // by the thief. Either way the session is no longer safe.
            store.end_session(&sid).await?;
            crate::metrics::record(crate::metrics::Outcome::RefreshReuseDetected);
            tracing::warn!(user_id = %record.life.user_id, session_id = %sid, generation = token.generation, current = record.generation, "refresh token reuse detected; session ended");
        }
        return Err(SessionError::Invalid);
    }
    Err(SessionError::Invalid)
}

/// What revoking a token did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// Its session is ended, or it named none (RFC 7009: the client cannot act on the
    /// difference).
    Done,
    /// It is a genuine token of a session another client holds (or a browser's): nothing ended.
    NotTheClients,
}

/// Ends the session `presented` belongs to, if it is a genuine token of a stored session that
/// `client` may revoke (as it may refresh it); any other input changes nothing.
pub async fn end_by_token<S: SessionStore>(
    store: &S,
    presented: &str,
    client: Option<&str>,
) -> Result<Revoked, StoreError> {
    let Some(token) = RefreshToken::parse(presented) else {
        return Ok(Revoked::Done);
    };
    let sid = token.sid();
    let Some(record) = store.session(&sid).await? else {
        return Ok(Revoked::Done);
    };
    if !issued_for(&token, &record) {
        return Ok(Revoked::Done);
    }
    if !record.holder.may_refresh(client) {
        return Ok(Revoked::NotTheClients);
    }
    store.end_session(&sid).await?;
    tracing::info!(user_id = %record.life.user_id, session_id = %sid, "session ended");
    Ok(Revoked::Done)
}

impl Holder {
    /// Whether `client` may present this session's refresh token.
    fn may_refresh(&self, client: Option<&str>) -> bool {
        match self {
            Holder::Password => true,
            Holder::Browser => false,
            Holder::Client { client_id, .. } => client == Some(client_id.as_str()),
        }
    }
}

/// Whether `token` carries the tag of `record`'s family key (it was really issued for it).
fn issued_for(token: &RefreshToken, record: &SessionRecord) -> bool {
    URL_SAFE_NO_PAD
        .decode(&record.family_key)
        .is_ok_and(|key| token.is_genuine(&key))
}

/// The account of `record`, if it still exists under the same id and the session's epoch, and
/// the session passed the second factor the account has, if any.
async fn open_account<S: CredentialStore>(
    store: &S,
    record: &SessionRecord,
) -> Result<Credentials, SessionError> {
    store
        .credentials(&record.username_key)
        .await?
        .filter(|u| u.id == record.life.user_id && u.session_epoch == record.life.epoch)
        // A session whose sign-in passed no second factor ends once the account has one: it
        // refreshes nothing and answers no single sign-on.
        .filter(|u| record.mfa || !u.totp_enabled)
        .ok_or(SessionError::Invalid)
}

/// Whose session `record` is, for a refresh: its stored id and name, which the rotation's
/// conditional write proves still are the account's (id, epoch, second factor), so no read of
/// the account is needed; a record stored without the name reads the account first.
async fn holder_of<S: CredentialStore>(
    store: &S,
    record: &SessionRecord,
) -> Result<Account, SessionError> {
    Ok(match &record.username {
        Some(username) => Account {
            id: record.life.user_id.clone(),
            username: username.clone(),
        },
        None => {
            let user = open_account(store, record).await?;
            Account {
                id: user.id,
                username: user.username,
            }
        }
    })
}

/// An account's id and name, as a grant carries them.
struct Account {
    id: String,
    username: String,
}

fn grant(user: Account, sid: String, token: &RefreshToken, holder: Holder, mfa: bool) -> Grant {
    Grant {
        user_id: user.id,
        username: user.username,
        sid,
        refresh_token: token.encode(),
        holder,
        mfa,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_ends_at_its_idle_or_absolute_limit_whichever_is_first() {
        let limits = SessionLimits {
            idle: 10,
            max: 25,
            reuse: 2,
        };
        assert_eq!(limits.expires_at(100, 100), 110);
        assert_eq!(limits.expires_at(100, 112), 122);
        assert_eq!(limits.expires_at(100, 120), 125);
    }
}
