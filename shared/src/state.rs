//! What each function builds once per cold start from [`Config`]: only what its handler uses,
//! so `me` and `jwks` never load the private key and `register` never loads a key at all.

use std::sync::Arc;

use crate::config::{Config, KeyConfig, StoreConfig};
use crate::password::PasswordHasher;
use crate::signer::{AnySigner, KeyError, LocalSigner, PublicKey};
use crate::store::{
    CredentialStore, Credentials, NewUser, Profile, ProfileReader, SqliteStore, StoreError,
    UserWriter,
};
use crate::token::{TokenIssuer, TokenVerifier, now};

/// A cold start that cannot complete: reported as one line, then the process exits.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The store cannot be opened.
    #[error("cannot open the user store: {0}")]
    Store(#[from] StoreError),
    /// The key cannot be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Seconds since the epoch; replaceable so tests can drive the lockout schedule.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(now)
}

/// State of the `register` function.
pub struct RegisterState<W> {
    /// Where users are created.
    pub store: W,
    /// Hashes new passwords.
    pub hasher: PasswordHasher,
}

/// State of the `login` function.
pub struct LoginState<C, S> {
    /// Credentials and login outcomes.
    pub store: C,
    /// Verifies (and upgrades) password hashes.
    pub hasher: PasswordHasher,
    /// Issues access tokens.
    pub tokens: TokenIssuer<S>,
    /// The time, for the lockout schedule.
    pub clock: Clock,
}

/// State of the `me` function.
pub struct MeState<P> {
    /// Profiles by user id.
    pub store: P,
    /// Checks bearer tokens.
    pub verifier: TokenVerifier,
}

/// State of the `jwks` function: the public key and the issuer's discovery document.
pub struct DiscoveryState {
    /// The published key.
    pub key: PublicKey,
    /// `AUTH_ISSUER`.
    pub issuer: String,
}

/// The configured user store.
pub enum AnyStore {
    /// `sqlite:PATH`.
    Sqlite(SqliteStore),
}

impl AnyStore {
    /// Opens the store named by the configuration.
    pub async fn open(config: &Config) -> Result<Self, InitError> {
        match &config.store {
            StoreConfig::Sqlite(path) => Ok(AnyStore::Sqlite(SqliteStore::open(path)?)),
        }
    }
}

impl UserWriter for AnyStore {
    async fn create(&self, user: &NewUser) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.create(user).await,
        }
    }
}

impl CredentialStore for AnyStore {
    async fn credentials(&self, username_key: &str) -> Result<Option<Credentials>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.credentials(username_key).await,
        }
    }

    async fn record_failure(&self, id: &str, at: u64) -> Result<u32, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.record_failure(id, at).await,
        }
    }

    async fn record_success(
        &self,
        id: &str,
        rehash: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.record_success(id, rehash).await,
        }
    }
}

impl ProfileReader for AnyStore {
    async fn profile(&self, id: &str) -> Result<Option<Profile>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.profile(id).await,
        }
    }
}

async fn signer(config: &Config) -> Result<AnySigner, InitError> {
    match &config.signing_key {
        KeyConfig::File(path) => Ok(AnySigner::Local(LocalSigner::from_pem_file(path)?)),
    }
}

async fn public_key(config: &Config) -> Result<PublicKey, InitError> {
    match config.verification_key() {
        KeyConfig::File(path) => Ok(PublicKey::from_pem_file(path)?),
    }
}

impl RegisterState<AnyStore> {
    /// Opens the store.
    pub async fn from_config(config: &Config) -> Result<Self, InitError> {
        Ok(RegisterState {
            store: AnyStore::open(config).await?,
            hasher: PasswordHasher::new(config.bcrypt_cost),
        })
    }
}

impl LoginState<AnyStore, AnySigner> {
    /// Opens the store and loads the signing key.
    pub async fn from_config(config: &Config) -> Result<Self, InitError> {
        Ok(LoginState {
            store: AnyStore::open(config).await?,
            hasher: PasswordHasher::new(config.bcrypt_cost),
            tokens: TokenIssuer::new(
                signer(config).await?,
                &config.issuer,
                &config.audience,
                config.token_ttl,
            ),
            clock: system_clock(),
        })
    }
}

impl MeState<AnyStore> {
    /// Opens the store and loads the public key.
    pub async fn from_config(config: &Config) -> Result<Self, InitError> {
        Ok(MeState {
            store: AnyStore::open(config).await?,
            verifier: TokenVerifier::new(
                public_key(config).await?,
                &config.issuer,
                &config.audience,
            ),
        })
    }
}

impl DiscoveryState {
    /// Loads the public key.
    pub async fn from_config(config: &Config) -> Result<Self, InitError> {
        Ok(DiscoveryState {
            key: public_key(config).await?,
            issuer: config.issuer.clone(),
        })
    }
}
