//! `POST /login`: both body formats, indistinguishable failures, lockout, hash upgrades.

use lambda_http::http::Method;
use rusqlite::params;

use crate::helpers::{GOOD_PASSWORD, Route, TestApp};

#[tokio::test]
async fn the_oauth2_password_form_and_json_both_log_in() {
    let app = TestApp::new().await;
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
    let app = TestApp::new().await;
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
    let app = TestApp::new().await;
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
async fn after_five_failures_each_attempt_waits_and_a_success_resets() {
    let app = TestApp::new().await;
    app.register("target", GOOD_PASSWORD).await;
    for _ in 0..5 {
        app.login("target", "wrong-guess-123").await.problem(401);
    }
    // Locked for 2^0 = 1 s: even the right password is refused, without counting.
    for _ in 0..3 {
        let reply = app.login("target", GOOD_PASSWORD).await;
        reply.problem(429);
        assert_eq!(reply.header("retry-after"), "1");
    }
    let failures = |app: &TestApp| -> i64 {
        app.db()
            .query_row("SELECT failed_logins FROM users", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(failures(&app), 5, "refused attempts are not counted");
    app.advance(1);
    app.login("target", "wrong-guess-123").await.problem(401);
    let reply = app.login("target", GOOD_PASSWORD).await;
    reply.problem(429);
    assert_eq!(reply.header("retry-after"), "2");
    app.advance(2);
    assert_eq!(app.login("target", GOOD_PASSWORD).await.status, 200);
    assert_eq!(failures(&app), 0);
    // After the reset, a failure is an ordinary 401 again.
    app.login("target", "wrong-guess-123").await.problem(401);
    assert_eq!(app.login("target", GOOD_PASSWORD).await.status, 200);
}

#[tokio::test]
async fn the_wait_is_capped_at_fifteen_minutes() {
    let app = TestApp::new().await;
    app.register("patient", GOOD_PASSWORD).await;
    // Push the count far past the cap through the store, as a long attack would.
    app.db()
        .execute(
            "UPDATE users SET failed_logins = 40, last_failed_at = ?1",
            params![shared::token::now() as i64],
        )
        .unwrap();
    let reply = app.login("patient", GOOD_PASSWORD).await;
    reply.problem(429);
    let wait: u64 = reply.header("retry-after").parse().unwrap();
    assert!((895..=900).contains(&wait), "{wait}");
    app.advance(900);
    assert_eq!(app.login("patient", GOOD_PASSWORD).await.status, 200);
}

#[tokio::test]
async fn a_tutorial_user_logs_in_and_the_hash_is_upgraded() {
    let app = TestApp::new().await;
    // A row as the FastAPI tutorial writes it: plain bcrypt of the raw password.
    let legacy = bcrypt::hash("johns-old-secret", 4).unwrap();
    app.db()
        .execute(
            "INSERT INTO users (username, hashed_password, full_name, user_id, username_key)
             VALUES ('johndoe', ?1, 'John Doe', 'legacy-id-1', 'johndoe')",
            [&legacy],
        )
        .unwrap();
    let token = app.token("johndoe", "johns-old-secret").await;
    assert_eq!(app.me(&token).await.body["full_name"], "John Doe");
    let upgraded: String = app
        .db()
        .query_row("SELECT hashed_password FROM users", [], |r| r.get(0))
        .unwrap();
    assert!(
        upgraded.starts_with("$bcrypt-sha256$v=2,t=2b,r=4$"),
        "{upgraded}"
    );
    // The upgraded hash keeps working; the old password still logs in.
    assert_eq!(app.login("johndoe", "johns-old-secret").await.status, 200);
    app.login("johndoe", "johns-old-secreT").await.problem(401);
}

#[tokio::test]
async fn a_lower_cost_hash_is_upgraded_to_the_configured_cost() {
    let low = TestApp::with_cost(4).await;
    low.register("frugal", GOOD_PASSWORD).await;
    let hash: String = low
        .db()
        .query_row("SELECT hashed_password FROM users", [], |r| r.get(0))
        .unwrap();
    let high = TestApp::with_cost(5).await;
    high.db()
        .execute(
            "INSERT INTO users (username, hashed_password, full_name, user_id, username_key)
             VALUES ('frugal', ?1, NULL, 'id-frugal', 'frugal')",
            [&hash],
        )
        .unwrap();
    assert_eq!(high.login("frugal", GOOD_PASSWORD).await.status, 200);
    let upgraded: String = high
        .db()
        .query_row("SELECT hashed_password FROM users", [], |r| r.get(0))
        .unwrap();
    assert!(
        upgraded.starts_with("$bcrypt-sha256$v=2,t=2b,r=5$"),
        "{upgraded}"
    );
}
