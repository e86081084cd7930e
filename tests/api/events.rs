//! The whole flow through real API Gateway REST (v1), HTTP API (v2) and Function URL events.

use crate::helpers::{GOOD_PASSWORD, Route, SqliteApp};

#[tokio::test]
async fn register_login_and_me_work_with_every_event_kind() {
    let app = SqliteApp::new().await;
    for kind in ["v1", "v2", "furl"] {
        let user = format!("emma-{kind}");
        let vars = [("USERNAME", user.as_str()), ("PASSWORD", GOOD_PASSWORD)];

        let reply = app
            .send_event(Route::Register, &format!("{kind}_register"), &vars)
            .await;
        assert_eq!(reply.status, 201, "{kind}: {}", reply.raw);
        assert_eq!(
            reply.body,
            serde_json::json!({"message": "User registered successfully"})
        );

        for login in ["login_form", "login_json"] {
            let reply = app
                .send_event(Route::Login, &format!("{kind}_{login}"), &vars)
                .await;
            assert_eq!(reply.status, 200, "{kind} {login}: {}", reply.raw);
            assert_eq!(reply.body["token_type"], "bearer");
            assert_eq!(reply.body["expires_in"], 1800);
            assert_eq!(reply.header("cache-control"), "no-store");
            let token = reply.body["access_token"].as_str().unwrap();

            let reply = app
                .send_event(Route::Me, &format!("{kind}_me"), &[("TOKEN", token)])
                .await;
            assert_eq!(reply.status, 200, "{kind} me: {}", reply.raw);
            assert_eq!(
                reply.body,
                serde_json::json!({"username": user, "full_name": "Emma Doe"})
            );
        }

        let reply = app
            .send_event(Route::Jwks, &format!("{kind}_jwks"), &[])
            .await;
        assert_eq!(reply.status, 200, "{kind} jwks: {}", reply.raw);
        assert_eq!(reply.body["keys"][0]["kty"], "RSA");
        let reply = app
            .send_event(Route::Jwks, &format!("{kind}_openid_configuration"), &[])
            .await;
        assert_eq!(reply.status, 200, "{kind} openid: {}", reply.raw);
        assert_eq!(reply.body["issuer"], "https://auth.example.test");
    }
}

#[tokio::test]
async fn a_bad_token_in_a_real_event_is_refused() {
    let app = SqliteApp::new().await;
    for kind in ["v1", "v2", "furl"] {
        let reply = app
            .send_event(
                Route::Me,
                &format!("{kind}_me"),
                &[("TOKEN", "not.a.token")],
            )
            .await;
        reply.problem(401);
        assert_eq!(
            reply.header("www-authenticate"),
            r#"Bearer error="invalid_token""#
        );
    }
}
