//! Sealing secrets at rest under `AUTH_DATA_KEY` (the TOTP secrets): AES-256-GCM with the user id
//! as associated data, under a local 32-byte key (`file:PATH`), or KMS `Encrypt`/`Decrypt` of a
//! symmetric key with the user id as encryption context (`kms:KEY_ID`). Either way a sealed value
//! opens only for the account it was sealed for, and a copy of the store opens nothing.

use aws_sdk_kms::primitives::Blob;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// A sealing failure.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key file is missing or not 32 bytes.
    #[error("AUTH_DATA_KEY: {0}")]
    Key(String),
    /// KMS is unreachable or throttling (a 503).
    #[error("the data key is unavailable: {0}")]
    Unavailable(String),
    /// A sealed value does not open (another account's, or damaged).
    #[error("a sealed value does not open")]
    Corrupt,
    /// KMS refused the request (access denied, a disabled key): a 500, with its cause logged.
    #[error("KMS refused: {0}")]
    Refused(String),
}

/// A KMS failure: a ciphertext it cannot open is [`SealError::Corrupt`], a transient failure
/// [`SealError::Unavailable`], any other refusal [`SealError::Refused`].
fn kms_error<E, R>(err: &aws_sdk_kms::error::SdkError<E, R>) -> SealError
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = err.as_service_error().and_then(|e| e.code());
    if matches!(
        code,
        Some("InvalidCiphertextException" | "IncorrectKeyException")
    ) {
        SealError::Corrupt
    } else if crate::aws::is_transient(err) {
        SealError::Unavailable(crate::aws::describe(err))
    } else {
        SealError::Refused(crate::aws::describe(err))
    }
}

/// The key secrets are sealed under.
pub enum DataKey {
    /// A local AES-256-GCM key.
    Local(Box<LessSafeKey>),
    /// A symmetric KMS key.
    Kms {
        /// The KMS client.
        client: aws_sdk_kms::Client,
        /// The key's id, ARN or alias.
        key_id: String,
    },
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataKey::Local(_) => f.write_str("DataKey::Local(..)"),
            DataKey::Kms { key_id, .. } => write!(f, "DataKey::Kms({key_id})"),
        }
    }
}

const LOCAL: &str = "a1.";
const KMS: &str = "k1.";
const CONTEXT: &str = "user_id";

impl DataKey {
    /// The key in the file at `path`: exactly 32 bytes.
    pub fn from_file(path: &std::path::Path) -> Result<Self, SealError> {
        let bytes =
            std::fs::read(path).map_err(|e| SealError::Key(format!("{}: {e}", path.display())))?;
        let key = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| SealError::Key(format!("{}: expected 32 bytes", path.display())))?;
        Ok(DataKey::Local(Box::new(LessSafeKey::new(key))))
    }

    /// `plaintext`, sealed for `user_id`.
    pub async fn seal(&self, user_id: &str, plaintext: &[u8]) -> Result<String, SealError> {
        match self {
            DataKey::Local(key) => {
                let mut nonce = [0u8; NONCE_LEN];
                SystemRandom::new()
                    .fill(&mut nonce)
                    .map_err(|_| SealError::Unavailable("no random numbers".into()))?;
                let mut sealed = plaintext.to_vec();
                key.seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(user_id.as_bytes()),
                    &mut sealed,
                )
                .map_err(|_| SealError::Corrupt)?;
                let mut out = nonce.to_vec();
                out.extend_from_slice(&sealed);
                Ok(format!("{LOCAL}{}", STANDARD.encode(out)))
            }
            DataKey::Kms { client, key_id } => {
                let out = client
                    .encrypt()
                    .key_id(key_id)
                    .plaintext(Blob::new(plaintext))
                    .encryption_context(CONTEXT, user_id)
                    .send()
                    .await
                    .map_err(|e| kms_error(&e))?;
                let blob = out.ciphertext_blob.ok_or(SealError::Corrupt)?;
                Ok(format!("{KMS}{}", STANDARD.encode(blob.as_ref())))
            }
        }
    }

    /// The plaintext of `sealed`, if it was sealed for `user_id` under this key.
    pub async fn open(&self, user_id: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        match self {
            DataKey::Local(key) => {
                let bytes = sealed
                    .strip_prefix(LOCAL)
                    .and_then(|b| STANDARD.decode(b).ok())
                    .filter(|b| b.len() > NONCE_LEN)
                    .ok_or(SealError::Corrupt)?;
                let (nonce, body) = bytes.split_at(NONCE_LEN);
                let nonce =
                    Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Corrupt)?;
                let mut body = body.to_vec();
                let plain = key
                    .open_in_place(nonce, Aad::from(user_id.as_bytes()), &mut body)
                    .map_err(|_| SealError::Corrupt)?;
                Ok(plain.to_vec())
            }
            DataKey::Kms { client, key_id } => {
                let blob = sealed
                    .strip_prefix(KMS)
                    .and_then(|b| STANDARD.decode(b).ok())
                    .ok_or(SealError::Corrupt)?;
                let out = client
                    .decrypt()
                    .key_id(key_id)
                    .ciphertext_blob(Blob::new(blob))
                    .encryption_context(CONTEXT, user_id)
                    .send()
                    .await
                    .map_err(|e| kms_error(&e))?;
                Ok(out.plaintext.ok_or(SealError::Corrupt)?.into_inner())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sealed_value_opens_only_for_its_account_and_hides_its_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data-key");
        std::fs::write(&path, [7u8; 32]).unwrap();
        let key = DataKey::from_file(&path).unwrap();
        let sealed = key.seal("user-1", b"totp secret bytes").await.unwrap();
        assert!(!sealed.contains("totp"));
        assert_eq!(
            key.open("user-1", &sealed).await.unwrap(),
            b"totp secret bytes"
        );
        assert!(matches!(
            key.open("user-2", &sealed).await,
            Err(SealError::Corrupt)
        ));
        assert_ne!(
            sealed,
            key.seal("user-1", b"totp secret bytes").await.unwrap()
        );
        std::fs::write(&path, [7u8; 31]).unwrap();
        assert!(matches!(DataKey::from_file(&path), Err(SealError::Key(_))));
    }
}
