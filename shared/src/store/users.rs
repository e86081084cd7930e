//! Accounts: creating them (`register`), their credentials and login outcomes (`login`,
//! `account`), the profile with a token's session (`me`), password changes and deletion
//! (`account`). The traits, then the SQLite and the DynamoDB implementation.

use std::future::Future;

use aws_sdk_dynamodb::types::{ReturnValue, Update};
use rusqlite::{OptionalExtension, params};

use super::StoreError;
use super::dynamodb::{
    DynamoStore, Item, KEY, SESSION_PREFIX, account_item_key, applied, get_bool, get_n, get_s,
    is_reserved, n, returned_n, s, session_key,
};
use super::sessions::{SessionLife, session_life};
use super::sqlite::{SqliteStore, classify, int, uint};
use crate::policy;

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Random immutable id, the `sub` of this user's tokens.
    pub id: String,
    /// The name as registered (NFKC).
    pub username: String,
    /// The case-insensitive unique key.
    pub username_key: String,
    /// The password hash.
    pub password_hash: String,
    /// Optional display name.
    pub full_name: Option<String>,
    /// Optional e-mail address (normalised), unverified.
    pub email: Option<String>,
}

/// What login needs of a user. `Debug` leaves the hash out.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user's id.
    pub id: String,
    /// The case-insensitive key the user was found by.
    pub username_key: String,
    /// The name as registered: it goes into tokens as `preferred_username`.
    pub username: String,
    /// The stored hash.
    pub password_hash: String,
    /// Consecutive failed logins since the last success.
    pub failed_logins: u32,
    /// When the last failure happened, seconds since the epoch.
    pub last_failed_at: Option<u64>,
    /// The account's session epoch: a global logout increments it, ending every session started
    /// under an earlier epoch in one write.
    pub session_epoch: u64,
    /// The account's e-mail address (normalised), if any.
    pub email: Option<String>,
    /// Whether that address is verified.
    pub email_verified: bool,
    /// The TOTP secret, sealed (pending until `totp_enabled`).
    pub totp_secret: Option<String>,
    /// Whether login asks for a TOTP code.
    pub totp_enabled: bool,
    /// The last TOTP step accepted: only a later one is accepted next.
    pub totp_last_step: u64,
    /// The full name as registered (`name` in id_tokens), if any.
    pub full_name: Option<String>,
}

impl Credentials {
    /// A digest of the password hash: a link or token bound to it dies when the password
    /// changes (compare it in constant time).
    pub fn password_tag(&self) -> String {
        super::tickets::secret_hash(&self.password_hash)
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("failed_logins", &self.failed_logins)
            .field("last_failed_at", &self.last_failed_at)
            .field("session_epoch", &self.session_epoch)
            .field("email_verified", &self.email_verified)
            .field("totp_enabled", &self.totp_enabled)
            .finish_non_exhaustive()
    }
}

/// What `/me` returns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Profile {
    /// The name as registered.
    pub username: String,
    /// Optional display name.
    pub full_name: Option<String>,
    /// The e-mail address, if one is set.
    pub email: Option<String>,
    /// Whether it is verified.
    pub email_verified: bool,
}

/// Creating users (the `register` function).
pub trait UserWriter: Send + Sync {
    /// Inserts `user`, or fails with [`StoreError::Duplicate`] when its key is taken.
    fn create(&self, user: &NewUser) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Reading credentials and recording login outcomes (the `login` function).
pub trait CredentialStore: Send + Sync {
    /// The credentials of the user with this username key.
    fn credentials(
        &self,
        username_key: &str,
    ) -> impl Future<Output = Result<Option<Credentials>, StoreError>> + Send;

