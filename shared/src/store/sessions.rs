//! Sessions: one record per login, its refresh token's generations stored as hashes only (see
//! [`crate::session`]). The trait, then the SQLite and the DynamoDB implementation.

use std::future::Future;

use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnValue, TransactWriteItem, Update,
};
use rusqlite::{OptionalExtension, params};

use super::StoreError;
use super::dynamodb::{
    DynamoStore, Item, KEY, TTL_ATTRIBUTE, account_item_key, applied, fail, get_bool, get_n, get_s,
    n, required_n, required_s, returned_n, s, session_key,
};
use super::sqlite::{SqliteStore, classify, int, uint};
use super::{TicketKind, TicketStore};

/// What redeeming a code into a session came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeSession {
    /// The code is taken and the session started.
    Started,
    /// The code was spent (or expired): nothing was written.
    Spent,
    /// The code is taken, but its account or browser session is no longer what it was: no
    /// session was started.
    Refused,
}

/// The part of a session record that decides whether it is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLife {
    /// The account the session belongs to.
    pub user_id: String,
    /// The account's session epoch when the session started.
    pub epoch: u64,
    /// When the session ends (idle or absolute limit, whichever is first), seconds since the epoch.
    pub expires_at: u64,
}

/// One login's session: the refresh token's current generation and the one before it, stored as
/// hashes only (see [`crate::session`]). `Debug` leaves the key material out.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Random session id: the access tokens' `sid`.
    pub sid: String,
    /// The account's key, to find its record.
    pub username_key: String,
    /// The account's name as its tokens carry it (`preferred_username`), stored with the session
    /// so a refresh needs no read of the account (its rotation's condition checks the account);
    /// `None` for a session stored before it was kept, whose refresh reads the account.
    pub username: Option<String>,
    /// When the session started, the account it belongs to, its epoch and its end.
    pub life: SessionLife,
    /// Key of the MAC that every refresh token of this session carries: proves that an old
    /// generation presented again was really issued (reuse), without being able to mint a
    /// current one.
    pub family_key: String,
    /// The current generation number (1 at login).
    pub generation: u32,
    /// SHA-256 of the current refresh token, base64url.
    pub current_hash: String,
    /// The generation before the current one, for the reuse interval.
    pub previous: Option<PreviousGeneration>,
    /// When the session started, seconds since the epoch.
    pub created_at: u64,
    /// Who holds the session's token: the password grant, a browser, or an OAuth client.
    pub holder: Holder,
    /// Whether its sign-in passed a second factor (its tokens' `amr`).
    pub mfa: bool,
}

/// Who holds a session's token, which decides where it may be presented.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Holder {
    /// The password grant (no client): its refresh token is accepted from any caller, as before
    /// clients existed.
    #[default]
    Password,
    /// A browser signed in on the hosted pages: its token is the session cookie, never a refresh
    /// token.
    Browser,
    /// An OAuth client, by the authorization code grant: only that client may refresh or revoke.
    Client {
        /// The client's id.
        client_id: String,
        /// The scopes granted (space-separated).
        scope: String,
    },
}

impl Holder {
    /// The stored form: (`holder`, `client_id`, `scope`); the password grant stores none.
    fn columns(&self) -> (Option<&'static str>, Option<&str>, Option<&str>) {
        match self {
            Holder::Password => (None, None, None),
            Holder::Browser => (Some("browser"), None, None),
            Holder::Client { client_id, scope } => (Some("client"), Some(client_id), Some(scope)),
        }
    }

    fn from_columns(
        holder: Option<String>,
        client_id: Option<String>,
        scope: Option<String>,
    ) -> Result<Holder, StoreError> {
        match (holder.as_deref(), client_id, scope) {
            (None, _, _) => Ok(Holder::Password),
            (Some("browser"), _, _) => Ok(Holder::Browser),
            (Some("client"), Some(client_id), scope) => Ok(Holder::Client {
                client_id,
                scope: scope.unwrap_or_default(),
            }),
            (Some(other), _, _) => Err(StoreError::Fault(format!(
                "a session's holder is {other:?}"
            ))),
        }
    }
}

impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("sid", &self.sid)
            .field("life", &self.life)
            .field("generation", &self.generation)
            .field("created_at", &self.created_at)
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

