//! What an operator does outside the API (the `auth-admin` tool): copy users in from another
//! SQLite file, and list and inspect accounts. Unlocking, global logout and deletion need
//! nothing new: they are [`CredentialStore::record_success`](super::CredentialStore),
//! [`SessionStore::end_all_sessions`](super::SessionStore) and
//! [`AccountStore::delete_account`](super::AccountStore).
//!
//! Imports never overwrite: each user is one conditional write, and a user whose key is taken is
//! reported with the account holding it, so a re-run can tell its own earlier writes (same id)
//! from another account.

use std::future::Future;
use std::path::Path;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::dynamodb::{
    COUNTER_PREFIX, Item, KEY, RESERVED_PREFIXES, TTL_ATTRIBUTE, account_item_key,
    condition_failed, fail, get_n, get_s, is_reserved, n, s,
};
use super::sqlite::{classify, int, uint};
use super::{Counter, DynamoStore, NewUser, SqliteStore, StoreError};
use crate::throttle;

/// An account as an operator sees it: everything but the password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user's id (`sub`).
    pub id: String,
    /// The name as registered.
    pub username: String,
    /// The case-insensitive key.
    pub username_key: String,
    /// Optional display name.
    pub full_name: Option<String>,
    /// Consecutive failed logins since the last success.
    pub failed_logins: u32,
    /// When the last failure happened, seconds since the epoch.
    pub last_failed_at: Option<u64>,
    /// The account's session epoch.
    pub session_epoch: u64,
}

/// What became of one user given to [`AdminStore::import`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// Written now.
    Created,
    /// An account with this key and this id is already stored: an earlier run wrote it.
    AlreadyThere,
    /// Another account holds the key (or, on SQLite, the exact name or the id): its name.
    Taken(String),
}

/// The operator's view of a store (the `auth-admin` tool; no function needs it).
pub trait AdminStore: Send + Sync {
    /// How many users one [`AdminStore::import`] call should carry.
    const IMPORT_BATCH: usize;

    /// Writes each of `users` whose key is free, with a zero failure count and `session_epoch`,
    /// never overwriting a stored account; one outcome per user, in order. Each call is durable
    /// on return, so an interrupted import resumes by running it again.
    fn import(
        &self,
        users: &[NewUser],
        session_epoch: u64,
    ) -> impl Future<Output = Result<Vec<Imported>, StoreError>> + Send;

    /// The account with this key, if any.
    fn account(
        &self,
        username_key: &str,
    ) -> impl Future<Output = Result<Option<Account>, StoreError>> + Send;

    /// Up to `limit` accounts following the account keyed `after` (from the first without it), in
    /// an order that stays the same from one call to the next: by key on SQLite, the table's own
    /// (hash) order on DynamoDB.
    fn accounts(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Account>, StoreError>> + Send;

    /// Every per-address counter against `subject` (see [`crate::throttle::subject`]) still
    /// alive at `now`, with its key: what `show` reports and `unlock` clears. A scan of the
    /// counters on either backend: an operator's occasional question, never a function's.
    fn pair_counters(
        &self,
        subject: &str,
        now: u64,
    ) -> impl Future<Output = Result<Vec<(String, Counter)>, StoreError>> + Send;
}

impl AdminStore for SqliteStore {
    /// One transaction per 1,000 users: a commit (one fsync in WAL mode) per row would be most of
    /// the time.
    const IMPORT_BATCH: usize = 1000;

