//! Settings read from the environment once per cold start and checked there, so a bad value fails
//! the init with one clear line instead of failing requests later.

use std::path::PathBuf;
use std::time::Duration;

use crate::session::SessionLimits;
use crate::throttle::ThrottleLimits;

/// Where users are stored (`AUTH_STORE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// `sqlite:PATH`: an SQLite file, created with its schema when missing.
    Sqlite(PathBuf),
    /// `dynamodb:TABLE`: a DynamoDB table (see `template.yaml` for its key schema).
    Dynamodb(String),
}

/// Where the signing key comes from (`AUTH_SIGNING_KEY`, `AUTH_PUBLIC_KEY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyConfig {
    /// `file:PATH`: a PEM file (PKCS#1 or PKCS#8).
    File(PathBuf),
    /// `kms:KEY_ID_OR_ARN`: an RSA `SIGN_VERIFY` key in AWS KMS (id, ARN or `alias/...`).
    Kms(String),
    /// `ssm:NAME`: an SSM Parameter Store `SecureString` holding a PEM private key, decrypted
    /// once per cold start (signing then happens in process).
    Ssm(String),
    /// `spki:BASE64`: a public key inline, the base64 DER `SubjectPublicKeyInfo` (what KMS
    /// `GetPublicKey` returns): verification only, never a signing key.
    Spki(String),
}

/// The key TOTP secrets are sealed under (`AUTH_DATA_KEY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataKeyConfig {
    /// `file:PATH`: 32 random bytes (AES-256-GCM).
    File(PathBuf),
    /// `kms:KEY_ID_OR_ARN`: a symmetric KMS key.
    Kms(String),
}

/// The `iss` of tokens (`AUTH_ISSUER`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issuer {
    /// A fixed URL, e.g. `https://auth.example.com`.
    Fixed(String),
    /// `request`: `https://` + the domain the request arrived on (API Gateway's
    /// `requestContext.domainName`). For a deployment whose own API URL cannot be named in its
    /// template without a circular reference (see the README); tokens are then valid on the
    /// domain that issued them.
    FromRequest,
}

/// Where mail goes (`AUTH_MAILER`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailerConfig {
    /// `file:DIR`: one RFC 5322 `.eml` file per message (local runs).
    File(PathBuf),
    /// `smtp://HOST:PORT` (STARTTLS required unless HOST is a loopback address) or
    /// `smtps://HOST:PORT` (TLS from the first byte).
    Smtp {
        /// The relay's host name or address.
        host: String,
        /// Its port.
        port: u16,
        /// How the connection is protected.
        tls: SmtpTls,
    },
    /// `ses`: Amazon SES v2 `SendEmail`.
    Ses,
}

/// How an SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// `smtp://` to another host: STARTTLS, required.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Wrapper,
    /// `smtp://` to a loopback address: no TLS (a relay on the same machine).
    None,
}

/// A secret setting: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Mail: the mailer, the sender, and the links' lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailConfig {
    /// `AUTH_MAILER`, default `file:.dev/mail`.
    pub mailer: MailerConfig,
    /// `AUTH_MAIL_FROM`: the sender (`addr` or `Name <addr>`), default `no-reply@localhost`.
    pub from: String,
    /// `AUTH_SMTP_USERNAME` and `AUTH_SMTP_PASSWORD`, when the relay asks for a login.
    pub smtp_credentials: Option<(String, Secret)>,
    /// `AUTH_VERIFY_URL`: where verification links point instead of the hosted page.
    pub verify_url: Option<String>,
    /// `AUTH_VERIFY_TOKEN_SECONDS`, default 86400.
    pub verify_ttl: u64,
    /// `AUTH_RESET_TOKEN_SECONDS`, default 1800.
    pub reset_ttl: u64,
    /// `AUTH_FORGOT_MIN_MS`, default 400: `POST /password/forgot` answers no sooner, so the
    /// time of its answer does not tell whether a mail was sent.
    pub forgot_min: Duration,
    /// `AUTH_FORGOT_PER_SOURCE_HOUR`, default 30: forgot-password requests one address may make
    /// an hour (matching or not); beyond, they answer the same and send nothing.
    pub forgot_per_source_hour: u32,
}