/// The generation a rotation replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousGeneration {
    /// SHA-256 of its refresh token, base64url.
    pub hash: String,
    /// The current token's secret, sealed with a key only the previous token yields: a retry with
    /// the previous token gets the same successor, a copy of the store gets nothing presentable.
    pub sealed_next: String,
    /// When it was rotated, seconds since the epoch.
    pub rotated_at: u64,
}

/// Storing, rotating and ending sessions (the `login` and `logout` functions).
pub trait SessionStore: Send + Sync {
    /// Stores a new session; pruning ended ones is the backend's business (TTL, or deletes).
    fn create_session(
        &self,
        session: &SessionRecord,
        now: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The session `sid`, if stored.
    fn session(
        &self,
        sid: &str,
    ) -> impl Future<Output = Result<Option<SessionRecord>, StoreError>> + Send;

    /// Replaces `from` by `to` (same `sid`) in one conditional write that holds only if the
    /// stored generation and current hash are still `from`'s *and* the account `from` belongs to
    /// still exists under its id with the session's epoch (and, for a session whose sign-in
    /// passed no second factor, has none on): `false` when a concurrent rotation, an end, a
    /// password change, a global logout, a deletion or a second factor turned on won. `to == from` writes nothing new
    /// but checks the same (a retry within the reuse interval).
    fn rotate_session(
        &self,
        from: &SessionRecord,
        to: &SessionRecord,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes session `sid` (nothing happens if it is gone).
    fn end_session(&self, sid: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Ends every session of the account `user` in one write (its epoch goes up by one) and
    /// returns the new epoch; `None` when the account is gone.
    fn end_all_sessions(
        &self,
        user_id: &str,
        username_key: &str,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Starts `session`, a code grant's, in one step with the code's redemption: only if the
    /// authorization code whose secret hashes to `code_hash` is still live (it is taken), the
    /// account is still `session`'s under its id and epoch (with no second factor the session
    /// lacks), and the browser session `browser_sid` the code came from is still open at `now`.
    fn start_code_session(
        &self,
        code_hash: &str,
        session: &SessionRecord,
        browser_sid: &str,
        now: u64,
    ) -> impl Future<Output = Result<CodeSession, StoreError>> + Send;
}

// SQLite: the `sessions` table, pruned of ended sessions whenever one is created.

impl SessionStore for SqliteStore {
    async fn create_session(&self, session: &SessionRecord, now: u64) -> Result<(), StoreError> {
        // Every login and code exchange starts one: compiled statements, kept.
        let conn = self.lock();
        conn.prepare_cached("DELETE FROM sessions WHERE expires_at <= ?1")
            .and_then(|mut prune| prune.execute([int(now)]))
            .map_err(classify)?;
        let previous = session.previous.as_ref();
        let (holder, client_id, scope) = session.holder.columns();
        let mut insert = conn
            .prepare_cached(
                "INSERT INTO sessions (sid, user_id, username_key, epoch, family_key, generation,
                     current_hash, previous_hash, sealed_next, rotated_at, created_at, expires_at,
                     holder, client_id, scope, mfa)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )
            .map_err(classify)?;
        insert
            .execute(params![
                session.sid,
                session.life.user_id,
                session.username_key,
                int(session.life.epoch),
                session.family_key,
                session.generation,
                session.current_hash,
                previous.map(|p| &p.hash),
                previous.map(|p| &p.sealed_next),
                previous.map(|p| int(p.rotated_at)),
                int(session.created_at),
                int(session.life.expires_at),
                holder,
                client_id,
                scope,
                i64::from(session.mfa),
            ])
            .map(|_| ())
            .map_err(classify)
    }

    async fn session(&self, sid: &str) -> Result<Option<SessionRecord>, StoreError> {
        let conn = self.lock();
        let mut select = conn
            .prepare_cached(
                "SELECT user_id, username_key, epoch, family_key, generation, current_hash,
                        previous_hash, sealed_next, rotated_at, created_at, expires_at,
                        holder, client_id, scope, mfa,
                        (SELECT username FROM users WHERE users.user_id = sessions.user_id)
                 FROM sessions WHERE sid = ?1",
            )
            .map_err(classify)?;
        select
            .query_row([sid], |r| {
                let previous = match (
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, Option<i64>>(8)?,
                ) {
                    (Some(hash), Some(sealed_next), Some(at)) => Some(PreviousGeneration {
                        hash,
                        sealed_next,
                        rotated_at: uint(at),
                    }),
                    _ => None,
                };
                let record = SessionRecord {
                    sid: sid.to_string(),
                    username_key: r.get(1)?,
                    username: r.get(15)?,
                    life: SessionLife {
                        user_id: r.get(0)?,
                        epoch: uint(r.get(2)?),
                        expires_at: uint(r.get(10)?),
                    },
                    family_key: r.get(3)?,
                    generation: r.get(4)?,
                    current_hash: r.get(5)?,
                    previous,
                    created_at: uint(r.get(9)?),
                    holder: Holder::Password,
                    mfa: r.get::<_, i64>(14)? != 0,
                };
                Ok((record, r.get(11)?, r.get(12)?, r.get(13)?))
            })
            .optional()
            .map_err(classify)?
            .map(|(record, holder, client_id, scope)| {
                Ok(SessionRecord {
                    holder: Holder::from_columns(holder, client_id, scope)?,
                    ..record
                })
            })
            .transpose()
    }

    async fn rotate_session(
        &self,
        from: &SessionRecord,
        to: &SessionRecord,
    ) -> Result<bool, StoreError> {
        let previous = to.previous.as_ref();
        // Every refresh runs it: the compiled statement is kept.
        let conn = self.lock();
        let mut rotate = conn
            .prepare_cached(
                "UPDATE sessions SET generation = ?4, current_hash = ?5, previous_hash = ?6,
                     sealed_next = ?7, rotated_at = ?8, expires_at = ?9
                 WHERE sid = ?1 AND generation = ?2 AND current_hash = ?3
                   AND EXISTS (SELECT 1 FROM users WHERE user_id = ?10 AND session_epoch = ?11
                                 AND (?12 OR totp_enabled = 0))",
            )
            .map_err(classify)?;
        rotate
            .execute(params![
                from.sid,
                from.generation,
                from.current_hash,
                to.generation,
                to.current_hash,
                previous.map(|p| &p.hash),
                previous.map(|p| &p.sealed_next),
                previous.map(|p| int(p.rotated_at)),
                int(to.life.expires_at),
                from.life.user_id,
                int(from.life.epoch),
                from.mfa,
            ])
            .map(|changed| changed == 1)
            .map_err(classify)
    }

    async fn start_code_session(
        &self,
        code_hash: &str,
        session: &SessionRecord,
        browser_sid: &str,
        now: u64,
    ) -> Result<CodeSession, StoreError> {
        let code = TicketKind::AuthorizationCode;
        if self.take_ticket(code, code_hash, now).await?.is_none() {
            return Ok(CodeSession::Spent);
        }
        let open = {
            let conn = self.lock();
            conn.prepare_cached(
                "SELECT 1 FROM users u JOIN sessions s ON s.sid = ?1 AND s.user_id = u.user_id
                 WHERE u.user_id = ?2 AND u.session_epoch = ?3 AND s.epoch = ?3
                   AND s.expires_at > ?4 AND (?5 OR u.totp_enabled = 0)",
            )
            .and_then(|mut open| {
                open.query_row(
                    params![
                        browser_sid,
                        session.life.user_id,
                        int(session.life.epoch),
                        int(now),
                        session.mfa,
                    ],
                    |_| Ok(()),
                )
                .optional()
            })
            .map_err(classify)?
            .is_some()
        };
        if !open {
            return Ok(CodeSession::Refused);
        }
        self.create_session(session, now).await?;
        Ok(CodeSession::Started)
    }

    async fn end_session(&self, sid: &str) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.prepare_cached("DELETE FROM sessions WHERE sid = ?1")
            .and_then(|mut end| end.execute([sid]))
            .map(|_| ())
            .map_err(classify)
    }

    async fn end_all_sessions(
        &self,
        user_id: &str,
        _username_key: &str,
    ) -> Result<Option<u64>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(classify)?;
        let epoch: Option<i64> = tx
            .query_row(
                "UPDATE users SET session_epoch = session_epoch + 1 WHERE user_id = ?1
                 RETURNING session_epoch",
                [user_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(classify)?;
        // The epoch alone ends them; deleting the rows keeps the table small.
        tx.execute("DELETE FROM sessions WHERE user_id = ?1", [user_id])
            .map_err(classify)?;
        tx.commit().map_err(classify)?;
        Ok(epoch.map(uint))
    }
}

// DynamoDB: `#session …` items with the table's TTL.

pub(super) fn session_life(item: &Item) -> Result<SessionLife, StoreError> {
    Ok(SessionLife {
        user_id: required_s(item, "user_id")?,
        epoch: required_n(item, "epoch")?,
        expires_at: required_n(item, TTL_ATTRIBUTE)?,
    })
}

impl DynamoStore {
    /// The condition a session's write holds under: its account still exists under the
    /// session's id and epoch and, for a session whose sign-in passed no second factor, has
    /// none on.
    fn account_check(
        &self,
        username_key: &str,
        life: &SessionLife,
        mfa: bool,
    ) -> Result<ConditionCheck, StoreError> {
        // Items written by other tools may lack the epoch: it then counts as 0.
        let epoch = if life.epoch == 0 {
            "(session_epoch = :e OR attribute_not_exists(session_epoch))"
        } else {
            "session_epoch = :e"
        };
        let factor = if mfa {
            ""
        } else {
            " AND (attribute_not_exists(totp_enabled) OR totp_enabled = :off)"
        };
        let mut check = ConditionCheck::builder()
            .table_name(&self.table)
            .key(KEY, account_item_key(username_key))
            .condition_expression(format!("user_id = :id AND {epoch}{factor}"))
            .expression_attribute_values(":id", s(&life.user_id))
            .expression_attribute_values(":e", n(life.epoch));
        if !mfa {
            check = check.expression_attribute_values(":off", AttributeValue::Bool(false));
        }
        check.build().map_err(|e| StoreError::Fault(e.to_string()))
    }
}

impl DynamoStore {
    /// [`SessionStore::create_session`]'s write: a new session's item, never over another.
    pub(super) fn session_put(&self, session: &SessionRecord) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(session_item(session)))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", KEY)
            .build()
            .map_err(|e| StoreError::Fault(e.to_string()))
    }
}

/// A new session's item.
fn session_item(session: &SessionRecord) -> Item {
    let mut item = Item::from([
        (KEY.to_string(), session_key(&session.sid)),
        ("account_key".into(), s(&session.username_key)),
        ("user_id".into(), s(&session.life.user_id)),
        ("epoch".into(), n(session.life.epoch)),
        ("family_key".into(), s(&session.family_key)),
        ("generation".into(), n(u64::from(session.generation))),
        ("current_hash".into(), s(&session.current_hash)),
        ("created_at".into(), n(session.created_at)),
        (TTL_ATTRIBUTE.into(), n(session.life.expires_at)),
    ]);
    let (holder, client_id, scope) = session.holder.columns();
    for (name, value) in [
        ("holder", holder),
        ("client_id", client_id),
        ("scope", scope),
        ("username", session.username.as_deref()),
    ] {
        if let Some(value) = value {
            item.insert(name.into(), s(value));
        }
    }
    if session.mfa {
        item.insert("mfa".into(), AttributeValue::Bool(true));
    }
    if let Some(p) = &session.previous {
        item.insert("previous_hash".into(), s(&p.hash));
        item.insert("sealed_next".into(), s(&p.sealed_next));
        item.insert("rotated_at".into(), n(p.rotated_at));
    }
    item
}

impl SessionStore for DynamoStore {
    async fn create_session(&self, session: &SessionRecord, _now: u64) -> Result<(), StoreError> {
        // Ended sessions need no pruning here: the table's TTL deletes them.
        self.put_item(self.session_put(session)?)
            .send()
            .await
            .map(|_| ())
            .map_err(fail)
    }

