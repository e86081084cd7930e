//! `GET /me`: every way a bearer token can be missing, wrong, or orphaned.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::helpers::{GOOD_PASSWORD, SqliteApp};

fn assert_invalid_token(reply: &crate::helpers::Reply) {
    reply.problem(401);
    assert_eq!(
        reply.header("www-authenticate"),
        r#"Bearer error="invalid_token""#
    );
}

#[tokio::test]
async fn the_scheme_is_case_insensitive() {
    let app = SqliteApp::new().await;
    app.register("emma", GOOD_PASSWORD).await;
    let token = app.token("emma", GOOD_PASSWORD).await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let reply = app.me_with(Some(&format!("{scheme} {token}"))).await;
        assert_eq!(reply.status, 200, "{scheme}");
        assert_eq!(reply.header("cache-control"), "no-store");
    }
}

#[tokio::test]
async fn no_bearer_gets_a_challenge_without_an_error_code() {
    let app = SqliteApp::new().await;
    app.register("emma", GOOD_PASSWORD).await;
    let token = app.token("emma", GOOD_PASSWORD).await;
    // RFC 6750 §3.1: a request without credentials learns how to authenticate, no error code.
    for header in [
        None,
        Some(""),
        Some("Basic dXNlcjpwYXNz"),
        Some(&*format!("Token {token}")),
    ] {
        let reply = app.me_with(header).await;
        assert_eq!(reply.problem(401), "Not authenticated", "{header:?}");
        assert_eq!(reply.header("www-authenticate"), "Bearer", "{header:?}");
        assert!(
            reply.body.get("error").is_none(),
            "{header:?}: {}",
            reply.raw
        );
    }
}

#[tokio::test]
async fn malformed_bearers_are_401_invalid_token() {
    let app = SqliteApp::new().await;
    app.register("emma", GOOD_PASSWORD).await;
    let token = app.token("emma", GOOD_PASSWORD).await;
    for header in [
        "Bearer".to_string(),
        "Bearer ".to_string(),
        format!("Bearer {token} extra"),
        "Bearer not-a-jwt".to_string(),
        format!("Bearer {}", "a".repeat(10_000)),
    ] {
        assert_invalid_token(&app.me_with(Some(&header)).await);
    }
}

#[tokio::test]
async fn a_tampered_token_is_refused() {
    let app = SqliteApp::new().await;
    app.register("emma", GOOD_PASSWORD).await;
    app.register("mallory", GOOD_PASSWORD).await;
    let emma = app.token("emma", GOOD_PASSWORD).await;
    let mallory = app.token("mallory", GOOD_PASSWORD).await;
    // Mallory's signature on Emma's claims.
    let e: Vec<&str> = emma.split('.').collect();
    let m: Vec<&str> = mallory.split('.').collect();
    assert_invalid_token(&app.me(&format!("{}.{}.{}", e[0], e[1], m[2])).await);
    // A flipped signature byte.
    let mut sig = URL_SAFE_NO_PAD.decode(e[2]).unwrap();
    sig[0] ^= 1;
    let forged = format!("{}.{}.{}", e[0], e[1], URL_SAFE_NO_PAD.encode(sig));
    assert_invalid_token(&app.me(&forged).await);
}