/// The mailer when `AUTH_MAILER` is not set: files under the working directory.
pub const DEFAULT_MAILER: &str = "file:.dev/mail";
/// The sender when `AUTH_MAIL_FROM` is not set.
pub const DEFAULT_MAIL_FROM: &str = "no-reply@localhost";

/// Every setting of the service, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// `AUTH_STORE`, default `sqlite:users.db`.
    pub store: StoreConfig,
    /// `AUTH_SIGNING_KEY`: the RSA private key that signs tokens. Required.
    pub signing_key: KeyConfig,
    /// `AUTH_PUBLIC_KEY`: the matching public key. Functions that only verify (`me`, `jwks`) read it
    /// instead of the private key when it is set.
    pub public_key: Option<KeyConfig>,
    /// `AUTH_EXTRA_PUBLIC_KEYS`: more keys to publish and accept (never to sign with), for a
    /// rotation.
    pub extra_public_keys: Vec<KeyConfig>,
    /// `AUTH_ISSUER`: the `iss` claim, also the base of the discovery URLs.
    pub issuer: Issuer,
    /// `AUTH_AUDIENCE`: the `aud` claim.
    pub audience: String,
    /// `AUTH_TOKEN_TTL_SECONDS`, default 1800.
    pub token_ttl: Duration,
    /// `AUTH_BCRYPT_COST`, default 12.
    pub bcrypt_cost: u32,
    /// `AUTH_REFRESH_IDLE_SECONDS`, `AUTH_SESSION_MAX_SECONDS`, `AUTH_REFRESH_REUSE_SECONDS`.
    pub sessions: SessionLimits,
    /// `AUTH_ACCOUNT_FAILURES_PER_HOUR`, `AUTH_SOURCE_FAILURES_PER_HOUR`.
    pub throttle: ThrottleLimits,
    /// `AUTH_APP_NAME`: the title of the hosted pages, default `Sign in`.
    pub app_name: String,
    /// `AUTH_MAILER` and the other mail settings.
    pub mail: MailConfig,
    /// `AUTH_DATA_KEY`: seals second factors' secrets; none: second factors are unavailable.
    pub data_key: Option<DataKeyConfig>,
}

/// The hosted pages' title when `AUTH_APP_NAME` is not set.
pub const DEFAULT_APP_NAME: &str = "Sign in";

/// A setting that is missing or malformed, named so the operator can fix it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {name}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub name: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn err(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        name,
        reason: reason.into(),
    }
}

