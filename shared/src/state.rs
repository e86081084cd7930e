//! What each function builds once per cold start from [`Config`]: only what its handler uses,
//! so `me` and `jwks` never load the private key and `register` never loads a key at all.

use crate::config::{Config, Issuer, KeyConfig, StoreConfig};
use crate::password::PasswordHasher;
use aws_config::SdkConfig;

use crate::clock::{self, Clock};
use crate::session::SessionLimits;
use crate::signer::{AnySigner, KeyError, KmsSigner, LocalSigner, PublicKey, Signer};
use crate::store::{
    AccountStore, CredentialStore, Credentials, DynamoStore, NewUser, ProfileReader,
    ProfileWithSession, SessionRecord, SessionStore, SqliteStore, StoreError, UserWriter,
};
use crate::token::{TokenIssuer, TokenVerifier};

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
    /// `iss` of the tokens.
    pub issuer: Issuer,
    /// How long sessions last.
    pub sessions: SessionLimits,
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
    /// The time, for the throttle and sessions.
    pub clock: Clock,
}

/// State of the `jwks` function: the public key and the issuer's discovery document.
pub struct DiscoveryState {
    /// The published key.
    pub key: PublicKey,
    /// `AUTH_ISSUER`.
    pub issuer: Issuer,
}

/// The configured user store.
pub enum AnyStore {
    /// `sqlite:PATH`.
    Sqlite(SqliteStore),
    /// `dynamodb:TABLE`.
    Dynamo(DynamoStore),
}

impl AnyStore {
    /// Opens the store named by the configuration. DynamoDB makes no call here: the first
    /// request opens the connection.
    pub fn open(config: &Config, aws: Option<&SdkConfig>) -> Result<Self, InitError> {
        match &config.store {
            StoreConfig::Sqlite(path) => Ok(AnyStore::Sqlite(SqliteStore::open(path)?)),
            StoreConfig::Dynamodb(table) => Ok(AnyStore::Dynamo(DynamoStore::new(
                aws.expect("AWS is loaded for a dynamodb store"),
                table,
            ))),
        }
    }
}

/// Loads the AWS SDK configuration once, only when a backend needs it.
async fn aws_config(config: &Config) -> Option<SdkConfig> {
    if config.uses_aws() {
        Some(crate::aws::load().await)
    } else {
        None
    }
}

impl UserWriter for AnyStore {
    async fn create(&self, user: &NewUser) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.create(user).await,
            AnyStore::Dynamo(s) => s.create(user).await,
        }
    }
}

impl CredentialStore for AnyStore {
    async fn credentials(&self, username_key: &str) -> Result<Option<Credentials>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.credentials(username_key).await,
            AnyStore::Dynamo(s) => s.credentials(username_key).await,
        }
    }

    async fn claim_attempt(&self, user: &Credentials, at: u64) -> Result<bool, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.claim_attempt(user, at).await,
            AnyStore::Dynamo(s) => s.claim_attempt(user, at).await,
        }
    }

    async fn record_success(
        &self,
        user: &Credentials,
        rehash: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.record_success(user, rehash).await,
            AnyStore::Dynamo(s) => s.record_success(user, rehash).await,
        }
    }
}

impl ProfileReader for AnyStore {
    async fn profile(
        &self,
        id: &str,
        username: &str,
        sid: &str,
    ) -> Result<Option<ProfileWithSession>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.profile(id, username, sid).await,
            AnyStore::Dynamo(s) => s.profile(id, username, sid).await,
        }
    }
}

impl AccountStore for AnyStore {
    async fn change_password(
        &self,
        user: &Credentials,
        new_hash: &str,
    ) -> Result<Option<u64>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.change_password(user, new_hash).await,
            AnyStore::Dynamo(s) => s.change_password(user, new_hash).await,
        }
    }

    async fn delete_account(&self, user: &Credentials) -> Result<bool, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.delete_account(user).await,
            AnyStore::Dynamo(s) => s.delete_account(user).await,
        }
    }
}

