//! Sessions over the handlers: the password grant starts one, the refresh grant rotates it,
//! reuse and logout end it, and `/me` refuses the access tokens of an ended session. Each rule
//! runs on SQLite and on DynamoDB (moto). The store-level cases, concurrency included, are in
//! `store_contract.rs`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use shared::session::SessionLimits;

use crate::helpers::{AppStore, GOOD_PASSWORD, Reply, SqliteApp, TestApp};

on_both_backends!(
    every_password_grant_starts_a_session,
    the_refresh_grant_rotates_by_form_and_json,
    every_refusal_is_one_invalid_grant,
    a_reused_token_ends_only_its_session,
    a_retry_within_the_interval_gets_the_same_successor,
    logout_by_refresh_token_ends_that_session,
    logout_by_bearer_ends_that_session,
    global_logout_ends_every_session_of_the_account,
    logout_refuses_what_it_cannot_act_on,
    sessions_end_when_idle_and_at_their_absolute_limit,
    a_deleted_account_cannot_refresh,
);

fn claims(access_token: &str) -> Value {
    let payload = access_token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn assert_invalid_grant(reply: &Reply) {
    reply.problem(400);
    assert_eq!(reply.body["error"], "invalid_grant", "{}", reply.raw);
    assert_eq!(reply.header("www-authenticate"), "");
}

async fn every_password_grant_starts_a_session<S: AppStore>(app: TestApp<S>) {
    app.register("emma", GOOD_PASSWORD).await;
    let mut sids = Vec::new();
    for form in [
        format!("grant_type=password&username=emma&password={GOOD_PASSWORD}&scope="),
        format!("username=emma&password={GOOD_PASSWORD}"),
    ] {
        let reply = app.login_form(&form).await;
        let (access, refresh) = reply.token_pair();
        // Opaque, URL-safe, far more than 128 random bits.
        assert!(refresh.len() >= 43 && !refresh.contains('.'), "{refresh}");
        assert!(
            refresh
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        sids.push(claims(&access)["sid"].as_str().unwrap().to_string());
    }
    let (access, _) = app.tokens("emma", GOOD_PASSWORD).await;
    sids.push(claims(&access)["sid"].as_str().unwrap().to_string());
    sids.sort();
    sids.dedup();
    assert_eq!(sids.len(), 3, "one session per login");
}

async fn the_refresh_grant_rotates_by_form_and_json<S: AppStore>(app: TestApp<S>) {
    app.register("emma", GOOD_PASSWORD).await;
    let (access, refresh) = app.tokens("emma", GOOD_PASSWORD).await;
    let by_form = app.refresh(&refresh).await;
    assert_eq!(by_form.header("cache-control"), "no-store");
    assert_eq!(by_form.body["token_type"], "bearer");
    assert_eq!(by_form.body["expires_in"], 1800);
    let (access2, refresh2) = by_form.token_pair();
    assert_ne!(refresh2, refresh);
    assert_eq!(claims(&access2)["sid"], claims(&access)["sid"]);
    assert_eq!(claims(&access2)["sub"], claims(&access)["sub"]);
    assert_eq!(app.me(&access2).await.body["username"], "emma");

    let by_json = app
        .login_json(json!({"grant_type": "refresh_token", "refresh_token": refresh2}))
        .await;
    let (access3, refresh3) = by_json.token_pair();
    assert_ne!(refresh3, refresh2);
    assert_eq!(app.me(&access3).await.status, 200);
    // Access tokens of the same session stay good until they expire.
    assert_eq!(app.me(&access).await.status, 200);
}

async fn every_refusal_is_one_invalid_grant<S: AppStore>(app: TestApp<S>) {
    app.register("emma", GOOD_PASSWORD).await;
    let (access, refresh) = app.tokens("emma", GOOD_PASSWORD).await;
    let mut bodies = Vec::new();
    let mut flipped: Vec<u8> = URL_SAFE_NO_PAD.decode(&refresh).unwrap();
    flipped[30] ^= 0x40;
    for bad in [
        "unknown".to_string(),
        "A".repeat(refresh.len()),
        URL_SAFE_NO_PAD.encode(&flipped),
        access.clone(),
        format!("{refresh}x"),
    ] {
        let reply = app.refresh(&bad).await;
        assert_invalid_grant(&reply);
        bodies.push(reply.raw);
    }
    bodies.dedup();
    assert_eq!(bodies.len(), 1, "the same body whatever the cause");
    // None of those changed anything: the real token still rotates.
    let (_, refresh2) = app.refresh(&refresh).await.token_pair();

    // A missing token is a malformed request, not a bad grant.
    let missing = app.login_form("grant_type=refresh_token").await;
    missing.problem(400);
    assert_eq!(missing.body["error"], "invalid_request");
    let typed = app
        .login_json(json!({"grant_type": "refresh_token", "refresh_token": 7}))
        .await;
    typed.problem(400);
    assert_eq!(typed.body["error"], "invalid_request");
    assert_eq!(app.refresh(&refresh2).await.status, 200);
}

async fn a_reused_token_ends_only_its_session<S: AppStore>(app: TestApp<S>) {
    app.register("emma", GOOD_PASSWORD).await;
    let (other_access, other_refresh) = app.tokens("emma", GOOD_PASSWORD).await;
    let (access, refresh1) = app.tokens("emma", GOOD_PASSWORD).await;
    let (access2, refresh2) = app.refresh(&refresh1).await.token_pair();
    let (_, refresh3) = app.refresh(&refresh2).await.token_pair();
    // Two generations back: reuse, even within the interval.
    assert_invalid_grant(&app.refresh(&refresh1).await);
    assert_invalid_grant(&app.refresh(&refresh3).await);
    for token in [&access, &access2] {
        assert_eq!(
            app.me(token).await.problem(401),
            "Could not validate credentials"
        );
    }
    // The other session is untouched.
    assert_eq!(app.me(&other_access).await.status, 200);
    assert_eq!(app.refresh(&other_refresh).await.status, 200);
}

async fn a_retry_within_the_interval_gets_the_same_successor<S: AppStore>(app: TestApp<S>) {
    app.register("emma", GOOD_PASSWORD).await;
    let (_, refresh1) = app.tokens("emma", GOOD_PASSWORD).await;
    let (_, refresh2) = app.refresh(&refresh1).await.token_pair();
    app.advance(10);
    let (access, again) = app.refresh(&refresh1).await.token_pair();
    assert_eq!(again, refresh2);
    assert_eq!(app.me(&access).await.status, 200);
    // After the interval the same retry is reuse: the session ends.
    app.advance(1);
    assert_invalid_grant(&app.refresh(&refresh1).await);
    assert_invalid_grant(&app.refresh(&refresh2).await);
    assert_eq!(app.me(&access).await.status, 401);
}

async fn logout_by_refresh_token_ends_that_session<S: AppStore>(app: TestApp<S>) {
    app.register("emma", GOOD_PASSWORD).await;
    let (kept, _) = app.tokens("emma", GOOD_PASSWORD).await;
    let (access, refresh) = app.tokens("emma", GOOD_PASSWORD).await;
    let reply = app
        .logout(
            None,
            Some("application/x-www-form-urlencoded"),
            &format!("token={refresh}&token_type_hint=refresh_token"),
        )
        .await;
    assert_eq!(
        (reply.status, &reply.body),
        (200, &json!({"message": "Logged out"}))
    );
    assert_invalid_grant(&app.refresh(&refresh).await);
    assert_eq!(app.me(&access).await.status, 401);
    assert_eq!(app.me(&kept).await.status, 200);
    // Again, or an unknown token, as JSON: still 200.
    for token in [refresh.as_str(), "no-such-token"] {
        let reply = app
            .logout(
                None,
                Some("application/json"),
                &json!({"token": token}).to_string(),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.raw);
    }
    assert_eq!(app.me(&kept).await.status, 200);
}

async fn logout_by_bearer_ends_that_session<S: AppStore>(app: TestApp<S>) {
    app.register("emma", GOOD_PASSWORD).await;
    let (kept, kept_refresh) = app.tokens("emma", GOOD_PASSWORD).await;
    let (access, refresh) = app.tokens("emma", GOOD_PASSWORD).await;
    assert_eq!(app.logout(Some(&access), None, "").await.status, 200);
    assert_eq!(app.me(&access).await.status, 401);
    assert_invalid_grant(&app.refresh(&refresh).await);
    assert_eq!(app.me(&kept).await.status, 200);
    assert_eq!(app.refresh(&kept_refresh).await.status, 200);
    // The ended session's token can no longer act.
    let again = app.logout(Some(&access), None, "").await;
    again.problem(401);
    assert_eq!(again.body["error"], "invalid_token");
}

async fn global_logout_ends_every_session_of_the_account<S: AppStore>(app: TestApp<S>) {
    app.register("emma", GOOD_PASSWORD).await;
    app.register("olivia", GOOD_PASSWORD).await;
    let (stranger, _) = app.tokens("olivia", GOOD_PASSWORD).await;
    // By form, by JSON and by query.
    for (ct, body, query) in [
        (
            Some("application/x-www-form-urlencoded"),
            "scope=global",
            false,
        ),
        (Some("application/json"), r#"{"scope":"global"}"#, false),
        (None, "", true),
    ] {
        let sessions = [
            app.tokens("emma", GOOD_PASSWORD).await,
            app.tokens("emma", GOOD_PASSWORD).await,
        ];
        let (caller, _) = &sessions[0];
        let reply = if query {
            use lambda_http::RequestExt;
            let req = lambda_http::http::Request::builder()
                .method("POST")
                .uri("https://api.example.test/logout?scope=global")
                .header("authorization", format!("Bearer {caller}"))
                .body(lambda_http::Body::Empty)
                .unwrap()
                .with_query_string_parameters(std::collections::HashMap::from([(
                    "scope".to_string(),
                    "global".to_string(),
                )]));
            app.send(crate::helpers::Route::Logout, req).await
        } else {
            app.logout(Some(caller), ct, body).await
        };
        assert_eq!(reply.status, 200, "{}", reply.raw);
        for (access, refresh) in &sessions {
            assert_eq!(app.me(access).await.status, 401);
            assert_invalid_grant(&app.refresh(refresh).await);
        }
        // A login after it starts a working session; other accounts are untouched.
        let (fresh, fresh_refresh) = app.tokens("emma", GOOD_PASSWORD).await;
        assert_eq!(app.me(&fresh).await.status, 200);
        assert_eq!(app.refresh(&fresh_refresh).await.status, 200);
        assert_eq!(app.me(&stranger).await.status, 200);
        app.logout(Some(&fresh), None, "").await;
    }
}

async fn logout_refuses_what_it_cannot_act_on<S: AppStore>(app: TestApp<S>) {
    let neither = app.logout(None, None, "").await;
    neither.problem(400);
    assert_eq!(neither.body["error"], "invalid_request");
    let bad_bearer = app.logout(Some("not.a.token"), None, "").await;
    bad_bearer.problem(401);
    assert_eq!(bad_bearer.body["error"], "invalid_token");
    let bad_scope = app
        .logout(
            Some("not.a.token"),
            Some("application/json"),
            r#"{"scope":"everything"}"#,
        )
        .await;
    assert_eq!(bad_scope.status, 422);
}

async fn sessions_end_when_idle_and_at_their_absolute_limit<S: AppStore>(mut app: TestApp<S>) {
    app.set_session_limits(SessionLimits {
        idle: 5,
        max: 12,
        reuse: 1,
    });
    app.register("emma", GOOD_PASSWORD).await;
    let (idle_access, idle_refresh) = app.tokens("emma", GOOD_PASSWORD).await;
    let (_, refresh) = app.tokens("emma", GOOD_PASSWORD).await;
    app.advance(4);
    assert_eq!(app.me(&idle_access).await.status, 200);
    let (_, refresh) = app.refresh(&refresh).await.token_pair();
    app.advance(1);
    // Five seconds without a refresh: the first session has ended.
    assert_eq!(app.me(&idle_access).await.status, 401);
    assert_invalid_grant(&app.refresh(&idle_refresh).await);
    // The other, refreshed every few seconds, ends 12 s after its login all the same.
    app.advance(3);
    let (_, next) = app.refresh(&refresh).await.token_pair();
    app.advance(3);
    let (access, last) = app.refresh(&next).await.token_pair();
    assert_eq!(app.me(&access).await.status, 200);
    app.advance(1);
    assert_eq!(app.me(&access).await.status, 401);
    assert_invalid_grant(&app.refresh(&last).await);
}

async fn a_deleted_account_cannot_refresh<S: AppStore>(app: TestApp<S>) {
    app.register("emma", GOOD_PASSWORD).await;
    let (_, refresh) = app.tokens("emma", GOOD_PASSWORD).await;
    app.delete_all_users().await;
    assert_invalid_grant(&app.refresh(&refresh).await);
    // A new account under the name is another account: the old session stays dead.
    app.register("emma", GOOD_PASSWORD).await;
    assert_invalid_grant(&app.refresh(&refresh).await);
}

#[tokio::test]
async fn the_sqlite_file_holds_no_usable_refresh_token() {
    let app = SqliteApp::new().await;
    app.register("emma", GOOD_PASSWORD).await;
    let (_, first) = app.tokens("emma", GOOD_PASSWORD).await;
    let (_, second) = app.refresh(&first).await.token_pair();
    let mut stored = Vec::new();
    for file in ["users.db", "users.db-wal"] {
        if let Ok(bytes) = std::fs::read(app.dir.path().join(file)) {
            stored.extend(bytes);
        }
    }
    assert!(stored.len() > 4096, "the database was read");
    for token in [&first, &second] {
        let raw = URL_SAFE_NO_PAD.decode(token).unwrap();
        for needle in [token.as_bytes(), &raw[20..52]] {
            assert!(
                !stored.windows(needle.len()).any(|w| w == needle),
                "a refresh token or its secret is stored"
            );
        }
    }
}

#[tokio::test]
async fn an_access_token_without_sid_is_refused() {
    use shared::signer::{LocalSigner, Signer};
    let app = SqliteApp::new().await;
    app.register("emma", GOOD_PASSWORD).await;
    let access = app.token("emma", GOOD_PASSWORD).await;
    let mut payload = claims(&access);
    payload.as_object_mut().unwrap().remove("sid");
    let header = access.split('.').next().unwrap();
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload.to_string()));
    let signer = LocalSigner::from_pem_file(&app.dir.path().join("signing-key.pem")).unwrap();
    let token = format!("{input}.{}", signer.sign(input.as_bytes()).await.unwrap());
    assert_eq!(app.me(&token).await.status, 401);
}
