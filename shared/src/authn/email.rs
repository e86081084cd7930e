//! An account's e-mail address: its verification link (sent at registration, at every change
//! and on request), the verification itself, and the notices that go to a verified address.
//!
//! A verification link carries a single-use ticket ([`TicketKind::EmailVerification`]) naming
//! the account and the address it was sent to: it verifies that address only while it is still
//! the account's, and only if no other account has it verified (the store decides that, in the
//! same write).

use serde::{Deserialize, Serialize};

use crate::error::{ApiError, with_query};
use crate::mail::{Letter, Outbox};
use crate::metrics::{self, Outcome};
pub(crate) use crate::store::tickets::{issue, peek, take};
use crate::store::{
    CounterStore, Credentials, EmailStore, StoreError, TicketKind, TicketStore, Verified,
};

/// What a verification ticket stands for.
#[derive(Debug, Serialize, Deserialize)]
struct VerifyRecord {
    user_id: String,
    username_key: String,
    email: String,
}

/// The hosted verification page, under the issuer.
pub const VERIFY_PAGE: &str = "/verify-email";

/// Sends `user` a link that verifies `email`, valid for `AUTH_VERIFY_TOKEN_SECONDS`. Nothing
/// fails the caller: a store or mailer failure is logged and counted, and the user can ask for
/// another link.
pub async fn send_verification<T: TicketStore>(
    store: &T,
    outbox: &Outbox,
    iss: &str,
    user: &Credentials,
    email: &str,
    now: u64,
) -> bool {
    let record = VerifyRecord {
        user_id: user.id.clone(),
        username_key: user.username_key.clone(),
        email: email.to_string(),
    };
    let token = match issue(
        store,
        TicketKind::EmailVerification,
        &record,
        outbox.verify_ttl,
        now,
    )
    .await
    {
        Ok(token) => token,
        Err(e) => {
            tracing::warn!(user_id = %user.id, error = %e, "verification link not stored");
            metrics::record(Outcome::MailFailed);
            return false;
        }
    };
    let base = outbox
        .verify_url
        .clone()
        .unwrap_or_else(|| format!("{iss}{VERIFY_PAGE}"));
    let link = with_query(&base, &[("token", &token)]);
    let letter = Letter::Verify {
        link: &link,
        seconds: outbox.verify_ttl,
    };
    outbox
        .post(&user.id, &user.username, email, letter, "verify")
        .await
}

/// Verifies the address a link's `token` was sent to: the address.
pub async fn verify<T: TicketStore + EmailStore>(
    store: &T,
    token: &str,
    now: u64,
) -> Result<String, ApiError> {
    let record: VerifyRecord = take(store, TicketKind::EmailVerification, token, now)
        .await?
        .ok_or(ApiError::InvalidLink)?;
    match store
        .verify_email(&record.user_id, &record.username_key, &record.email)
        .await?
    {
        Verified::Yes => {
            tracing::info!(user_id = %record.user_id, "email verified");
            metrics::record(Outcome::EmailVerified);
            Ok(record.email)
        }
        Verified::Stale => Err(ApiError::InvalidLink),
        Verified::TakenElsewhere => {
            tracing::info!(user_id = %record.user_id, "email verified on another account");
            Err(ApiError::Conflict(UNVERIFIABLE.into()))
        }
    }
}

/// Whether a verification link's `token` is live (read, not taken).
pub async fn link_alive<T: TicketStore>(
    store: &T,
    token: &str,
    now: u64,
) -> Result<bool, StoreError> {
    Ok(
        peek::<_, VerifyRecord>(store, TicketKind::EmailVerification, token, now)
            .await?
            .is_some(),
    )
}

/// The neutral answer when another account has the address verified.
pub const UNVERIFIABLE: &str = "This address cannot be verified for this account";

/// A mail's place in an account's windows (one a minute, five an hour), to give back when
/// the mail could not be sent.
#[derive(Debug)]
pub struct MailClaim {
    places: Vec<(String, u64)>,
}

