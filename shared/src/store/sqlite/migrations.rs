//! The SQLite schema as an ordered list of steps: step `n` brings a file from `user_version`
//! `n - 1` to `n`. A new capability appends a step; none is ever edited once released.
//!
//! Steps 1 to 3 were one block before they were steps, and every one of them is idempotent
//! (`IF NOT EXISTS`, columns added only when missing), so a file below version 3 runs them all.

use rusqlite::{Transaction, params};

use crate::policy;

/// One step: the statements that take a file one version up.
type Step = fn(&Transaction<'_>) -> rusqlite::Result<()>;

/// Every step, in order: accounts, sessions, throttle counters, single-use tickets, OAuth
/// clients, who holds each session, and the accounts' addresses.
const STEPS: &[Step] = &[
    accounts,
    sessions,
    counters,
    tickets,
    clients,
    session_holders,
    email_addresses,
    second_factors,
];

/// The version a file has once every step ran.
pub(super) const SCHEMA_VERSION: i64 = STEPS.len() as i64;

/// The versions steps 1–3 shared when they were one block.
const ONE_BLOCK: i64 = 3;

/// Runs, inside `tx`, every step a file at `version` lacks, and records the new version.
pub(super) fn run(tx: &Transaction<'_>, version: i64) -> rusqlite::Result<()> {
    let from = if version < ONE_BLOCK { 0 } else { version };
    for step in STEPS
        .iter()
        .skip(usize::try_from(from).unwrap_or(usize::MAX))
    {
        step(tx)?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};"))
}

/// The tutorial's table, extended in place: every row and hash is kept, so its users log in
/// unchanged.
fn accounts(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS users (
             username TEXT PRIMARY KEY,
             hashed_password TEXT,
             full_name TEXT
         );",
    )?;
    let existing: Vec<String> = {
        let mut stmt = tx.prepare("PRAGMA table_info(users)")?;
        stmt.query_map([], |r| r.get::<_, String>(1))?
            .collect::<Result<_, _>>()?
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
            tx.execute(ddl, [])?;
        }
    }
    tx.execute(
        "UPDATE users SET user_id = lower(hex(randomblob(16))) WHERE user_id IS NULL",
        [],
    )?;
    // Keys of tutorial rows are computed here (NFKC + lower case); two tutorial names that
    // differ only by case keep their rows, the later one under a key no login produces, so the
    // unique index can be built without dropping anything.
    let legacy: Vec<(String, String)> = {
        let mut stmt = tx.prepare(
            "SELECT rowid, username FROM users WHERE username_key IS NULL ORDER BY rowid",
        )?;
        stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?.to_string(), r.get(1)?)))?
            .collect::<Result<_, _>>()?
    };
    for (rowid, username) in legacy {
        let key = policy::username_key(&username);
        let taken: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM users WHERE username_key = ?1)",
            [&key],
            |r| r.get(0),
        )?;
        let key = if taken {
            format!("\u{0}legacy:{username}")
        } else {
            key
        };
        tx.execute(
            "UPDATE users SET username_key = ?1 WHERE rowid = ?2",
            params![key, rowid],
        )?;
    }
    tx.execute_batch(
        "CREATE UNIQUE INDEX IF NOT EXISTS users_user_id ON users(user_id);
         CREATE UNIQUE INDEX IF NOT EXISTS users_username_key ON users(username_key);",
    )
}

/// Sessions and their refresh-token generations (hashes only).
fn sessions(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS sessions (
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
         CREATE INDEX IF NOT EXISTS sessions_expires_at ON sessions(expires_at);",
    )
}

/// The throttle's counters, each with its own expiry.
fn counters(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS throttle_counters (
             key TEXT PRIMARY KEY,
             failures INTEGER NOT NULL,
             since INTEGER NOT NULL,
             expires_at INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS throttle_counters_expires_at
             ON throttle_counters(expires_at);",
    )
}

/// Single-use tickets, taken with `DELETE … RETURNING`.
fn tickets(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS tickets (
             kind TEXT NOT NULL,
             hash TEXT NOT NULL,
             record TEXT NOT NULL,
             expires_at INTEGER NOT NULL,
             PRIMARY KEY (kind, hash)
         );
         CREATE INDEX IF NOT EXISTS tickets_expires_at ON tickets(expires_at);",
    )
}

/// Registered OAuth clients; the URI lists are JSON arrays of strings.
fn clients(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS clients (
             client_id TEXT PRIMARY KEY,
             redirect_uris TEXT NOT NULL,
             post_logout_redirect_uris TEXT NOT NULL,
             confidential INTEGER NOT NULL,
             secret_hash TEXT,
             created_at INTEGER NOT NULL
         );",
    )
}

