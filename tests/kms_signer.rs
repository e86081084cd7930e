//! The KMS signer against moto's KMS: the private key stays in KMS, tokens it signs verify with
//! the JWKS it publishes, and its `kid` is the RFC 7638 thumbprint of the KMS public key.

use std::time::Duration;

use integration_tests::moto;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use shared::signer::{KmsSigner, PublicKey, Signer};
use shared::token::{TokenIssuer, TokenVerifier};

const ISS: &str = "https://auth.example.test";
const AUD: &str = "example-api";

#[tokio::test]
async fn a_kms_signed_token_verifies_with_the_published_jwks() {
    let config = moto::sdk_config().await;
    let key_id = moto::create_signing_key(&config).await;
    let signer = KmsSigner::new(&config, &key_id).await.unwrap();

    // kid = thumbprint of the KMS public key, computed independently from its DER form.
    let der = aws_sdk_kms::Client::new(&config)
        .get_public_key()
        .key_id(&key_id)
        .send()
        .await
        .unwrap()
        .public_key
        .unwrap();
    let independent = PublicKey::from_spki_der(der.as_ref()).unwrap();
    assert_eq!(signer.public_key().kid(), independent.kid());

    let issuer = TokenIssuer::new(signer, AUD, Duration::from_secs(600));
    let token = issuer
        .issue(ISS, "user-42", "emma", "s-1", shared::clock::now())
        .await
        .unwrap()
        .access_token;

    // As any JWT library would: fetch the JWKS, pick the key by kid, verify.
    let jwks: JwkSet = serde_json::from_value(serde_json::json!({
        "keys": [issuer.public_key().jwk()]
    }))
    .unwrap();
    let header = decode_header(&token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid published");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[ISS]);
    validation.set_audience(&[AUD]);
    let claims =
        decode::<serde_json::Value>(&token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .unwrap()
            .claims;
    assert_eq!(claims["sub"], "user-42");

    // And the service's own verifier accepts it; a tampered copy is refused.
    let verifier = TokenVerifier::new(issuer.public_key().clone(), AUD);
    assert_eq!(verifier.verify(&token, ISS).unwrap().sub, "user-42");
    let mut tampered = token.clone();
    tampered.insert(token.find('.').unwrap() + 3, 'A');
    assert!(verifier.verify(&tampered, ISS).is_err());
}

#[tokio::test]
async fn a_key_that_cannot_sign_rs256_is_refused_at_cold_start() {
    let config = moto::sdk_config().await;
    let symmetric = moto::create_symmetric_key(&config).await;
    let err = KmsSigner::new(&config, &symmetric).await.unwrap_err();
    assert!(
        err.to_string().contains(&format!("kms:{symmetric}")),
        "{err}"
    );
    let missing = KmsSigner::new(&config, "alias/does-not-exist")
        .await
        .unwrap_err();
    assert!(
        missing.to_string().contains("kms:alias/does-not-exist"),
        "{missing}"
    );
}