    /// Counts one more consecutive failure of the account `username_key` whose id is `user_id`
    /// (what `auth-admin show` reports), in one atomic add; nothing happens when there is no such
    /// account (a made-up name sends the same write). The throttle's own decisions rest on
    /// [`CounterStore`].
    fn count_failure(
        &self,
        username_key: &str,
        user_id: &str,
        at: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Resets the failure count after a successful login and, when `rehash` is given as
    /// `(old, new)`, replaces the hash only if it is still `old` (a concurrent change wins).
    fn record_success(
        &self,
        user: &Credentials,
        rehash: Option<(&str, &str)>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Reading profiles by user id together with the token's session (the `me` function).
pub trait ProfileReader: Send + Sync {
    /// The profile of the user with this id and name, if that account still exists (a new
    /// account under the same name has another id and does not match), with the state of
    /// session `sid`, in one round trip to the store.
    fn profile(
        &self,
        id: &str,
        username: &str,
        sid: &str,
    ) -> impl Future<Output = Result<Option<ProfileWithSession>, StoreError>> + Send;
}

/// A profile and what decides whether a token's session is still open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileWithSession {
    /// What `/me` shows.
    pub profile: Profile,
    /// The account's current session epoch.
    pub account_epoch: u64,
    /// The session, if it is still stored.
    pub session: Option<SessionLife>,
}

/// Changing and deleting accounts (the `account` function).
pub trait AccountStore: Send + Sync {
    /// Replaces `user`'s hash by `new_hash` only if the stored hash is still `user`'s (of two
    /// racing changes one wins), resets the failure count and moves the session epoch on, ending
    /// every session, all in one write. The new epoch, or `None` when the hash changed meanwhile
    /// or the account is gone.
    fn change_password(
        &self,
        user: &Credentials,
        new_hash: &str,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Deletes `user`'s account (only if it is still that account) and, where the backend keeps
    /// no TTL, its sessions; sessions left behind are refused at once (their account is gone).
    /// `false` when it was already gone.
    fn delete_account(
        &self,
        user: &Credentials,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

// SQLite: the `users` table (the FastAPI tutorial's, with this service's columns added).

impl UserWriter for SqliteStore {
    async fn create(&self, user: &NewUser) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "INSERT INTO users (username, hashed_password, full_name, user_id, username_key,
                                    email)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    user.username,
                    user.password_hash,
                    user.full_name,
                    user.id,
                    user.username_key,
                    user.email
                ],
            )
            .map(|_| ())
            .map_err(classify)
    }
}

/// The columns [`credentials_row`] reads, in its order.
pub(super) const CREDENTIAL_COLUMNS: &str = "user_id, hashed_password, failed_logins, \
     last_failed_at, username, session_epoch, username_key, email, email_verified, totp_secret, \
     totp_enabled, totp_last_step, full_name";

/// A row of [`CREDENTIAL_COLUMNS`] as credentials.
pub(super) fn credentials_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Credentials> {
    Ok(Credentials {
        id: r.get(0)?,
        username_key: r.get(6)?,
        username: r.get(4)?,
        password_hash: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
        failed_logins: r.get(2)?,
        last_failed_at: r.get::<_, Option<i64>>(3)?.map(|t| t.max(0) as u64),
        session_epoch: r.get::<_, i64>(5)?.max(0) as u64,
        email: r.get(7)?,
        email_verified: r.get::<_, i64>(8)? != 0,
        totp_secret: r.get(9)?,
        totp_enabled: r.get::<_, i64>(10)? != 0,
        totp_last_step: r.get::<_, i64>(11)?.max(0) as u64,
        full_name: r.get(12)?,
    })
}

impl CredentialStore for SqliteStore {
    async fn credentials(&self, username_key: &str) -> Result<Option<Credentials>, StoreError> {
        let conn = self.lock();
        let mut select = conn
            .prepare_cached(&format!(
                "SELECT {CREDENTIAL_COLUMNS} FROM users WHERE username_key = ?1"
            ))
            .map_err(classify)?;
        select
            .query_row([username_key], credentials_row)
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
                "SELECT u.username, u.full_name, u.session_epoch, s.user_id, s.epoch, s.expires_at,
                        u.email, u.email_verified
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
                        email: r.get(6)?,
                        email_verified: r.get::<_, i64>(7)? != 0,
                    },
                    account_epoch: uint(r.get(2)?),
                    session,
                })
            })
            .optional()
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

// DynamoDB: one item per account, keyed by its username key.

impl UserWriter for DynamoStore {
    async fn create(&self, user: &NewUser) -> Result<(), StoreError> {
        applied(self.put_new_user(user).send().await)?
            .map(|_| ())
            .ok_or(StoreError::Duplicate)
    }
}

/// The credentials of the account item `item` under `username_key`.
pub(super) fn credentials_item(username_key: &str, item: &Item) -> Result<Credentials, StoreError> {
    let field =
        |name| get_s(item, name).ok_or_else(|| StoreError::Fault(format!("item lacks {name}")));
    Ok(Credentials {
        id: field("user_id")?,
        username_key: username_key.to_string(),
        username: field("username")?,
        password_hash: field("hashed_password")?,
        failed_logins: get_n(item, "failed_logins").unwrap_or(0) as u32,
        last_failed_at: get_n(item, "last_failed_at"),
        session_epoch: get_n(item, "session_epoch").unwrap_or(0),
        email: get_s(item, "email"),
        email_verified: get_bool(item, "email_verified"),
        totp_secret: get_s(item, "totp_secret"),
        totp_enabled: get_bool(item, "totp_enabled"),
        totp_last_step: get_n(item, "totp_last_step").unwrap_or(0),
        full_name: get_s(item, "full_name"),
    })
}

