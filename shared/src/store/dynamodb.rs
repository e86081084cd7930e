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
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, KeysAndAttributes, ReturnValue,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use super::{
    AccountStore, Counter, CounterStore, CredentialStore, Credentials, NewUser, PreviousGeneration,
    Profile, ProfileReader, ProfileWithSession, SessionLife, SessionRecord, SessionStore,
    StoreError, Swap, UserWriter,
};
use crate::aws;
use crate::policy;

/// The table's partition key attribute.
pub const KEY: &str = "username_key";
/// The partition key prefix of session items (with a space: never part of a username key).
pub const SESSION_PREFIX: &str = "#session ";
/// The table's TTL attribute (seconds since the epoch), set on session items only.
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// The partition key prefix of throttle counters (with a space: never part of a username key).
pub const COUNTER_PREFIX: &str = "#throttle ";

/// The partition key prefixes of the items that are not accounts: every other key is an
/// account's (`template.yaml` names account keys as those that start with none of these).
pub const RESERVED_PREFIXES: [&str; 2] = [SESSION_PREFIX, COUNTER_PREFIX];

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
/// A global logout (`end_all_sessions`).
#[cfg_attr(not(test), allow(dead_code))]
pub const GLOBAL_LOGOUT_ATTRIBUTES: &[&str] = &[KEY, "user_id", "session_epoch"];
/// A rotation's check of the account (`rotate_session`'s `ConditionCheck`).
#[cfg_attr(not(test), allow(dead_code))]
pub const ACCOUNT_CHECK_ATTRIBUTES: &[&str] = &[KEY, "user_id", "session_epoch"];
/// A new session item (`create_session`'s `PutItem`, with or without a previous generation).
#[cfg_attr(not(test), allow(dead_code))]
pub const SESSION_ATTRIBUTES: &[&str] = &[
    KEY,
    "account_key",
    "user_id",
    "epoch",
    "family_key",
    "generation",
    "current_hash",
    "previous_hash",
    "sealed_next",
    "rotated_at",
    "created_at",
    TTL_ATTRIBUTE,
];
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

/// Whether `key` is a session's or a counter's, never an account's.
fn is_reserved(key: &str) -> bool {
    RESERVED_PREFIXES
        .iter()
        .any(|prefix| key.starts_with(prefix))
}

/// Rounds an add to an hourly window may lose (to a window restarted meanwhile) before it is
/// refused.
const WINDOW_TRIES: usize = 4;

fn counter_key(key: &str) -> AttributeValue {
    AttributeValue::S(format!("{COUNTER_PREFIX}{key}"))
}

fn session_key(sid: &str) -> AttributeValue {
    AttributeValue::S(format!("{SESSION_PREFIX}{sid}"))
}

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
fn applied<T, E, R>(result: Result<T, SdkError<E, R>>) -> Result<Option<T>, StoreError>
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
fn transaction_lost<R>(err: &SdkError<TransactWriteItemsError, R>) -> bool {
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

/// A number attribute an applied `UpdateItem` returned (`ReturnValue::UpdatedNew`).
fn returned_n(out: Option<UpdateItemOutput>, name: &str) -> Option<u64> {
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
            .item(KEY, s(&user.username_key))
            .item("user_id", s(&user.id))
            .item("username", s(&user.username))
            .item("hashed_password", s(&user.password_hash))
            .item("failed_logins", n(0))
            .item("created_at", n(crate::clock::now()))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", KEY);
        match &user.full_name {
            Some(full_name) => put.item("full_name", s(full_name)),
            None => put,
        }
    }

    /// The items under `keys` (those that exist), read strongly consistently in one round trip.
    async fn get_many(
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
    async fn get(&self, key: AttributeValue) -> Result<Option<Item>, StoreError> {
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
}

impl UserWriter for DynamoStore {
    async fn create(&self, user: &NewUser) -> Result<(), StoreError> {
        applied(self.put_new_user(user).send().await)?
            .map(|_| ())
            .ok_or(StoreError::Duplicate)
    }
}

impl CredentialStore for DynamoStore {
    async fn credentials(&self, username_key: &str) -> Result<Option<Credentials>, StoreError> {
        if is_reserved(username_key) {
            return Ok(None);
        }
        let Some(item) = self.get(s(username_key)).await? else {
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
            session_epoch: get_n(&item, "session_epoch").unwrap_or(0),
        }))
    }

    async fn count_failure(
        &self,
        username_key: &str,
        user_id: &str,
        at: u64,
    ) -> Result<(), StoreError> {
        // Conditional on the id: never creates an item, and a made-up name changes nothing.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, s(username_key))
            .update_expression("ADD failed_logins :one SET last_failed_at = :at")
            .condition_expression("user_id = :id")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":at", n(at))
            .expression_attribute_values(":id", s(user_id))
            .send()
            .await;
        applied(out).map(|_| ())
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
        if applied(update(rehash).await)?.is_none() && rehash.is_some() {
            // The hash changed since it was read (a concurrent rehash or password change): keep
            // the newer hash, still reset the counter (unless the account is gone).
            applied(update(None).await)?;
        }
        Ok(())
    }
}