    async fn session(&self, sid: &str) -> Result<Option<SessionRecord>, StoreError> {
        let Some(item) = self.get(session_key(sid)).await? else {
            return Ok(None);
        };
        let previous = match (
            get_s(&item, "previous_hash"),
            get_s(&item, "sealed_next"),
            get_n(&item, "rotated_at"),
        ) {
            (Some(hash), Some(sealed_next), Some(rotated_at)) => Some(PreviousGeneration {
                hash,
                sealed_next,
                rotated_at,
            }),
            _ => None,
        };
        Ok(Some(SessionRecord {
            sid: sid.to_string(),
            username_key: required_s(&item, "account_key")?,
            username: get_s(&item, "username"),
            life: session_life(&item)?,
            family_key: required_s(&item, "family_key")?,
            generation: u32::try_from(required_n(&item, "generation")?)
                .map_err(|_| StoreError::Fault("generation out of range".into()))?,
            current_hash: required_s(&item, "current_hash")?,
            previous,
            created_at: required_n(&item, "created_at")?,
            holder: Holder::from_columns(
                get_s(&item, "holder"),
                get_s(&item, "client_id"),
                get_s(&item, "scope"),
            )?,
            mfa: get_bool(&item, "mfa"),
        }))
    }

    async fn rotate_session(
        &self,
        from: &SessionRecord,
        to: &SessionRecord,
    ) -> Result<bool, StoreError> {
        let Some(previous) = &to.previous else {
            return Err(StoreError::Fault(
                "a rotation has a previous generation".into(),
            ));
        };
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Fault(e.to_string());
        let rotate = Update::builder()
            .table_name(&self.table)
            .key(KEY, session_key(&from.sid))
            .update_expression(
                "SET generation = :g2, current_hash = :h2, previous_hash = :ph, \
                 sealed_next = :sn, rotated_at = :ra, #ttl = :ea",
            )
            .condition_expression("generation = :g1 AND current_hash = :h1")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":g1", n(u64::from(from.generation)))
            .expression_attribute_values(":h1", s(&from.current_hash))
            .expression_attribute_values(":g2", n(u64::from(to.generation)))
            .expression_attribute_values(":h2", s(&to.current_hash))
            .expression_attribute_values(":ph", s(&previous.hash))
            .expression_attribute_values(":sn", s(&previous.sealed_next))
            .expression_attribute_values(":ra", n(previous.rotated_at))
            .expression_attribute_values(":ea", n(to.life.expires_at))
            .build()
            .map_err(build)?;
        let account = self.account_check(&from.username_key, &from.life, from.mfa)?;
        // `false` (a condition failed, or a concurrent transaction on one of the items won):
        // the caller reads again.
        self.transact(vec![
            TransactWriteItem::builder().update(rotate).build(),
            TransactWriteItem::builder()
                .condition_check(account)
                .build(),
        ])
        .await
    }

