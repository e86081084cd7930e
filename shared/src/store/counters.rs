//! Throttle counters: the per-address schedules and the hourly windows of [`crate::throttle`].
//! The trait, then the SQLite and the DynamoDB implementation.

use std::future::Future;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use rusqlite::{OptionalExtension, params};

use super::StoreError;
use super::dynamodb::{
    COUNTER_PREFIX, DynamoStore, KEY, TTL_ATTRIBUTE, applied, condition_failed, counter_key, fail,
    get_n, get_s, n, unless_alive,
};
use super::sqlite::{SqliteStore, classify, int, uint};

/// A throttle counter: failures, and when the last one happened (or its window began).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// Failures counted.
    pub failures: u32,
    /// Seconds since the epoch: the last failure (schedules) or the window's start (ceilings).
    pub since: u64,
}

/// A compare-and-set on a counter: `next` (gone at `expires_at`) replaces it only if it is still
/// `seen` (`None`: absent, or expired at `now`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swap {
    /// What the writer read.
    pub seen: Option<Counter>,
    /// What it writes.
    pub next: Counter,
    /// When the new value expires, seconds since the epoch.
    pub expires_at: u64,
    /// The time of the write.
    pub now: u64,
}

impl Swap {
    /// `seen` → `next` (gone at `expires_at`), written at `now`.
    pub fn new(seen: Option<Counter>, next: Counter, expires_at: u64, now: u64) -> Self {
        Swap {
            seen,
            next,
            expires_at,
            now,
        }
    }
}

/// Throttle counters keyed by name (`pair …`, `source …`), beside the accounts' own: each is
/// replaced only by a compare-and-set, and carries its own expiry, after which the backend
/// deletes it by itself (DynamoDB's TTL; SQLite prunes as it writes).
pub trait CounterStore: Send + Sync {
    /// The counters named `keys`, in order (`None`: absent or expired at `now`), in one round
    /// trip.
    fn counters(
        &self,
        keys: &[&str],
        now: u64,
    ) -> impl Future<Output = Result<Vec<Option<Counter>>, StoreError>> + Send;

    /// Applies `swap` to `key`; `false` when another writer got there first.
    fn swap_counter(
        &self,
        key: &str,
        swap: Swap,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Adds one failure to the hourly window `key` in one atomic conditional write, unless it
    /// already holds `ceiling` (then `None`: refused, nothing written). A window that is absent
    /// or over (`window` seconds after it began) starts again at `now` with this one failure.
    /// The window's start, to give the place back with [`CounterStore::give_back`].
    fn add_in_window(
        &self,
        key: &str,
        ceiling: u32,
        window: u64,
        now: u64,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Takes back one failure added to the window `key` that began at `since` (a login that
    /// turned out right); nothing happens once that window is over or empty.
    fn give_back(
        &self,
        key: &str,
        since: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes `key` (a success resets its schedule).
    fn reset_counter(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

// SQLite: the `throttle_counters` table, pruned as it is written.

impl CounterStore for SqliteStore {
    async fn counters(&self, keys: &[&str], now: u64) -> Result<Vec<Option<Counter>>, StoreError> {
        let conn = self.lock();
        let mut select = conn
            .prepare_cached(
                "SELECT failures, since FROM throttle_counters WHERE key = ?1 AND expires_at > ?2",
            )
            .map_err(classify)?;
        keys.iter()
            .map(|key| {
                select
                    .query_row(params![key, int(now)], |r| {
                        Ok(Counter {
                            failures: r.get(0)?,
                            since: uint(r.get(1)?),
                        })
                    })
                    .optional()
                    .map_err(classify)
            })
            .collect()
    }

    async fn swap_counter(&self, key: &str, swap: Swap) -> Result<bool, StoreError> {
        let (seen, next, expires_at, now) = (swap.seen, swap.next, swap.expires_at, swap.now);
        let conn = self.lock();
        conn.execute(
            "DELETE FROM throttle_counters WHERE expires_at <= ?1",
            [int(now)],
        )
        .map_err(classify)?;
        let changed = match seen {
            // Absent (an expired one was just pruned): only the first insert wins.
            None => conn.execute(
                "INSERT INTO throttle_counters (key, failures, since, expires_at)
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT(key) DO NOTHING",
                params![key, next.failures, int(next.since), int(expires_at)],
            ),
            Some(seen) => conn.execute(
                "UPDATE throttle_counters SET failures = ?4, since = ?5, expires_at = ?6
                 WHERE key = ?1 AND failures = ?2 AND since = ?3",
                params![
                    key,
                    seen.failures,
                    int(seen.since),
                    next.failures,
                    int(next.since),
                    int(expires_at)
                ],
            ),
        }
        .map_err(classify)?;
        Ok(changed == 1)
    }

    async fn add_in_window(
        &self,
        key: &str,
        ceiling: u32,
        window: u64,
        now: u64,
    ) -> Result<Option<u64>, StoreError> {
        // One statement, so one writer at a time across processes: a window that is over starts
        // again, a full one is left alone (no row returned).
        let conn = self.lock();
        let mut upsert = conn
            .prepare_cached(
                "INSERT INTO throttle_counters (key, failures, since, expires_at)
                 VALUES (?1, 1, ?2, ?3)
                 ON CONFLICT(key) DO UPDATE SET
                     failures = CASE WHEN expires_at <= ?2 THEN 1 ELSE failures + 1 END,
                     since = CASE WHEN expires_at <= ?2 THEN ?2 ELSE since END,
                     expires_at = CASE WHEN expires_at <= ?2 THEN ?3 ELSE expires_at END
                 WHERE expires_at <= ?2 OR failures < ?4
                 RETURNING since",
            )
            .map_err(classify)?;
        upsert
            .query_row(
                params![key, int(now), int(now.saturating_add(window)), ceiling],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|since| since.map(uint))
            .map_err(classify)
    }

    async fn give_back(&self, key: &str, since: u64) -> Result<(), StoreError> {
        self.lock()
            .prepare_cached(
                "UPDATE throttle_counters SET failures = failures - 1
                 WHERE key = ?1 AND since = ?2 AND failures > 0",
            )
            .and_then(|mut update| update.execute(params![key, int(since)]))
            .map(|_| ())
            .map_err(classify)
    }

    async fn reset_counter(&self, key: &str) -> Result<(), StoreError> {
        self.lock()
            .execute("DELETE FROM throttle_counters WHERE key = ?1", [key])
            .map(|_| ())
            .map_err(classify)
    }
}

// DynamoDB: `#throttle …` items with the table's TTL.

/// Rounds an add to an hourly window may lose (to a window restarted meanwhile) before it is
/// refused.
const WINDOW_TRIES: usize = 4;

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
            None => unless_alive(put, now),
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
            // Over but not yet swept by the TTL: a new window, if no one started one meanwhile
            // (the compare-and-set from "absent or expired").
            let first = Counter {
                failures: 1,
                since: now,
            };
            let restart = Swap::new(None, first, now.saturating_add(window), now);
            if self.swap_counter(key, restart).await? {
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
