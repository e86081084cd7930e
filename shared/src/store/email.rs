//! Accounts' e-mail addresses: setting one (unverified), verifying it, and finding the account
//! a verified address belongs to. A verified address belongs to one account at most, enforced
//! by the store (SQLite's partial unique index; DynamoDB's claim item written in the same
//! transaction as the flag), never by a read before the write. The trait, then the SQLite and
//! the DynamoDB implementation.

use std::future::Future;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use rusqlite::{OptionalExtension, params};

use super::StoreError;
use super::dynamodb::{
    DynamoStore, KEY, account_item_key, applied, email_key, fail, get_s, s, transaction_lost,
    transaction_throttled,
};
use super::sqlite::{SqliteStore, classify};
use super::users::{CREDENTIAL_COLUMNS, credentials_row};
use super::{CredentialStore, Credentials};

/// What verifying an address on an account came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The address is now verified on the account (or already was).
    Yes,
    /// Another account has this address verified: it keeps it.
    TakenElsewhere,
    /// The account is gone, or its address is no longer this one.
    Stale,
}

/// Setting, verifying and looking up addresses (the `account` function; `register` sets the
/// first address with the account).
pub trait EmailStore: Send + Sync {
    /// Replaces `user`'s address by `email`, unverified (a verified old address is released),
    /// only if the account is still `user`'s and its verification did not change since it was
    /// read; `false` otherwise.
    fn set_email(
        &self,
        user: &Credentials,
        email: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Marks `email` verified on the account `user_id` (keyed `username_key`) if it is still
    /// that account's address and no other account has it verified.
    fn verify_email(
        &self,
        user_id: &str,
        username_key: &str,
        email: &str,
    ) -> impl Future<Output = Result<Verified, StoreError>> + Send;

    /// The account whose verified address is `email`, if any.
    fn verified_owner(
        &self,
        email: &str,
    ) -> impl Future<Output = Result<Option<Credentials>, StoreError>> + Send;
}

// SQLite: the `email` and `email_verified` columns of `users`, and the partial unique index
// `users_verified_email`.

impl EmailStore for SqliteStore {
    async fn set_email(&self, user: &Credentials, email: &str) -> Result<bool, StoreError> {
        self.lock()
            .execute(
                "UPDATE users SET email = ?2, email_verified = 0
                 WHERE user_id = ?1 AND email_verified = ?3",
                params![user.id, email, i64::from(user.email_verified)],
            )
            .map(|changed| changed == 1)
            .map_err(classify)
    }

    async fn verify_email(
        &self,
        user_id: &str,
        _username_key: &str,
        email: &str,
    ) -> Result<Verified, StoreError> {
        let changed = self.lock().execute(
            "UPDATE users SET email_verified = 1 WHERE user_id = ?1 AND email = ?2",
            params![user_id, email],
        );
        match changed.map_err(classify) {
            Ok(1) => Ok(Verified::Yes),
            Ok(_) => Ok(Verified::Stale),
            Err(StoreError::Duplicate) => Ok(Verified::TakenElsewhere),
            Err(e) => Err(e),
        }
    }

    async fn verified_owner(&self, email: &str) -> Result<Option<Credentials>, StoreError> {
        let conn = self.lock();
        let mut select = conn
            .prepare_cached(&format!(
                "SELECT {CREDENTIAL_COLUMNS} FROM users WHERE email = ?1 AND email_verified = 1"
            ))
            .map_err(classify)?;
        select
            .query_row([email], credentials_row)
            .optional()
            .map_err(classify)
    }
}

// DynamoDB: `email` and `email_verified` on the account's item, and for a verified address a
// claim item `#email <address>` naming its account (`user_id`, `account_key`), written and
// released in the same transaction as the flag.

fn build(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Fault(e.to_string())
}

/// The release of `user`'s claim on `email`, as one step of a transaction (nothing to release
/// is fine; another account's claim is never touched).
pub(super) fn release_claim(
    table: &str,
    user_id: &str,
    email: &str,
) -> Result<TransactWriteItem, StoreError> {
    let delete = Delete::builder()
        .table_name(table)
        .key(KEY, email_key(email))
        .condition_expression("attribute_not_exists(#k) OR user_id = :id")
        .expression_attribute_names("#k", KEY)
        .expression_attribute_values(":id", s(user_id))
        .build()
        .map_err(build)?;
    Ok(TransactWriteItem::builder().delete(delete).build())
}

/// The outcome of a transaction that may lose to a condition: `Ok(None)` then.
fn transacted<T, R>(
    result: Result<T, aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError, R>>,
) -> Result<Option<T>, StoreError>
where
    R: std::fmt::Debug,
{
    match result {
        Ok(out) => Ok(Some(out)),
        Err(e) if transaction_lost(&e) => Ok(None),
        Err(e) if transaction_throttled(&e) => Err(StoreError::Unavailable(
            "DynamoDB throttled the transaction".into(),
        )),
        Err(e) => Err(fail(e)),
    }
}

/// Which items of a cancelled transaction failed their condition.
fn failed_conditions<R>(
    err: &aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError, R>,
) -> Vec<bool> {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(e)) => e
            .cancellation_reasons()
            .iter()
            .map(|r| r.code() == Some("ConditionalCheckFailed"))
            .collect(),
        _ => Vec::new(),
    }
}

