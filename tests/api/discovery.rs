//! The JWKS and discovery document: enough for any JWT library to verify our tokens.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use lambda_http::http::Method;

use crate::helpers::{GOOD_PASSWORD, Route, SqliteApp};

#[tokio::test]
async fn a_token_verifies_with_the_published_jwks_alone() {
    let app = SqliteApp::new().await;
    app.register("emma", GOOD_PASSWORD).await;
    let token = app.token("emma", GOOD_PASSWORD).await;

    let config = app
        .send_event(Route::Jwks, "v2_openid_configuration", &[])
        .await;
    assert_eq!(config.body["issuer"], "https://auth.example.test");
    assert_eq!(
        config.body["jwks_uri"],
        "https://auth.example.test/.well-known/jwks.json"
    );
    assert_eq!(
        config.body["token_endpoint"],
        "https://auth.example.test/login"
    );
    assert_eq!(
        config.body["id_token_signing_alg_values_supported"][0],
        "RS256"
    );

    let jwks = app.send_event(Route::Jwks, "v2_jwks", &[]).await;
    assert!(jwks.header("cache-control").contains("max-age"));
    assert!(
        !jwks.raw.contains("\"d\""),
        "no private exponent is published"
    );
    let set: JwkSet = serde_json::from_value(jwks.body).unwrap();
    let kid = decode_header(&token).unwrap().kid.unwrap();
    let jwk = set.find(&kid).expect("token's kid is published");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&["https://auth.example.test"]);
    validation.set_audience(&["example-api"]);
    let claims =
        decode::<serde_json::Value>(&token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .unwrap()
            .claims;
    assert_eq!(claims["sub"].as_str().unwrap().len(), 32);
}

#[tokio::test]
async fn other_paths_and_methods_are_refused() {
    let app = SqliteApp::new().await;
    let reply = app.raw(Route::Jwks, Method::GET, None, "").await;
    reply.problem(404);
    let req = lambda_http::http::Request::builder()
        .method(Method::POST)
        .uri("https://x.test/.well-known/jwks.json")
        .body(lambda_http::Body::Empty)
        .unwrap();
    app.send(Route::Jwks, req).await.problem(405);
}
