//! The DynamoDB store: what a deployment uses, since Lambda instances share no disk.
//!
//! One item per user, keyed by `username_key` (the case-insensitive unique key):
//! `user_id`, `username`, `hashed_password`, `full_name` (optional), `failed_logins`,
//! `last_failed_at` (optional), `session_epoch` (optional, 0 when absent), `created_at`.
//!
//! One item per session in the same table (single-table design), keyed by
//! [`SESSION_PREFIX`]` + sid`: a prefix no username key can carry (they hold no whitespace). It
//! holds `account_key`, `user_id`, `epoch`, `family_key`, `generation`, `current_hash`, the
//! previous generation (`previous_hash`, `sealed_next`, `rotated_at`), `created_at` and
//! `expires_at`, the table's TTL attribute: DynamoDB deletes ended sessions by itself, and every
//! read refuses them before it does. Registration is one conditional `PutItem`
//! (`attribute_not_exists`), so of many concurrent registrations of a name exactly one wins;
//! reads are strongly consistent `GetItem`s; counters and rehashes are conditional `UpdateItem`s.
//! `/me` finds the account by the token's `preferred_username` and requires its `user_id` to
//! equal the token's `sub`, so a later account under the same name is a different account.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use super::{NewUser, StoreError};
use crate::aws;
#[cfg(any(test, feature = "testing"))]
use crate::policy;

mod keys;

pub use keys::*;

// The attribute names each kind of write names (in its key, its item, its update and condition
// expressions): what `template.yaml`'s `dynamodb:Attributes` conditions list, since AWS refuses
// a request that names any other. The `iam` tests check these lists against the template and
// against the requests this store sends.