/// Default issuer when `AUTH_ISSUER` is unset: the local `cargo lambda watch` address.
pub const DEFAULT_ISSUER: &str = "http://localhost:9000";
/// Default audience when `AUTH_AUDIENCE` is unset.
pub const DEFAULT_AUDIENCE: &str = "jwt-auth-api";

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let store = parse_store(&get("AUTH_STORE").unwrap_or_else(|| "sqlite:users.db".into()))?;
        let signing_key = parse_key(
            "AUTH_SIGNING_KEY",
            &get("AUTH_SIGNING_KEY")
                .ok_or_else(|| err("AUTH_SIGNING_KEY", "is required (file:PATH to a PEM key)"))?,
        )?;
        let public_key = get("AUTH_PUBLIC_KEY")
            .map(|v| parse_key("AUTH_PUBLIC_KEY", &v))
            .transpose()?;
        let extra_public_keys = get("AUTH_EXTRA_PUBLIC_KEYS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(|k| parse_key("AUTH_EXTRA_PUBLIC_KEYS", k))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();

        let issuer = match get("AUTH_ISSUER") {
            Some(v) if v == "request" => Issuer::FromRequest,
            Some(v) if valid_issuer_url(&v) => Issuer::Fixed(v),
            Some(_) => {
                return Err(err(
                    "AUTH_ISSUER",
                    "must be `request` or an http(s) URL without a trailing slash, query or fragment",
                ));
            }
            None => Issuer::Fixed(DEFAULT_ISSUER.into()),
        };
        let audience = get("AUTH_AUDIENCE").unwrap_or_else(|| DEFAULT_AUDIENCE.into());

        let ttl: u64 = parse_number(
            "AUTH_TOKEN_TTL_SECONDS",
            get("AUTH_TOKEN_TTL_SECONDS"),
            1800,
        )?;
        if !(60..=86_400).contains(&ttl) {
            return Err(err(
                "AUTH_TOKEN_TTL_SECONDS",
                "must be between 60 and 86400",
            ));
        }
        let bcrypt_cost: u32 = parse_number("AUTH_BCRYPT_COST", get("AUTH_BCRYPT_COST"), 12)?;
        if !(4..=31).contains(&bcrypt_cost) {
            return Err(err("AUTH_BCRYPT_COST", "must be between 4 and 31"));
        }

        let defaults = SessionLimits::default();
        let at_least_one = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            let value: u64 = parse_number(name, get(name), default)?;
            if value == 0 {
                return Err(err(name, "must be at least 1"));
            }
            Ok(value)
        };
        let sessions = SessionLimits {
            idle: at_least_one("AUTH_REFRESH_IDLE_SECONDS", defaults.idle)?,
            max: at_least_one("AUTH_SESSION_MAX_SECONDS", defaults.max)?,
            reuse: parse_number(
                "AUTH_REFRESH_REUSE_SECONDS",
                get("AUTH_REFRESH_REUSE_SECONDS"),
                defaults.reuse,
            )?,
        };
        if sessions.reuse > MAX_REFRESH_REUSE_SECONDS {
            return Err(err(
                "AUTH_REFRESH_REUSE_SECONDS",
                "must be at most 300 (a retry interval, not a second lifetime)",
            ));
        }

        let throttle = throttle_limits(&get)?;
        let app_name = get("AUTH_APP_NAME").unwrap_or_else(|| DEFAULT_APP_NAME.into());
        if app_name.chars().count() > 64 || app_name.chars().any(char::is_control) {
            return Err(err(
                "AUTH_APP_NAME",
                "must be at most 64 characters, without control characters",
            ));
        }

        let mail = mail_config(&get)?;
        let data_key = get("AUTH_DATA_KEY")
            .map(|v| match parse_key("AUTH_DATA_KEY", &v)? {
                KeyConfig::File(path) => Ok(DataKeyConfig::File(path)),
                KeyConfig::Kms(id) => Ok(DataKeyConfig::Kms(id)),
                KeyConfig::Ssm(_) | KeyConfig::Spki(_) => Err(err(
                    "AUTH_DATA_KEY",
                    "expected file:PATH or kms:KEY_ID_OR_ARN",
                )),
            })
            .transpose()?;

        Ok(Config {
            store,
            signing_key,
            public_key,
            extra_public_keys,
            issuer,
            audience,
            token_ttl: Duration::from_secs(ttl),
            bcrypt_cost,
            sessions,
            throttle,
            app_name,
            mail,
            data_key,
        })
    }

    /// The key a verify-only function should load: the public key when configured.
    pub fn verification_key(&self) -> &KeyConfig {
        self.public_key.as_ref().unwrap_or(&self.signing_key)
    }
}

fn parse_number<T: std::str::FromStr>(
    name: &'static str,
    value: Option<String>,
    default: T,
) -> Result<T, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| err(name, format!("expected a whole number, got {v:?}"))),
    }
}

