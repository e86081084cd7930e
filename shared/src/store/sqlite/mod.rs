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

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use super::StoreError;
#[cfg(any(test, feature = "testing"))]
use crate::policy;
#[cfg(any(test, feature = "testing"))]
use rusqlite::{OptionalExtension, params};

mod migrations;

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
        // The hot paths keep their compiled statements (rusqlite's default keeps 16; every
        // function's warm path fits well within this).
        conn.set_prepared_statement_cache_capacity(64);
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
        if version >= migrations::SCHEMA_VERSION {
            return Ok(());
        }
        // IMMEDIATE: of several cold starts racing on a new file, one migrates, the others wait.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(classify)?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(classify)?;
        migrations::run(&tx, version).map_err(classify)?;
        tx.commit().map_err(classify)
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave the connection half-used: every statement
        // is self-contained, so a poisoned lock is still safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Seconds as SQLite's integer (saturating: no time this service stores comes near the limit).
pub(super) fn int(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

pub(super) fn uint(t: i64) -> u64 {
    t.max(0) as u64
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
    use crate::store::{CredentialStore, Profile, ProfileReader};

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
                full_name: Some("John Doe".into()),
                email: None,
                email_verified: false,
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
