//! `PUT /me/password` and `DELETE /me`: each behind the bearer and the current password, on
//! SQLite and on DynamoDB (moto).

use lambda_http::http::Method;
use serde_json::json;

use crate::helpers::{AppStore, GOOD_PASSWORD, TestApp};

const NEW_PASSWORD: &str = "copper-lantern-orchard-17";

on_both_backends!(
    a_password_change_starts_a_new_session_and_ends_every_other,
    a_wrong_current_password_is_403_and_counts_as_a_failed_login,
    a_new_password_must_pass_the_policy_and_differ,
    the_account_routes_need_an_open_session,
    deleting_the_account_ends_everything_and_frees_the_name,
    a_wrong_password_does_not_delete,
);

fn sub(access_token: &str) -> String {
    use base64::Engine;
    let payload = access_token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["sub"].as_str().unwrap().to_string()
}

async fn a_password_change_starts_a_new_session_and_ends_every_other<S: AppStore>(app: TestApp<S>) {
    app.register("emma", GOOD_PASSWORD).await;
    let (caller, caller_refresh) = app.tokens("emma", GOOD_PASSWORD).await;
    let (other, other_refresh) = app.tokens("emma", GOOD_PASSWORD).await;
    let (old_hash, _) = app.stored("emma").await;
    let reply = app
        .change_password(&caller, GOOD_PASSWORD, NEW_PASSWORD)
        .await;
    assert_eq!(reply.header("cache-control"), "no-store");
    assert_eq!(reply.body["token_type"], "bearer");
    assert_eq!(reply.body["expires_in"], 1800);
    let (fresh, fresh_refresh) = reply.token_pair();
    // Every session before the change has ended, the caller's included.
    for access in [&caller, &other] {
        assert_eq!(app.me(access).await.status, 401);
    }
    for refresh in [&caller_refresh, &other_refresh] {
        let r = app.refresh(refresh).await;
        assert_eq!((r.status, &r.body["error"]), (400, &json!("invalid_grant")));
    }
    // The new session works, and so does the new password; the old one does not.
    assert_eq!(app.me(&fresh).await.body["username"], "emma");
    assert_eq!(app.refresh(&fresh_refresh).await.status, 200);
    app.login("emma", GOOD_PASSWORD).await.problem(401);
    assert_eq!(app.login("emma", NEW_PASSWORD).await.status, 200);
    let (new_hash, failures) = app.stored("emma").await;
    assert_ne!(new_hash, old_hash);
    assert!(
        new_hash.starts_with("$bcrypt-sha256$v=2,t=2b,r=4$"),
        "{new_hash}"
    );
    assert_eq!(failures, 0);
}

async fn a_wrong_current_password_is_403_and_counts_as_a_failed_login<S: AppStore>(
    app: TestApp<S>,
) {
    app.register("emma", GOOD_PASSWORD).await;
    let (access, _) = app.tokens("emma", GOOD_PASSWORD).await;
    for n in 1..=5u64 {
        let reply = app
            .change_password(&access, "not-the-password-1", NEW_PASSWORD)
            .await;
        assert!(reply.problem(403).contains("incorrect"), "{}", reply.raw);
        assert_eq!(app.stored("emma").await.1, n);
    }
    // Five failures: the account waits, for re-authentication and for logins alike.
    let reply = app
        .change_password(&access, GOOD_PASSWORD, NEW_PASSWORD)
        .await;
    reply.problem(429);
    assert_eq!(reply.header("retry-after"), "1");
    app.login("emma", GOOD_PASSWORD).await.problem(429);
    app.delete_me(&access, GOOD_PASSWORD).await.problem(429);
    app.advance(1);
    // The right password then resets the count, and nothing was changed meanwhile.
    assert_eq!(
        app.change_password(&access, GOOD_PASSWORD, NEW_PASSWORD)
            .await
            .status,
        200
    );
    assert_eq!(app.stored("emma").await.1, 0);
}