impl SessionStore for AnyStore {
    async fn create_session(&self, session: &SessionRecord, now: u64) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.create_session(session, now).await,
            AnyStore::Dynamo(s) => s.create_session(session, now).await,
        }
    }

    async fn session(&self, sid: &str) -> Result<Option<SessionRecord>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.session(sid).await,
            AnyStore::Dynamo(s) => s.session(sid).await,
        }
    }

    async fn rotate_session(
        &self,
        from: &SessionRecord,
        to: &SessionRecord,
    ) -> Result<bool, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.rotate_session(from, to).await,
            AnyStore::Dynamo(s) => s.rotate_session(from, to).await,
        }
    }

    async fn end_session(&self, sid: &str) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.end_session(sid).await,
            AnyStore::Dynamo(s) => s.end_session(sid).await,
        }
    }

    async fn end_all_sessions(
        &self,
        user_id: &str,
        username_key: &str,
    ) -> Result<Option<u64>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.end_all_sessions(user_id, username_key).await,
            AnyStore::Dynamo(s) => s.end_all_sessions(user_id, username_key).await,
        }
    }
}

async fn signer(config: &Config, aws: Option<&SdkConfig>) -> Result<AnySigner, InitError> {
    match &config.signing_key {
        KeyConfig::File(path) => Ok(AnySigner::Local(LocalSigner::from_pem_file(path)?)),
        KeyConfig::Kms(id) => Ok(AnySigner::Kms(
            KmsSigner::new(aws.expect("AWS is loaded for a kms key"), id).await?,
        )),
    }
}

async fn public_key(config: &Config, aws: Option<&SdkConfig>) -> Result<PublicKey, InitError> {
    match config.verification_key() {
        KeyConfig::File(path) => Ok(PublicKey::from_pem_file(path)?),
        KeyConfig::Kms(id) => Ok(
            KmsSigner::new(aws.expect("AWS is loaded for a kms key"), id)
                .await?
                .public_key()
                .clone(),
        ),
    }
}

impl RegisterState<AnyStore> {
    /// Opens the store.
    pub async fn from_config(config: &Config) -> Result<Self, InitError> {
        let aws = aws_config(config).await;
        Ok(RegisterState {
            store: AnyStore::open(config, aws.as_ref())?,
            hasher: PasswordHasher::new(config.bcrypt_cost),
        })
    }
}

impl LoginState<AnyStore, AnySigner> {
    /// Opens the store and loads the signing key.
    pub async fn from_config(config: &Config) -> Result<Self, InitError> {
        let aws = aws_config(config).await;
        Ok(LoginState {
            store: AnyStore::open(config, aws.as_ref())?,
            hasher: PasswordHasher::new(config.bcrypt_cost),
            tokens: TokenIssuer::new(
                signer(config, aws.as_ref()).await?,
                &config.audience,
                config.token_ttl,
            ),
            issuer: config.issuer.clone(),
            sessions: config.sessions,
            clock: clock::system(),
        })
    }
}

impl MeState<AnyStore> {
    /// Opens the store and loads the public key.
    pub async fn from_config(config: &Config) -> Result<Self, InitError> {
        let aws = aws_config(config).await;
        Ok(MeState {
            store: AnyStore::open(config, aws.as_ref())?,
            verifier: TokenVerifier::new(public_key(config, aws.as_ref()).await?, &config.audience),
            issuer: config.issuer.clone(),
            clock: clock::system(),
        })
    }
}

impl AccountState<AnyStore, AnySigner> {
    /// Opens the store and loads the signing key (whose public half checks bearers).
    pub async fn from_config(config: &Config) -> Result<Self, InitError> {
        let aws = aws_config(config).await;
        let signer = signer(config, aws.as_ref()).await?;
        Ok(AccountState {
            store: AnyStore::open(config, aws.as_ref())?,
            hasher: PasswordHasher::new(config.bcrypt_cost),
            verifier: TokenVerifier::new(signer.public_key().clone(), &config.audience),
            tokens: TokenIssuer::new(signer, &config.audience, config.token_ttl),
            issuer: config.issuer.clone(),
            sessions: config.sessions,
            clock: clock::system(),
        })
    }
}

impl LogoutState<AnyStore> {
    /// Opens the store and loads the public key.
    pub async fn from_config(config: &Config) -> Result<Self, InitError> {
        let aws = aws_config(config).await;
        Ok(LogoutState {
            store: AnyStore::open(config, aws.as_ref())?,
            verifier: TokenVerifier::new(public_key(config, aws.as_ref()).await?, &config.audience),
            issuer: config.issuer.clone(),
            clock: clock::system(),
        })
    }
}

impl DiscoveryState {
    /// Loads the public key.
    pub async fn from_config(config: &Config) -> Result<Self, InitError> {
        let aws = aws_config(config).await;
        Ok(DiscoveryState {
            key: public_key(config, aws.as_ref()).await?,
            issuer: config.issuer.clone(),
        })
    }
}
