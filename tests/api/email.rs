//! Addresses, their verification, and the password reset by mail, with the file mailer (each
//! message an `.eml` file, read back), on SQLite and on DynamoDB (moto).

use lambda_http::http::Method;
use serde_json::json;

use crate::helpers::{AppStore, GOOD_PASSWORD, Route, TestApp};

const NEW_PASSWORD: &str = "copper-lantern-orchard-17";
const VERIFY: &str = "confirm your email address";
const RESET: &str = "reset your password";
const CHANGED: &str = "your password was changed";

on_both_backends!(
    registration_mails_a_link_that_verifies_the_address_once,
    a_verified_address_belongs_to_one_account,
    changing_the_address_reauthenticates_and_tells_the_old_one,
    resend_is_throttled_per_account,
    forgot_answers_the_same_and_mails_only_a_verified_address,
    forgot_is_throttled_but_answers_the_same,
    a_reset_sets_the_password_and_ends_every_session,
    a_refused_new_password_spends_nothing,
    a_reset_link_dies_when_used_expired_or_the_password_changes,
    concurrent_resets_with_one_token_succeed_once,
    a_reset_clears_the_login_throttle,
    a_mailer_that_fails_loses_nothing,
    the_pages_of_a_link_consume_nothing_until_their_form_is_posted,
);

