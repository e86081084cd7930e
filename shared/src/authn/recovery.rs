//! Self-service recovery: "forgot password" mails a reset link to the account's *verified*
//! address; the link's page (or the API) sets a new password.
//!
//! - The request answers the same whatever it matched (the handler also holds the answer to a
//!   minimum time), and sends at most one mail a minute and five an hour per account; an address
//!   making many requests is cut off too. A throttled request sends nothing and answers the same.
//! - The link carries a single-use ticket ([`TicketKind::PasswordReset`]) bound to the account
//!   and to its password hash at the time: any password change (a reset included) kills every
//!   other link of the account. Opening the link reads it without taking it (mail scanners open
//!   links first); only setting the password takes it, after every check of the new password,
//!   so a refused password loses nothing.
//! - A reset ends every session (the account's epoch moves on), clears the account's login
//!   throttle (the owner proved the mailbox) and sends a notice. It signs nobody in, so it
//!   bypasses no other factor.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::email::{claim_mail, issue, notify, peek, take};
use crate::error::{ApiError, with_query};
use crate::mail::{Letter, Outbox};
use crate::metrics::{self, Outcome};
use crate::password::PasswordHasher;
use crate::policy::{self, Username};
use crate::store::{
    AccountStore, CounterStore, CredentialStore, Credentials, EmailStore, StoreError, TicketKind,
    TicketStore,
};
use crate::throttle;

/// The hosted reset page, under the issuer.
pub const RESET_PAGE: &str = "/reset-password";
/// The hosted "forgot password" page, under the issuer.
pub const FORGOT_PAGE: &str = "/forgot-password";

/// Whom a forgot-password request names.
#[derive(Debug, Clone)]
pub enum Who {
    /// A (normalised) e-mail address.
    Email(String),
    /// A username, as typed.
    Username(String),
}

/// What a reset ticket stands for: the account, and a digest of its hash when the link was
/// sent.
#[derive(Debug, Serialize, Deserialize)]
struct ResetRecord {
    user_id: String,
    username_key: String,
    password_tag: String,
}

/// The account of a forgot-password request and its verified address, if both exist.
async fn account_of<S: CredentialStore + EmailStore>(
    store: &S,
    who: &Who,
) -> Result<Option<Credentials>, StoreError> {
    let user = match who {
        Who::Email(address) => store.verified_owner(address).await?,
        Who::Username(name) => store.credentials(&policy::login_key(name)).await?,
    };
    Ok(user.filter(|u| u.email_verified && u.email.is_some()))
}

/// Handles a forgot-password request from `source`: mails a reset link when `who` names an
/// account with a verified address and no throttle holds. The caller answers the same either
/// way.
pub async fn forgot<S>(
    store: &S,
    outbox: &Outbox,
    iss: &str,
    who: &Who,
    source: &str,
    now: u64,
) -> Result<(), StoreError>
where
    S: CredentialStore + EmailStore + TicketStore + CounterStore,
{
    let from_source = store
        .add_in_window(
            &format!("forgot source {source}"),
            outbox.forgot_per_source_hour,
            policy::WINDOW_SECONDS,
            now,
        )
        .await?;
    if from_source.is_none() {
        tracing::info!(source_ip = %source, "forgot-password throttled for the address");
        return Ok(());
    }
    let Some(user) = account_of(store, who).await? else {
        tracing::info!(source_ip = %source, "forgot-password: nothing to send");
        return Ok(());
    };
    // From here on the work is the matching path's alone: a failure is logged and counted,
    // never answered, so the answer stays the same.
    if let Err(e) = send_reset(store, outbox, iss, &user, now).await {
        tracing::warn!(user_id = %user.id, error = %e, "reset link not sent");
        metrics::record(Outcome::MailFailed);
    }
    Ok(())
}

/// Claims a mail in the account's windows, stores a reset link and mails it.
async fn send_reset<S: CounterStore + TicketStore>(
    store: &S,
    outbox: &Outbox,
    iss: &str,
    user: &Credentials,
    now: u64,
) -> Result<(), StoreError> {
    let claim = match claim_mail(store, &user.id, now).await? {
        Ok(claim) => claim,
        Err(wait) => {
            tracing::info!(user_id = %user.id, wait, "forgot-password throttled for the account");
            return Ok(());
        }
    };
    let record = ResetRecord {
        user_id: user.id.clone(),
        username_key: user.username_key.clone(),
        password_tag: user.password_tag(),
    };
    let token = issue(
        store,
        TicketKind::PasswordReset,
        &record,
        outbox.reset_ttl,
        now,
    )
    .await?;
    let link = with_query(&format!("{iss}{RESET_PAGE}"), &[("token", &token)]);
    let letter = Letter::Reset {
        link: &link,
        seconds: outbox.reset_ttl,
    };
    if !notify(outbox, user, letter, "reset").await {
        claim.give_back(store).await?;
    }
    Ok(())
}

/// The account a live reset link's `token` is for, if the link still works (read, not taken).
pub async fn link_account<S: CredentialStore + TicketStore>(
    store: &S,
    token: &str,
    now: u64,
) -> Result<Option<Credentials>, ApiError> {
    let Some(record) = peek::<_, ResetRecord>(store, TicketKind::PasswordReset, token, now).await?
    else {
        return Ok(None);
    };
    let user = store.credentials(&record.username_key).await?;
    Ok(user.filter(|u| {
        u.id == record.user_id
            && bool::from(
                u.password_tag()
                    .as_bytes()
                    .ct_eq(record.password_tag.as_bytes()),
            )
    }))
}

/// What a reset needs beside the store.
#[derive(Debug, Clone, Copy)]
pub struct Reset<'a> {
    /// Hashes the new password.
    pub hasher: &'a PasswordHasher,
    /// Sends the notice.
    pub outbox: &'a Outbox,
    /// The address the request came from (its login schedule is cleared).
    pub source: &'a str,
}

/// Sets `new_password` on the account of the reset link `token`: the account, with its new
/// session epoch.
pub async fn reset<S>(
    store: &S,
    with: Reset<'_>,
    token: &str,
    new_password: &str,
    now: u64,
) -> Result<Credentials, ApiError>
where
    S: CredentialStore + AccountStore + TicketStore + CounterStore,
{
    let user = link_account(store, token, now)
        .await?
        .ok_or(ApiError::InvalidLink)?;
    // Every check of the new password before the link is taken: a refusal loses nothing.
    let username = Username {
        display: user.username.clone(),
        key: user.username_key.clone(),
    };
    policy::password(new_password, &username, None).map_err(|e| e.for_field("new_password"))?;
    let new_hash = with
        .hasher
        .hash(new_password)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    take::<_, ResetRecord>(store, TicketKind::PasswordReset, token, now)
        .await?
        .ok_or(ApiError::InvalidLink)?;
    let epoch = store
        .change_password(&user, &new_hash)
        .await?
        .ok_or(ApiError::InvalidLink)?;
    // The owner proved the mailbox: the account's login throttle starts over (the account-wide
    // window and this address's schedule; the consecutive count went with the change).
    let subject = throttle::subject(Some(&user), &user.username_key);
    store
        .reset_counter(&throttle::account_key(&subject))
        .await?;
    store
        .reset_counter(&throttle::pair_key(&subject, with.source))
        .await?;
    tracing::info!(user_id = %user.id, "password reset");
    metrics::record(Outcome::PasswordReset);
    notify(
        with.outbox,
        &user,
        Letter::PasswordChanged,
        "password-changed",
    )
    .await;
    Ok(Credentials {
        session_epoch: epoch,
        ..user
    })
}
