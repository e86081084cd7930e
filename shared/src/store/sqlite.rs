//! The SQLite store: the embedded default, and a drop-in for the FastAPI tutorial's `users.db`.
//!
//! The tutorial's table is `users(username TEXT PRIMARY KEY, hashed_password TEXT, full_name TEXT)`.
//! Opening such a file adds the columns this service needs (a random `user_id`, the
//! case-insensitive `username_key`, failure counters) in one transaction, keeping every row and
//! hash, so its users log in unchanged. Sessions live in their own `sessions` table, which the
//! tutorial's app never reads; ended ones are pruned whenever a session is written. WAL and a busy timeout let several function processes
//! share the file under `cargo lambda watch`.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};

use super::{
    AccountStore, Counter, CounterStore, CredentialStore, Credentials, NewUser, PreviousGeneration,
    Profile, ProfileReader, ProfileWithSession, SessionLife, SessionRecord, SessionStore,
    StoreError, Swap, UserWriter,
};
use crate::policy;

/// Schema version written to `PRAGMA user_version` once migrated.
const SCHEMA_VERSION: i64 = 3;
/// How long a writer waits for another process's lock before the request gets a 503.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A user store in one SQLite file.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

pub(super) fn classify(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => StoreError::Duplicate,
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::CannotOpen) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Fault(e.to_string()),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the file at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        }
        let conn = Connection::open(path).map_err(classify)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(classify)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(classify)?;
        let store = SqliteStore {
            conn: Mutex::new(conn),
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(classify)?;
        if version >= SCHEMA_VERSION {
            return Ok(());
        }
        // IMMEDIATE: of several cold starts racing on a new file, one migrates, the others wait.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(classify)?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(classify)?;
        if version < SCHEMA_VERSION {
            tx.execute_batch(
                "CREATE TABLE IF NOT EXISTS users (
                     username TEXT PRIMARY KEY,
                     hashed_password TEXT,
                     full_name TEXT
                 );",
            )
            .map_err(classify)?;
            let existing: Vec<String> = {
                let mut stmt = tx.prepare("PRAGMA table_info(users)").map_err(classify)?;
                stmt.query_map([], |r| r.get::<_, String>(1))
                    .map_err(classify)?
                    .collect::<Result<_, _>>()
                    .map_err(classify)?
            };
            for (column, ddl) in [
                ("user_id", "ALTER TABLE users ADD COLUMN user_id TEXT"),
                (
                    "username_key",
                    "ALTER TABLE users ADD COLUMN username_key TEXT",
                ),
                (
                    "failed_logins",
                    "ALTER TABLE users ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0",
                ),
                (
                    "last_failed_at",
                    "ALTER TABLE users ADD COLUMN last_failed_at INTEGER",
                ),
                (
                    "session_epoch",
                    "ALTER TABLE users ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0",
                ),
            ] {
                if !existing.iter().any(|c| c == column) {
                    tx.execute(ddl, []).map_err(classify)?;
                }
            }
            tx.execute(
                "UPDATE users SET user_id = lower(hex(randomblob(16))) WHERE user_id IS NULL",
                [],
            )
            .map_err(classify)?;
            // Keys of tutorial rows are computed here (NFKC + lower case); two tutorial names
            // that differ only by case keep their rows, the later one under a key no login
            // produces, so the unique index can be built without dropping anything.
            let legacy: Vec<(String, String)> = {
                let mut stmt = tx
                    .prepare("SELECT rowid, username FROM users WHERE username_key IS NULL ORDER BY rowid")
                    .map_err(classify)?;
                stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?.to_string(), r.get(1)?)))
                    .map_err(classify)?
                    .collect::<Result<_, _>>()
                    .map_err(classify)?
            };
            for (rowid, username) in legacy {
                let key = policy::username_key(&username);
                let taken: bool = tx
                    .query_row(
                        "SELECT EXISTS(SELECT 1 FROM users WHERE username_key = ?1)",
                        [&key],
                        |r| r.get(0),
                    )
                    .map_err(classify)?;
                let key = if taken {
                    format!("\u{0}legacy:{username}")
                } else {
                    key
                };
                tx.execute(
                    "UPDATE users SET username_key = ?1 WHERE rowid = ?2",
                    params![key, rowid],
                )
                .map_err(classify)?;
            }
            tx.execute_batch(&format!(
                "CREATE UNIQUE INDEX IF NOT EXISTS users_user_id ON users(user_id);
                 CREATE UNIQUE INDEX IF NOT EXISTS users_username_key ON users(username_key);
                 CREATE TABLE IF NOT EXISTS sessions (
                     sid TEXT PRIMARY KEY,
                     user_id TEXT NOT NULL,
                     username_key TEXT NOT NULL,
                     epoch INTEGER NOT NULL,
                     family_key TEXT NOT NULL,
                     generation INTEGER NOT NULL,
                     current_hash TEXT NOT NULL,
                     previous_hash TEXT,
                     sealed_next TEXT,
                     rotated_at INTEGER,
                     created_at INTEGER NOT NULL,
                     expires_at INTEGER NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS sessions_user_id ON sessions(user_id);
                 CREATE INDEX IF NOT EXISTS sessions_expires_at ON sessions(expires_at);
                 CREATE TABLE IF NOT EXISTS throttle_counters (
                     key TEXT PRIMARY KEY,
                     failures INTEGER NOT NULL,
                     since INTEGER NOT NULL,
                     expires_at INTEGER NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS throttle_counters_expires_at
                     ON throttle_counters(expires_at);
                 PRAGMA user_version = {SCHEMA_VERSION};"
            ))
            .map_err(classify)?;
        }
        tx.commit().map_err(classify)
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave the connection half-used: every statement
        // is self-contained, so a poisoned lock is still safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl UserWriter for SqliteStore {
    async fn create(&self, user: &NewUser) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "INSERT INTO users (username, hashed_password, full_name, user_id, username_key)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    user.username,
                    user.password_hash,
                    user.full_name,
                    user.id,
                    user.username_key
                ],
            )
            .map(|_| ())
            .map_err(classify)
    }
}

