//! `POST /login`: both body formats, indistinguishable failures, malformed requests.
//! Lockout and hash upgrades are in `account_protection.rs`, on both backends.

use lambda_http::http::Method;

use crate::helpers::{GOOD_PASSWORD, Route, SqliteApp};

#[tokio::test]
async fn the_oauth2_password_form_and_json_both_log_in() {
    let app = SqliteApp::new().await;
    app.register("emma", GOOD_PASSWORD).await;
    for form in [
        format!("grant_type=password&username=emma&password={GOOD_PASSWORD}&scope="),
        format!("username=emma&password={GOOD_PASSWORD}"),
        format!(
            "grant_type=password&username=EMMA&password={GOOD_PASSWORD}&scope=read%20write&client_id="
        ),
    ] {
        let reply = app.login_form(&form).await;
        assert_eq!(reply.status, 200, "{form}: {}", reply.raw);
        assert_eq!(reply.body["token_type"], "bearer");
        assert_eq!(reply.header("cache-control"), "no-store");
        assert_eq!(reply.header("pragma"), "no-cache");
    }
    assert_eq!(app.login("emma", GOOD_PASSWORD).await.status, 200);
    // A charset parameter on the content type is fine.
    let reply = app
        .raw(
            Route::Login,
            Method::POST,
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
            format!("username=emma&password={GOOD_PASSWORD}"),
        )
        .await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn unknown_user_and_wrong_password_are_indistinguishable() {
    let app = SqliteApp::new().await;
    app.register("emma", GOOD_PASSWORD).await;
    let wrong = app.login("emma", "not-the-password-at-all").await;
    let unknown = app.login("nobody-here", "not-the-password-at-all").await;
    assert_eq!(wrong.problem(401), "Incorrect username or password");
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(wrong.raw, unknown.raw);
    assert_eq!(wrong.headers, unknown.headers);
    assert_eq!(wrong.header("www-authenticate"), "Bearer");
}

#[tokio::test]
async fn malformed_logins_are_4xx() {
    let app = SqliteApp::new().await;
    let reply = app
        .login_form("grant_type=client_credentials&username=a&password=b")
        .await;
    assert!(reply.problem(422).contains("grant"));
    let reply = app.login_form("username=emma").await;
    assert_eq!(reply.body["field"], "password");
    reply.problem(422);
    let reply = app.login_form("username=a&username=b&password=c").await;
    assert!(reply.problem(422).contains("only once"));
    let reply = app
        .raw(Route::Login, Method::POST, Some("text/plain"), "username=a")
        .await;
    reply.problem(415);
    let reply = app
        .raw(
            Route::Login,
            Method::POST,
            Some("application/json"),
            "{nope",
        )
        .await;
    reply.problem(400);
    let reply = app
        .raw(
            Route::Login,
            Method::POST,
            Some("application/json"),
            "{\"username\": 1, \"password\": \"x\"}",
        )
        .await;
    assert_eq!(reply.body["field"], "username");
    reply.problem(422);
}

#[tokio::test]
async fn a_password_that_registers_always_logs_in() {
    // 200 accented vowels written as vowel + combining acute: 400 code points as sent, 200
    // after NFKC, which is what registration measures (limit 256).
    let mut state = 7u32;
    let password: String = (0..200)
        .map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let vowel = ['a', 'e', 'i', 'o', 'u'][(state >> 16) as usize % 5];
            format!("{vowel}\u{301}")
        })
        .collect();
    assert!(password.chars().count() > 256);
    let app = SqliteApp::new().await;
    let reply = app
        .register_json(serde_json::json!({"username": "accented", "password": password}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.raw);
    assert_eq!(app.login("accented", &password).await.status, 200);
}
