//! Building each function's state from [`Config`] at cold start: the one place that knows which
//! backend a setting names. A function's `main` opens the store once and matches on it
//! ([`with_store!`](crate::with_store)), so every handler is compiled for each concrete backend
//! and no code forwards store calls from an enum to its variants.

use tokio::sync::OnceCell;

use aws_config::SdkConfig;

use crate::clock;
use crate::config::{Config, DataKeyConfig, KeyConfig, StoreConfig};
use crate::mail::{MailError, Mailer, Outbox};
use crate::password::PasswordHasher;
use crate::seal::DataKey;
use crate::signer::{AnySigner, KeyError, KeySet, KmsSigner, LocalSigner, PublicKey, Signer};
use crate::state::{
    AccountState, AuthorizeState, JwksState, LoginState, LogoutState, MeState, RegisterState,
};
use crate::store::{DynamoStore, SqliteStore, StoreError};
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
    /// The data key cannot be loaded.
    #[error(transparent)]
    DataKey(#[from] crate::seal::SealError),
    /// The mailer cannot be set up.
    #[error("invalid configuration: AUTH_MAILER: {0}")]
    Mail(#[from] MailError),
    /// The keys to publish do not make a valid key set.
    #[error("invalid configuration: AUTH_EXTRA_PUBLIC_KEYS: {0}")]
    KeySet(String),
}

/// The store `AUTH_STORE` names, opened.
pub enum Store {
    /// `sqlite:PATH`.
    Sqlite(SqliteStore),
    /// `dynamodb:TABLE`.
    Dynamo(DynamoStore),
}

/// The whole `main` of a function that serves one handler over the store: `$function` names both
/// its [`Wiring`] method and its module in [`crate::handlers`]. State is built once per cold start.
#[macro_export]
macro_rules! function_main {
    ($function:ident) => {
        #[tokio::main(flavor = "current_thread")]
        async fn main() -> Result<(), lambda_http::Error> {
            let wiring = $crate::wiring::Wiring::new($crate::telemetry::start());
            $crate::with_store!(wiring, |store| {
                let state = $crate::telemetry::or_exit(wiring.$function(store).await);
                lambda_http::run(lambda_http::service_fn(async |req| {
                    Ok::<_, std::convert::Infallible>(
                        $crate::handlers::$function::handle(&state, req).await,
                    )
                }))
                .await
            })
        }
    };
}

/// Runs `$body` with `$store` bound to the opened store's concrete backend (one arm each), exiting
/// with one line if it cannot be opened.
#[macro_export]
macro_rules! with_store {
    ($wiring:expr, |$store:ident| $body:expr) => {
        match $crate::telemetry::or_exit($wiring.store().await) {
            $crate::wiring::Store::Sqlite($store) => $body,
            $crate::wiring::Store::Dynamo($store) => $body,
        }
    };
}

/// The configuration and, loaded on first use only, the AWS SDK's (so SQLite with a PEM key does
/// no AWS set-up at all).
pub struct Wiring {
    /// The validated settings.
    pub config: Config,
    aws: OnceCell<SdkConfig>,
}

impl Wiring {
    /// Wiring for `config`.
    pub fn new(config: Config) -> Self {
        Wiring {
            config,
            aws: OnceCell::new(),
        }
    }

    /// Wiring for `config` with the AWS SDK's configuration given (a test's endpoint, say)
    /// instead of read from the environment.
    pub fn with_aws(config: Config, aws: SdkConfig) -> Self {
        Wiring {
            config,
            aws: OnceCell::new_with(Some(aws)),
        }
    }

    async fn aws(&self) -> &SdkConfig {
        self.aws.get_or_init(crate::aws::load).await
    }

    /// Opens the configured store. DynamoDB makes no call here: the first request connects.
    pub async fn store(&self) -> Result<Store, InitError> {
        Ok(match &self.config.store {
            StoreConfig::Sqlite(path) => Store::Sqlite(SqliteStore::open(path)?),
            StoreConfig::Dynamodb(table) => {
                Store::Dynamo(DynamoStore::new(self.aws().await, table))
            }
        })
    }

    /// The signing key.
    pub async fn signer(&self) -> Result<AnySigner, InitError> {
        Ok(match &self.config.signing_key {
            KeyConfig::File(path) => AnySigner::Local(LocalSigner::from_pem_file(path)?),
            KeyConfig::Kms(id) => AnySigner::Kms(KmsSigner::new(self.aws().await, id).await?),
            KeyConfig::Ssm(name) => {
                AnySigner::Local(crate::signer::from_parameter(self.aws().await, name).await?)
            }
            KeyConfig::Spki(_) => {
                return Err(InitError::Key(KeyError {
                    source_name: "AUTH_SIGNING_KEY".into(),
                    reason: "a public key cannot sign".into(),
                }));
            }
        })
    }

    async fn load_public(&self, key: &KeyConfig) -> Result<PublicKey, InitError> {
        Ok(match key {
            KeyConfig::File(path) => PublicKey::from_pem_file(path)?,
            KeyConfig::Kms(id) => KmsSigner::new(self.aws().await, id)
                .await?
                .public_key()
                .clone(),
            // The parameter holds the private key, which a verifying function never reads (nor
            // links the SSM client for): it is given the public half.
            KeyConfig::Ssm(name) => {
                return Err(InitError::Key(KeyError {
                    source_name: format!("ssm:{name}"),
                    reason: "the parameter holds the private key: give the functions that only \
                             verify its public half (AUTH_PUBLIC_KEY=spki:BASE64 or file:PATH)"
                        .into(),
                }));
            }
            KeyConfig::Spki(der) => PublicKey::from_spki_base64(der)?,
        })
    }

    /// The data key, when one is configured.
    async fn data_key(&self) -> Result<Option<DataKey>, InitError> {
        Ok(match &self.config.data_key {
            None => None,
            Some(DataKeyConfig::File(path)) => Some(DataKey::from_file(path)?),
            Some(DataKeyConfig::Kms(id)) => Some(DataKey::Kms {
                client: aws_sdk_kms::Client::new(self.aws().await),
                key_id: id.clone(),
            }),
        })
    }

    /// The mailer and what the links need.
    async fn outbox(&self) -> Result<Outbox, InitError> {
        let mail = &self.config.mail;
        Ok(Outbox {
            mailer: Mailer::new(mail, || async { self.aws().await.clone() }).await?,
            app_name: self.config.app_name.clone(),
            verify_url: mail.verify_url.clone(),
            verify_ttl: mail.verify_ttl,
            reset_ttl: mail.reset_ttl,
            forgot_min: mail.forgot_min,
            forgot_per_source_hour: mail.forgot_per_source_hour,
        })
    }

    /// The keys tokens may carry: `current` (the signing key's public half) and the extra ones
    /// published for a rotation.
    async fn key_set(&self, current: PublicKey) -> Result<KeySet, InitError> {
        let mut extra = Vec::with_capacity(self.config.extra_public_keys.len());
        for key in &self.config.extra_public_keys {
            extra.push(self.load_public(key).await?);
        }
        KeySet::new(current, extra).map_err(InitError::KeySet)
    }

    /// What verify-only functions load: `AUTH_PUBLIC_KEY` (else the signing key's public half)
    /// and `AUTH_EXTRA_PUBLIC_KEYS`, never a private key.
    pub async fn public_keys(&self) -> Result<KeySet, InitError> {
        let current = self.load_public(self.config.verification_key()).await?;
        self.key_set(current).await
    }

    async fn verifier(&self) -> Result<TokenVerifier, InitError> {
        Ok(TokenVerifier::new(
            self.public_keys().await?,
            &self.config.audience,
        ))
    }

    fn hasher(&self) -> PasswordHasher {
        PasswordHasher::new(self.config.bcrypt_cost)
    }

    /// The `register` function's state over `store`.
    pub async fn register<W>(&self, store: W) -> Result<RegisterState<W>, InitError> {
        Ok(RegisterState {
            store,
            hasher: self.hasher(),
            outbox: self.outbox().await?,
            issuer: self.config.issuer.clone(),
            clock: clock::system(),
        })
    }

    /// The `login` function's state over `store`, with the signing key.
    pub async fn login<C>(&self, store: C) -> Result<LoginState<C, AnySigner>, InitError> {
        Ok(LoginState {
            store,
            hasher: self.hasher(),
            tokens: TokenIssuer::new(
                self.signer().await?,
                &self.config.audience,
                self.config.token_ttl,
            ),
            issuer: self.config.issuer.clone(),
            sessions: self.config.sessions,
            throttle: self.config.throttle,
            data_key: self.data_key().await?,
            clock: clock::system(),
        })
    }

    /// The `me` function's state over `store`, with the public key.
    pub async fn me<P>(&self, store: P) -> Result<MeState<P>, InitError> {
        Ok(MeState {
            store,
            verifier: self.verifier().await?,
            issuer: self.config.issuer.clone(),
            clock: clock::system(),
        })
    }

    /// The `logout` function's state over `store`, with the public key.
    pub async fn logout<S>(&self, store: S) -> Result<LogoutState<S>, InitError> {
        Ok(LogoutState {
            store,
            verifier: self.verifier().await?,
            issuer: self.config.issuer.clone(),
            clock: clock::system(),
        })
    }

    /// The `account` function's state over `store`, with the signing key (whose public half
    /// checks bearers).
    pub async fn account<A>(&self, store: A) -> Result<AccountState<A, AnySigner>, InitError> {
        let signer = self.signer().await?;
        Ok(AccountState {
            store,
            hasher: self.hasher(),
            verifier: TokenVerifier::new(
                self.key_set(signer.public_key().clone()).await?,
                &self.config.audience,
            ),
            tokens: TokenIssuer::new(signer, &self.config.audience, self.config.token_ttl),
            issuer: self.config.issuer.clone(),
            sessions: self.config.sessions,
            throttle: self.config.throttle,
            outbox: self.outbox().await?,
            data_key: self.data_key().await?,
            clock: clock::system(),
        })
    }

    /// The `authorize` function's state over `store`, with the public keys (an `id_token_hint`
    /// is checked, never signed).
    pub async fn authorize<C>(&self, store: C) -> Result<AuthorizeState<C>, InitError> {
        Ok(AuthorizeState {
            store,
            hasher: self.hasher(),
            verifier: self.verifier().await?,
            issuer: self.config.issuer.clone(),
            sessions: self.config.sessions,
            throttle: self.config.throttle,
            app_name: self.config.app_name.clone(),
            data_key: self.data_key().await?,
            clock: clock::system(),
        })
    }

    /// The `jwks` function's state: the public key and the issuer.
    pub async fn jwks(&self) -> Result<JwksState, InitError> {
        Ok(JwksState {
            keys: self.public_keys().await?,
            issuer: self.config.issuer.clone(),
        })
    }
}
