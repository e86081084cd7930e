//! The cryptography behind `jsonwebtoken`: RS256 verification and JWK thumbprints on `ring`.
//!
//! `jsonwebtoken` leaves its backend to a process-wide [`CryptoProvider`]. With its RustCrypto
//! backend a whole token check took ~0.43 ms (the `rsa` crate's generic big integers), most of a
//! warm `GET /me`; with `ring`, already linked for the AWS SDK's TLS, it takes ~0.04 ms
//! (`make microbench`, `token/verify`).
//! This provider accepts RS256 only: every other `alg` is refused before any key is touched, which
//! is also what the verifier pins (RFC 8725 §3.1).
//!
//! Signing does not go through `jsonwebtoken`: the [`LocalSigner`](super::LocalSigner) holds a
//! parsed `ring` key pair and KMS signs remotely.

use std::sync::Once;

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind, Result};
use jsonwebtoken::jwk::ThumbprintHash;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use jsonwebtoken::{DecodingKeyKind, signature};
use ring::digest;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};

/// An RS256 public key as (modulus, exponent), big-endian.
struct Rs256Verifier {
    n: Vec<u8>,
    e: Vec<u8>,
}

impl signature::Verifier<Vec<u8>> for Rs256Verifier {
    fn verify(&self, message: &[u8], sig: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        RsaPublicKeyComponents {
            n: &self.n,
            e: &self.e,
        }
        .verify(&RSA_PKCS1_2048_8192_SHA256, message, sig)
        .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Rs256Verifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

fn verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if *alg != Algorithm::RS256 {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, e } => Ok(Box::new(Rs256Verifier {
            n: n.clone(),
            e: e.clone(),
        })),
        _ => Err(ErrorKind::InvalidKeyFormat.into()),
    }
}

fn signer(_: &Algorithm, _: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    // Tokens are signed by a `Signer`, never by `jsonwebtoken::encode`.
    Err(ErrorKind::InvalidAlgorithm.into())
}

fn unsupported() -> Error {
    ErrorKind::InvalidAlgorithm.into()
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
        _ => return Err(unsupported()),
    };
    Ok(digest::digest(algorithm, data).as_ref().to_vec())
}

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: |_| Err(unsupported()),
        rsa_pub_components_from_public_key: |_| Err(unsupported()),
        ec_pub_components_from_private_key: |_, _| Err(unsupported()),
        ed_pub_components_from_private_key: |_, _| Err(unsupported()),
        compute_digest,
    },
};

/// Makes this the process's `jsonwebtoken` backend. Idempotent; [`PublicKey::from_rsa`], which
/// every signer and verifier key goes through, calls it, so nothing can verify or take a
/// thumbprint before it is in place.
///
/// [`PublicKey::from_rsa`]: super::PublicKey::from_rsa
pub fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Only fails if another provider was installed first, which this crate never does.
        let _ = PROVIDER.install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::{LocalSigner, Signer};
    use crate::token::tests::test_key_pem;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    #[tokio::test]
    async fn rs256_signatures_verify_and_anything_else_is_refused() {
        let signer = LocalSigner::from_pem(test_key_pem()).unwrap();
        let key = signer.public_key().decoding_key();
        let message = b"header.claims";
        let signature = signer.sign(message).await.unwrap();
        let verify = |msg: &[u8], sig: &str, alg| jsonwebtoken::crypto::verify(sig, msg, key, alg);

        assert!(verify(message, &signature, Algorithm::RS256).unwrap());
        assert!(!verify(b"header.claimz", &signature, Algorithm::RS256).unwrap());
        let mut flipped = URL_SAFE_NO_PAD.decode(&signature).unwrap();
        flipped[10] ^= 1;
        let flipped = URL_SAFE_NO_PAD.encode(flipped);
        assert!(!verify(message, &flipped, Algorithm::RS256).unwrap());
        for alg in [
            Algorithm::HS256,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::ES256,
        ] {
            assert!(verify(message, &signature, alg).is_err(), "{alg:?}");
        }
        // A secret-kind key (what an HS256 forgery would need) never reaches a verifier.
        let secret = DecodingKey::from_secret(b"public key bytes");
        assert!(
            jsonwebtoken::crypto::verify(&signature, message, &secret, Algorithm::RS256).is_err()
        );
        assert!(
            jsonwebtoken::crypto::sign(message, &EncodingKey::from_secret(b"k"), Algorithm::HS256)
                .is_err()
        );
    }
}
