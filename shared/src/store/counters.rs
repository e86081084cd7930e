//! Throttle counters: the per-address schedules and the hourly windows of [`crate::throttle`].
//! The trait, then the SQLite and the DynamoDB implementation.

use std::future::Future;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use rusqlite::{OptionalExtension, params};

use super::dynamodb::{
    COUNTER_PREFIX, DynamoStore, KEY, TTL_ATTRIBUTE, account_item_key, applied, condition_failed,
    counter_key, fail, get_n, get_s, n,
};
use super::sqlite::{SqliteStore, classify, int, uint};
use super::{CredentialStore, Credentials, SessionStore, StoreError, TicketStore};

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

/// One hourly window's add in an attempt's claim: the window as read (`None`: absent or over).
#[derive(Debug, Clone, Copy)]
pub struct WindowAdd<'a> {
    /// The counter's key.
    pub key: &'a str,
    /// What the claimer read.
    pub seen: Option<Counter>,
    /// The failures it may hold.
    pub ceiling: u32,
    /// How long a window lasts, seconds.
    pub window: u64,
}

/// A login attempt's whole claim (see [`crate::throttle`]), written all or nothing: one failure
/// in the source's and the account's windows, the pair's compare-and-set, and the account's
/// consecutive count (for a name that is no account, a check that it still is none).
#[derive(Debug, Clone, Copy)]
pub struct AttemptClaim<'a> {
    /// The source's window.
    pub source: WindowAdd<'a>,
    /// The account's window.
    pub account: WindowAdd<'a>,
    /// The pair counter's key.
    pub pair_key: &'a str,
    /// The pair's compare-and-set.
    pub pair: Swap,
    /// The account's key (the name as typed, for a name that is no account).
    pub username_key: &'a str,
    /// The account's id; `None` for a name that is no account.
    pub user_id: Option<&'a str>,
    /// The time of the attempt.
    pub now: u64,
}

/// A ticket to store (see [`super::TicketStore::put_ticket`]).
#[derive(Debug, Clone)]
pub struct TicketWrite {
    /// Its kind.
    pub kind: super::TicketKind,
    /// The hash of its secret.
    pub hash: String,
    /// Its record.
    pub record: String,
    /// When it expires.
    pub expires_at: u64,
}

/// What a right password starts, written with the throttle's give-back.
#[derive(Debug, Clone)]
pub enum Follow {
    /// Nothing (a re-authentication).
    Nothing,
    /// A session.
    Session(Box<super::SessionRecord>),
    /// A ticket (an `mfa_token`).
    Ticket(TicketWrite),
}

