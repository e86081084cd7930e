//! Second factors: an account's TOTP secret (sealed, see [`crate::seal`]), whether it is on,
//! the last step accepted (every code accepted must be of a later step: one conditional write,
//! so of two logins with one code exactly one wins), and its recovery codes (hashes, each taken
//! once by one atomic delete). The trait, then the SQLite and the DynamoDB implementation.

use std::future::Future;

use aws_sdk_dynamodb::types::AttributeValue;
use rusqlite::params;

use super::dynamodb::{DynamoStore, KEY, account_item_key, applied, n, s};
use super::sqlite::{SqliteStore, classify, int};
use super::{Credentials, StoreError};

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
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, account_item_key(&user.username_key))
            .update_expression("SET totp_last_step = :step")
            .condition_expression("user_id = :id AND totp_enabled = :t AND totp_last_step < :step")
            .expression_attribute_values(":id", s(&user.id))
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":step", n(step))
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
}
