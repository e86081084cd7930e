//! What each function's handler holds, built once per cold start (see [`crate::wiring`]): only
//! what that handler uses, so `me`, `logout` and `jwks` never load the private key and `register`
//! never loads a key at all.

use crate::clock::Clock;
use crate::config::Issuer;
use crate::mail::Outbox;
use crate::password::PasswordHasher;
use crate::seal::DataKey;
use crate::session::SessionLimits;
use crate::signer::KeySet;
use crate::throttle::ThrottleLimits;
use crate::token::{TokenIssuer, TokenVerifier};

/// What each function needs of a store: one bound per function, beside its state, so a
/// handler's signature, its wiring and its tests name the same thing (and its IAM policy in
/// `template.yaml` grants no more).
pub mod stores {
    use crate::store::{
        AccountStore, ClientStore, CounterStore, CredentialStore, EmailStore, MfaStore,
        ProfileReader, SessionStore, TicketStore, UserWriter,
    };

    /// `register`: creates accounts, and stores the verification link of an address.
    pub trait Register: UserWriter + TicketStore {}
    impl<T: UserWriter + TicketStore> Register for T {}

    /// `login`: the password check (credentials, counters), sessions, the code grant (codes,
    /// clients, and the account and browser session a code names) and second factors.
    pub trait Login:
        CredentialStore
        + SessionStore
        + CounterStore
        + TicketStore
        + ClientStore
        + ProfileReader
        + MfaStore
    {
    }
    impl<T> Login for T where
        T: CredentialStore
            + SessionStore
            + CounterStore
            + TicketStore
            + ClientStore
            + ProfileReader
            + MfaStore
    {
    }

    /// `authorize`: the hosted pages' password check and registration, browser sessions,
    /// clients and codes.
    pub trait Authorize:
        CredentialStore
        + SessionStore
        + CounterStore
        + TicketStore
        + ClientStore
        + UserWriter
        + MfaStore
    {
    }
    impl<T> Authorize for T where
        T: CredentialStore
            + SessionStore
            + CounterStore
            + TicketStore
            + ClientStore
            + UserWriter
            + MfaStore
    {
    }

    /// `me`: a profile with the token's session.
    pub trait Me: ProfileReader {}
    impl<T: ProfileReader> Me for T {}

    /// `logout`: sessions, the bearer check, and the client revoking a token.
    pub trait Logout: SessionStore + ProfileReader + ClientStore {}
    impl<T: SessionStore + ProfileReader + ClientStore> Logout for T {}

    /// `account`: re-authentication, password changes, deletion and the caller's new session;
    /// addresses, their verification links and the reset links.
    pub trait Account:
        AccountStore
        + CredentialStore
        + ProfileReader
        + SessionStore
        + CounterStore
        + EmailStore
        + TicketStore
        + MfaStore
    {
    }
    impl<T> Account for T where
        T: AccountStore
            + CredentialStore
            + ProfileReader
            + SessionStore
            + CounterStore
            + EmailStore
            + TicketStore
            + MfaStore
    {
    }

    /// Everything a backend implements (the contract suite and the tests' apps).
    pub trait Full:
        UserWriter
        + CredentialStore
        + ProfileReader
        + SessionStore
        + AccountStore
        + CounterStore
        + TicketStore
        + ClientStore
        + EmailStore
        + MfaStore
    {
    }
    impl<T> Full for T where
        T: UserWriter
            + CredentialStore
            + ProfileReader
            + SessionStore
            + AccountStore
            + CounterStore
            + TicketStore
            + ClientStore
            + EmailStore
            + MfaStore
    {
    }
}

/// State of the `register` function.
pub struct RegisterState<W> {
    /// Where users are created.
    pub store: W,
    /// Hashes new passwords.
    pub hasher: PasswordHasher,
    /// Mails the verification link of an address.
    pub outbox: Outbox,
    /// The issuer, under which the verification page is.
    pub issuer: Issuer,
    /// The time, for the links' lives.
    pub clock: Clock,
}

/// State of the `login` function.
pub struct LoginState<C, S> {
    /// Credentials and login outcomes.
    pub store: C,
    /// Verifies (and upgrades) password hashes.
    pub hasher: PasswordHasher,
    /// Issues access tokens.
    pub tokens: TokenIssuer<S>,
    /// `iss` of the tokens.
    pub issuer: Issuer,
    /// How long sessions last.
    pub sessions: SessionLimits,
    /// The throttle's hourly ceilings.
    pub throttle: ThrottleLimits,
    /// `AUTH_DATA_KEY`: opens TOTP secrets (none: second factors are not configured).
    pub data_key: Option<DataKey>,
    /// The time, for the lockout schedule and sessions.
    pub clock: Clock,
}

/// State of the `me` function.
pub struct MeState<P> {
    /// Profiles by user id.
    pub store: P,
    /// Checks bearer tokens.
    pub verifier: TokenVerifier,
    /// The `iss` tokens must carry.
    pub issuer: Issuer,
    /// The time, for session ends.
    pub clock: Clock,
}

/// State of the `logout` function.
pub struct LogoutState<S> {
    /// Sessions and the accounts' session epochs.
    pub store: S,
    /// Checks bearer tokens.
    pub verifier: TokenVerifier,
    /// The `iss` tokens must carry.
    pub issuer: Issuer,
    /// The time, for session ends.
    pub clock: Clock,
}

/// State of the `account` function: re-authentication, password changes and account deletion.
pub struct AccountState<A, S> {
    /// Accounts, sessions and login outcomes.
    pub store: A,
    /// Verifies current passwords and hashes new ones.
    pub hasher: PasswordHasher,
    /// Issues the new session's access token after a password change.
    pub tokens: TokenIssuer<S>,
    /// Checks bearer tokens.
    pub verifier: TokenVerifier,
    /// `iss` of the tokens.
    pub issuer: Issuer,
    /// How long the new session lasts.
    pub sessions: SessionLimits,
    /// The throttle's hourly ceilings.
    pub throttle: ThrottleLimits,
    /// Mails links and notices.
    pub outbox: Outbox,
    /// `AUTH_DATA_KEY`: seals and opens TOTP secrets.
    pub data_key: Option<DataKey>,
    /// The time, for the throttle and sessions.
    pub clock: Clock,
}

/// State of the `authorize` function: the hosted pages and the authorization endpoint.
pub struct AuthorizeState<C> {
    /// Accounts, counters, sessions, clients and codes.
    pub store: C,
    /// Verifies passwords (and hashes new accounts').
    pub hasher: PasswordHasher,
    /// Checks an `id_token_hint` at logout.
    pub verifier: TokenVerifier,
    /// The provider's `iss`.
    pub issuer: Issuer,
    /// How long browser sessions last.
    pub sessions: SessionLimits,
    /// The throttle's hourly ceilings.
    pub throttle: ThrottleLimits,
    /// `AUTH_APP_NAME`, the pages' title.
    pub app_name: String,
    /// `AUTH_DATA_KEY`: opens TOTP secrets.
    pub data_key: Option<DataKey>,
    /// The time.
    pub clock: Clock,
}

/// State of the `jwks` function: the published keys and the issuer's discovery document.
pub struct JwksState {
    /// The published keys: the current one and any extra ones of a rotation.
    pub keys: KeySet,
    /// `AUTH_ISSUER`.
    pub issuer: Issuer,
}