/// Who holds a session (NULL: the password grant, as every earlier session): `browser` or
/// `client`, with the client's id and granted scopes.
/// Columns are added only when missing, as in the first steps.
fn session_holders(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let existing: Vec<String> = {
        let mut stmt = tx.prepare("PRAGMA table_info(sessions)")?;
        stmt.query_map([], |r| r.get::<_, String>(1))?
            .collect::<Result<_, _>>()?
    };
    for column in ["holder", "client_id", "scope"] {
        if !existing.iter().any(|c| c == column) {
            tx.execute_batch(&format!("ALTER TABLE sessions ADD COLUMN {column} TEXT;"))?;
        }
    }
    Ok(())
}

/// An account's e-mail address (normalised) and whether it is verified: a verified address
/// belongs to one account at most (the partial unique index), an unverified one to any number.
fn email_addresses(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let existing: Vec<String> = {
        let mut stmt = tx.prepare("PRAGMA table_info(users)")?;
        stmt.query_map([], |r| r.get::<_, String>(1))?
            .collect::<Result<_, _>>()?
    };
    for (column, ddl) in [
        ("email", "ALTER TABLE users ADD COLUMN email TEXT"),
        (
            "email_verified",
            "ALTER TABLE users ADD COLUMN email_verified INTEGER NOT NULL DEFAULT 0",
        ),
    ] {
        if !existing.iter().any(|c| c == column) {
            tx.execute(ddl, [])?;
        }
    }
    tx.execute_batch(
        "CREATE UNIQUE INDEX IF NOT EXISTS users_verified_email ON users (email)
             WHERE email_verified = 1;",
    )
}

/// Second factors: the sealed TOTP secret, whether it is on, the last step accepted, the
/// recovery codes' hashes; and whether a session's sign-in passed a second factor.
fn second_factors(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let columns = |table: &str| -> rusqlite::Result<Vec<String>> {
        let mut stmt = tx.prepare(&format!("PRAGMA table_info({table})"))?;
        stmt.query_map([], |r| r.get::<_, String>(1))?
            .collect::<Result<_, _>>()
    };
    let users = columns("users")?;
    for (column, ddl) in [
        (
            "totp_secret",
            "ALTER TABLE users ADD COLUMN totp_secret TEXT",
        ),
        (
            "totp_enabled",
            "ALTER TABLE users ADD COLUMN totp_enabled INTEGER NOT NULL DEFAULT 0",
        ),
        (
            "totp_last_step",
            "ALTER TABLE users ADD COLUMN totp_last_step INTEGER NOT NULL DEFAULT 0",
        ),
    ] {
        if !users.iter().any(|c| c == column) {
            tx.execute(ddl, [])?;
        }
    }
    if !columns("sessions")?.iter().any(|c| c == "mfa") {
        tx.execute(
            "ALTER TABLE sessions ADD COLUMN mfa INTEGER NOT NULL DEFAULT 0",
            [],
        )?;
    }
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS recovery_codes (
             user_id TEXT NOT NULL,
             hash TEXT NOT NULL,
             PRIMARY KEY (user_id, hash)
         );",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_at_the_old_one_block_version_gets_only_the_new_steps() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        let tx = conn.transaction().unwrap();
        run(&tx, 0).unwrap();
        tx.execute_batch("DROP TABLE tickets; PRAGMA user_version = 3;")
            .unwrap();
        run(&tx, 3).unwrap();
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        tx.execute("INSERT INTO tickets VALUES ('k', 'h', 'r', 1)", [])
            .unwrap();
    }

    #[test]
    fn a_file_at_version_4_gets_the_clients_table_and_keeps_its_tickets() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        let tx = conn.transaction().unwrap();
        run(&tx, 0).unwrap();
        tx.execute_batch(
            "DROP TABLE clients; PRAGMA user_version = 4;
             INSERT INTO tickets VALUES ('k', 'h', 'r', 1);",
        )
        .unwrap();
        run(&tx, 4).unwrap();
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let tickets: i64 = tx
            .query_row("SELECT count(*) FROM tickets", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tickets, 1);
        tx.execute(
            "INSERT INTO clients VALUES ('web', '[]', '[]', 0, NULL, 1)",
            [],
        )
        .unwrap();
    }

    #[test]
    fn a_file_at_version_5_gets_the_session_holders_and_keeps_its_sessions() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        let tx = conn.transaction().unwrap();
        run(&tx, 0).unwrap();
        tx.execute_batch(
            "ALTER TABLE sessions DROP COLUMN holder;
             ALTER TABLE sessions DROP COLUMN client_id;
             ALTER TABLE sessions DROP COLUMN scope;
             PRAGMA user_version = 5;
             INSERT INTO sessions (sid, user_id, username_key, epoch, family_key, generation,
                 current_hash, created_at, expires_at)
             VALUES ('s', 'u', 'k', 0, 'f', 1, 'h', 1, 2);",
        )
        .unwrap();
        run(&tx, 5).unwrap();
        let row: (String, Option<String>) = tx
            .query_row("SELECT sid, holder FROM sessions", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(
            row,
            ("s".to_string(), None),
            "an old session is the password grant's"
        );
    }
}