impl MailClaim {
    /// Gives the places back (the mail was not sent: a retry must not wait for it).
    pub async fn give_back<C: CounterStore>(self, store: &C) -> Result<(), StoreError> {
        for (key, since) in self.places {
            store.give_back(&key, since).await?;
        }
        Ok(())
    }
}

/// Claims one mail to `user_id` in its windows (one a minute, five an hour): `Err(wait)` when
/// one is full (nothing is sent then).
pub async fn claim_mail<C: CounterStore>(
    store: &C,
    user_id: &str,
    now: u64,
) -> Result<Result<MailClaim, u64>, StoreError> {
    use crate::policy::{MAILS_PER_HOUR, MAILS_PER_MINUTE};
    let mut claim = MailClaim { places: Vec::new() };
    for (window, ceiling, seconds) in [
        ("minute", MAILS_PER_MINUTE, 60),
        ("hour", MAILS_PER_HOUR, 3600),
    ] {
        let key = format!("mail {window} id {user_id}");
        match store.add_in_window(&key, ceiling, seconds, now).await? {
            Some(since) => claim.places.push((key, since)),
            None => {
                claim.give_back(store).await?;
                return Ok(Err(seconds));
            }
        }
    }
    Ok(Ok(claim))
}

/// Sends a notice to `user`'s verified address, if it has one: whether it was sent.
pub async fn notify(
    outbox: &Outbox,
    user: &Credentials,
    letter: Letter<'_>,
    what: &'static str,
) -> bool {
    match user.email.as_deref().filter(|_| user.email_verified) {
        Some(to) => {
            outbox
                .post(&user.id, &user.username, to, letter, what)
                .await
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MailConfig, MailerConfig};
    use crate::mail::Mailer;
    use crate::store::{SqliteStore, UserWriter};

    /// `AUTH_VERIFY_URL` points the link at the team's own app, its own query kept.
    #[tokio::test]
    async fn a_verify_url_takes_the_token_and_the_token_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("users.db")).unwrap();
        let mail_dir = dir.path().join("mail");
        let config = MailConfig {
            mailer: MailerConfig::File(mail_dir.clone()),
            from: "auth@example.test".into(),
            smtp_credentials: None,
            verify_url: Some("https://app.example/verify?lang=en".into()),
            verify_ttl: 60,
            reset_ttl: 60,
            forgot_min: std::time::Duration::ZERO,
            forgot_per_source_hour: 1,
        };
        let outbox = Outbox {
            mailer: Mailer::new(&config, || async { unreachable!("no AWS for files") })
                .await
                .unwrap(),
            app_name: "Acme".into(),
            verify_url: config.verify_url.clone(),
            verify_ttl: 60,
            reset_ttl: 60,
            forgot_min: std::time::Duration::ZERO,
            forgot_per_source_hour: 1,
        };
        let user = crate::store::NewUser {
            id: "id-ada".into(),
            username: "ada".into(),
            username_key: "ada".into(),
            password_hash: "$2b$04$x".into(),
            full_name: None,
            email: Some("ada@example.com".into()),
        };
        store.create(&user).await.unwrap();
        let ada = crate::store::CredentialStore::credentials(&store, "ada")
            .await
            .unwrap()
            .unwrap();
        assert!(
            send_verification(
                &store,
                &outbox,
                "https://auth.example",
                &ada,
                "ada@example.com",
                1_000
            )
            .await
        );
        let file = std::fs::read_dir(&mail_dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let raw = std::fs::read_to_string(file).unwrap().replace("=\r\n", "");
        let at = raw
            .find("https://app.example/verify?lang=3Den&token=3D")
            .expect(&raw);
        let token: String = raw[at + "https://app.example/verify?lang=3Den&token=3D".len()..]
            .chars()
            .take(43)
            .collect();
        assert_eq!(
            verify(&store, &token, 1_001).await.unwrap(),
            "ada@example.com"
        );
        assert!(matches!(
            verify(&store, &token, 1_002).await,
            Err(ApiError::InvalidLink)
        ));
    }
}