impl CredentialStore for SqliteStore {
    async fn credentials(&self, username_key: &str) -> Result<Option<Credentials>, StoreError> {
        let conn = self.lock();
        let mut select = conn
            .prepare_cached(
                "SELECT user_id, hashed_password, failed_logins, last_failed_at, username,
                        session_epoch
                 FROM users WHERE username_key = ?1",
            )
            .map_err(classify)?;
        select
            .query_row([username_key], |r| {
                Ok(Credentials {
                    id: r.get(0)?,
                    username_key: username_key.to_string(),
                    username: r.get(4)?,
                    password_hash: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    failed_logins: r.get(2)?,
                    last_failed_at: r.get::<_, Option<i64>>(3)?.map(|t| t.max(0) as u64),
                    session_epoch: r.get::<_, i64>(5)?.max(0) as u64,
                })
            })
            .optional()
            .map_err(classify)
    }

    async fn count_failure(
        &self,
        username_key: &str,
        user_id: &str,
        at: u64,
    ) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "UPDATE users SET failed_logins = failed_logins + 1, last_failed_at = ?3
                 WHERE username_key = ?1 AND user_id = ?2",
                params![username_key, user_id, int(at)],
            )
            .map(|_| ())
            .map_err(classify)
    }

    async fn record_success(
        &self,
        user: &Credentials,
        rehash: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        let id = &user.id;
        let conn = self.lock();
        conn.execute(
            "UPDATE users SET failed_logins = 0, last_failed_at = NULL
             WHERE user_id = ?1 AND (failed_logins != 0 OR last_failed_at IS NOT NULL)",
            [id],
        )
        .map_err(classify)?;
        if let Some((old, new)) = rehash {
            conn.execute(
                "UPDATE users SET hashed_password = ?3 WHERE user_id = ?1 AND hashed_password = ?2",
                params![id, old, new],
            )
            .map_err(classify)?;
        }
        Ok(())
    }
}