/// A new account: registration's `PutItem` (`put_new_user`).
#[cfg_attr(not(test), allow(dead_code))]
pub const NEW_ACCOUNT_ATTRIBUTES: &[&str] = &[
    KEY,
    "user_id",
    "username",
    "hashed_password",
    "failed_logins",
    "created_at",
    "full_name",
];
/// What `POST /register` adds to [`NEW_ACCOUNT_ATTRIBUTES`]: the address given with the
/// account (the hosted registration page asks for none).
#[cfg_attr(not(test), allow(dead_code))]
pub const NEW_ACCOUNT_EMAIL_ATTRIBUTES: &[&str] = &["email"];
/// A login's outcome on the account: the failure count, and its reset and the rehash after a
/// success (`count_failure`, `record_success`).
#[cfg_attr(not(test), allow(dead_code))]
pub const LOGIN_OUTCOME_ATTRIBUTES: &[&str] = &[
    KEY,
    "user_id",
    "failed_logins",
    "last_failed_at",
    "hashed_password",
];
/// A password change (`change_password`).
#[cfg_attr(not(test), allow(dead_code))]
pub const PASSWORD_CHANGE_ATTRIBUTES: &[&str] = &[
    KEY,
    "user_id",
    "hashed_password",
    "failed_logins",
    "last_failed_at",
    "session_epoch",
];
/// An account's address and its verification flag (`set_email`, `verify_email`).
#[cfg_attr(not(test), allow(dead_code))]
pub const EMAIL_ATTRIBUTES: &[&str] = &[KEY, "user_id", "email", "email_verified"];
/// A verified address's claim item (`verify_email`'s `Put`, and its release with a change of
/// address or the account).
#[cfg_attr(not(test), allow(dead_code))]
pub const EMAIL_CLAIM_ATTRIBUTES: &[&str] = &[KEY, "user_id", "account_key"];
/// A second factor's check at login (`accept_step`, `take_recovery_code`).
#[cfg_attr(not(test), allow(dead_code))]
pub const TOTP_CHECK_ATTRIBUTES: &[&str] = &[
    KEY,
    "user_id",
    "totp_enabled",
    "totp_last_step",
    "recovery_codes",
];
/// Enrolling and removing a second factor (`set_pending_totp`, `enable_totp`,
/// `replace_recovery_codes`, `disable_totp`).
#[cfg_attr(not(test), allow(dead_code))]
pub const TOTP_ATTRIBUTES: &[&str] = &[
    KEY,
    "user_id",
    "totp_secret",
    "totp_enabled",
    "totp_last_step",
    "recovery_codes",
];
/// What a session whose sign-in passed a second factor adds to [`SESSION_ATTRIBUTES`].
#[cfg_attr(not(test), allow(dead_code))]
pub const MFA_SESSION_ATTRIBUTES: &[&str] = &["mfa"];
/// A global logout (`end_all_sessions`).
#[cfg_attr(not(test), allow(dead_code))]
pub const GLOBAL_LOGOUT_ATTRIBUTES: &[&str] = &[KEY, "user_id", "session_epoch"];
/// A rotation's check of the account (`rotate_session`'s `ConditionCheck`).
#[cfg_attr(not(test), allow(dead_code))]
pub const ACCOUNT_CHECK_ATTRIBUTES: &[&str] = &[KEY, "user_id", "session_epoch", "totp_enabled"];
/// A login claim's check that a name is still no account (`attribute_not_exists(user_id)`).
#[cfg_attr(not(test), allow(dead_code))]
pub const CLAIM_CHECK_ATTRIBUTES: &[&str] = &[KEY, "user_id"];
/// A code exchange's check that the browser session it came from is still open.
#[cfg_attr(not(test), allow(dead_code))]
pub const BROWSER_CHECK_ATTRIBUTES: &[&str] = &[KEY, "user_id", "epoch", TTL_ATTRIBUTE];
/// A new session item (`create_session`'s `PutItem`): what every session has.
#[cfg_attr(not(test), allow(dead_code))]
pub const SESSION_ATTRIBUTES: &[&str] = &[
    KEY,
    "account_key",
    "user_id",
    "epoch",
    "family_key",
    "generation",
    "current_hash",
    "created_at",
    TTL_ATTRIBUTE,
    "username",
];
/// What a session item with a previous generation adds to [`SESSION_ATTRIBUTES`] (a password
/// or code grant's; a browser's never rotates).
#[cfg_attr(not(test), allow(dead_code))]
pub const PREVIOUS_GENERATION_ATTRIBUTES: &[&str] = &["previous_hash", "sealed_next", "rotated_at"];
/// What a browser's or a client's session adds to [`SESSION_ATTRIBUTES`] (the password grant's
/// sessions store no holder).
#[cfg_attr(not(test), allow(dead_code))]
pub const HOLDER_ATTRIBUTES: &[&str] = &["holder"];
/// What a client's session adds to [`HOLDER_ATTRIBUTES`].
#[cfg_attr(not(test), allow(dead_code))]
pub const CLIENT_SESSION_ATTRIBUTES: &[&str] = &["client_id", "scope"];
/// A single-use ticket (`put_ticket`: an authorization code, say).
#[cfg_attr(not(test), allow(dead_code))]
pub const TICKET_ATTRIBUTES: &[&str] = &[KEY, "record", TTL_ATTRIBUTE];
/// A rotation of a session (`rotate_session`'s `Update`).
#[cfg_attr(not(test), allow(dead_code))]
pub const ROTATION_ATTRIBUTES: &[&str] = &[
    KEY,
    "generation",
    "current_hash",
    "previous_hash",
    "sealed_next",
    "rotated_at",
    TTL_ATTRIBUTE,
];
/// A throttle counter, in every write of it (`swap_counter`, `add_in_window`, `give_back`).
#[cfg_attr(not(test), allow(dead_code))]
pub const COUNTER_ATTRIBUTES: &[&str] = &[KEY, "failures", "since", TTL_ATTRIBUTE];

/// A user store in one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    pub(super) client: Client,
    pub(super) table: String,
}

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

pub(super) fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn get_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

pub(super) fn get_bool(item: &Item, name: &str) -> bool {
    item.get(name)
        .and_then(|v| v.as_bool().ok())
        .copied()
        .unwrap_or(false)
}

pub(super) fn get_n(item: &Item, name: &str) -> Option<u64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

pub(super) fn fail<E, R>(err: SdkError<E, R>) -> StoreError
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
pub(super) fn condition_failed<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
}

/// The outcome of a conditional write: `Some` when it applied, `None` when its condition did not
/// hold (an expected answer, never an error), `Err` for a real failure.
pub(super) fn applied<T, E, R>(result: Result<T, SdkError<E, R>>) -> Result<Option<T>, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(out) => Ok(Some(out)),
        Err(e) if condition_failed(&e) => Ok(None),
        Err(e) => Err(fail(e)),
    }
}