/// A right password's settlement: the claim's windows given back, the pair's schedule reset,
/// the account's consecutive count reset (and its hash upgraded), and what it starts.
#[derive(Debug, Clone, Copy)]
pub struct AttemptSuccess<'a> {
    /// Each window's key and the start of the window its place was claimed in.
    pub windows: [(&'a str, u64); 2],
    /// The pair counter's key.
    pub pair_key: &'a str,
    /// The account.
    pub user: &'a Credentials,
    /// (read hash, upgraded hash), when the hash is upgraded.
    pub rehash: Option<(&'a str, &'a str)>,
    /// What the success starts.
    pub follow: &'a Follow,
    /// The time of the attempt.
    pub now: u64,
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

    /// Writes `claim` all or nothing: the two windows' starts, or `None` when any part was
    /// refused (a window full or restarted since it was read, the pair swapped by another
    /// attempt, a conflict): nothing is then left claimed, and the caller reads again. DynamoDB
    /// writes it as one transaction.
    fn claim_attempt(
        &self,
        claim: &AttemptClaim<'_>,
    ) -> impl Future<Output = Result<Option<(u64, u64)>, StoreError>> + Send;

    /// Adds one failure to each window of `adds`, all or nothing (a second factor's places,
    /// claimed before its check): the windows' starts, or `None` when any was full (or, on
    /// DynamoDB, which writes them as one transaction conditional on what was read, moved
    /// since it was read); nothing is then left claimed.
    fn claim_places(
        &self,
        adds: &[WindowAdd<'_>],
        now: u64,
    ) -> impl Future<Output = Result<Option<Vec<u64>>, StoreError>> + Send;

    /// Writes `success` (DynamoDB: one transaction when nothing moved since the claim, else
    /// each part on its own, as tolerant of a rolled-over window or a changed hash as
    /// [`CounterStore::give_back`] and [`super::CredentialStore::record_success`] are).
    fn settle_success(
        &self,
        success: &AttemptSuccess<'_>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// [`CounterStore::claim_attempt`] from the single-item writes, each atomic on its own, undone
/// in reverse when a later one is refused.
async fn claim_in_steps<C: CounterStore + CredentialStore>(
    store: &C,
    claim: &AttemptClaim<'_>,
) -> Result<Option<(u64, u64)>, StoreError> {
    let (source, account, now) = (claim.source, claim.account, claim.now);
    let Some(source_window) = store
        .add_in_window(source.key, source.ceiling, source.window, now)
        .await?
    else {
        return Ok(None);
    };
    let Some(account_window) = store
        .add_in_window(account.key, account.ceiling, account.window, now)
        .await?
    else {
        store.give_back(source.key, source_window).await?;
        return Ok(None);
    };
    if !store.swap_counter(claim.pair_key, claim.pair).await? {
        store.give_back(account.key, account_window).await?;
        store.give_back(source.key, source_window).await?;
        return Ok(None);
    }
    // A made-up name sends the same write to a record that does not exist: it changes nothing.
    store
        .count_failure(claim.username_key, claim.user_id.unwrap_or(""), now)
        .await?;
    Ok(Some((source_window, account_window)))
}

/// [`CounterStore::claim_places`] from the single-item adds, undone in reverse when a later one
/// is refused.
async fn places_in_steps<C: CounterStore>(
    store: &C,
    adds: &[WindowAdd<'_>],
    now: u64,
) -> Result<Option<Vec<u64>>, StoreError> {
    let mut claimed: Vec<u64> = Vec::with_capacity(adds.len());
    for add in adds {
        match store
            .add_in_window(add.key, add.ceiling, add.window, now)
            .await?
        {
            Some(since) => claimed.push(since),
            None => {
                for (add, since) in adds.iter().zip(&claimed).rev() {
                    store.give_back(add.key, *since).await?;
                }
                return Ok(None);
            }
        }
    }
    Ok(Some(claimed))
}

/// [`CounterStore::settle_success`] from the single-item writes.
async fn settle_in_steps<C: CounterStore + CredentialStore + SessionStore + TicketStore>(
    store: &C,
    success: &AttemptSuccess<'_>,
) -> Result<(), StoreError> {
    for (key, since) in success.windows {
        store.give_back(key, since).await?;
    }
    store.reset_counter(success.pair_key).await?;
    store.record_success(success.user, success.rehash).await?;
    match success.follow {
        Follow::Nothing => Ok(()),
        Follow::Session(record) => store.create_session(record, success.now).await,
        Follow::Ticket(t) => {
            store
                .put_ticket(t.kind, &t.hash, &t.record, t.expires_at, success.now)
                .await
        }
    }
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

    async fn claim_attempt(
        &self,
        claim: &AttemptClaim<'_>,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        // One file, no round trips: each write on its own, as before.
        claim_in_steps(self, claim).await
    }

    async fn settle_success(&self, success: &AttemptSuccess<'_>) -> Result<(), StoreError> {
        settle_in_steps(self, success).await
    }

    async fn claim_places(
        &self,
        adds: &[WindowAdd<'_>],
        now: u64,
    ) -> Result<Option<Vec<u64>>, StoreError> {
        places_in_steps(self, adds, now).await
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
                    .and_then(counter_of)
            })
            .collect())
    }

    async fn swap_counter(&self, key: &str, swap: Swap) -> Result<bool, StoreError> {
        let put = self.put_item(self.pair_swap(key, swap)?);
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
            .update_item(self.give_back_update(key, since)?)
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

    async fn claim_attempt(
        &self,
        claim: &AttemptClaim<'_>,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        let now = claim.now;
        let (source, source_window) = self.window_add(claim.source, now)?;
        let (account, account_window) = self.window_add(claim.account, now)?;
        let pair = self.pair_swap(claim.pair_key, claim.pair)?;
        let consecutive = match claim.user_id {
            Some(id) => TransactWriteItem::builder()
                .update(self.count_failure_update(claim.username_key, id, now)?)
                .build(),
            // A name that is no account: the same number of items, changing nothing, and lost
            // (read again) if the name was registered meanwhile.
            None => TransactWriteItem::builder()
                .condition_check(
                    ConditionCheck::builder()
                        .table_name(&self.table)
                        .key(KEY, account_item_key(claim.username_key))
                        .condition_expression("attribute_not_exists(user_id)")
                        .build()
                        .map_err(built)?,
                )
                .build(),
        };
        let items = vec![
            TransactWriteItem::builder().update(source).build(),
            TransactWriteItem::builder().update(account).build(),
            TransactWriteItem::builder().put(pair).build(),
            consecutive,
        ];
        Ok(self
            .transact(items)
            .await?
            .then_some((source_window, account_window)))
    }

    async fn claim_places(
        &self,
        adds: &[WindowAdd<'_>],
        now: u64,
    ) -> Result<Option<Vec<u64>>, StoreError> {
        let mut items = Vec::with_capacity(adds.len());
        let mut starts = Vec::with_capacity(adds.len());
        for add in adds {
            let (update, since) = self.window_add(*add, now)?;
            items.push(TransactWriteItem::builder().update(update).build());
            starts.push(since);
        }
        Ok(self.transact(items).await?.then_some(starts))
    }

    async fn settle_success(&self, success: &AttemptSuccess<'_>) -> Result<(), StoreError> {
        let mut items = Vec::with_capacity(5);
        for (key, since) in success.windows {
            items.push(
                TransactWriteItem::builder()
                    .update(self.give_back_update(key, since)?)
                    .build(),
            );
        }
        let reset = Delete::builder()
            .table_name(&self.table)
            .key(KEY, counter_key(success.pair_key))
            .build()
            .map_err(built)?;
        items.push(TransactWriteItem::builder().delete(reset).build());
        let account = self.record_success_update(success.user, success.rehash)?;
        items.push(TransactWriteItem::builder().update(account).build());
        if let Some(put) = self.follow_put(success.follow, success.now)? {
            items.push(TransactWriteItem::builder().put(put).build());
        }
        // Something moved since the claim (a window rolled over, the hash was changed, a
        // concurrent login's transaction): each part on its own, each as tolerant as before.
        if !self.transact(items).await? {
            settle_in_steps(self, success).await?;
        }
        Ok(())
    }
}

/// The counter an item holds.
pub(super) fn counter_of(item: &super::dynamodb::Item) -> Option<Counter> {
    Some(Counter {
        failures: u32::try_from(get_n(item, "failures")?).ok()?,
        since: get_n(item, "since")?,
    })
}

fn built(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Fault(e.to_string())
}

impl DynamoStore {
    /// A claim's add to a window, as read: one more in the open window `seen` below its ceiling
    /// (if it is still that window), or a new window from `now` (if none was started
    /// meanwhile). The window's start, to give the place back.
    pub(super) fn window_add(
        &self,
        add: WindowAdd<'_>,
        now: u64,
    ) -> Result<(Update, u64), StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key(KEY, counter_key(add.key))
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":one", n(1));
        let (update, since) = match add.seen {
            Some(seen) => (
                update
                    .update_expression("SET failures = failures + :one")
                    .condition_expression("since = :since AND #ttl > :now AND failures < :ceiling")
                    .expression_attribute_values(":since", n(seen.since))
                    .expression_attribute_values(":ceiling", n(u64::from(add.ceiling))),
                seen.since,
            ),
            None => (
                update
                    .update_expression("SET failures = :one, since = :now, #ttl = :end")
                    .condition_expression("attribute_not_exists(#k) OR #ttl <= :now")
                    .expression_attribute_names("#k", KEY)
                    .expression_attribute_values(":end", n(now.saturating_add(add.window))),
                now,
            ),
        };
        Ok((update.build().map_err(built)?, since))
    }

    /// [`CounterStore::give_back`]'s write, for a transaction.
    pub(super) fn give_back_update(&self, key: &str, since: u64) -> Result<Update, StoreError> {
        Update::builder()
            .table_name(&self.table)
            .key(KEY, counter_key(key))
            .update_expression("ADD failures :minus")
            .condition_expression("since = :since AND failures > :zero")
            .expression_attribute_values(":minus", AttributeValue::N("-1".into()))
            .expression_attribute_values(":since", n(since))
            .expression_attribute_values(":zero", n(0))
            .build()
            .map_err(built)
    }

    /// The write of what a login starts, for a transaction.
    pub(super) fn follow_put(&self, follow: &Follow, now: u64) -> Result<Option<Put>, StoreError> {
        Ok(match follow {
            Follow::Nothing => None,
            Follow::Session(record) => Some(self.session_put(record)?),
            Follow::Ticket(t) => Some(self.ticket_put(t, now)?),
        })
    }

    /// [`CounterStore::swap_counter`]'s write, for a transaction.
    fn pair_swap(&self, key: &str, swap: Swap) -> Result<Put, StoreError> {
        let (seen, next, expires_at, now) = (swap.seen, swap.next, swap.expires_at, swap.now);
        let put = Put::builder()
            .table_name(&self.table)
            .item(KEY, counter_key(key))
            .item("failures", n(u64::from(next.failures)))
            .item("since", n(next.since))
            .item(TTL_ATTRIBUTE, n(expires_at))
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", n(now));
        let put = match seen {
            None => put
                .condition_expression("attribute_not_exists(#k) OR #ttl <= :now")
                .expression_attribute_names("#k", KEY),
            Some(seen) => put
                .condition_expression("failures = :f AND since = :s AND #ttl > :now")
                .expression_attribute_values(":f", n(u64::from(seen.failures)))
                .expression_attribute_values(":s", n(seen.since)),
        };
        put.build().map_err(built)
    }
}