/// Seconds as SQLite's integer (saturating: no time this service stores comes near the limit).
pub(super) fn int(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

pub(super) fn uint(t: i64) -> u64 {
    t.max(0) as u64
}

impl ProfileReader for SqliteStore {
    async fn profile(
        &self,
        id: &str,
        username: &str,
        sid: &str,
    ) -> Result<Option<ProfileWithSession>, StoreError> {
        // Every warm `/me` runs this one query: the compiled statement is kept, not parsed again.
        let conn = self.lock();
        let mut select = conn
            .prepare_cached(
                "SELECT u.username, u.full_name, u.session_epoch, s.user_id, s.epoch, s.expires_at
                 FROM users u LEFT JOIN sessions s ON s.sid = ?3
                 WHERE u.user_id = ?1 AND u.username = ?2",
            )
            .map_err(classify)?;
        select
            .query_row(params![id, username, sid], |r| {
                let session = match r.get::<_, Option<String>>(3)? {
                    Some(user_id) => Some(SessionLife {
                        user_id,
                        epoch: uint(r.get(4)?),
                        expires_at: uint(r.get(5)?),
                    }),
                    None => None,
                };
                Ok(ProfileWithSession {
                    profile: Profile {
                        username: r.get(0)?,
                        full_name: r.get(1)?,
                    },
                    account_epoch: uint(r.get(2)?),
                    session,
                })
            })
            .optional()
            .map_err(classify)
    }
}

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

impl AccountStore for SqliteStore {
    async fn change_password(
        &self,
        user: &Credentials,
        new_hash: &str,
    ) -> Result<Option<u64>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(classify)?;
        let epoch: Option<i64> = tx
            .query_row(
                "UPDATE users SET hashed_password = ?3, session_epoch = session_epoch + 1,
                     failed_logins = 0, last_failed_at = NULL
                 WHERE user_id = ?1 AND hashed_password = ?2
                 RETURNING session_epoch",
                params![user.id, user.password_hash, new_hash],
                |r| r.get(0),
            )
            .optional()
            .map_err(classify)?;
        if epoch.is_some() {
            tx.execute("DELETE FROM sessions WHERE user_id = ?1", [&user.id])
                .map_err(classify)?;
        }
        tx.commit().map_err(classify)?;
        Ok(epoch.map(uint))
    }

    async fn delete_account(&self, user: &Credentials) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(classify)?;
        let deleted = tx
            .execute("DELETE FROM users WHERE user_id = ?1", [&user.id])
            .map_err(classify)?;
        tx.execute("DELETE FROM sessions WHERE user_id = ?1", [&user.id])
            .map_err(classify)?;
        tx.commit().map_err(classify)?;
        Ok(deleted == 1)
    }
}

