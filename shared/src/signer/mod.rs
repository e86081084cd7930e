//! Token signing behind one trait, so the private key can live in a PEM file (local runs) or in a
//! key service, while verification and the JWKS only ever need the public half.

mod kms;
mod local;
mod parameter;
pub mod provider;
#[cfg(any(test, feature = "testing"))]
pub mod test_keys;

use std::future::Future;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, Jwk, KeyAlgorithm, PublicKeyUse, RSAKeyParameters,
    ThumbprintHash,
};
use rsa::RsaPublicKey;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;

pub use kms::KmsSigner;
pub use local::LocalSigner;
pub use parameter::from_parameter;

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Signing failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The key service could not be reached or refused for now: a 503.
    #[error("signer unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a 500.
    #[error("signing failed: {0}")]
    Fault(String),
}

/// A key could not be loaded at cold start.
#[derive(Debug, thiserror::Error)]
#[error("cannot load key from {source_name}: {reason}")]
pub struct KeyError {
    /// Where the key was read from.
    pub source_name: String,
    /// What is wrong with it (never the key material).
    pub reason: String,
}

/// Signs RS256 JWS inputs with a key whose public half is known.
pub trait Signer: Send + Sync {
    /// The public half: `kid`, JWK and verification key.
    fn public_key(&self) -> &PublicKey;

    /// Signs `message` (`base64url(header) "." base64url(claims)`) with RSASSA-PKCS1-v1_5 SHA-256
    /// and returns the base64url signature segment.
    fn sign(&self, message: &[u8]) -> impl Future<Output = Result<String, SignError>> + Send;
}

/// The public half of the signing key, in every form callers need.
#[derive(Clone)]
pub struct PublicKey {
    kid: String,
    jwk: Jwk,
    decoding: DecodingKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey").field("kid", &self.kid).finish()
    }
}

impl PublicKey {
    /// Builds the JWK and its RFC 7638 thumbprint (`kid`) from an RSA public key.
    pub fn from_rsa(key: &RsaPublicKey) -> Result<Self, String> {
        provider::install();
        if key.n().bits() < MIN_RSA_BITS {
            return Err(format!("RSA key must be at least {MIN_RSA_BITS} bits"));
        }
        let n = URL_SAFE_NO_PAD.encode(key.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(key.e().to_bytes_be());
        let decoding = DecodingKey::from_rsa_components(&n, &e).map_err(|e| e.to_string())?;
        let mut jwk = Jwk {
            common: CommonParameters::default(),
            algorithm: AlgorithmParameters::RSA(RSAKeyParameters {
                n,
                e,
                ..Default::default()
            }),
        };
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| e.to_string())?;
        jwk.common = CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(KeyAlgorithm::RS256),
            key_id: Some(kid.clone()),
            ..Default::default()
        };
        Ok(PublicKey { kid, jwk, decoding })
    }

    /// Reads a public key PEM (SPKI or PKCS#1), or derives it from a private key PEM.
    pub fn from_pem_file(path: &Path) -> Result<Self, KeyError> {
        let error = |reason: String| KeyError {
            source_name: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        let key = if pem.contains("PRIVATE KEY") {
            local::parse_private_pem(&pem)
                .map_err(error)?
                .to_public_key()
        } else {
            RsaPublicKey::from_public_key_pem(&pem)
                .or_else(|_| RsaPublicKey::from_pkcs1_pem(&pem))
                .map_err(|_| error("not an RSA public key PEM".into()))?
        };
        Self::from_rsa(&key).map_err(error)
    }

    /// Reads a DER `SubjectPublicKeyInfo`, as key services return it.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, String> {
        let key = RsaPublicKey::from_public_key_der(der).map_err(|e| e.to_string())?;
        Self::from_rsa(&key)
    }

    /// An inline public key: the standard base64 of a DER `SubjectPublicKeyInfo`, as KMS
    /// `GetPublicKey` (`--query PublicKey --output text`) and `openssl pkey -pubout -outform DER |
    /// base64 -w0` print it.
    pub fn from_spki_base64(text: &str) -> Result<Self, KeyError> {
        let error = |reason: String| KeyError {
            source_name: "spki:".into(),
            reason,
        };
        let der = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| error("not base64".into()))?;
        Self::from_spki_der(&der).map_err(error)
    }

    /// The key id: the RFC 7638 SHA-256 thumbprint, base64url.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWK (RFC 7517) with `kid`, `use: sig` and `alg: RS256`.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// The key for `jsonwebtoken::decode`.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }
}

/// API Gateway's JWT authorizer reads at most this much of a JWKS.
pub const MAX_JWKS_BYTES: usize = 150_000;

/// The keys tokens may be signed with: the current one first, then the extra ones published for a
/// rotation (`AUTH_EXTRA_PUBLIC_KEYS`). Every `kid` is unique, and the JWKS they make fits what
/// API Gateway's JWT authorizer reads.
#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<PublicKey>,
}

impl KeySet {
    /// `current` and `extra`, refused when two share a `kid` (the same key named twice) or when
    /// the JWKS would exceed [`MAX_JWKS_BYTES`].
    pub fn new(current: PublicKey, extra: Vec<PublicKey>) -> Result<Self, String> {
        let mut keys = vec![current];
        for key in extra {
            if keys.iter().any(|k| k.kid() == key.kid()) {
                return Err(format!(
                    "duplicate key id {}: the same key is named twice (signing key and AUTH_EXTRA_PUBLIC_KEYS)",
                    key.kid()
                ));
            }
            keys.push(key);
        }
        let set = KeySet { keys };
        let size = set.jwks().to_string().len();
        if size > MAX_JWKS_BYTES {
            return Err(format!(
                "the JWKS of {} keys is {size} bytes, over API Gateway's {MAX_JWKS_BYTES}",
                set.keys.len()
            ));
        }
        Ok(set)
    }

    /// The key with this `kid`, if published.
    pub fn find(&self, kid: &str) -> Option<&PublicKey> {
        self.keys.iter().find(|k| k.kid() == kid)
    }

    /// The JWK Set (RFC 7517) of every key, the current one first.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": self.keys.iter().map(PublicKey::jwk).collect::<Vec<_>>() })
    }
}

impl From<PublicKey> for KeySet {
    fn from(key: PublicKey) -> Self {
        KeySet { keys: vec![key] }
    }
}

/// The configured signer, chosen at cold start.
pub enum AnySigner {
    /// A PEM private key read from a file.
    Local(LocalSigner),
    /// A key held in AWS KMS.
    Kms(KmsSigner),
}

impl Signer for AnySigner {
    fn public_key(&self) -> &PublicKey {
        match self {
            AnySigner::Local(s) => s.public_key(),
            AnySigner::Kms(s) => s.public_key(),
        }
    }

    async fn sign(&self, message: &[u8]) -> Result<String, SignError> {
        match self {
            AnySigner::Local(s) => s.sign(message).await,
            AnySigner::Kms(s) => s.sign(message).await,
        }
    }
}
