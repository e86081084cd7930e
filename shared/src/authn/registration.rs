//! Creating an account: the one registration every route uses (`POST /register` and the hosted
//! registration page), under one policy.

use crate::error::ApiError;
use crate::password::PasswordHasher;
use crate::policy;
use crate::store::{Credentials, NewUser, UserWriter};

/// What a registration asks for, as sent.
#[derive(Debug, Clone, Copy)]
pub struct Application<'a> {
    /// The username asked for.
    pub username: &'a str,
    /// The password.
    pub password: &'a str,
    /// The display name, if any.
    pub full_name: Option<&'a str>,
    /// The e-mail address, if any (stored unverified; the caller sends its verification).
    pub email: Option<&'a str>,
}

/// Checks `application` against the policy (cheap checks first; only a valid one pays for
/// bcrypt) and creates the account: the new account's credentials, as a login would find them.
pub async fn register<W: UserWriter>(
    store: &W,
    hasher: &PasswordHasher,
    application: Application<'_>,
) -> Result<Credentials, ApiError> {
    let username = policy::username(application.username)?;
    let full_name = policy::full_name(application.full_name)?;
    let email = application.email.map(policy::email).transpose()?;
    policy::password(application.password, &username, full_name.as_deref())?;
    let password_hash = hasher
        .hash(application.password)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let user = NewUser {
        id: uuid::Uuid::new_v4().simple().to_string(),
        username: username.display,
        username_key: username.key,
        password_hash,
        full_name,
        email,
    };
    store.create(&user).await?;
    tracing::info!(user_id = %user.id, "user registered");
    crate::metrics::record(crate::metrics::Outcome::Registered);
    Ok(Credentials {
        id: user.id,
        username_key: user.username_key,
        username: user.username,
        password_hash: user.password_hash,
        failed_logins: 0,
        last_failed_at: None,
        session_epoch: 0,
        email: user.email,
        email_verified: false,
        totp_secret: None,
        totp_enabled: false,
        totp_last_step: 0,
        full_name: user.full_name,
    })
}