    async fn import(
        &self,
        users: &[NewUser],
        session_epoch: u64,
    ) -> Result<Vec<Imported>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(classify)?;
        let mut outcomes = Vec::with_capacity(users.len());
        {
            // DO NOTHING on any uniqueness conflict: the key, the id or the exact name (a
            // tutorial row the migration parked under another key keeps its name).
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO users (username, hashed_password, full_name, user_id,
                         username_key, failed_logins, session_epoch)
                     VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)
                     ON CONFLICT DO NOTHING",
                )
                .map_err(classify)?;
            let mut by_key = tx
                .prepare_cached("SELECT user_id, username FROM users WHERE username_key = ?1")
                .map_err(classify)?;
            let mut by_name_or_id = tx
                .prepare_cached("SELECT username FROM users WHERE username = ?1 OR user_id = ?2")
                .map_err(classify)?;
            for user in users {
                let inserted = insert
                    .execute(params![
                        user.username,
                        user.password_hash,
                        user.full_name,
                        user.id,
                        user.username_key,
                        int(session_epoch),
                    ])
                    .map_err(classify)?;
                if inserted == 1 {
                    outcomes.push(Imported::Created);
                    continue;
                }
                let holder: Option<(Option<String>, String)> = by_key
                    .query_row([&user.username_key], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
                    .map_err(classify)?;
                outcomes.push(match holder {
                    Some((Some(id), _)) if id == user.id => Imported::AlreadyThere,
                    Some((_, name)) => Imported::Taken(name),
                    None => Imported::Taken(
                        by_name_or_id
                            .query_row(params![user.username, user.id], |r| r.get(0))
                            .optional()
                            .map_err(classify)?
                            .unwrap_or_else(|| user.username.clone()),
                    ),
                });
            }
        }
        tx.commit().map_err(classify)?;
        Ok(outcomes)
    }

    async fn account(&self, username_key: &str) -> Result<Option<Account>, StoreError> {
        self.lock()
            .query_row(
                &format!("{ACCOUNT_COLUMNS} WHERE username_key = ?1"),
                [username_key],
                account_row,
            )
            .optional()
            .map_err(classify)
    }

    async fn accounts(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Account>, StoreError> {
        // Rows the migration parked under a key starting with NUL (a tutorial name that differs
        // from an earlier one only by case) are left out: no name reaches them.
        let conn = self.lock();
        let mut select = conn
            .prepare_cached(&format!(
                "{ACCOUNT_COLUMNS} WHERE username_key > ?1 AND substr(username_key, 1, 1) != char(0)
                 ORDER BY username_key LIMIT ?2"
            ))
            .map_err(classify)?;
        select
            .query_map(
                params![
                    after.unwrap_or(""),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                account_row,
            )
            .map_err(classify)?
            .collect::<Result<_, _>>()
            .map_err(classify)
    }

    async fn pair_counters(
        &self,
        subject: &str,
        now: u64,
    ) -> Result<Vec<(String, Counter)>, StoreError> {
        let conn = self.lock();
        let mut select = conn
            .prepare_cached(
                "SELECT key, failures, since FROM throttle_counters
                 WHERE substr(key, 1, 5) = 'pair ' AND expires_at > ?1",
            )
            .map_err(classify)?;
        let rows = select
            .query_map([int(now)], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Counter {
                        failures: r.get(1)?,
                        since: uint(r.get(2)?),
                    },
                ))
            })
            .map_err(classify)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(classify)?;
        Ok(of_subject(rows, subject))
    }
}

/// The counters among `found` whose key is a pair key against `subject`.
fn of_subject(found: Vec<(String, Counter)>, subject: &str) -> Vec<(String, Counter)> {
    found
        .into_iter()
        .filter(|(key, _)| throttle::parse_pair_key(key).is_some_and(|(_, s)| s == subject))
        .collect()
}

const ACCOUNT_COLUMNS: &str = "SELECT user_id, username, username_key, full_name, failed_logins,
     last_failed_at, session_epoch FROM users";

fn account_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
        username: r.get(1)?,
        username_key: r.get(2)?,
        full_name: r.get(3)?,
        failed_logins: r.get(4)?,
        last_failed_at: r.get::<_, Option<i64>>(5)?.map(uint),
        session_epoch: uint(r.get(6)?),
    })
}

/// The attributes of a user item an operator may see (never the hash), with their placeholders.
const ACCOUNT_ATTRIBUTES: [(&str, &str); 7] = [
    ("#k", KEY),
    ("#id", "user_id"),
    ("#u", "username"),
    ("#fn", "full_name"),
    ("#fl", "failed_logins"),
    ("#lf", "last_failed_at"),
    ("#e", "session_epoch"),
];
const ACCOUNT_PROJECTION: &str = "#k, #id, #u, #fn, #fl, #lf, #e";