/// Parses an `AUTH_STORE` value (`sqlite:PATH` or `dynamodb:TABLE`); public for tools that need
/// the store and none of the other settings (`auth-admin`).
pub fn parse_store(value: &str) -> Result<StoreConfig, ConfigError> {
    match value.split_once(':') {
        Some(("sqlite", path)) if !path.is_empty() => Ok(StoreConfig::Sqlite(PathBuf::from(path))),
        Some(("dynamodb", table)) if valid_table_name(table) => {
            Ok(StoreConfig::Dynamodb(table.to_string()))
        }
        Some(("dynamodb", _)) => Err(err(
            "AUTH_STORE",
            "dynamodb table names are 3-255 characters of a-z A-Z 0-9 _ - .",
        )),
        _ => Err(err("AUTH_STORE", "expected sqlite:PATH or dynamodb:TABLE")),
    }
}

fn parse_key(name: &'static str, value: &str) -> Result<KeyConfig, ConfigError> {
    match value.split_once(':') {
        Some(("file", path)) if !path.is_empty() => Ok(KeyConfig::File(PathBuf::from(path))),
        Some(("kms", id)) if !id.is_empty() && !id.contains(char::is_whitespace) => {
            Ok(KeyConfig::Kms(id.to_string()))
        }
        Some(("ssm", name)) if name.starts_with('/') && !name.contains(char::is_whitespace) => {
            Ok(KeyConfig::Ssm(name.to_string()))
        }
        Some(("spki", der)) if name != "AUTH_SIGNING_KEY" && !der.is_empty() => {
            Ok(KeyConfig::Spki(der.to_string()))
        }
        _ if name == "AUTH_SIGNING_KEY" => Err(err(
            name,
            "expected file:PATH, kms:KEY_ID_OR_ARN or ssm:/PARAMETER_NAME",
        )),
        _ => Err(err(
            name,
            "expected file:PATH, kms:KEY_ID_OR_ARN, ssm:/PARAMETER_NAME or spki:BASE64_DER",
        )),
    }
}

fn valid_issuer_url(v: &str) -> bool {
    (v.starts_with("https://") || v.starts_with("http://"))
        && !v.ends_with('/')
        && !v.contains(['?', '#', ' '])
}

fn valid_table_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// The mail settings (`AUTH_MAILER`, `AUTH_MAIL_FROM`, …).
fn mail_config(get: &impl Fn(&str) -> Option<String>) -> Result<MailConfig, ConfigError> {
    let mailer = parse_mailer(&get("AUTH_MAILER").unwrap_or_else(|| DEFAULT_MAILER.into()))?;
    let from = get("AUTH_MAIL_FROM").unwrap_or_else(|| DEFAULT_MAIL_FROM.into());
    if from.parse::<lettre::message::Mailbox>().is_err() {
        return Err(err(
            "AUTH_MAIL_FROM",
            "expected an address, or `Name <address>`",
        ));
    }
    let smtp_credentials = match (get("AUTH_SMTP_USERNAME"), get("AUTH_SMTP_PASSWORD")) {
        (Some(user), Some(password)) => Some((user, Secret(password))),
        (None, None) => None,
        _ => {
            return Err(err(
                "AUTH_SMTP_USERNAME",
                "AUTH_SMTP_USERNAME and AUTH_SMTP_PASSWORD go together",
            ));
        }
    };
    let verify_url = get("AUTH_VERIFY_URL");
    if let Some(url) = &verify_url
        && !(valid_link_base(url))
    {
        return Err(err(
            "AUTH_VERIFY_URL",
            "must be an http(s) URL without a fragment",
        ));
    }
    let lifetime = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
        let value: u64 = parse_number(name, get(name), default)?;
        if !(1..=30 * 86_400).contains(&value) {
            return Err(err(name, "must be between 1 and 2592000"));
        }
        Ok(value)
    };
    let forgot_min: u64 = parse_number("AUTH_FORGOT_MIN_MS", get("AUTH_FORGOT_MIN_MS"), 400)?;
    if forgot_min > 10_000 {
        return Err(err("AUTH_FORGOT_MIN_MS", "must be at most 10000"));
    }
    Ok(MailConfig {
        mailer,
        from,
        smtp_credentials,
        verify_url,
        verify_ttl: lifetime("AUTH_VERIFY_TOKEN_SECONDS", 86_400)?,
        reset_ttl: lifetime("AUTH_RESET_TOKEN_SECONDS", 1800)?,
        forgot_min: Duration::from_millis(forgot_min),
        forgot_per_source_hour: match parse_number(
            "AUTH_FORGOT_PER_SOURCE_HOUR",
            get("AUTH_FORGOT_PER_SOURCE_HOUR"),
            crate::policy::FORGOT_PER_SOURCE_HOUR,
        )? {
            0 => return Err(err("AUTH_FORGOT_PER_SOURCE_HOUR", "must be at least 1")),
            n => n,
        },
    })
}

