//! The deployed path's round trips per warm request, counted by moto (`scripts/moto_atomic.py`)
//! under each app's own access key, with the store on DynamoDB and the signing key in KMS: the
//! budgets of the README's "Round trips" table. A request that grows a call fails here.
//! Cold-start calls (the KMS public key of a verifying function) happen when the app is built,
//! before anything is counted. The code exchange and the `mfa-otp` grant are counted beside their
//! flows' tests (`oidc.rs`, `mfa.rs`).

use crate::helpers::{Calls, DynamoApp, GOOD_PASSWORD};

fn access_key() -> String {
    format!("rt{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn register_and_me_make_one_dynamodb_request_and_no_kms_call() {
    let key = access_key();
    let app = DynamoApp::deployed(&key).await;
    let (reply, calls) = Calls::of(&key, app.register("emma", GOOD_PASSWORD)).await;
    assert_eq!(reply.status, 201, "{}", reply.raw);
    assert_eq!((calls.dynamodb(), calls.kms_total()), (1, 0), "{calls:?}");

    let token = app.token("emma", GOOD_PASSWORD).await;
    let (reply, calls) = Calls::of(&key, app.me(&token)).await;
    assert_eq!(reply.body["username"], "emma");
    assert_eq!((calls.dynamodb(), calls.kms_total()), (1, 0), "{calls:?}");
}

#[tokio::test]
async fn a_password_login_makes_at_most_four_dynamodb_requests_and_one_signature() {
    let key = access_key();
    let app = DynamoApp::deployed(&key).await;
    app.register("emma", GOOD_PASSWORD).await;
    // The first login of a fresh instance, then a warm one with counters present.
    for _ in 0..2 {
        let (reply, calls) = Calls::of(&key, app.login("emma", GOOD_PASSWORD)).await;
        assert_eq!(reply.status, 200, "{}", reply.raw);
        assert!(calls.dynamodb() <= 4, "{calls:?}");
        assert_eq!(calls.kms("Sign"), 1, "{calls:?}");
        assert_eq!(calls.kms_total(), 1, "{calls:?}");
    }
    // A wrong password: the reads and the claim, no signature.
    let (reply, calls) = Calls::of(&key, app.login("emma", "wrong-password-123")).await;
    assert_eq!(reply.status, 401, "{}", reply.raw);
    assert!(calls.dynamodb() <= 3, "{calls:?}");
    assert_eq!(calls.kms_total(), 0, "{calls:?}");
    // A name that is no account costs what an account does.
    let (reply, calls) = Calls::of(&key, app.login("nobody", "wrong-password-123")).await;
    assert_eq!(reply.status, 401, "{}", reply.raw);
    assert!(calls.dynamodb() <= 3, "{calls:?}");
    // The right password after a failure (give-backs and the pair's reset) stays in budget.
    let (reply, calls) = Calls::of(&key, app.login("emma", GOOD_PASSWORD)).await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
    assert!(calls.dynamodb() <= 4, "{calls:?}");
}

#[tokio::test]
async fn a_refresh_makes_at_most_two_dynamodb_requests_and_one_signature() {
    let key = access_key();
    let app = DynamoApp::deployed(&key).await;
    app.register("emma", GOOD_PASSWORD).await;
    let (_, refresh) = app.tokens("emma", GOOD_PASSWORD).await;
    // The instance's first refresh also derives its seal key (one more signature, once).
    let mut refresh = app.refresh(&refresh).await.token_pair().1;
    for _ in 0..2 {
        let (reply, calls) = Calls::of(&key, app.refresh(&refresh)).await;
        assert_eq!(reply.status, 200, "{}", reply.raw);
        assert!(calls.dynamodb() <= 2, "{calls:?}");
        assert_eq!((calls.kms("Sign"), calls.kms_total()), (1, 1), "{calls:?}");
        refresh = reply.token_pair().1;
    }
}