fn account_item(item: &Item) -> Result<Account, StoreError> {
    let required =
        |name| get_s(item, name).ok_or_else(|| StoreError::Fault(format!("item lacks {name}")));
    Ok(Account {
        id: required("user_id")?,
        username: required("username")?,
        username_key: required(KEY)?,
        full_name: get_s(item, "full_name"),
        failed_logins: get_n(item, "failed_logins").unwrap_or(0) as u32,
        last_failed_at: get_n(item, "last_failed_at"),
        session_epoch: get_n(item, "session_epoch").unwrap_or(0),
    })
}

/// What a conditional put found under its key: this import's own earlier write, or another
/// account.
fn holder(item: &Item, id: &str) -> Imported {
    if get_s(item, "user_id").as_deref() == Some(id) {
        Imported::AlreadyThere
    } else {
        Imported::Taken(get_s(item, "username").unwrap_or_default())
    }
}

impl DynamoStore {
    /// One conditional `PutItem` (`attribute_not_exists`, as registration writes), returning the
    /// item in the way when the key is taken.
    async fn put_new(&self, user: &NewUser, session_epoch: u64) -> Result<Imported, StoreError> {
        // The write registration sends, plus the epoch and the item in the way on a refusal.
        let put = self
            .put_new_user(user)
            .item("session_epoch", n(session_epoch))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        match put.send().await {
            Ok(_) => Ok(Imported::Created),
            Err(e) if condition_failed(&e) => {
                let old = match e.into_service_error() {
                    PutItemError::ConditionalCheckFailedException(c) => c.item,
                    _ => None,
                };
                let old = match old {
                    Some(item) => Some(item),
                    // Not every emulator returns the item: read it.
                    None => self.get_account_item(&user.username_key).await?,
                };
                // Gone again since (deleted meanwhile): report the name as taken, the operator
                // re-runs.
                Ok(old.map_or_else(
                    || Imported::Taken(user.username.clone()),
                    |item| holder(&item, &user.id),
                ))
            }
            Err(e) => Err(fail(e)),
        }
    }

    async fn get_account_item(&self, username_key: &str) -> Result<Option<Item>, StoreError> {
        let mut get = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, account_item_key(username_key))
            .consistent_read(true)
            .projection_expression(ACCOUNT_PROJECTION);
        for (placeholder, name) in ACCOUNT_ATTRIBUTES {
            get = get.expression_attribute_names(placeholder, name);
        }
        Ok(get.send().await.map_err(fail)?.item)
    }
}

impl AdminStore for DynamoStore {
    /// Conditional `PutItem`s in flight at once. Not `TransactWriteItems`: users are independent,
    /// so a transaction's all-or-nothing would only let one taken name cancel 99 good writes, at
    /// twice the write units; and moto copies the whole table for each item of a transaction,
    /// which made one 100-item transaction take 66 s on a 5,000-user table (1.2 s for 100 puts).
    const IMPORT_BATCH: usize = 32;

    async fn import(
        &self,
        users: &[NewUser],
        session_epoch: u64,
    ) -> Result<Vec<Imported>, StoreError> {
        let mut writes = tokio::task::JoinSet::new();
        for (index, user) in users.iter().enumerate() {
            let (store, user) = (self.clone(), user.clone());
            writes.spawn(async move { (index, store.put_new(&user, session_epoch).await) });
        }
        let mut outcomes = vec![None; users.len()];
        while let Some(done) = writes.join_next().await {
            // On an error the set is dropped, which cancels the writes still in flight: each one
            // either landed or not, and a re-run sorts them out.
            let (index, outcome) = done.map_err(|e| StoreError::Fault(e.to_string()))?;
            outcomes[index] = Some(outcome?);
        }
        outcomes
            .into_iter()
            .map(|o| o.ok_or_else(|| StoreError::Fault("an import write went missing".into())))
            .collect()
    }

    async fn account(&self, username_key: &str) -> Result<Option<Account>, StoreError> {
        if is_reserved(username_key) {
            return Ok(None);
        }
        self.get_account_item(username_key)
            .await?
            .as_ref()
            .map(account_item)
            .transpose()
    }

