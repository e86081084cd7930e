//! Second factors: an account's TOTP secret (sealed, see [`crate::seal`]), whether it is on,
//! the last step accepted (every code accepted must be of a later step: one conditional write,
//! so of two logins with one code exactly one wins), and its recovery codes (hashes, each taken
//! once by one atomic delete). The trait, then the SQLite and the DynamoDB implementation.

use std::future::Future;

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use rusqlite::params;

use super::counters::counter_of;
use super::dynamodb::{
    DynamoStore, Item, KEY, TTL_ATTRIBUTE, account_item_key, applied, counter_key, get_n, get_s,
    is_reserved, n, s, ticket_key,
};
use super::sqlite::{SqliteStore, classify, int};
use super::users::credentials_item;
use super::{
    Counter, CounterStore, CredentialStore, Credentials, Follow, SessionStore, StoreError,
    TicketKind, TicketStore,
};

/// Enrolling, checking and removing second factors (`account`; `login` and `authorize` check).
pub trait MfaStore: Send + Sync {
    /// Stores `sealed` as `user`'s pending TOTP secret (replacing a pending one), unless TOTP is
    /// already on; `false` then.
    fn set_pending_totp(
        &self,
        user: &Credentials,
        sealed: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Turns TOTP on with the pending secret `sealed` (still the stored one), recording `step`
    /// as accepted and `recovery` as the recovery codes' hashes; `false` when anything changed.
    fn enable_totp(
        &self,
        user: &Credentials,
        sealed: &str,
        step: u64,
        recovery: &[String],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records `step` as the last accepted of the account, only if it is later than the one
    /// recorded: `false` when it is not (a replay, or a concurrent login won).
    fn accept_step(
        &self,
        user: &Credentials,
        step: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Takes the recovery code hashed `hash` of the account (once: of concurrent takes one
    /// wins), only while TOTP is on.
    fn take_recovery_code(
        &self,
        user: &Credentials,
        hash: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Replaces the account's recovery codes by `recovery` (hashes), while TOTP is on.
    fn replace_recovery_codes(
        &self,
        user: &Credentials,
        recovery: &[String],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Turns TOTP off: the secret, its steps and the recovery codes are gone.
    fn disable_totp(
        &self,
        user: &Credentials,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// What a login's second step reads, in one round trip: the record of the live `mfa_token`
    /// whose hash is `ticket_hash`, the account `username_key`, and the counters `counters`.
    fn second_step(
        &self,
        ticket_hash: &str,
        username_key: &str,
        counters: &[&str],
        now: u64,
    ) -> impl Future<Output = Result<SecondStep, StoreError>> + Send;

    /// A second step that passed, written all or nothing (DynamoDB: one transaction; when
    /// something moved since the read, each part on its own): the TOTP step accepted (if
    /// any; only if later than the last), the `mfa_token` taken (only if still there), the
    /// windows' places given back, and what the login starts. `false` when the step or the
    /// token went to a concurrent login first.
    fn pass_second_step(
        &self,
        pass: &SecondStepPass<'_>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// What [`MfaStore::second_step`] read.
#[derive(Debug)]
pub struct SecondStep {
    /// The `mfa_token`'s record, if it is live.
    pub record: Option<String>,
    /// The account.
    pub user: Option<Credentials>,
    /// The counters, in the order asked for (`None`: absent or expired).
    pub counters: Vec<Option<Counter>>,
}

/// A second step that passed (see [`MfaStore::pass_second_step`]).
#[derive(Debug, Clone, Copy)]
pub struct SecondStepPass<'a> {
    /// The account.
    pub user: &'a Credentials,
    /// The TOTP step to accept (`None`: a recovery code, taken already).
    pub step: Option<u64>,
    /// The `mfa_token`'s hash.
    pub ticket_hash: &'a str,
    /// Each window's key and the start of the window its place was claimed in.
    pub give_back: &'a [(&'a str, u64)],
    /// What the login starts.
    pub follow: &'a Follow,
    /// The time of the step.
    pub now: u64,
}

/// [`MfaStore::pass_second_step`] from the single-item writes, each atomic on its own.
async fn pass_in_steps<S>(store: &S, pass: &SecondStepPass<'_>) -> Result<bool, StoreError>
where
    S: MfaStore + TicketStore + CounterStore + SessionStore,
{
    // The token first: a spent one costs the account no step.
    let token = store
        .take_ticket(TicketKind::MfaToken, pass.ticket_hash, pass.now)
        .await?;
    if token.is_none() {
        return Ok(false);
    }
    if let Some(step) = pass.step
        && !store.accept_step(pass.user, step).await?
    {
        return Ok(false);
    }
    for (key, since) in pass.give_back {
        store.give_back(key, *since).await?;
    }
    match pass.follow {
        Follow::Nothing => {}
        Follow::Session(record) => store.create_session(record, pass.now).await?,
        Follow::Ticket(t) => {
            store
                .put_ticket(t.kind, &t.hash, &t.record, t.expires_at, pass.now)
                .await?
        }
    }
    Ok(true)
}

// SQLite: `totp_secret`, `totp_enabled` and `totp_last_step` on `users`, and the
// `recovery_codes` table.

impl MfaStore for SqliteStore {
    async fn set_pending_totp(&self, user: &Credentials, sealed: &str) -> Result<bool, StoreError> {
        self.lock()
            .execute(
                "UPDATE users SET totp_secret = ?2, totp_enabled = 0
                 WHERE user_id = ?1 AND totp_enabled = 0",
                params![user.id, sealed],
            )
            .map(|changed| changed == 1)
            .map_err(classify)
    }

    async fn enable_totp(
        &self,
        user: &Credentials,
        sealed: &str,
        step: u64,
        recovery: &[String],
    ) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(classify)?;
        let changed = tx
            .execute(
                "UPDATE users SET totp_enabled = 1, totp_last_step = ?3
                 WHERE user_id = ?1 AND totp_secret = ?2 AND totp_enabled = 0",
                params![user.id, sealed, int(step)],
            )
            .map_err(classify)?;
        if changed == 1 {
            replace_codes(&tx, &user.id, recovery)?;
        }
        tx.commit().map_err(classify)?;
        Ok(changed == 1)
    }

    async fn accept_step(&self, user: &Credentials, step: u64) -> Result<bool, StoreError> {
        self.lock()
            .execute(
                "UPDATE users SET totp_last_step = ?2
                 WHERE user_id = ?1 AND totp_enabled = 1 AND totp_last_step < ?2",
                params![user.id, int(step)],
            )
            .map(|changed| changed == 1)
            .map_err(classify)
    }

    async fn take_recovery_code(&self, user: &Credentials, hash: &str) -> Result<bool, StoreError> {
        self.lock()
            .execute(
                "DELETE FROM recovery_codes WHERE user_id = ?1 AND hash = ?2
                   AND EXISTS (SELECT 1 FROM users WHERE user_id = ?1 AND totp_enabled = 1)",
                params![user.id, hash],
            )
            .map(|deleted| deleted == 1)
            .map_err(classify)
    }

    async fn replace_recovery_codes(
        &self,
        user: &Credentials,
        recovery: &[String],
    ) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(classify)?;
        let on: i64 = tx
            .query_row(
                "SELECT count(*) FROM users WHERE user_id = ?1 AND totp_enabled = 1",
                [&user.id],
                |r| r.get(0),
            )
            .map_err(classify)?;
        if on == 1 {
            replace_codes(&tx, &user.id, recovery)?;
        }
        tx.commit().map_err(classify)?;
        Ok(on == 1)
    }

    async fn disable_totp(&self, user: &Credentials) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(classify)?;
        let changed = tx
            .execute(
                "UPDATE users SET totp_secret = NULL, totp_enabled = 0, totp_last_step = 0
                 WHERE user_id = ?1 AND (totp_secret IS NOT NULL OR totp_enabled = 1)",
                [&user.id],
            )
            .map_err(classify)?;
        tx.execute("DELETE FROM recovery_codes WHERE user_id = ?1", [&user.id])
            .map_err(classify)?;
        tx.commit().map_err(classify)?;
        Ok(changed == 1)
    }

    async fn second_step(
        &self,
        ticket_hash: &str,
        username_key: &str,
        counters: &[&str],
        now: u64,
    ) -> Result<SecondStep, StoreError> {
        Ok(SecondStep {
            record: self
                .peek_ticket(TicketKind::MfaToken, ticket_hash, now)
                .await?,
            user: self.credentials(username_key).await?,
            counters: self.counters(counters, now).await?,
        })
    }

    async fn pass_second_step(&self, pass: &SecondStepPass<'_>) -> Result<bool, StoreError> {
        pass_in_steps(self, pass).await
    }
}

fn replace_codes(
    tx: &rusqlite::Transaction<'_>,
    user_id: &str,
    recovery: &[String],
) -> Result<(), StoreError> {
    tx.execute("DELETE FROM recovery_codes WHERE user_id = ?1", [user_id])
        .map_err(classify)?;
    for hash in recovery {
        tx.execute(
            "INSERT INTO recovery_codes (user_id, hash) VALUES (?1, ?2)",
            params![user_id, hash],
        )
        .map_err(classify)?;
    }
    Ok(())
}

// DynamoDB: `totp_secret`, `totp_enabled`, `totp_last_step` and `recovery_codes` (a string set
// of hashes: a code is taken by one conditional `DELETE` from the set) on the account's item.

fn codes(recovery: &[String]) -> AttributeValue {
    AttributeValue::Ss(recovery.to_vec())
}

impl DynamoStore {
    /// [`MfaStore::accept_step`]'s write: `step` recorded only if later than the last.
    fn accept_step_update(&self, user: &Credentials, step: u64) -> Result<Update, StoreError> {
        Update::builder()
            .table_name(&self.table)
            .key(KEY, account_item_key(&user.username_key))
            .update_expression("SET totp_last_step = :step")
            .condition_expression("user_id = :id AND totp_enabled = :t AND totp_last_step < :step")
            .expression_attribute_values(":id", s(&user.id))
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":step", n(step))
            .build()
            .map_err(|e| StoreError::Fault(e.to_string()))
    }
}

impl MfaStore for DynamoStore {
    async fn set_pending_totp(&self, user: &Credentials, sealed: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, account_item_key(&user.username_key))
            .update_expression("SET totp_secret = :s, totp_enabled = :f")
            .condition_expression(
                "user_id = :id AND (attribute_not_exists(totp_enabled) OR totp_enabled = :f)",
            )
            .expression_attribute_values(":id", s(&user.id))
            .expression_attribute_values(":s", s(sealed))
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .send()
            .await;
        Ok(applied(out)?.is_some())
    }

    async fn enable_totp(
        &self,
        user: &Credentials,
        sealed: &str,
        step: u64,
        recovery: &[String],
    ) -> Result<bool, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, account_item_key(&user.username_key))
            .update_expression("SET totp_enabled = :t, totp_last_step = :step, recovery_codes = :c")
            .condition_expression("user_id = :id AND totp_secret = :s AND totp_enabled = :f")
            .expression_attribute_values(":id", s(&user.id))
            .expression_attribute_values(":s", s(sealed))
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .expression_attribute_values(":step", n(step))
            .expression_attribute_values(":c", codes(recovery))
            .send()
            .await;
        Ok(applied(out)?.is_some())
    }