impl SessionStore for SqliteStore {
    async fn create_session(&self, session: &SessionRecord, now: u64) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute("DELETE FROM sessions WHERE expires_at <= ?1", [int(now)])
            .map_err(classify)?;
        let previous = session.previous.as_ref();
        conn.execute(
            "INSERT INTO sessions (sid, user_id, username_key, epoch, family_key, generation,
                 current_hash, previous_hash, sealed_next, rotated_at, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
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
            ],
        )
        .map(|_| ())
        .map_err(classify)
    }

    async fn session(&self, sid: &str) -> Result<Option<SessionRecord>, StoreError> {
        let conn = self.lock();
        let mut select = conn
            .prepare_cached(
                "SELECT user_id, username_key, epoch, family_key, generation, current_hash,
                        previous_hash, sealed_next, rotated_at, created_at, expires_at
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
                Ok(SessionRecord {
                    sid: sid.to_string(),
                    username_key: r.get(1)?,
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
                })
            })
            .optional()
            .map_err(classify)
    }

    async fn rotate_session(
        &self,
        from: &SessionRecord,
        to: &SessionRecord,
    ) -> Result<bool, StoreError> {
        let previous = to.previous.as_ref();
        self.lock()
            .execute(
                "UPDATE sessions SET generation = ?4, current_hash = ?5, previous_hash = ?6,
                     sealed_next = ?7, rotated_at = ?8, expires_at = ?9
                 WHERE sid = ?1 AND generation = ?2 AND current_hash = ?3
                   AND EXISTS (SELECT 1 FROM users WHERE user_id = ?10 AND session_epoch = ?11)",
                params![
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
                ],
            )
            .map(|changed| changed == 1)
            .map_err(classify)
    }

    async fn end_session(&self, sid: &str) -> Result<(), StoreError> {
        self.lock()
            .execute("DELETE FROM sessions WHERE sid = ?1", [sid])
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

#[cfg(any(test, feature = "testing"))]
impl super::testing::TestSeam for SqliteStore {
    async fn seed_user(&self, id: &str, username: &str, hash: &str, full_name: Option<&str>) {
        self.lock()
            .execute(
                "INSERT INTO users (username, hashed_password, full_name, user_id, username_key)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    username,
                    hash,
                    full_name,
                    id,
                    policy::username_key(username)
                ],
            )
            .expect("seed a user");
    }

    async fn stored(&self, username_key: &str) -> Option<(String, u32)> {
        self.lock()
            .query_row(
                "SELECT hashed_password, failed_logins FROM users WHERE username_key = ?1",
                [username_key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .expect("read a user")
    }

    async fn set_failures(&self, username_key: &str, count: u32, at: u64) {
        self.lock()
            .execute(
                "UPDATE users SET failed_logins = ?2, last_failed_at = ?3 WHERE username_key = ?1",
                params![username_key, count, int(at)],
            )
            .expect("set failures");
    }

    async fn delete_all_users(&self) {
        self.lock()
            .execute("DELETE FROM users", [])
            .expect("delete users");
    }

    async fn user_count(&self) -> usize {
        self.lock()
            .query_row("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0))
            .expect("count users") as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::{PasswordHasher, Verification};

    fn temp_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("users.db")).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn a_tutorial_users_db_is_migrated_in_place_and_its_users_log_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.db");
        let legacy_hash = bcrypt::hash("tutorial-secret", 4).unwrap();
        {
            // Exactly the FastAPI tutorial's schema and rows.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE users (username TEXT PRIMARY KEY, hashed_password TEXT, full_name TEXT);",
            )
            .unwrap();
            for (name, full) in [
                ("johndoe", Some("John Doe")),
                ("Alice", None),
                ("alice", Some("Other Alice")),
            ] {
                conn.execute(
                    "INSERT INTO users (username, hashed_password, full_name) VALUES (?1, ?2, ?3)",
                    params![name, legacy_hash, full],
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open(&path).unwrap();
        let creds = store
            .credentials("johndoe")
            .await
            .unwrap()
            .expect("row kept");
        assert_eq!(creds.id.len(), 32);
        assert_eq!(
            PasswordHasher::new(4).verify("tutorial-secret", &creds.password_hash),
            Verification::Match { needs_rehash: true }
        );
        let profile = store
            .profile(&creds.id, "johndoe", "no-session")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(profile.session, None);
        assert_eq!(
            profile.profile,
            Profile {
                username: "johndoe".into(),
                full_name: Some("John Doe".into())
            }
        );
        // Two tutorial rows differing only by case both survive; the first keeps the login.
        let count: i64 = store
            .lock()
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 3);
        let alice = store.credentials("alice").await.unwrap().unwrap();
        assert_eq!(
            store
                .profile(&alice.id, "Alice", "no-session")
                .await
                .unwrap()
                .unwrap()
                .profile
                .username,
            "Alice"
        );
        // Reopening is a no-op: ids are stable.
        drop(store);
        let again = SqliteStore::open(&path).unwrap();
        assert_eq!(
            again.credentials("johndoe").await.unwrap().unwrap().id,
            creds.id
        );
        // The tutorial's own app can still read its table.
        let conn = Connection::open(&path).unwrap();
        let hash: String = conn
            .query_row(
                "SELECT hashed_password FROM users WHERE username = 'johndoe'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(hash, legacy_hash);
    }

    #[tokio::test]
    async fn a_new_file_uses_wal() {
        let (_dir, store) = temp_store();
        let mode: String = store
            .lock()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
}