fn valid_link_base(v: &str) -> bool {
    url::Url::parse(v).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
        && !v.contains(['#', ' '])
}

/// Parses an `AUTH_MAILER` value.
pub fn parse_mailer(value: &str) -> Result<MailerConfig, ConfigError> {
    const EXPECTED: &str = "expected file:DIR, smtp://HOST:PORT, smtps://HOST:PORT or ses";
    if value == "ses" {
        return Ok(MailerConfig::Ses);
    }
    if let Some(dir) = value.strip_prefix("file:") {
        if dir.is_empty() {
            return Err(err("AUTH_MAILER", EXPECTED));
        }
        return Ok(MailerConfig::File(PathBuf::from(dir)));
    }
    let url = url::Url::parse(value).map_err(|_| err("AUTH_MAILER", EXPECTED))?;
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(err("AUTH_MAILER", EXPECTED)),
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let (tls, default_port) = match url.scheme() {
        "smtps" => (SmtpTls::Wrapper, 465),
        "smtp" if loopback => (SmtpTls::None, 25),
        "smtp" => (SmtpTls::StartTls, 587),
        _ => return Err(err("AUTH_MAILER", EXPECTED)),
    };
    if !url.username().is_empty() || url.password().is_some() || url.path().len() > 1 {
        return Err(err(
            "AUTH_MAILER",
            "no credentials or path in the URL: AUTH_SMTP_USERNAME and AUTH_SMTP_PASSWORD",
        ));
    }
    Ok(MailerConfig::Smtp {
        host,
        port: url.port().unwrap_or(default_port),
        tls,
    })
}

/// The longest `AUTH_REFRESH_REUSE_SECONDS`: a rotated refresh token is good again only this
/// long, for tabs racing and retries after a lost answer.
pub const MAX_REFRESH_REUSE_SECONDS: u64 = 300;

