//! Single-use tickets: a short-lived secret (an authorization code, a hosted login step, a mail
//! link, an MFA token) is stored as the hash of the secret with a record, and taken once,
//! atomically: of any number of concurrent takes exactly one gets the record. A new flow is a
//! new [`TicketKind`], not a new table or trait. The trait, then the SQLite and the DynamoDB
//! implementation.

use std::future::Future;

use aws_sdk_dynamodb::types::{Delete, Put, ReturnValue};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::StoreError;
use super::counters::TicketWrite;
use super::dynamodb::{DynamoStore, KEY, TTL_ATTRIBUTE, applied, get_n, get_s, n, s, ticket_key};
use super::sqlite::{SqliteStore, classify, int, uint};

/// A new ticket secret: 256 random bits, base64url (43 characters).
pub fn new_secret() -> Result<String, StoreError> {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| StoreError::Fault("the OS random number generator failed".into()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// What the store keeps of a ticket's secret: its SHA-256, base64url.
pub fn secret_hash(secret: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// Whether `value` has the shape of [`new_secret`]'s secrets (anything else is refused before
/// any lookup).
pub fn is_secret(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// Stores `record` (serialised) as a ticket of `kind` living `ttl` seconds: the new secret.
pub async fn issue<T: TicketStore>(
    store: &T,
    kind: TicketKind,
    record: &impl Serialize,
    ttl: u64,
    now: u64,
) -> Result<String, StoreError> {
    let (token, t) = prepare(kind, record, ttl, now)?;
    store
        .put_ticket(t.kind, &t.hash, &t.record, t.expires_at, now)
        .await?;
    Ok(token)
}

/// [`issue`], not yet stored: the secret, and the ticket to store.
pub fn prepare(
    kind: TicketKind,
    record: &impl Serialize,
    ttl: u64,
    now: u64,
) -> Result<(String, TicketWrite), StoreError> {
    let token = new_secret()?;
    let record = serde_json::to_string(record).map_err(|e| StoreError::Fault(e.to_string()))?;
    let ticket = TicketWrite {
        kind,
        hash: secret_hash(&token),
        record,
        expires_at: now + ttl,
    };
    Ok((token, ticket))
}

/// The record of a live ticket of `kind` for `token`, left in place.
pub async fn peek<T: TicketStore, R: for<'de> Deserialize<'de>>(
    store: &T,
    kind: TicketKind,
    token: &str,
    now: u64,
) -> Result<Option<R>, StoreError> {
    if !is_secret(token) {
        return Ok(None);
    }
    let record = store.peek_ticket(kind, &secret_hash(token), now).await?;
    record.map(|r| parse(&r)).transpose()
}

/// The record of a live ticket of `kind` for `token`, taken (of concurrent takes one wins).
pub async fn take<T: TicketStore, R: for<'de> Deserialize<'de>>(
    store: &T,
    kind: TicketKind,
    token: &str,
    now: u64,
) -> Result<Option<R>, StoreError> {
    if !is_secret(token) {
        return Ok(None);
    }
    let record = store.take_ticket(kind, &secret_hash(token), now).await?;
    record.map(|r| parse(&r)).transpose()
}

fn parse<R: for<'de> Deserialize<'de>>(record: &str) -> Result<R, StoreError> {
    serde_json::from_str(record).map_err(|e| StoreError::Fault(format!("ticket record: {e}")))
}

/// What a ticket is for; part of its key, so a secret of one kind never redeems as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TicketKind {
    /// An OAuth authorization code.
    AuthorizationCode,
    /// A hosted login page's transaction (the authorization request it continues).
    LoginTransaction,
    /// An e-mail verification link.
    EmailVerification,
    /// A password reset link.
    PasswordReset,
    /// The second step of a login with a second factor.
    MfaToken,
}

impl TicketKind {
    /// The kind's name in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            TicketKind::AuthorizationCode => "code",
            TicketKind::LoginTransaction => "login",
            TicketKind::EmailVerification => "verify",
            TicketKind::PasswordReset => "reset",
            TicketKind::MfaToken => "mfa",
        }
    }
}

/// Storing and taking single-use tickets.
pub trait TicketStore: Send + Sync {
    /// Stores `record` under `kind` and `hash` (of the secret, never the secret) until
    /// `expires_at`; [`StoreError::Duplicate`] when a live ticket has that hash.
    fn put_ticket(
        &self,
        kind: TicketKind,
        hash: &str,
        record: &str,
        expires_at: u64,
        now: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The record of the ticket if it is there and alive at `now`, leaving it in place (a page
    /// that shows a form for a mailed link, which mail scanners open before the user does).
    fn peek_ticket(
        &self,
        kind: TicketKind,
        hash: &str,
        now: u64,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Takes the ticket: deletes it in one atomic step and returns its record if it was there
    /// and alive at `now`. Of concurrent takes of one ticket exactly one gets `Some`.
    fn take_ticket(
        &self,
        kind: TicketKind,
        hash: &str,
        now: u64,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
}

// SQLite: the `tickets` table (`DELETE … RETURNING`), pruned as it is written.

impl TicketStore for SqliteStore {
    async fn put_ticket(
        &self,
        kind: TicketKind,
        hash: &str,
        record: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        // Codes are written at every sign-in: compiled statements, kept.
        let conn = self.lock();
        conn.prepare_cached("DELETE FROM tickets WHERE expires_at <= ?1")
            .and_then(|mut prune| prune.execute([int(now)]))
            .map_err(classify)?;
        conn.prepare_cached(
            "INSERT INTO tickets (kind, hash, record, expires_at) VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut insert| {
            insert.execute(params![kind.as_str(), hash, record, int(expires_at)])
        })
        .map(|_| ())
        .map_err(classify)
    }

    async fn peek_ticket(
        &self,
        kind: TicketKind,
        hash: &str,
        now: u64,
    ) -> Result<Option<String>, StoreError> {
        self.lock()
            .query_row(
                "SELECT record FROM tickets WHERE kind = ?1 AND hash = ?2 AND expires_at > ?3",
                params![kind.as_str(), hash, int(now)],
                |r| r.get(0),
            )
            .optional()
            .map_err(classify)
    }

    async fn take_ticket(
        &self,
        kind: TicketKind,
        hash: &str,
        now: u64,
    ) -> Result<Option<String>, StoreError> {
        let conn = self.lock();
        let mut take = conn
            .prepare_cached(
                "DELETE FROM tickets WHERE kind = ?1 AND hash = ?2 RETURNING record, expires_at",
            )
            .map_err(classify)?;
        let taken: Option<(String, i64)> = take
            .query_row(params![kind.as_str(), hash], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(classify)?;
        Ok(taken.and_then(|(record, expires_at)| (uint(expires_at) > now).then_some(record)))
    }
}

// DynamoDB: `#ticket <kind> <hash>` items with the table's TTL; a take is one conditional
// `DeleteItem` that returns the old item.

impl TicketStore for DynamoStore {
    async fn put_ticket(
        &self,
        kind: TicketKind,
        hash: &str,
        record: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        let ticket = TicketWrite {
            kind,
            hash: hash.to_string(),
            record: record.to_string(),
            expires_at,
        };
        let out = self.put_item(self.ticket_put(&ticket, now)?).send().await;
        applied(out)?.map(|_| ()).ok_or(StoreError::Duplicate)
    }

    async fn peek_ticket(
        &self,
        kind: TicketKind,
        hash: &str,
        now: u64,
    ) -> Result<Option<String>, StoreError> {
        let Some(item) = self.get(ticket_key(kind.as_str(), hash)).await? else {
            return Ok(None);
        };
        let alive = get_n(&item, TTL_ATTRIBUTE).is_some_and(|t| t > now);
        Ok(get_s(&item, "record").filter(|_| alive))
    }

    async fn take_ticket(
        &self,
        kind: TicketKind,
        hash: &str,
        now: u64,
    ) -> Result<Option<String>, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, ticket_key(kind.as_str(), hash))
            .condition_expression("attribute_exists(#k)")
            .expression_attribute_names("#k", KEY)
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        let Some(old) = applied(out)?.and_then(|o| o.attributes) else {
            return Ok(None);
        };
        let alive = get_n(&old, TTL_ATTRIBUTE).is_some_and(|t| t > now);
        Ok(get_s(&old, "record").filter(|_| alive))
    }
}

impl DynamoStore {
    /// [`TicketStore::put_ticket`]'s write: never over a live ticket of the same hash (one that
    /// expired but is not yet swept by the TTL is replaced).
    pub(super) fn ticket_put(&self, t: &TicketWrite, now: u64) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(&self.table)
            .item(KEY, ticket_key(t.kind.as_str(), &t.hash))
            .item("record", s(&t.record))
            .item(TTL_ATTRIBUTE, n(t.expires_at))
            .condition_expression("attribute_not_exists(#k) OR #ttl <= :now")
            .expression_attribute_names("#k", KEY)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", n(now))
            .build()
            .map_err(|e| StoreError::Fault(e.to_string()))
    }

    /// A transaction's take of a ticket: its delete, only while it is live at `now`.
    pub(super) fn ticket_take(
        &self,
        kind: TicketKind,
        hash: &str,
        now: u64,
    ) -> Result<Delete, StoreError> {
        Delete::builder()
            .table_name(&self.table)
            .key(KEY, ticket_key(kind.as_str(), hash))
            .condition_expression("attribute_exists(#k) AND #ttl > :now")
            .expression_attribute_names("#k", KEY)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", n(now))
            .build()
            .map_err(|e| StoreError::Fault(e.to_string()))
    }
}