/// Registers `name` with `email` and verifies it through the mailed link.
async fn verified<S: AppStore>(app: &TestApp<S>, name: &str, email: &str) {
    let reply = app
        .register_json(json!({"username": name, "password": GOOD_PASSWORD, "email": email}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.raw);
    let token = app
        .mails_to(email, VERIFY)
        .into_iter()
        .filter(|m| m.text.starts_with(&format!("Hello {name},")))
        .find_map(|m| m.token())
        .expect("a verification link");
    let reply = app.verify(&token).await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
}

impl<S: AppStore> TestApp<S> {
    async fn verify(&self, token: &str) -> crate::helpers::Reply {
        self.account(Method::POST, "/email/verify", None, json!({"token": token}))
            .await
    }

    async fn forgot(&self, body: serde_json::Value) -> crate::helpers::Reply {
        self.account(Method::POST, "/password/forgot", None, body)
            .await
    }

    async fn reset(&self, token: &str, new_password: &str) -> crate::helpers::Reply {
        self.account(
            Method::POST,
            "/password/reset",
            None,
            json!({"token": token, "new_password": new_password}),
        )
        .await
    }

    /// A hosted page: a GET, or a form POST, with an optional `Cookie` header.
    async fn page(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        form: &str,
    ) -> crate::helpers::Reply {
        use lambda_http::http::{Request, header};
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("https://auth.example.test{path}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(cookie) = cookie {
            builder = builder.header(header::COOKIE, cookie);
        }
        self.send(
            Route::Account,
            builder
                .body(lambda_http::Body::Text(form.to_string()))
                .unwrap(),
        )
        .await
    }

    async fn reset_token(&self, name: &str, email: &str) -> String {
        let reply = self.forgot(json!({"username": name})).await;
        assert_eq!(reply.status, 202, "{}", reply.raw);
        self.mailed_token(email, RESET)
    }
}

async fn registration_mails_a_link_that_verifies_the_address_once<S: AppStore>(app: TestApp<S>) {
    let reply = app
        .register_json(json!({
            "username": "emma", "password": GOOD_PASSWORD, "email": " Emma@Example.COM "
        }))
        .await;
    assert_eq!(
        reply.body,
        json!({"message": "User registered successfully"})
    );
    let token = app.token("emma", GOOD_PASSWORD).await;
    let me = app.me(&token).await;
    assert_eq!(
        (&me.body["email"], &me.body["email_verified"]),
        (&json!("Emma@example.com"), &json!(false))
    );
    // One message, multipart, from the configured sender; the token only inside the link.
    let mails = app.mails_to("Emma@example.com", VERIFY);
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert!(mail.raw.contains("multipart/alternative"), "{}", mail.raw);
    assert!(mail.raw.contains("From: Example <auth@example.test>"));
    let link_token = mail.token().unwrap();
    assert_eq!(link_token.len(), 43);
    assert!(mail.text.contains(&format!(
        "https://auth.example.test/verify-email?token={link_token}"
    )));
    assert_eq!(mail.text.matches(&link_token).count(), 1, "{}", mail.text);
    assert!(
        mail.html
            .contains(&format!("verify-email?token={link_token}")),
        "{}",
        mail.html
    );
    assert!(!mail.raw.contains(GOOD_PASSWORD));
    // The link verifies once.
    let reply = app.verify(&link_token).await;
    assert_eq!(reply.body["email"], "Emma@example.com", "{}", reply.raw);
    assert_eq!(app.me(&token).await.body["email_verified"], true);
    app.verify(&link_token).await.problem(400);
    app.verify("not-a-token").await.problem(400);
    // A bad address is a 422 naming `email`, and creates nothing.
    let reply = app
        .register_json(json!({"username": "noah", "password": GOOD_PASSWORD, "email": "noah"}))
        .await;
    reply.problem(422);
    assert_eq!(reply.body["field"], "email");
    app.login("noah", GOOD_PASSWORD).await.problem(401);
    // Without an address, /me is the tutorial's.
    app.register("liam", GOOD_PASSWORD).await;
    let me = app.me(&app.token("liam", GOOD_PASSWORD).await).await;
    assert!(me.body.get("email").is_none() && me.body.get("email_verified").is_none());
}

async fn a_verified_address_belongs_to_one_account<S: AppStore>(app: TestApp<S>) {
    verified(&app, "emma", "shared@example.com").await;
    let reply = app
        .register_json(json!({
            "username": "noah", "password": GOOD_PASSWORD, "email": "shared@EXAMPLE.com"
        }))
        .await;
    assert_eq!(reply.status, 201, "an unverified claim is allowed");
    let noahs: Vec<String> = app
        .mails_to("shared@example.com", VERIFY)
        .into_iter()
        .filter(|m| m.text.starts_with("Hello noah"))
        .filter_map(|m| m.token())
        .collect();
    assert_eq!(noahs.len(), 1);
    let detail = app.verify(&noahs[0]).await.problem(409).to_string();
    assert_eq!(detail, "This address cannot be verified for this account");
    // The first account keeps it, and a reset request by address goes to it alone.
    let emma = app.me(&app.token("emma", GOOD_PASSWORD).await).await;
    assert_eq!(emma.body["email_verified"], true);
    let noah = app.me(&app.token("noah", GOOD_PASSWORD).await).await;
    assert_eq!(noah.body["email_verified"], false);
    assert_eq!(
        app.forgot(json!({"email": "shared@example.com"}))
            .await
            .status,
        202
    );
    let resets = app.mails_to("shared@example.com", RESET);
    assert_eq!(resets.len(), 1);
    assert!(
        resets[0].text.starts_with("Hello emma"),
        "{}",
        resets[0].text
    );
    // Once the first account is deleted, the second may verify it.
    let bearer = app.token("emma", GOOD_PASSWORD).await;
    assert_eq!(app.delete_me(&bearer, GOOD_PASSWORD).await.status, 204);
    let bearer = app.token("noah", GOOD_PASSWORD).await;
    app.advance(61);
    let reply = app
        .account(
            Method::POST,
            "/email/verify/resend",
            Some(&bearer),
            json!({}),
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.raw);
    let token = app
        .mails_to("shared@example.com", VERIFY)
        .into_iter()
        .filter(|m| m.text.starts_with("Hello noah"))
        .filter_map(|m| m.token())
        .find(|t| *t != noahs[0])
        .unwrap();
    assert_eq!(app.verify(&token).await.status, 200);
}

async fn changing_the_address_reauthenticates_and_tells_the_old_one<S: AppStore>(app: TestApp<S>) {
    verified(&app, "emma", "old@example.com").await;
    let bearer = app.token("emma", GOOD_PASSWORD).await;
    let change = |email: &str, password: &str| {
        app.account(
            Method::PUT,
            "/me/email",
            Some(&bearer),
            json!({"email": email, "password": password}),
        )
    };
    change("new@example.com", "wrong-password-123")
        .await
        .problem(403);
    assert!(app.mails_to("new@example.com", VERIFY).is_empty());
    change("old@example.com", GOOD_PASSWORD).await.problem(422);
    change("not an address", GOOD_PASSWORD).await.problem(422);
    let reply = change("new@example.com", GOOD_PASSWORD).await;
    assert_eq!(
        reply.body,
        json!({"email": "new@example.com", "email_verified": false}),
        "{}",
        reply.raw
    );
    assert_eq!(
        app.mails_to("old@example.com", "your email address was changed")
            .len(),
        1
    );
    let token = app.mailed_token("new@example.com", VERIFY);
    // The old address's link no longer verifies anything; the new one's does.
    assert_eq!(app.me(&bearer).await.body["email_verified"], false);
    app.verify(&token).await;
    assert_eq!(app.me(&bearer).await.body["email"], "new@example.com");
    assert_eq!(app.me(&bearer).await.body["email_verified"], true);
    // The old address is free: another account may verify it.
    verified(&app, "noah", "old@example.com").await;
}

async fn resend_is_throttled_per_account<S: AppStore>(app: TestApp<S>) {
    let reply = app
        .register_json(
            json!({"username": "emma", "password": GOOD_PASSWORD, "email": "e@example.com"}),
        )
        .await;
    assert_eq!(reply.status, 201);
    let bearer = app.token("emma", GOOD_PASSWORD).await;
    let resend = || {
        app.account(
            Method::POST,
            "/email/verify/resend",
            Some(&bearer),
            json!({}),
        )
    };
    assert_eq!(resend().await.status, 202);
    let reply = resend().await;
    reply.problem(429);
    assert_eq!(reply.header("retry-after"), "60");
    assert_eq!(app.mails_to("e@example.com", VERIFY).len(), 2);
    // Either link verifies (each is its own ticket); then resend has nothing to do.
    let tokens: Vec<String> = app
        .mails_to("e@example.com", VERIFY)
        .iter()
        .map(|m| m.token().unwrap())
        .collect();
    assert_eq!(app.verify(&tokens[1]).await.status, 200);
    app.advance(61);
    let bearer = app.token("emma", GOOD_PASSWORD).await;
    app.account(
        Method::POST,
        "/email/verify/resend",
        Some(&bearer),
        json!({}),
    )
    .await
    .problem(409);
    app.account(Method::POST, "/email/verify/resend", None, json!({}))
        .await
        .problem(401);
}

async fn forgot_answers_the_same_and_mails_only_a_verified_address<S: AppStore>(app: TestApp<S>) {
    verified(&app, "emma", "emma@example.com").await;
    let reply = app
        .register_json(
            json!({"username": "noah", "password": GOOD_PASSWORD, "email": "noah@example.com"}),
        )
        .await;
    assert_eq!(reply.status, 201);
    let before = app.mails().len();
    let answers = [
        app.forgot(json!({"email": "nobody@example.com"})).await,
        app.forgot(json!({"username": "nobody"})).await,
        app.forgot(json!({"email": "noah@example.com"})).await,
        app.forgot(json!({"username": "noah"})).await,
        // The domain is case-insensitive (the local part is the mailbox's own business).
        app.forgot(json!({"email": "emma@EXAMPLE.com"})).await,
    ];
    for reply in &answers {
        assert_eq!(reply.status, 202, "{}", reply.raw);
        assert_eq!(reply.raw, answers[0].raw);
        let mut headers: Vec<_> = reply
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        let mut first: Vec<_> = answers[0]
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        headers.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        first.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        assert_eq!(headers, first);
    }
    // Only the verified address got a message.
    assert_eq!(app.mails().len(), before + 1);
    let mail = &app.mails_to("emma@example.com", RESET)[0];
    let token = mail.token().unwrap();
    assert!(mail.text.contains(&format!(
        "https://auth.example.test/reset-password?token={token}"
    )));
    assert!(app.mails_to("noah@example.com", RESET).is_empty());
    app.forgot(json!({})).await.problem(422);
    app.forgot(json!({"email": "not-an-address"}))
        .await
        .problem(422);
}

async fn forgot_is_throttled_but_answers_the_same<S: AppStore>(app: TestApp<S>) {
    verified(&app, "emma", "emma@example.com").await;
    for _ in 0..3 {
        assert_eq!(app.forgot(json!({"username": "emma"})).await.status, 202);
    }
    assert_eq!(
        app.mails_to("emma@example.com", RESET).len(),
        1,
        "one a minute"
    );
    for _ in 0..6 {
        app.advance(61);
        assert_eq!(
            app.forgot(json!({"email": "emma@example.com"}))
                .await
                .status,
            202
        );
    }
    assert_eq!(
        app.mails_to("emma@example.com", RESET).len(),
        5,
        "five an hour"
    );
}

async fn a_reset_sets_the_password_and_ends_every_session<S: AppStore>(app: TestApp<S>) {
    verified(&app, "emma", "emma@example.com").await;
    let (access, refresh) = app.tokens("emma", GOOD_PASSWORD).await;
    let token = app.reset_token("emma", "emma@example.com").await;
    let reply = app.reset(&token, NEW_PASSWORD).await;
    assert_eq!(
        reply.body,
        json!({"message": "Your password has been reset"}),
        "{}",
        reply.raw
    );
    app.me(&access).await.problem(401);
    let r = app.refresh(&refresh).await;
    assert_eq!((r.status, &r.body["error"]), (400, &json!("invalid_grant")));
    app.login("emma", GOOD_PASSWORD).await.problem(401);
    assert_eq!(app.login("emma", NEW_PASSWORD).await.status, 200);
    let notices = app.mails_to("emma@example.com", CHANGED);
    assert_eq!(notices.len(), 1);
    assert!(notices[0].token().is_none() && !notices[0].raw.contains(NEW_PASSWORD));
    // Single use.
    app.reset(&token, "another-fine-passphrase-9")
        .await
        .problem(400);
}

async fn a_refused_new_password_spends_nothing<S: AppStore>(app: TestApp<S>) {
    verified(&app, "emma", "emma@example.com").await;
    let token = app.reset_token("emma", "emma@example.com").await;
    for weak in ["short", "emma", "password123"] {
        let reply = app.reset(&token, weak).await;
        reply.problem(422);
        assert_eq!(reply.body["field"], "new_password");
    }
    app.login("emma", GOOD_PASSWORD).await;
    assert_eq!(app.reset(&token, NEW_PASSWORD).await.status, 200);
}

async fn a_reset_link_dies_when_used_expired_or_the_password_changes<S: AppStore>(app: TestApp<S>) {
    verified(&app, "emma", "emma@example.com").await;
    // Expired: the link lives AUTH_RESET_TOKEN_SECONDS (1800 by default).
    let token = app.reset_token("emma", "emma@example.com").await;
    app.advance(1801);
    app.reset(&token, NEW_PASSWORD).await.problem(400);
    // Two live links; the password changes (here with the old one): both die.
    app.advance(61);
    assert_eq!(app.forgot(json!({"username": "emma"})).await.status, 202);
    app.advance(61);
    assert_eq!(app.forgot(json!({"username": "emma"})).await.status, 202);
    let tokens: Vec<String> = app
        .mails_to("emma@example.com", RESET)
        .iter()
        .filter_map(|m| m.token())
        .filter(|t| *t != token)
        .collect();
    assert_eq!(tokens.len(), 2);
    let bearer = app.token("emma", GOOD_PASSWORD).await;
    assert_eq!(
        app.change_password(&bearer, GOOD_PASSWORD, NEW_PASSWORD)
            .await
            .status,
        200
    );
    for t in &tokens {
        app.reset(t, "another-fine-passphrase-9").await.problem(400);
    }
    assert_eq!(app.login("emma", NEW_PASSWORD).await.status, 200);
}

async fn concurrent_resets_with_one_token_succeed_once<S: AppStore>(app: TestApp<S>) {
    verified(&app, "emma", "emma@example.com").await;
    let token = app.reset_token("emma", "emma@example.com").await;
    let app = std::sync::Arc::new(app);
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (app, token, barrier) = (app.clone(), token.clone(), barrier.clone());
        tasks.spawn(async move {
            let password = format!("{NEW_PASSWORD}-{i}");
            barrier.wait().await;
            (app.reset(&token, &password).await.status, password)
        });
    }
    let replies: Vec<(u16, String)> = tasks.join_all().await;
    let won: Vec<&String> = replies
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, p)| p)
        .collect();
    assert_eq!(won.len(), 1, "{replies:?}");
    assert!(
        replies.iter().all(|(s, _)| *s == 200 || *s == 400),
        "{replies:?}"
    );
    assert_eq!(app.login("emma", won[0]).await.status, 200);
}