impl ProfileReader for DynamoStore {
    async fn profile(
        &self,
        id: &str,
        username: &str,
        sid: &str,
    ) -> Result<Option<ProfileWithSession>, StoreError> {
        let user_key = policy::username_key(username);
        if is_reserved(&user_key) {
            return Ok(None);
        }
        // The account and the session in one strongly consistent round trip.
        let items = self.get_many([s(&user_key), session_key(sid)]).await?;
        let key_of = |item: &Item| get_s(item, KEY);
        let Some(user) = items
            .iter()
            .find(|i| key_of(i).as_deref() == Some(user_key.as_str()))
        else {
            return Ok(None);
        };
        if get_s(user, "user_id").as_deref() != Some(id) {
            return Ok(None);
        }
        let session = items
            .iter()
            .find(|i| key_of(i).is_some_and(|k| k.starts_with(SESSION_PREFIX)))
            .map(session_life)
            .transpose()?;
        Ok(Some(ProfileWithSession {
            profile: Profile {
                username: get_s(user, "username").unwrap_or_default(),
                full_name: get_s(user, "full_name"),
            },
            account_epoch: get_n(user, "session_epoch").unwrap_or(0),
            session,
        }))
    }
}

fn required_s(item: &Item, name: &str) -> Result<String, StoreError> {
    get_s(item, name).ok_or_else(|| StoreError::Fault(format!("item lacks {name}")))
}

fn required_n(item: &Item, name: &str) -> Result<u64, StoreError> {
    get_n(item, name).ok_or_else(|| StoreError::Fault(format!("item lacks {name}")))
}

fn session_life(item: &Item) -> Result<SessionLife, StoreError> {
    Ok(SessionLife {
        user_id: required_s(item, "user_id")?,
        epoch: required_n(item, "epoch")?,
        expires_at: required_n(item, TTL_ATTRIBUTE)?,
    })
}

impl CounterStore for DynamoStore {
    async fn counters(&self, keys: &[&str], now: u64) -> Result<Vec<Option<Counter>>, StoreError> {
        let items = self.get_many(keys.iter().map(|k| counter_key(k))).await?;
        Ok(keys
            .iter()
            .map(|key| {
                let wanted = format!("{COUNTER_PREFIX}{key}");
                items
                    .iter()
                    .find(|i| get_s(i, KEY).as_deref() == Some(wanted.as_str()))
                    // Refused once expired, before DynamoDB's TTL gets to it.
                    .filter(|i| get_n(i, TTL_ATTRIBUTE).is_some_and(|t| t > now))
                    .and_then(|i| {
                        Some(Counter {
                            failures: u32::try_from(get_n(i, "failures")?).ok()?,
                            since: get_n(i, "since")?,
                        })
                    })
            })
            .collect())
    }