async fn a_new_password_must_pass_the_policy_and_differ<S: AppStore>(app: TestApp<S>) {
    app.register("emma", GOOD_PASSWORD).await;
    let (access, _) = app.tokens("emma", GOOD_PASSWORD).await;
    for weak in ["short", "password123", "emma", GOOD_PASSWORD] {
        let reply = app.change_password(&access, GOOD_PASSWORD, weak).await;
        reply.problem(422);
        assert_eq!(reply.body["field"], "new_password", "{weak}: {}", reply.raw);
    }
    let missing = app
        .account(
            Method::PUT,
            "/me/password",
            Some(&access),
            json!({"new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(missing.body["field"], "current_password");
    // None of them counted as a failure or changed anything.
    assert_eq!(app.stored("emma").await.1, 0);
    assert_eq!(app.me(&access).await.status, 200);
}

async fn the_account_routes_need_an_open_session<S: AppStore>(app: TestApp<S>) {
    app.register("emma", GOOD_PASSWORD).await;
    let (access, _) = app.tokens("emma", GOOD_PASSWORD).await;
    for (method, path, body) in [
        (
            Method::PUT,
            "/me/password",
            json!({"current_password": GOOD_PASSWORD, "new_password": NEW_PASSWORD}),
        ),
        (Method::DELETE, "/me", json!({"password": GOOD_PASSWORD})),
    ] {
        let reply = app.account(method.clone(), path, None, body.clone()).await;
        reply.problem(401);
        assert_eq!(reply.header("www-authenticate"), "Bearer");
        let reply = app
            .account(method.clone(), path, Some("not.a.token"), body.clone())
            .await;
        reply.problem(401);
        assert_eq!(reply.body["error"], "invalid_token");
    }
    // A token of a session that has ended.
    assert_eq!(app.logout(Some(&access), None, "").await.status, 200);
    let reply = app
        .change_password(&access, GOOD_PASSWORD, NEW_PASSWORD)
        .await;
    reply.problem(401);
    app.delete_me(&access, GOOD_PASSWORD).await.problem(401);
    assert_eq!(app.login("emma", GOOD_PASSWORD).await.status, 200);
    // A wrong method on the route.
    let (access, _) = app.tokens("emma", GOOD_PASSWORD).await;
    let reply = app
        .account(Method::POST, "/me/password", Some(&access), json!({}))
        .await;
    reply.problem(405);
}

async fn deleting_the_account_ends_everything_and_frees_the_name<S: AppStore>(app: TestApp<S>) {
    app.register("emma", GOOD_PASSWORD).await;
    let (access, refresh) = app.tokens("emma", GOOD_PASSWORD).await;
    let (other, other_refresh) = app.tokens("emma", GOOD_PASSWORD).await;
    let old_sub = sub(&access);
    let reply = app.delete_me(&access, GOOD_PASSWORD).await;
    assert_eq!((reply.status, reply.raw.as_str()), (204, ""));
    app.login("emma", GOOD_PASSWORD).await.problem(401);
    for token in [&access, &other] {
        assert_eq!(app.me(token).await.status, 401);
    }
    for token in [&refresh, &other_refresh] {
        assert_eq!(app.refresh(token).await.body["error"], "invalid_grant");
    }
    // The name is free; the new account is another account.
    assert_eq!(app.register("Emma", NEW_PASSWORD).await.status, 201);
    let (access, _) = app.tokens("emma", NEW_PASSWORD).await;
    assert_ne!(sub(&access), old_sub);
    assert_eq!(app.refresh(&refresh).await.body["error"], "invalid_grant");
    assert_eq!(app.me(&other).await.status, 401);
}

async fn a_wrong_password_does_not_delete<S: AppStore>(app: TestApp<S>) {
    app.register("emma", GOOD_PASSWORD).await;
    let (access, _) = app.tokens("emma", GOOD_PASSWORD).await;
    let reply = app.delete_me(&access, "not-the-password-1").await;
    assert!(reply.problem(403).contains("incorrect"));
    assert_eq!(app.stored("emma").await.1, 1, "counted as a failed login");
    assert_eq!(app.me(&access).await.status, 200);
    let missing = app
        .account(Method::DELETE, "/me", Some(&access), json!({}))
        .await;
    assert_eq!(missing.body["field"], "password");
}