    async fn accept_step(&self, user: &Credentials, step: u64) -> Result<bool, StoreError> {
        let out = self
            .update_item(self.accept_step_update(user, step)?)
            .send()
            .await;
        Ok(applied(out)?.is_some())
    }

    async fn take_recovery_code(&self, user: &Credentials, hash: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, account_item_key(&user.username_key))
            .update_expression("DELETE recovery_codes :c")
            .condition_expression(
                "user_id = :id AND totp_enabled = :t AND contains(recovery_codes, :h)",
            )
            .expression_attribute_values(":id", s(&user.id))
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":h", s(hash))
            .expression_attribute_values(":c", codes(&[hash.to_string()]))
            .send()
            .await;
        Ok(applied(out)?.is_some())
    }

    async fn replace_recovery_codes(
        &self,
        user: &Credentials,
        recovery: &[String],
    ) -> Result<bool, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, account_item_key(&user.username_key))
            .update_expression("SET recovery_codes = :c")
            .condition_expression("user_id = :id AND totp_enabled = :t")
            .expression_attribute_values(":id", s(&user.id))
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":c", codes(recovery))
            .send()
            .await;
        Ok(applied(out)?.is_some())
    }

    async fn disable_totp(&self, user: &Credentials) -> Result<bool, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, account_item_key(&user.username_key))
            .update_expression("REMOVE totp_secret, totp_enabled, totp_last_step, recovery_codes")
            .condition_expression("user_id = :id AND attribute_exists(totp_secret)")
            .expression_attribute_values(":id", s(&user.id))
            .send()
            .await;
        Ok(applied(out)?.is_some())
    }

    async fn second_step(
        &self,
        ticket_hash: &str,
        username_key: &str,
        counters: &[&str],
        now: u64,
    ) -> Result<SecondStep, StoreError> {
        let ticket = ticket_key(TicketKind::MfaToken.as_str(), ticket_hash);
        let account = (!is_reserved(username_key)).then(|| account_item_key(username_key));
        let mut keys = vec![ticket.clone()];
        keys.extend(account.clone());
        keys.extend(counters.iter().map(|c| counter_key(c)));
        let items = self.get_many(keys).await?;
        let find =
            |key: &AttributeValue| items.iter().find(|i| i.get(KEY).is_some_and(|k| k == key));
        let alive = |item: &&Item| get_n(item, TTL_ATTRIBUTE).is_some_and(|t| t > now);
        Ok(SecondStep {
            record: find(&ticket).filter(alive).and_then(|i| get_s(i, "record")),
            user: match account.as_ref().and_then(find) {
                Some(item) => Some(credentials_item(username_key, item)?),
                None => None,
            },
            counters: counters
                .iter()
                .map(|c| find(&counter_key(c)).filter(alive).and_then(counter_of))
                .collect(),
        })
    }

    async fn pass_second_step(&self, pass: &SecondStepPass<'_>) -> Result<bool, StoreError> {
        let user = pass.user;
        let mut items = Vec::with_capacity(6);
        if let Some(step) = pass.step {
            let accept = self.accept_step_update(user, step)?;
            items.push(TransactWriteItem::builder().update(accept).build());
        }
        let take = self.ticket_take(TicketKind::MfaToken, pass.ticket_hash, pass.now)?;
        items.push(TransactWriteItem::builder().delete(take).build());
        for (key, since) in pass.give_back {
            items.push(
                TransactWriteItem::builder()
                    .update(self.give_back_update(key, *since)?)
                    .build(),
            );
        }
        if let Some(put) = self.follow_put(pass.follow, pass.now)? {
            items.push(TransactWriteItem::builder().put(put).build());
        }
        if self.transact(items).await? {
            return Ok(true);
        }
        // A concurrent login took the step or the token, or a window rolled over: each part on
        // its own says which.
        pass_in_steps(self, pass).await
    }
}