/// Whether a transaction was cancelled only because a condition did not hold or a concurrent
/// transaction touched one of its items (an expected answer under contention, never an error).
pub(super) fn transaction_lost<R>(err: &SdkError<TransactWriteItemsError, R>) -> bool {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
            e.cancellation_reasons().iter().all(|r| {
                matches!(
                    r.code(),
                    None | Some("None" | "ConditionalCheckFailed" | "TransactionConflict")
                )
            })
        }
        _ => false,
    }
}

/// Whether a transaction was cancelled because DynamoDB throttled one of its items (a 503 to
/// retry, not a fault).
pub(super) fn transaction_throttled<R>(err: &SdkError<TransactWriteItemsError, R>) -> bool {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
            e.cancellation_reasons().iter().any(|r| {
                matches!(
                    r.code(),
                    Some(
                        "ThrottlingError"
                            | "ProvisionedThroughputExceeded"
                            | "RequestLimitExceeded"
                    )
                )
            })
        }
        _ => false,
    }
}

impl DynamoStore {
    /// `update`, a transaction's item, sent on its own as one `UpdateItem` (one builder for a
    /// write that is made both ways).
    pub(super) fn update_item(
        &self,
        update: aws_sdk_dynamodb::types::Update,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(update.table_name)
            .set_key(Some(update.key))
            .update_expression(update.update_expression)
            .set_condition_expression(update.condition_expression)
            .set_expression_attribute_names(update.expression_attribute_names)
            .set_expression_attribute_values(update.expression_attribute_values)
    }

    /// `put`, a transaction's item, sent on its own as one `PutItem`.
    pub(super) fn put_item(
        &self,
        put: aws_sdk_dynamodb::types::Put,
    ) -> aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder {
        self.client
            .put_item()
            .table_name(put.table_name)
            .set_item(Some(put.item))
            .set_condition_expression(put.condition_expression)
            .set_expression_attribute_names(put.expression_attribute_names)
            .set_expression_attribute_values(put.expression_attribute_values)
    }

    /// Writes `items` as one transaction: `false` when a condition failed or a concurrent
    /// transaction on one of the items won (nothing written), a 503 when DynamoDB throttled it.
    pub(super) async fn transact(
        &self,
        items: Vec<aws_sdk_dynamodb::types::TransactWriteItem>,
    ) -> Result<bool, StoreError> {
        let out = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if transaction_lost(&e) => Ok(false),
            Err(e) if transaction_throttled(&e) => Err(StoreError::Unavailable(
                "DynamoDB throttled the transaction".into(),
            )),
            Err(e) => Err(fail(e)),
        }
    }
}

/// A number attribute an applied `UpdateItem` returned (`ReturnValue::UpdatedNew`).
pub(super) fn returned_n(out: Option<UpdateItemOutput>, name: &str) -> Option<u64> {
    out?.attributes.as_ref().and_then(|a| get_n(a, name))
}

impl DynamoStore {
    /// A store on `table`, with a client built from `config`.
    pub fn new(config: &aws_config::SdkConfig, table: &str) -> Self {
        DynamoStore {
            client: Client::new(config),
            table: table.to_string(),
        }
    }

    /// The conditional `PutItem` of a new account (`attribute_not_exists`: of many writes of one
    /// name exactly one wins), as registration and `auth-admin import` send it.
    pub(super) fn put_new_user(&self, user: &NewUser) -> PutItemFluentBuilder {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, account_item_key(&user.username_key))
            .item("user_id", s(&user.id))
            .item("username", s(&user.username))
            .item("hashed_password", s(&user.password_hash))
            .item("failed_logins", n(0))
            .item("created_at", n(crate::clock::now()))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", KEY);
        let put = match &user.full_name {
            Some(full_name) => put.item("full_name", s(full_name)),
            None => put,
        };
        match &user.email {
            Some(email) => put.item("email", s(email)),
            None => put,
        }
    }

    /// The items under `keys` (those that exist), read strongly consistently in one round trip.
    pub(super) async fn get_many(
        &self,
        keys: impl IntoIterator<Item = AttributeValue>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut request = KeysAndAttributes::builder().consistent_read(true);
        for key in keys {
            request = request.keys(HashMap::from([(KEY.to_string(), key)]));
        }
        let request = request
            .build()
            .map_err(|e| StoreError::Fault(e.to_string()))?;
        let out = self
            .client
            .batch_get_item()
            .request_items(&self.table, request)
            .send()
            .await
            .map_err(fail)?;
        if out.unprocessed_keys.as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(StoreError::Unavailable(
                "BatchGetItem left keys unprocessed".into(),
            ));
        }
        Ok(out
            .responses
            .and_then(|mut r| r.remove(&self.table))
            .unwrap_or_default())
    }

    /// The item under `key`, read strongly consistently.
    pub(super) async fn get(&self, key: AttributeValue) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, key)
            .consistent_read(true)
            .send()
            .await
            .map_err(fail)?;
        Ok(out.item)
    }

    /// Every item a filtered, strongly consistent `Scan` of the whole table finds, page after
    /// page: an operator's question (`auth-admin`), never on a function's path.
    pub(super) async fn scan_all(
        &self,
        filter: &str,
        names: &[(&str, &str)],
        values: &[(&str, AttributeValue)],
    ) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let mut scan = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .filter_expression(filter)
                .set_exclusive_start_key(start.take());
            for (placeholder, name) in names {
                scan = scan.expression_attribute_names(*placeholder, *name);
            }
            for (placeholder, value) in values {
                scan = scan.expression_attribute_values(*placeholder, value.clone());
            }
            let page = scan.send().await.map_err(fail)?;
            found.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(found)
    }
}

