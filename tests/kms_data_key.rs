//! The KMS data key (`AUTH_DATA_KEY=kms:…`) against moto_server: a TOTP secret sealed by KMS
//! `Encrypt` with the user id as encryption context opens for that user only.

use integration_tests::moto;
use shared::seal::{DataKey, SealError};

#[tokio::test]
async fn a_secret_sealed_by_kms_opens_only_with_its_users_context() {
    let config = moto::sdk_config().await;
    let kms = aws_sdk_kms::Client::new(&config);
    let key_id = moto::create_symmetric_key(&config).await;
    let key = DataKey::Kms {
        client: kms,
        key_id,
    };
    let secret = b"twenty bytes secret!";
    let sealed = key.seal("user-1", secret).await.unwrap();
    assert!(sealed.starts_with("k1."), "{sealed}");
    assert_eq!(key.open("user-1", &sealed).await.unwrap(), secret);
    assert!(matches!(
        key.open("user-2", &sealed).await,
        Err(SealError::Corrupt)
    ));
    assert!(matches!(
        key.open("user-1", "a1.bm90LWttcw").await,
        Err(SealError::Corrupt)
    ));
}