impl CredentialStore for DynamoStore {
    async fn credentials(&self, username_key: &str) -> Result<Option<Credentials>, StoreError> {
        if is_reserved(username_key) {
            return Ok(None);
        }
        match self.get(s(username_key)).await? {
            Some(item) => credentials_item(username_key, &item).map(Some),
            None => Ok(None),
        }
    }

    async fn count_failure(
        &self,
        username_key: &str,
        user_id: &str,
        at: u64,
    ) -> Result<(), StoreError> {
        let update = self.count_failure_update(username_key, user_id, at)?;
        applied(self.update_item(update).send().await).map(|_| ())
    }

    async fn record_success(
        &self,
        user: &Credentials,
        rehash: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        let update = |rehash| async move {
            let update = self.record_success_update(user, rehash)?;
            applied(self.update_item(update).send().await)
        };
        if update(rehash).await?.is_none() && rehash.is_some() {
            // The hash changed since it was read (a concurrent rehash or password change): keep
            // the newer hash, still reset the counter (unless the account is gone).
            update(None).await?;
        }
        Ok(())
    }
}

impl DynamoStore {
    /// [`CredentialStore::count_failure`]'s write. Conditional on the id: it never creates an
    /// item, and a made-up name changes nothing.
    pub(super) fn count_failure_update(
        &self,
        username_key: &str,
        user_id: &str,
        at: u64,
    ) -> Result<Update, StoreError> {
        Update::builder()
            .table_name(&self.table)
            .key(KEY, account_item_key(username_key))
            .update_expression("ADD failed_logins :one SET last_failed_at = :at")
            .condition_expression("user_id = :id")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":at", n(at))
            .expression_attribute_values(":id", s(user_id))
            .build()
            .map_err(|e| StoreError::Fault(e.to_string()))
    }

    /// [`CredentialStore::record_success`]'s write: the consecutive count reset and, with
    /// `rehash`, the hash upgraded only if it is still the one read.
    pub(super) fn record_success_update(
        &self,
        user: &Credentials,
        rehash: Option<(&str, &str)>,
    ) -> Result<Update, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key(KEY, account_item_key(&user.username_key))
            .expression_attribute_values(":id", s(&user.id))
            .expression_attribute_values(":zero", n(0));
        let update = match rehash {
            Some((old, new)) => update
                .update_expression(
                    "SET failed_logins = :zero, hashed_password = :new REMOVE last_failed_at",
                )
                .condition_expression("user_id = :id AND hashed_password = :old")
                .expression_attribute_values(":old", s(old))
                .expression_attribute_values(":new", s(new)),
            None => update
                .update_expression("SET failed_logins = :zero REMOVE last_failed_at")
                .condition_expression("user_id = :id"),
        };
        update.build().map_err(|e| StoreError::Fault(e.to_string()))
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
                email: get_s(user, "email"),
                email_verified: get_bool(user, "email_verified"),
            },
            account_epoch: get_n(user, "session_epoch").unwrap_or(0),
            session,
        }))
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
            .key(KEY, account_item_key(&user.username_key))
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
        let verified = user.email.as_deref().filter(|_| user.email_verified);
        let Some(email) = verified else {
            let out = self
                .client
                .delete_item()
                .table_name(&self.table)
                .key(KEY, account_item_key(&user.username_key))
                .condition_expression("user_id = :id")
                .expression_attribute_values(":id", s(&user.id))
                .send()
                .await;
            return Ok(applied(out)?.is_some());
        };
        // A verified address is released with its account, in one transaction.
        let account = aws_sdk_dynamodb::types::Delete::builder()
            .table_name(&self.table)
            .key(KEY, account_item_key(&user.username_key))
            .condition_expression("user_id = :id")
            .expression_attribute_values(":id", s(&user.id))
            .build()
            .map_err(|e| StoreError::Fault(e.to_string()))?;
        let out = self
            .client
            .transact_write_items()
            .transact_items(
                aws_sdk_dynamodb::types::TransactWriteItem::builder()
                    .delete(account)
                    .build(),
            )
            .transact_items(super::email::release_claim(&self.table, &user.id, email)?)
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if super::dynamodb::transaction_lost(&e) => Ok(false),
            Err(e) => Err(super::dynamodb::fail(e)),
        }
    }
}