    async fn start_code_session(
        &self,
        code_hash: &str,
        session: &SessionRecord,
        browser_sid: &str,
        now: u64,
    ) -> Result<CodeSession, StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Fault(e.to_string());
        let code = TicketKind::AuthorizationCode;
        let take = self.ticket_take(code, code_hash, now)?;
        let start = self.session_put(session)?;
        let life = &session.life;
        let account = self.account_check(&session.username_key, life, session.mfa)?;
        let browser = ConditionCheck::builder()
            .table_name(&self.table)
            .key(KEY, session_key(browser_sid))
            .condition_expression("user_id = :id AND epoch = :e AND #ttl > :now")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":id", s(&life.user_id))
            .expression_attribute_values(":e", n(life.epoch))
            .expression_attribute_values(":now", n(now))
            .build()
            .map_err(build)?;
        let items = vec![
            TransactWriteItem::builder().delete(take).build(),
            TransactWriteItem::builder().put(start).build(),
            TransactWriteItem::builder()
                .condition_check(account)
                .build(),
            TransactWriteItem::builder()
                .condition_check(browser)
                .build(),
        ];
        if self.transact(items).await? {
            return Ok(CodeSession::Started);
        }
        // Which part failed: a code still there is taken now (the account or the browser
        // session moved on), one already gone was spent.
        Ok(match self.take_ticket(code, code_hash, now).await? {
            Some(_) => CodeSession::Refused,
            None => CodeSession::Spent,
        })
    }

    async fn end_session(&self, sid: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, session_key(sid))
            .send()
            .await
            .map(|_| ())
            .map_err(fail)
    }

    async fn end_all_sessions(
        &self,
        user_id: &str,
        username_key: &str,
    ) -> Result<Option<u64>, StoreError> {
        // One write however many sessions exist: every session started under an older epoch is
        // refused from now on, and its item expires by TTL.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, account_item_key(username_key))
            .update_expression("ADD session_epoch :one")
            .condition_expression("user_id = :id")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":id", s(user_id))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        Ok(returned_n(applied(out)?, "session_epoch"))
    }
}
