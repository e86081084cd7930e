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

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{
    CredentialStore, Credentials, PreviousGeneration, ProfileWithSession, SessionLife,
    SessionRecord, SessionStore, StoreError,
};

const SID_BYTES: usize = 16;
const SECRET_BYTES: usize = 32;
const TAG_BYTES: usize = 16;
const TOKEN_BYTES: usize = SID_BYTES + 4 + SECRET_BYTES + TAG_BYTES;
/// Longest refresh token looked at (its base64url length).
pub const REFRESH_TOKEN_CHARS: usize = (TOKEN_BYTES * 4).div_ceil(3);
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
}

/// A parsed refresh token.
struct RefreshToken {
    sid: [u8; SID_BYTES],
    generation: u32,
    secret: [u8; SECRET_BYTES],
    tag: [u8; TAG_BYTES],
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the OS random number generator is available");
    bytes
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

impl RefreshToken {
    fn new(sid: [u8; SID_BYTES], generation: u32, family_key: &[u8]) -> Self {
        Self::with_secret(sid, generation, random(), family_key)
    }

    fn with_secret(
        sid: [u8; SID_BYTES],
        generation: u32,
        secret: [u8; SECRET_BYTES],
        family_key: &[u8],
    ) -> Self {
        let mut token = RefreshToken {
            sid,
            generation,
            secret,
            tag: [0; TAG_BYTES],
        };
        token.tag = token.expected_tag(family_key);
        token
    }