    async fn accounts(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Account>, StoreError> {
        let mut found = Vec::new();
        let mut start = after.map(|key| Item::from([(KEY.to_string(), s(key))]));
        // Sessions, counters, tickets and clients share the table: every reserved prefix is
        // filtered out, so a new kind of item is left out of the list as it is added.
        let filter = (0..RESERVED_PREFIXES.len())
            .map(|i| format!("NOT begins_with(#k, :p{i})"))
            .collect::<Vec<_>>()
            .join(" AND ");
        while found.len() < limit {
            let mut scan = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .projection_expression(ACCOUNT_PROJECTION)
                .filter_expression(&filter)
                // Counts the items read, sessions included, before the filter; a page also
                // ends at 1 MB.
                .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take());
            for (i, prefix) in RESERVED_PREFIXES.iter().enumerate() {
                scan = scan.expression_attribute_values(format!(":p{i}"), s(prefix));
            }
            for (placeholder, name) in ACCOUNT_ATTRIBUTES {
                scan = scan.expression_attribute_names(placeholder, name);
            }
            let page = scan.send().await.map_err(fail)?;
            for item in page.items() {
                if found.len() == limit {
                    break;
                }
                found.push(account_item(item)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(found)
    }

    async fn pair_counters(
        &self,
        subject: &str,
        now: u64,
    ) -> Result<Vec<(String, Counter)>, StoreError> {
        let prefix = format!("{COUNTER_PREFIX}pair ");
        let items = self
            .scan_all(
                "begins_with(#k, :pair) AND contains(#k, :subject) AND #ttl > :now",
                &[("#k", KEY), ("#ttl", TTL_ATTRIBUTE)],
                &[
                    (":pair", s(&prefix)),
                    (":subject", s(subject)),
                    (":now", n(now)),
                ],
            )
            .await?;
        let found = items
            .iter()
            .filter_map(|item| {
                let key = get_s(item, KEY)?.strip_prefix(COUNTER_PREFIX)?.to_string();
                let failures = u32::try_from(get_n(item, "failures")?).ok()?;
                let since = get_n(item, "since")?;
                Some((key, Counter { failures, since }))
            })
            .collect();
        Ok(of_subject(found, subject))
    }
}

/// Reading another service's `users.db` failed: the file, not the store, is at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(String);

impl From<rusqlite::Error> for SourceError {
    fn from(e: rusqlite::Error) -> Self {
        SourceError(e.to_string())
    }
}

/// One row of a source `users.db`, as found: nothing is checked yet. `Debug` leaves the hash out.
#[derive(Clone, PartialEq, Eq)]
pub struct SourceUser {
    /// The row's `rowid`, to name a row without a usable name.
    pub row: i64,
    /// `username`.
    pub username: Option<String>,
    /// `hashed_password`, as stored.
    pub password_hash: Option<String>,
    /// `full_name`.
    pub full_name: Option<String>,
    /// `user_id`, in a file of this service's.
    pub user_id: Option<String>,
}

impl std::fmt::Debug for SourceUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceUser")
            .field("row", &self.row)
            .field("username", &self.username)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// The `users` table of a FastAPI-tutorial `users.db` (`username`, `hashed_password`,
/// `full_name`) or of this service's SQLite store (the same plus `user_id` and its own columns),
/// opened read-only: opening it as a store would migrate the other app's file.
pub struct UserSource {
    conn: Connection,
    select: String,
}

impl UserSource {
    /// Opens the file at `path` for reading and checks that it has a users table.
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let columns: Vec<String> = {
            let mut stmt = conn.prepare("PRAGMA table_info(users)")?;
            stmt.query_map([], |r| r.get::<_, String>(1))?
                .collect::<Result<_, _>>()?
        };
        let has = |name: &str| columns.iter().any(|c| c == name);
        if !has("username") || !has("hashed_password") {
            return Err(SourceError(
                "no users(username, hashed_password, ...) table".into(),
            ));
        }
        let optional = |name: &'static str| if has(name) { name } else { "NULL" };
        let select = format!(
            "SELECT rowid, username, hashed_password, {}, {} FROM users
             WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
            optional("full_name"),
            optional("user_id"),
        );
        Ok(UserSource { conn, select })
    }

    /// How many rows the table holds.
    pub fn count(&self) -> Result<u64, SourceError> {
        let count: i64 = self
            .conn
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))?;
        Ok(uint(count))
    }

