//! The DynamoDB store: what a deployment uses, since Lambda instances share no disk.
//!
//! One item per user, keyed by `username_key` (the case-insensitive unique key):
//! `user_id`, `username`, `hashed_password`, `full_name` (optional), `failed_logins`,
//! `last_failed_at` (optional), `created_at`. Registration is one conditional `PutItem`
//! (`attribute_not_exists`), so of many concurrent registrations of a name exactly one wins;
//! reads are strongly consistent `GetItem`s; counters and rehashes are conditional `UpdateItem`s.
//! `/me` finds the account by the token's `preferred_username` and requires its `user_id` to
//! equal the token's `sub`, so a later account under the same name is a different account.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::{
    CredentialStore, Credentials, NewUser, Profile, ProfileReader, StoreError, UserWriter,
};
use crate::aws;
use crate::policy;

/// The table's partition key attribute.
pub const KEY: &str = "username_key";

/// A user store in one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n(item: &Item, name: &str) -> Option<u64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn fail<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    if aws::is_transient(&err) {
        StoreError::Unavailable(aws::describe(&err))
    } else {
        StoreError::Fault(aws::describe(&err))
    }
}

/// Whether a conditional write was refused because its condition did not hold (the same error
/// code for `PutItem` and `UpdateItem`, whose SDK error types differ).
fn condition_failed<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
}

impl DynamoStore {
    /// A store on `table`, with a client built from `config`.
    pub fn new(config: &aws_config::SdkConfig, table: &str) -> Self {
        DynamoStore {
            client: Client::new(config),
            table: table.to_string(),
        }
    }

    async fn get(&self, username_key: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, s(username_key))
            .consistent_read(true)
            .send()
            .await
            .map_err(fail)?;
        Ok(out.item)
    }
}

impl UserWriter for DynamoStore {
    async fn create(&self, user: &NewUser) -> Result<(), StoreError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, s(&user.username_key))
            .item("user_id", s(&user.id))
            .item("username", s(&user.username))
            .item("hashed_password", s(&user.password_hash))
            .item("failed_logins", n(0))
            .item("created_at", n(crate::token::now()))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", KEY);
        if let Some(full_name) = &user.full_name {
            put = put.item("full_name", s(full_name));
        }
        match put.send().await {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Err(StoreError::Duplicate),
            Err(e) => Err(fail(e)),
        }
    }
}

impl CredentialStore for DynamoStore {
    async fn credentials(&self, username_key: &str) -> Result<Option<Credentials>, StoreError> {
        let Some(item) = self.get(username_key).await? else {
            return Ok(None);
        };
        let field = |name| {
            get_s(&item, name).ok_or_else(|| StoreError::Fault(format!("item lacks {name}")))
        };
        Ok(Some(Credentials {
            id: field("user_id")?,
            username_key: username_key.to_string(),
            username: field("username")?,
            password_hash: field("hashed_password")?,
            failed_logins: get_n(&item, "failed_logins").unwrap_or(0) as u32,
            last_failed_at: get_n(&item, "last_failed_at"),
        }))
    }

    async fn record_failure(&self, user: &Credentials, at: u64) -> Result<u32, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, s(&user.username_key))
            .update_expression("ADD failed_logins :one SET last_failed_at = :at")
            .condition_expression("user_id = :id")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":at", n(at))
            .expression_attribute_values(":id", s(&user.id))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        match out {
            Ok(out) => Ok(out
                .attributes
                .as_ref()
                .and_then(|a| get_n(a, "failed_logins"))
                .unwrap_or(0) as u32),
            // The account was deleted or replaced meanwhile: nothing to count against.
            Err(e) if condition_failed(&e) => Ok(0),
            Err(e) => Err(fail(e)),
        }
    }

    async fn record_success(
        &self,
        user: &Credentials,
        rehash: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        let update = |rehash: Option<(&str, &str)>| {
            let mut req = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(KEY, s(&user.username_key))
                .expression_attribute_values(":id", s(&user.id))
                .expression_attribute_values(":zero", n(0));
            match rehash {
                Some((old, new)) => {
                    req = req
                        .update_expression(
                            "SET failed_logins = :zero, hashed_password = :new REMOVE last_failed_at",
                        )
                        .condition_expression("user_id = :id AND hashed_password = :old")
                        .expression_attribute_values(":old", s(old))
                        .expression_attribute_values(":new", s(new));
                }
                None => {
                    req = req
                        .update_expression("SET failed_logins = :zero REMOVE last_failed_at")
                        .condition_expression("user_id = :id");
                }
            }
            req.send()
        };
        match update(rehash).await {
            Ok(_) => Ok(()),
            // The hash changed since it was read (a concurrent rehash or password change):
            // keep the newer hash, still reset the counter.
            Err(e) if condition_failed(&e) && rehash.is_some() => match update(None).await {
                Ok(_) => Ok(()),
                Err(e) if condition_failed(&e) => Ok(()),
                Err(e) => Err(fail(e)),
            },
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(fail(e)),
        }
    }
}

impl ProfileReader for DynamoStore {
    async fn profile(&self, id: &str, username: &str) -> Result<Option<Profile>, StoreError> {
        let Some(item) = self.get(&policy::username_key(username)).await? else {
            return Ok(None);
        };
        if get_s(&item, "user_id").as_deref() != Some(id) {
            return Ok(None);
        }
        Ok(Some(Profile {
            username: get_s(&item, "username").unwrap_or_default(),
            full_name: get_s(&item, "full_name"),
        }))
    }
}