/// The throttle's ceilings from `AUTH_ACCOUNT_FAILURES_PER_HOUR` and
/// `AUTH_SOURCE_FAILURES_PER_HOUR` (what `auth-admin` reads too, so it judges waits as the
/// functions do).
pub fn throttle_limits(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<ThrottleLimits, ConfigError> {
    let throttle_defaults = ThrottleLimits::default();
    let account_per_hour: u32 = parse_number(
        "AUTH_ACCOUNT_FAILURES_PER_HOUR",
        get("AUTH_ACCOUNT_FAILURES_PER_HOUR"),
        throttle_defaults.account_per_hour,
    )?;
    if !(1..=99).contains(&account_per_hour) {
        return Err(err(
            "AUTH_ACCOUNT_FAILURES_PER_HOUR",
            "must be between 1 and 99 (ASVS: fewer than 100 failures an hour)",
        ));
    }
    let source_per_hour: u32 = parse_number(
        "AUTH_SOURCE_FAILURES_PER_HOUR",
        get("AUTH_SOURCE_FAILURES_PER_HOUR"),
        throttle_defaults.source_per_hour,
    )?;
    if source_per_hour == 0 {
        return Err(err("AUTH_SOURCE_FAILURES_PER_HOUR", "must be at least 1"));
    }
    Ok(ThrottleLimits {
        account_per_hour,
        source_per_hour,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_apply_when_only_the_key_is_given() {
        let c = config(&[("AUTH_SIGNING_KEY", "file:k.pem")]).unwrap();
        assert_eq!(c.store, StoreConfig::Sqlite("users.db".into()));
        assert_eq!(c.token_ttl, Duration::from_secs(1800));
        assert_eq!(c.bcrypt_cost, 12);
        assert_eq!(
            c.sessions,
            SessionLimits {
                idle: 604_800,
                max: 2_592_000,
                reuse: 10
            }
        );
        assert_eq!(c.issuer, Issuer::Fixed(DEFAULT_ISSUER.into()));
        assert_eq!(c.verification_key(), &KeyConfig::File("k.pem".into()));
    }

    #[test]
    fn mailers_and_their_tls() {
        let mailer = |v: &str| parse_mailer(v).unwrap();
        assert_eq!(mailer("ses"), MailerConfig::Ses);
        assert_eq!(mailer("file:/tmp/m"), MailerConfig::File("/tmp/m".into()));
        assert_eq!(
            mailer("smtp://127.0.0.1:2525"),
            MailerConfig::Smtp {
                host: "127.0.0.1".into(),
                port: 2525,
                tls: SmtpTls::None
            }
        );
        assert_eq!(
            mailer("smtp://mail.example"),
            MailerConfig::Smtp {
                host: "mail.example".into(),
                port: 587,
                tls: SmtpTls::StartTls
            }
        );
        assert_eq!(
            mailer("smtps://mail.example:2465"),
            MailerConfig::Smtp {
                host: "mail.example".into(),
                port: 2465,
                tls: SmtpTls::Wrapper
            }
        );
        let c = config(&[
            ("AUTH_SIGNING_KEY", "file:k.pem"),
            ("AUTH_SMTP_USERNAME", "relay"),
            ("AUTH_SMTP_PASSWORD", "hunter2"),
        ])
        .unwrap();
        assert_eq!(c.mail.mailer, MailerConfig::File(".dev/mail".into()));
        assert_eq!((c.mail.verify_ttl, c.mail.reset_ttl), (86_400, 1800));
        assert!(
            !format!("{c:?}").contains("hunter2"),
            "the password is never printed"
        );
    }

    #[test]
    fn extra_public_keys_are_a_comma_separated_list() {
        let c = config(&[
            ("AUTH_SIGNING_KEY", "file:k.pem"),
            ("AUTH_EXTRA_PUBLIC_KEYS", " file:old.pem , kms:alias/next ,"),
        ])
        .unwrap();
        assert_eq!(
            c.extra_public_keys,
            [
                KeyConfig::File("old.pem".into()),
                KeyConfig::Kms("alias/next".into())
            ]
        );
        let c = config(&[("AUTH_SIGNING_KEY", "file:k.pem")]).unwrap();
        assert!(c.extra_public_keys.is_empty());
    }

    #[test]
    fn ssm_signing_keys_and_inline_public_keys_are_recognised() {
        let c = config(&[
            ("AUTH_SIGNING_KEY", "ssm:/jwt-auth/signing-key"),
            ("AUTH_PUBLIC_KEY", "spki:MIIBIjAN"),
            ("AUTH_EXTRA_PUBLIC_KEYS", "spki:MIIBIjAO,kms:alias/old"),
        ])
        .unwrap();
        assert_eq!(
            c.signing_key,
            KeyConfig::Ssm("/jwt-auth/signing-key".into())
        );
        assert_eq!(c.verification_key(), &KeyConfig::Spki("MIIBIjAN".into()));
        assert_eq!(c.extra_public_keys[0], KeyConfig::Spki("MIIBIjAO".into()));
        for bad in ["spki:MIIBIjAN", "ssm:name-without-slash", "ssm:"] {
            let e = config(&[("AUTH_SIGNING_KEY", bad)]).unwrap_err();
            assert!(e.to_string().contains("AUTH_SIGNING_KEY"), "{bad}: {e}");
        }
    }

    #[test]
    fn aws_backends_are_recognised() {
        let c = config(&[
            ("AUTH_SIGNING_KEY", "kms:alias/jwt-auth"),
            ("AUTH_STORE", "dynamodb:jwt-auth-users"),
        ])
        .unwrap();
        assert_eq!(c.store, StoreConfig::Dynamodb("jwt-auth-users".into()));
        assert_eq!(c.signing_key, KeyConfig::Kms("alias/jwt-auth".into()));
        let c = config(&[("AUTH_SIGNING_KEY", "kms:k"), ("AUTH_ISSUER", "request")]).unwrap();
        assert_eq!(c.issuer, Issuer::FromRequest);
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        let key = ("AUTH_SIGNING_KEY", "file:k.pem");
        for (pairs, name) in [
            (vec![], "AUTH_SIGNING_KEY"),
            (vec![("AUTH_SIGNING_KEY", "k.pem")], "AUTH_SIGNING_KEY"),
            (vec![key, ("AUTH_STORE", "postgres://x")], "AUTH_STORE"),
            (vec![key, ("AUTH_STORE", "dynamodb:a b")], "AUTH_STORE"),
            (vec![("AUTH_SIGNING_KEY", "kms:")], "AUTH_SIGNING_KEY"),
            (vec![key, ("AUTH_BCRYPT_COST", "3")], "AUTH_BCRYPT_COST"),
            (
                vec![key, ("AUTH_BCRYPT_COST", "twelve")],
                "AUTH_BCRYPT_COST",
            ),
            (
                vec![key, ("AUTH_TOKEN_TTL_SECONDS", "5")],
                "AUTH_TOKEN_TTL_SECONDS",
            ),
            (vec![key, ("AUTH_ISSUER", "example.com")], "AUTH_ISSUER"),
            (
                vec![key, ("AUTH_EXTRA_PUBLIC_KEYS", "file:a.pem,b.pem")],
                "AUTH_EXTRA_PUBLIC_KEYS",
            ),
            (
                vec![key, ("AUTH_REFRESH_IDLE_SECONDS", "0")],
                "AUTH_REFRESH_IDLE_SECONDS",
            ),
            (
                vec![key, ("AUTH_ACCOUNT_FAILURES_PER_HOUR", "100")],
                "AUTH_ACCOUNT_FAILURES_PER_HOUR",
            ),
            (
                vec![key, ("AUTH_REFRESH_REUSE_SECONDS", "301")],
                "AUTH_REFRESH_REUSE_SECONDS",
            ),
            (
                vec![key, ("AUTH_SOURCE_FAILURES_PER_HOUR", "0")],
                "AUTH_SOURCE_FAILURES_PER_HOUR",
            ),
            (
                vec![key, ("AUTH_SESSION_MAX_SECONDS", "-1")],
                "AUTH_SESSION_MAX_SECONDS",
            ),
            (
                vec![key, ("AUTH_REFRESH_REUSE_SECONDS", "ten")],
                "AUTH_REFRESH_REUSE_SECONDS",
            ),
            (vec![key, ("AUTH_ISSUER", "https://x/")], "AUTH_ISSUER"),
            (vec![key, ("AUTH_MAILER", "sendmail")], "AUTH_MAILER"),
            (
                vec![key, ("AUTH_MAILER", "smtp://u:p@mail.example:587")],
                "AUTH_MAILER",
            ),
            (
                vec![key, ("AUTH_MAIL_FROM", "not an address")],
                "AUTH_MAIL_FROM",
            ),
            (vec![key, ("AUTH_SMTP_PASSWORD", "x")], "AUTH_SMTP_USERNAME"),
            (
                vec![key, ("AUTH_RESET_TOKEN_SECONDS", "0")],
                "AUTH_RESET_TOKEN_SECONDS",
            ),
            (
                vec![key, ("AUTH_VERIFY_URL", "app/verify")],
                "AUTH_VERIFY_URL",
            ),
        ] {
            assert_eq!(config(&pairs).unwrap_err().name, name, "{pairs:?}");
        }
    }
}
