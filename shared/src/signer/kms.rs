//! A signer whose private key never leaves AWS KMS: RS256 signatures come from KMS `Sign`
//! (`RSASSA_PKCS1_V1_5_SHA_256`, message type RAW). The public key is fetched once per cold
//! start with `GetPublicKey` and serves verification and the JWKS; its `kid` is the same RFC 7638
//! thumbprint a PEM file of the same key would give.

use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{KeyError, PublicKey, SignError, Signer};
use crate::aws;

/// Signs through KMS with one key.
#[derive(Debug, Clone)]
pub struct KmsSigner {
    client: Client,
    key_id: String,
    public: PublicKey,
}

/// Fetches the public half of a KMS key (one `GetPublicKey` call).
async fn fetch_public_key(client: &Client, key_id: &str) -> Result<PublicKey, KeyError> {
    let error = |reason: String| KeyError {
        source_name: format!("kms:{key_id}"),
        reason,
    };
    let out = client
        .get_public_key()
        .key_id(key_id)
        .send()
        .await
        .map_err(|e| error(aws::describe(&e)))?;
    let supported = out
        .signing_algorithms()
        .contains(&SigningAlgorithmSpec::RsassaPkcs1V15Sha256);
    if !supported {
        return Err(error(
            "key cannot sign with RSASSA_PKCS1_V1_5_SHA_256 (use an RSA SIGN_VERIFY key)".into(),
        ));
    }
    let der = out
        .public_key()
        .ok_or_else(|| error("no public key returned".into()))?;
    PublicKey::from_spki_der(der.as_ref()).map_err(error)
}

impl KmsSigner {
    /// A signer for `key_id` (id, ARN or alias), fetching its public key now.
    pub async fn new(config: &aws_config::SdkConfig, key_id: &str) -> Result<Self, KeyError> {
        let client = Client::new(config);
        let public = fetch_public_key(&client, key_id).await?;
        Ok(KmsSigner {
            client,
            key_id: key_id.to_string(),
            public,
        })
    }
}

impl Signer for KmsSigner {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    async fn sign(&self, message: &[u8]) -> Result<String, SignError> {
        let out = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(Blob::new(message))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::RsassaPkcs1V15Sha256)
            .send()
            .await
            .map_err(|e| {
                if aws::is_transient(&e) {
                    SignError::Unavailable(aws::describe(&e))
                } else {
                    SignError::Fault(aws::describe(&e))
                }
            })?;
        let signature = out
            .signature()
            .ok_or_else(|| SignError::Fault("KMS returned no signature".into()))?;
        Ok(URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}