async fn a_reset_clears_the_login_throttle<S: AppStore>(app: TestApp<S>) {
    verified(&app, "emma", "emma@example.com").await;
    for _ in 0..5 {
        app.login_from("198.51.100.7", "emma", "wrong-password-123")
            .await
            .problem(401);
    }
    app.login_from("198.51.100.7", "emma", GOOD_PASSWORD)
        .await
        .problem(429);
    let reply = app
        .account_from(
            "198.51.100.7",
            Method::POST,
            "/password/forgot",
            None,
            json!({"username": "emma"}),
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.raw);
    let token = app.mailed_token("emma@example.com", RESET);
    let reply = app
        .account_from(
            "198.51.100.7",
            Method::POST,
            "/password/reset",
            None,
            json!({"token": token, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
    assert_eq!(
        app.login_from("198.51.100.7", "emma", NEW_PASSWORD)
            .await
            .status,
        200
    );
    assert_eq!(app.stored("emma").await.1, 0);
}

async fn a_mailer_that_fails_loses_nothing<S: AppStore>(app: TestApp<S>) {
    // The mail folder becomes a file: every write fails from now on.
    let dir = app.dir.path().join("mail");
    std::fs::remove_dir_all(&dir).ok();
    std::fs::write(&dir, "not a folder").unwrap();
    let reply = app
        .register_json(
            json!({"username": "emma", "password": GOOD_PASSWORD, "email": "e@example.com"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.raw);
    let bearer = app.token("emma", GOOD_PASSWORD).await;
    assert_eq!(app.me(&bearer).await.body["email"], "e@example.com");
    app.account(
        Method::POST,
        "/email/verify/resend",
        Some(&bearer),
        json!({}),
    )
    .await
    .problem(503);
    assert_eq!(app.forgot(json!({"username": "emma"})).await.status, 202);
    // Once the mailer is back, the link can be sent again.
    std::fs::remove_file(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    app.advance(61);
    assert_eq!(
        app.account(
            Method::POST,
            "/email/verify/resend",
            Some(&bearer),
            json!({})
        )
        .await
        .status,
        202
    );
    let token = app.mailed_token("e@example.com", VERIFY);
    assert_eq!(app.verify(&token).await.status, 200);
}

async fn the_pages_of_a_link_consume_nothing_until_their_form_is_posted<S: AppStore>(
    app: TestApp<S>,
) {
    verified(&app, "emma", "emma@example.com").await;
    let token = app.reset_token("emma", "emma@example.com").await;
    let page = async |path: String| app.page(Method::GET, &path, None, "").await;
    // Opened twice, as a scanner and then its reader would: the form both times.
    for _ in 0..2 {
        let reply = page(format!("/reset-password?token={token}")).await;
        assert_eq!(reply.status, 200, "{}", reply.raw);
        assert!(reply.raw.contains(r#"autocomplete="new-password""#));
        assert!(
            reply
                .header("content-security-policy")
                .contains("default-src 'none'")
        );
    }
    assert_eq!(page("/reset-password?token=nope".into()).await.status, 400);
    // A post without the CSRF cookie does nothing.
    let form = format!("token={token}&new_password={NEW_PASSWORD}&csrf=x");
    let reply = app.page(Method::POST, "/reset-password", None, &form).await;
    assert_eq!(reply.status, 403);
    // With it, the password is set.
    let csrf = "A".repeat(43);
    let cookie = format!("__Host-auth_csrf={csrf}");
    let form = format!("token={token}&new_password={NEW_PASSWORD}&csrf={csrf}");
    let reply = app
        .page(
            Method::POST,
            "/reset-password",
            Some(cookie.as_str()),
            &form,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
    assert!(reply.raw.contains("Password changed"));
    assert_eq!(app.login("emma", NEW_PASSWORD).await.status, 200);
    // The forgot page posts the same request as the API.
    app.advance(61);
    let form = format!("login=emma%40example.com&csrf={csrf}");
    let reply = app
        .page(
            Method::POST,
            "/forgot-password",
            Some(cookie.as_str()),
            &form,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
    assert!(reply.raw.contains("Check your mail"));
    assert_eq!(app.mails_to("emma@example.com", RESET).len(), 2);
}