    async fn swap_counter(&self, key: &str, swap: Swap) -> Result<bool, StoreError> {
        let (seen, next, expires_at, now) = (swap.seen, swap.next, swap.expires_at, swap.now);
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, counter_key(key))
            .item("failures", n(u64::from(next.failures)))
            .item("since", n(next.since))
            .item(TTL_ATTRIBUTE, n(expires_at))
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE);
        put = match seen {
            // Absent, or expired but not yet swept by the TTL.
            None => put
                .condition_expression("attribute_not_exists(#k) OR #ttl <= :now")
                .expression_attribute_names("#k", KEY)
                .expression_attribute_values(":now", n(now)),
            Some(seen) => put
                .condition_expression("failures = :f AND since = :s AND #ttl > :now")
                .expression_attribute_values(":f", n(u64::from(seen.failures)))
                .expression_attribute_values(":s", n(seen.since))
                .expression_attribute_values(":now", n(now)),
        };
        Ok(applied(put.send().await)?.is_some())
    }

    async fn add_in_window(
        &self,
        key: &str,
        ceiling: u32,
        window: u64,
        now: u64,
    ) -> Result<Option<u64>, StoreError> {
        for _ in 0..WINDOW_TRIES {
            // An open window below the ceiling, or none: one conditional add.
            let out = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(KEY, counter_key(key))
                .update_expression(
                    "SET failures = if_not_exists(failures, :zero) + :one, \
                     since = if_not_exists(since, :now), #ttl = if_not_exists(#ttl, :end)",
                )
                .condition_expression(
                    "attribute_not_exists(#k) OR (#ttl > :now AND failures < :ceiling)",
                )
                .expression_attribute_names("#k", KEY)
                .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":end", n(now.saturating_add(window)))
                .expression_attribute_values(":ceiling", n(u64::from(ceiling)))
                // The whole window (an unchanged `since` is not "updated" to every emulator).
                .return_values(ReturnValue::AllNew)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            let old = match out {
                Ok(out) => {
                    let since = out.attributes.as_ref().and_then(|a| get_n(a, "since"));
                    return since
                        .map(Some)
                        .ok_or_else(|| StoreError::Fault("the add returned no window".into()));
                }
                Err(e) if condition_failed(&e) => match e.into_service_error() {
                    UpdateItemError::ConditionalCheckFailedException(c) => c.item,
                    _ => None,
                },
                Err(e) => return Err(fail(e)),
            };
            let over = old
                .as_ref()
                .and_then(|o| get_n(o, TTL_ATTRIBUTE))
                .is_none_or(|ttl| ttl <= now);
            if !over {
                // Open and full: refused.
                return Ok(None);
            }
            // Over but not yet swept by the TTL: a new window, if no one started one meanwhile.
            let restart = self
                .client
                .put_item()
                .table_name(&self.table)
                .item(KEY, counter_key(key))
                .item("failures", n(1))
                .item("since", n(now))
                .item(TTL_ATTRIBUTE, n(now.saturating_add(window)))
                .condition_expression("attribute_not_exists(#k) OR #ttl <= :now")
                .expression_attribute_names("#k", KEY)
                .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
                .expression_attribute_values(":now", n(now))
                .send()
                .await;
            if applied(restart)?.is_some() {
                return Ok(Some(now));
            }
        }
        // Lost every round to concurrent writers: refused, never let through.
        Ok(None)
    }

    async fn give_back(&self, key: &str, since: u64) -> Result<(), StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, counter_key(key))
            .update_expression("ADD failures :minus")
            .condition_expression("since = :since AND failures > :zero")
            .expression_attribute_values(":minus", AttributeValue::N("-1".into()))
            .expression_attribute_values(":since", n(since))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        applied(out).map(|_| ())
    }

    async fn reset_counter(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, counter_key(key))
            .send()
            .await
            .map(|_| ())
            .map_err(fail)
    }
}