impl EmailStore for DynamoStore {
    async fn set_email(&self, user: &Credentials, email: &str) -> Result<bool, StoreError> {
        // The verification must be what was read: a verification that lands in between would
        // otherwise leave its claim behind.
        let seen = if user.email_verified {
            "email_verified = :t"
        } else {
            "(attribute_not_exists(email_verified) OR email_verified = :f)"
        };
        let condition = format!("user_id = :id AND {seen}");
        let values = [
            (":id", s(&user.id)),
            (":e", s(email)),
            (":f", AttributeValue::Bool(false)),
            (":t", AttributeValue::Bool(true)),
        ];
        let used = if user.email_verified { 4 } else { 3 };
        let old = user.email.as_deref().filter(|_| user.email_verified);
        let Some(old) = old else {
            // No claim to release: one conditional update.
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(KEY, account_item_key(&user.username_key))
                .update_expression("SET email = :e, email_verified = :f")
                .condition_expression(condition);
            for (name, value) in values.into_iter().take(used) {
                update = update.expression_attribute_values(name, value);
            }
            return Ok(applied(update.send().await)?.is_some());
        };
        let mut update = Update::builder()
            .table_name(&self.table)
            .key(KEY, account_item_key(&user.username_key))
            .update_expression("SET email = :e, email_verified = :f")
            .condition_expression(condition);
        for (name, value) in values.into_iter().take(used) {
            update = update.expression_attribute_values(name, value);
        }
        let out = self
            .client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .update(update.build().map_err(build)?)
                    .build(),
            )
            .transact_items(release_claim(&self.table, &user.id, old)?)
            .send()
            .await;
        Ok(transacted(out)?.is_some())
    }

    async fn verify_email(
        &self,
        user_id: &str,
        username_key: &str,
        email: &str,
    ) -> Result<Verified, StoreError> {
        let claim = Put::builder()
            .table_name(&self.table)
            .item(KEY, email_key(email))
            .item("user_id", s(user_id))
            .item("account_key", s(username_key))
            .condition_expression("attribute_not_exists(#k) OR user_id = :id")
            .expression_attribute_names("#k", KEY)
            .expression_attribute_values(":id", s(user_id))
            .build()
            .map_err(build)?;
        let flag = Update::builder()
            .table_name(&self.table)
            .key(KEY, account_item_key(username_key))
            .update_expression("SET email_verified = :t")
            .condition_expression("user_id = :id AND email = :e")
            .expression_attribute_values(":id", s(user_id))
            .expression_attribute_values(":e", s(email))
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .build()
            .map_err(build)?;
        let out = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(claim).build())
            .transact_items(TransactWriteItem::builder().update(flag).build())
            .send()
            .await;
        match out {
            Ok(_) => Ok(Verified::Yes),
            Err(e) if transaction_lost(&e) => {
                let failed = failed_conditions(&e);
                // The account's own condition first: a stale link says so whoever holds the
                // address.
                if failed.get(1).copied().unwrap_or(false) {
                    Ok(Verified::Stale)
                } else if failed.first().copied().unwrap_or(false) {
                    Ok(Verified::TakenElsewhere)
                } else {
                    Err(StoreError::Unavailable(
                        "a concurrent write touched the address".into(),
                    ))
                }
            }
            Err(e) if transaction_throttled(&e) => Err(StoreError::Unavailable(
                "DynamoDB throttled the verification".into(),
            )),
            Err(e) => Err(fail(e)),
        }
    }

    async fn verified_owner(&self, email: &str) -> Result<Option<Credentials>, StoreError> {
        let Some(claim) = self.get(email_key(email)).await? else {
            return Ok(None);
        };
        let (Some(user_id), Some(account_key)) =
            (get_s(&claim, "user_id"), get_s(&claim, "account_key"))
        else {
            return Ok(None);
        };
        let user = self.credentials(&account_key).await?;
        Ok(user
            .filter(|u| u.id == user_id && u.email_verified && u.email.as_deref() == Some(email)))
    }
}