    fn parse(text: &str) -> Option<Self> {
        if text.len() != REFRESH_TOKEN_CHARS {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let bytes: [u8; TOKEN_BYTES] = bytes.try_into().ok()?;
        let (sid, rest) = bytes.split_at(SID_BYTES);
        let (generation, rest) = rest.split_at(4);
        let (secret, tag) = rest.split_at(SECRET_BYTES);
        Some(RefreshToken {
            sid: sid.try_into().ok()?,
            generation: u32::from_be_bytes(generation.try_into().ok()?),
            secret: secret.try_into().ok()?,
            tag: tag.try_into().ok()?,
        })
    }

    fn bytes(&self) -> Vec<u8> {
        [
            &self.sid[..],
            &self.generation.to_be_bytes(),
            &self.secret,
            &self.tag,
        ]
        .concat()
    }

    fn encode(&self) -> String {
        b64(&self.bytes())
    }

    fn sid(&self) -> String {
        hex(&self.sid)
    }

    /// What the store keeps of this token.
    fn hash(&self) -> String {
        b64(&Sha256::digest(self.bytes()))
    }

    fn expected_tag(&self, family_key: &[u8]) -> [u8; TAG_BYTES] {
        let mac = hmac(
            family_key,
            &[&self.sid, &self.generation.to_be_bytes(), &self.secret],
        );
        mac[..TAG_BYTES].try_into().expect("a prefix of the MAC")
    }

    /// Whether this token was issued for the session whose family key this is.
    fn is_genuine(&self, family_key: &[u8]) -> bool {
        self.expected_tag(family_key).ct_eq(&self.tag).into()
    }

    /// The one-time pad that seals the successor's secret: only this token's holder can derive it.
    fn successor_pad(&self) -> [u8; SECRET_BYTES] {
        hmac(
            &self.secret,
            &[
                b"refresh-successor",
                &self.sid,
                &self.generation.wrapping_add(1).to_be_bytes(),
            ],
        )
    }

    fn seal_successor(&self, successor: &RefreshToken) -> String {
        let pad = self.successor_pad();
        let sealed: Vec<u8> = successor
            .secret
            .iter()
            .zip(pad)
            .map(|(s, p)| s ^ p)
            .collect();
        b64(&sealed)
    }

    fn unseal_successor(&self, sealed: &str, family_key: &[u8]) -> Option<RefreshToken> {
        let sealed = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        let sealed: [u8; SECRET_BYTES] = sealed.try_into().ok()?;
        let mut secret = self.successor_pad();
        for (s, x) in secret.iter_mut().zip(sealed) {
            *s ^= x;
        }
        Some(RefreshToken::with_secret(
            self.sid,
            self.generation.wrapping_add(1),
            secret,
            family_key,
        ))
    }
}

/// Starts a session for `user` (just authenticated): stores its record, returns its first token.
pub async fn start<S: SessionStore>(
    store: &S,
    user: &Credentials,
    limits: &SessionLimits,
    now: u64,
) -> Result<Grant, StoreError> {
    let family_key: [u8; 32] = random();
    let token = RefreshToken::new(random(), 1, &family_key);
    let record = SessionRecord {
        sid: token.sid(),
        username_key: user.username_key.clone(),
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
    };
    store.create_session(&record, now).await?;
    tracing::info!(user_id = %user.id, session_id = %record.sid, "session started");
    Ok(Grant {
        user_id: user.id.clone(),
        username: user.username.clone(),
        sid: record.sid,
        refresh_token: token.encode(),
    })
}

/// The refresh grant: rotates the session of `presented`, or answers a retry of the previous
/// generation with the same successor, or ends the session on reuse.
pub async fn refresh<S: SessionStore + CredentialStore>(
    store: &S,
    presented: &str,
    limits: &SessionLimits,
    now: u64,
) -> Result<Grant, SessionError> {
    let token = RefreshToken::parse(presented).ok_or(SessionError::Invalid)?;
    let sid = token.sid();
    for _ in 0..ROTATION_TRIES {
        let record = store.session(&sid).await?.ok_or(SessionError::Invalid)?;
        let family_key = URL_SAFE_NO_PAD
            .decode(&record.family_key)
            .map_err(|_| StoreError::Fault("session family key is not base64url".into()))?;
        if !token.is_genuine(&family_key) || now >= record.life.expires_at {
            return Err(SessionError::Invalid);
        }
        let hash = token.hash();
        if token.generation == record.generation && ct_eq(&hash, &record.current_hash) {
            let user = open_account(store, &record).await?;
            let successor = RefreshToken::new(token.sid, token.generation + 1, &family_key);
            let rotated = SessionRecord {
                generation: successor.generation,
                current_hash: successor.hash(),
                previous: Some(PreviousGeneration {
                    hash,
                    sealed_next: token.seal_successor(&successor),
                    rotated_at: now,
                }),
                life: SessionLife {
                    expires_at: limits.expires_at(record.created_at, now),
                    ..record.life.clone()
                },
                ..record.clone()
            };
            if store.rotate_session(&record, &rotated).await? {
                tracing::info!(user_id = %user.id, session_id = %sid, generation = successor.generation, "session rotated");
                return Ok(grant(user, sid, &successor));
            }
            // A concurrent refresh rotated first: read again, this token is now the previous one.
            continue;
        }
        let previous = record.previous.as_ref();
        let is_previous = token.generation.checked_add(1) == Some(record.generation)
            && previous.is_some_and(|p| ct_eq(&hash, &p.hash));
        if let Some(previous) = previous.filter(|_| is_previous)
            && now.saturating_sub(previous.rotated_at) <= limits.reuse
        {
            let successor = token
                .unseal_successor(&previous.sealed_next, &family_key)
                .filter(|s| ct_eq(&s.hash(), &record.current_hash))
                .ok_or(SessionError::Invalid)?;
            let user = open_account(store, &record).await?;
            tracing::info!(user_id = %user.id, session_id = %sid, "rotated refresh token retried within the reuse interval");
            return Ok(grant(user, sid, &successor));
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

/// Ends the session `presented` belongs to, if it is a genuine token of a stored session; any
/// other input changes nothing (RFC 7009: the client cannot act on the difference).
pub async fn end_by_token<S: SessionStore>(store: &S, presented: &str) -> Result<(), StoreError> {
    let Some(token) = RefreshToken::parse(presented) else {
        return Ok(());
    };
    let sid = token.sid();
    let Some(record) = store.session(&sid).await? else {
        return Ok(());
    };
    let genuine = URL_SAFE_NO_PAD
        .decode(&record.family_key)
        .is_ok_and(|key| token.is_genuine(&key));
    if genuine {
        store.end_session(&sid).await?;
        tracing::info!(user_id = %record.life.user_id, session_id = %sid, "session ended");
    }
    Ok(())
}

/// Whether the session of an access token for `user_id` is still open.
pub fn is_open(found: &ProfileWithSession, user_id: &str, now: u64) -> bool {
    found.session.as_ref().is_some_and(|s| {
        s.user_id == user_id && s.epoch == found.account_epoch && now < s.expires_at
    })
}

/// The account of `record`, if it still exists under the same id and the session's epoch.
async fn open_account<S: CredentialStore>(
    store: &S,
    record: &SessionRecord,
) -> Result<Credentials, SessionError> {
    store
        .credentials(&record.username_key)
        .await?
        .filter(|u| u.id == record.life.user_id && u.session_epoch == record.life.epoch)
        .ok_or(SessionError::Invalid)
}

fn grant(user: Credentials, sid: String, token: &RefreshToken) -> Grant {
    Grant {
        user_id: user.id,
        username: user.username,
        sid,
        refresh_token: token.encode(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_url_safe_and_opaque() {
        let key = [7u8; 32];
        let token = RefreshToken::new(random(), 3, &key);
        let text = token.encode();
        assert_eq!(text.len(), REFRESH_TOKEN_CHARS);
        assert!(
            text.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(text.matches('.').count(), 0, "not a JWT");
        let back = RefreshToken::parse(&text).unwrap();
        assert_eq!(
            (back.sid, back.generation, back.secret),
            (token.sid, 3, token.secret)
        );
        assert!(back.is_genuine(&key));
        assert!(!back.is_genuine(&[8u8; 32]));
    }

    #[test]
    fn a_mangled_token_is_not_genuine_and_garbage_does_not_parse() {
        let key = [1u8; 32];
        let text = RefreshToken::new(random(), 1, &key).encode();
        let mut bytes = URL_SAFE_NO_PAD.decode(&text).unwrap();
        bytes[SID_BYTES + 4] ^= 1;
        let mangled = RefreshToken::parse(&b64(&bytes)).unwrap();
        assert!(!mangled.is_genuine(&key));
        for garbage in [
            "",
            "abc",
            &"A".repeat(REFRESH_TOKEN_CHARS + 1),
            &"*".repeat(REFRESH_TOKEN_CHARS),
        ] {
            assert!(RefreshToken::parse(garbage).is_none(), "{garbage}");
        }
    }

    #[test]
    fn only_the_previous_token_unseals_its_successor() {
        let key = [2u8; 32];
        let sid = random();
        let previous = RefreshToken::new(sid, 4, &key);
        let successor = RefreshToken::new(sid, 5, &key);
        let sealed = previous.seal_successor(&successor);
        let opened = previous.unseal_successor(&sealed, &key).unwrap();
        assert_eq!(opened.encode(), successor.encode());
        let other = RefreshToken::new(sid, 4, &key);
        assert_ne!(
            other.unseal_successor(&sealed, &key).unwrap().hash(),
            successor.hash()
        );
    }

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