    /// Up to `limit` rows after row `after` (0 for the first), in `rowid` order: the order the
    /// tutorial's app inserted them, so of two names that collide the older one comes first.
    pub fn page(&self, after: i64, limit: usize) -> Result<Vec<SourceUser>, SourceError> {
        let mut stmt = self.conn.prepare_cached(&self.select)?;
        let rows = stmt.query_map(
            params![after, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                Ok(SourceUser {
                    row: r.get(0)?,
                    username: text(r.get_ref(1)?),
                    password_hash: text(r.get_ref(2)?),
                    full_name: text(r.get_ref(3)?),
                    user_id: text(r.get_ref(4)?),
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// A column as text whatever its storage class (SQLite columns are loosely typed, and another
/// app may have stored a number as a name).
fn text(value: ValueRef<'_>) -> Option<String> {
    match value {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
    }
}

/// Writes a `users.db` exactly as the FastAPI tutorial creates it, with `users` as (username,
/// hash, full name) rows in one transaction (tests and the import benchmark).
#[cfg(any(test, feature = "testing"))]
pub fn write_tutorial_db(
    path: &Path,
    users: impl IntoIterator<Item = (String, String, Option<String>)>,
) {
    let mut conn = Connection::open(path).expect("create the tutorial's users.db");
    let tx = conn.transaction().expect("begin");
    tx.execute_batch(
        "CREATE TABLE users (username TEXT PRIMARY KEY, hashed_password TEXT, full_name TEXT);",
    )
    .expect("the tutorial's table");
    {
        let mut insert = tx
            .prepare("INSERT INTO users (username, hashed_password, full_name) VALUES (?1, ?2, ?3)")
            .expect("prepare");
        for (username, hash, full_name) in users {
            insert
                .execute(params![username, hash, full_name])
                .expect("insert a tutorial user");
        }
    }
    tx.commit().expect("commit");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy;

    fn user(id: &str, name: &str) -> NewUser {
        NewUser {
            id: id.into(),
            username: name.into(),
            username_key: policy::username_key(name),
            password_hash: format!("$2b$04$hash-of-{name}"),
            full_name: None,
            email: None,
        }
    }

    #[tokio::test]
    async fn sqlite_imports_never_overwrite_and_name_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("users.db")).unwrap();
        let first = [user("id-alice", "Alice"), user("id-bob", "bob")];
        assert_eq!(
            store.import(&first, 7).await.unwrap(),
            [Imported::Created, Imported::Created]
        );
        let again = [
            user("id-alice", "Alice"),
            user("other", "ALICE"),
            user("id-bob", "bobby"),
        ];
        assert_eq!(
            store.import(&again, 8).await.unwrap(),
            [
                Imported::AlreadyThere,
                Imported::Taken("Alice".into()),
                // The id is held by another name.
                Imported::Taken("bob".into())
            ]
        );
        let alice = store.account("alice").await.unwrap().unwrap();
        assert_eq!((alice.id.as_str(), alice.session_epoch), ("id-alice", 7));
        let page = store.accounts(None, 10).await.unwrap();
        let names: Vec<_> = page.iter().map(|a| a.username.as_str()).collect();
        assert_eq!(names, ["Alice", "bob"]);
        assert_eq!(store.accounts(Some("alice"), 10).await.unwrap().len(), 1);
    }

    #[test]
    fn a_source_is_read_as_found_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tutorial.db");
        write_tutorial_db(
            &path,
            [
                ("johndoe".into(), "$2b$12$x".into(), Some("John Doe".into())),
                ("alice".into(), "$2b$12$y".into(), None),
            ],
        );
        let before = std::fs::read(&path).unwrap();
        let source = UserSource::open(&path).unwrap();
        assert_eq!(source.count().unwrap(), 2);
        let rows = source.page(0, 1).unwrap();
        assert_eq!(rows[0].username.as_deref(), Some("johndoe"));
        assert_eq!(rows[0].user_id, None);
        let rest = source.page(rows[0].row, 10).unwrap();
        assert_eq!(rest.len(), 1);
        assert!(!format!("{rest:?}").contains("$2b$"), "Debug shows no hash");
        drop(source);
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert!(UserSource::open(&dir.path().join("missing.db")).is_err());
    }
}
