//! `POST /register`: what it accepts, what it refuses, and that refusals lose nothing.

use lambda_http::http::Method;
use serde_json::json;

use shared::store::testing::TestSeam;

use crate::helpers::{GOOD_PASSWORD, Route, SqliteApp};

#[tokio::test]
async fn full_name_is_optional() {
    let app = SqliteApp::new().await;
    let reply = app
        .register_json(json!({"username": "nameless", "password": GOOD_PASSWORD}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.raw);
    let token = app.token("nameless", GOOD_PASSWORD).await;
    assert_eq!(
        app.me(&token).await.body,
        json!({"username": "nameless", "full_name": null})
    );
}

#[tokio::test]
async fn invalid_fields_are_422_naming_the_field() {
    let app = SqliteApp::new().await;
    for (body, field, says) in [
        (
            json!({"password": GOOD_PASSWORD}),
            "username",
            "field required",
        ),
        (json!({"username": "emma"}), "password", "field required"),
        (
            json!({"username": 42, "password": GOOD_PASSWORD}),
            "username",
            "must be a string",
        ),
        (
            json!({"username": "emma", "password": ["x"]}),
            "password",
            "must be a string",
        ),
        (
            json!({"username": "emma", "password": GOOD_PASSWORD, "full_name": 7}),
            "full_name",
            "string",
        ),
        (
            json!({"username": "emma", "password": "123456"}),
            "password",
            "at least 8",
        ),
        (
            json!({"username": "emma", "password": "password123"}),
            "password",
            "too common",
        ),
        (
            json!({"username": "em ma", "password": GOOD_PASSWORD}),
            "username",
            "whitespace",
        ),
        (
            json!({"username": "em\u{202e}ma", "password": GOOD_PASSWORD}),
            "username",
            "invisible",
        ),
        (
            json!({"username": "x", "password": GOOD_PASSWORD}),
            "username",
            "3 to 64",
        ),
        (
            json!({"username": "emma", "password": "x".repeat(257)}),
            "password",
            "at most 256",
        ),
        (json!(["emma", GOOD_PASSWORD]), "body", "JSON object"),
    ] {
        let reply = app.register_json(body.clone()).await;
        let detail = reply.problem(422).to_string();
        assert_eq!(reply.body["field"], field, "{body}");
        assert!(detail.contains(says), "{body}: {detail}");
    }
    // Nothing was created by any of them.
    assert_eq!(app.store.user_count().await, 0);
}

#[tokio::test]
async fn unreadable_bodies_are_4xx_with_a_clear_detail() {
    let app = SqliteApp::new().await;
    let json = Some("application/json");
    let reply = app
        .raw(Route::Register, Method::POST, json, "{\"username\": ")
        .await;
    assert!(reply.problem(400).contains("Malformed JSON"));
    let reply = app.raw(Route::Register, Method::POST, json, "").await;
    assert_eq!(reply.problem(400), "Request body is empty");
    let reply = app
        .raw(Route::Register, Method::POST, Some("text/plain"), "hi")
        .await;
    assert!(reply.problem(415).contains("text/plain"));
    let reply = app.raw(Route::Register, Method::POST, None, "{}").await;
    assert!(reply.problem(415).contains("missing"));
    let form = Some("application/x-www-form-urlencoded");
    let reply = app
        .raw(Route::Register, Method::POST, form, "username=a&password=b")
        .await;
    assert!(reply.problem(415).contains("application/json"));
    let huge = format!(
        "{{\"username\":\"emma\",\"password\":\"{}\"}}",
        "x".repeat(70_000)
    );
    reply_is_413(app.raw(Route::Register, Method::POST, json, huge).await);
    let reply = app.raw(Route::Register, Method::GET, None, "").await;
    reply.problem(405);
    assert_eq!(reply.header("allow"), "POST");
}

fn reply_is_413(reply: crate::helpers::Reply) {
    assert!(reply.problem(413).contains("65536"));
}

#[tokio::test]
async fn sql_looking_usernames_are_just_names() {
    let app = SqliteApp::new().await;
    let name = "robert');DROP_TABLE_users;--";
    assert_eq!(app.register(name, GOOD_PASSWORD).await.status, 201);
    let token = app.token(name, GOOD_PASSWORD).await;
    assert_eq!(app.me(&token).await.body["username"], name);
}

#[tokio::test]
async fn responses_never_contain_the_password_or_its_hash() {
    let app = SqliteApp::new().await;
    let reply = app.register("secretive", GOOD_PASSWORD).await;
    let (hash, _) = app.stored("secretive").await;
    assert!(hash.starts_with("$bcrypt-sha256$v=2,t=2b,r=4$"));
    let login = app.login("secretive", GOOD_PASSWORD).await;
    let me = app.me(login.body["access_token"].as_str().unwrap()).await;
    for text in [&reply.raw, &login.raw, &me.raw] {
        assert!(
            !text.contains(GOOD_PASSWORD) && !text.contains(&hash[20..]),
            "{text}"
        );
    }
}