impl AccountStore for DynamoStore {
    async fn change_password(
        &self,
        user: &Credentials,
        new_hash: &str,
    ) -> Result<Option<u64>, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, s(&user.username_key))
            .update_expression(
                "SET hashed_password = :new, failed_logins = :zero REMOVE last_failed_at \
                 ADD session_epoch :one",
            )
            .condition_expression("user_id = :id AND hashed_password = :old")
            .expression_attribute_values(":id", s(&user.id))
            .expression_attribute_values(":old", s(&user.password_hash))
            .expression_attribute_values(":new", s(new_hash))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        Ok(returned_n(applied(out)?, "session_epoch"))
    }

    async fn delete_account(&self, user: &Credentials) -> Result<bool, StoreError> {
        // Session items stay until their TTL, refused from now on: their account is gone, and a
        // new account under the name has another id.
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, s(&user.username_key))
            .condition_expression("user_id = :id")
            .expression_attribute_values(":id", s(&user.id))
            .send()
            .await;
        Ok(applied(out)?.is_some())
    }
}

impl SessionStore for DynamoStore {
    async fn create_session(&self, session: &SessionRecord, _now: u64) -> Result<(), StoreError> {
        // Ended sessions need no pruning here: the table's TTL deletes them.
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, session_key(&session.sid))
            .item("account_key", s(&session.username_key))
            .item("user_id", s(&session.life.user_id))
            .item("epoch", n(session.life.epoch))
            .item("family_key", s(&session.family_key))
            .item("generation", n(u64::from(session.generation)))
            .item("current_hash", s(&session.current_hash))
            .item("created_at", n(session.created_at))
            .item(TTL_ATTRIBUTE, n(session.life.expires_at))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", KEY);
        if let Some(p) = &session.previous {
            put = put
                .item("previous_hash", s(&p.hash))
                .item("sealed_next", s(&p.sealed_next))
                .item("rotated_at", n(p.rotated_at));
        }
        put.send().await.map(|_| ()).map_err(fail)
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
            life: session_life(&item)?,
            family_key: required_s(&item, "family_key")?,
            generation: u32::try_from(required_n(&item, "generation")?)
                .map_err(|_| StoreError::Fault("generation out of range".into()))?,
            current_hash: required_s(&item, "current_hash")?,
            previous,
            created_at: required_n(&item, "created_at")?,
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
        // Items written by other tools may lack the epoch: it then counts as 0.
        let epoch = if from.life.epoch == 0 {
            "(session_epoch = :e OR attribute_not_exists(session_epoch))"
        } else {
            "session_epoch = :e"
        };
        let account = ConditionCheck::builder()
            .table_name(&self.table)
            .key(KEY, s(&from.username_key))
            .condition_expression(format!("user_id = :id AND {epoch}"))
            .expression_attribute_values(":id", s(&from.life.user_id))
            .expression_attribute_values(":e", n(from.life.epoch))
            .build()
            .map_err(build)?;
        let out = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(rotate).build())
            .transact_items(
                TransactWriteItem::builder()
                    .condition_check(account)
                    .build(),
            )
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            // A condition failed, or a concurrent transaction on one of the items won: the caller
            // reads again.
            Err(e) if transaction_lost(&e) => Ok(false),
            Err(e) => Err(fail(e)),
        }
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
            .key(KEY, s(username_key))
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

#[cfg(any(test, feature = "testing"))]
impl DynamoStore {
    /// Creates a table with the key schema and TTL attribute `template.yaml` declares.
    pub async fn create_table(config: &aws_config::SdkConfig, name: &str) {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
            TimeToLiveSpecification,
        };
        let client = Client::new(config);
        client
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
            .await
            .expect("create the table");
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
            .item(KEY, s(&policy::username_key(username)))
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
            .key(KEY, s(username_key))
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