pub(super) fn required_s(item: &Item, name: &str) -> Result<String, StoreError> {
    get_s(item, name).ok_or_else(|| StoreError::Fault(format!("item lacks {name}")))
}

pub(super) fn required_n(item: &Item, name: &str) -> Result<u64, StoreError> {
    get_n(item, name).ok_or_else(|| StoreError::Fault(format!("item lacks {name}")))
}

#[cfg(any(test, feature = "testing"))]
impl DynamoStore {
    /// Creates a table with the key schema and TTL attribute `template.yaml` declares.
    pub async fn create_table(config: &aws_config::SdkConfig, name: &str) {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
            TimeToLiveSpecification,
        };
        let client = Client::new(config);
        let created = client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(KEY)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("attribute definition"),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(KEY)
                    .key_type(KeyType::Hash)
                    .build()
                    .expect("key schema"),
            )
            .send()
            .await;
        // A retried request (a slow, loaded moto) may find the table its first try made.
        if let Err(e) = created
            && e.as_service_error().and_then(|e| e.code()) != Some("ResourceInUseException")
        {
            panic!("create the table: {e:?}");
        }
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(TTL_ATTRIBUTE)
                    .enabled(true)
                    .build()
                    .expect("TTL specification"),
            )
            .send()
            .await
            .expect("enable TTL");
    }

    async fn user_items(&self) -> Vec<Item> {
        let out = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .send()
            .await
            .expect("scan the table");
        out.items
            .unwrap_or_default()
            .into_iter()
            .filter(|i| get_s(i, KEY).is_some_and(|k| !is_reserved(&k)))
            .collect()
    }
}

#[cfg(any(test, feature = "testing"))]
impl super::testing::TestSeam for DynamoStore {
    async fn seed_user(&self, id: &str, username: &str, hash: &str, full_name: Option<&str>) {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, account_item_key(&policy::username_key(username)))
            .item("user_id", s(id))
            .item("username", s(username))
            .item("hashed_password", s(hash));
        if let Some(name) = full_name {
            put = put.item("full_name", s(name));
        }
        put.send().await.expect("seed a user");
    }

    async fn stored(&self, username_key: &str) -> Option<(String, u32)> {
        let item = self.get(s(username_key)).await.expect("read a user")?;
        Some((
            get_s(&item, "hashed_password")?,
            get_n(&item, "failed_logins").unwrap_or(0) as u32,
        ))
    }

    async fn set_failures(&self, username_key: &str, count: u32, at: u64) {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(KEY, account_item_key(username_key))
            .update_expression("SET failed_logins = :c, last_failed_at = :t")
            .expression_attribute_values(":c", n(u64::from(count)))
            .expression_attribute_values(":t", n(at))
            .send()
            .await
            .expect("set failures");
    }

    async fn delete_all_users(&self) {
        for item in self.user_items().await {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key(KEY, item[KEY].clone())
                .send()
                .await
                .expect("delete a user");
        }
    }

    async fn user_count(&self) -> usize {
        self.user_items().await.len()
    }
}

/// The IAM drift tests: `template.yaml`'s statements against the lists above and against the
/// requests this store sends.
#[cfg(test)]
mod iam;
