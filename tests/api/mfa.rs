//! TOTP second factors: enrolment, the two-step password grant, replay, the wrong-code limit,
//! recovery codes, removal, and what still needs the code; on SQLite and on DynamoDB (moto).
//! Codes come from the service's own RFC 6238 implementation here (its vectors are unit tests);
//! the conformance suite makes them with pyotp.

use lambda_http::http::Method;
use serde_json::{Value, json};
use shared::authn::totp;

use crate::helpers::{AppStore, GOOD_PASSWORD, Reply, TestApp};

const OTP: &str = "urn:jwt-auth:grant-type:mfa-otp";
const RECOVERY: &str = "urn:jwt-auth:grant-type:mfa-recovery-code";
const NEW_PASSWORD: &str = "copper-lantern-orchard-17";

on_both_backends!(
    enrolment_is_pending_until_confirmed_and_then_login_asks_for_a_code,
    a_code_is_accepted_once_and_a_wrong_code_never,
    an_mfa_token_dies_after_five_wrong_codes,
    a_recovery_code_works_once_and_a_new_set_voids_the_old,
    removing_totp_needs_the_password_and_a_code,
    a_password_change_needs_the_code_and_a_reset_does_not_skip_it,
    of_two_logins_with_one_code_exactly_one_wins,
    concurrent_wrong_codes_cannot_exceed_an_mfa_tokens_five,
    a_session_from_before_totp_refreshes_nothing,
    wrong_codes_fill_a_window_a_reset_does_not_clear,
    an_mfa_token_dies_when_the_password_changes,
);

async fn a_session_from_before_totp_refreshes_nothing<S: AppStore>(app: TestApp<S>) {
    app.register("emma", GOOD_PASSWORD).await;
    let (_, before) = app.tokens("emma", GOOD_PASSWORD).await;
    let bearer = app.token("emma", GOOD_PASSWORD).await;
    let reply = app
        .mfa(
            Method::POST,
            "/me/mfa/totp",
            &bearer,
            json!({"password": GOOD_PASSWORD}),
        )
        .await;
    let secret = base32_decode(reply.body["secret"].as_str().unwrap());
    let code = totp::code_at(&secret, app.now());
    let reply = app
        .mfa(
            Method::POST,
            "/me/mfa/totp/confirm",
            &bearer,
            json!({"code": code}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
    // The single-factor session's refresh token is refused from now on.
    let reply = app.refresh(&before).await;
    assert_eq!(
        (reply.status, &reply.body["error"]),
        (400, &json!("invalid_grant"))
    );
}

async fn wrong_codes_fill_a_window_a_reset_does_not_clear<S: AppStore>(mut app: TestApp<S>) {
    app.set_throttle_limits(shared::throttle::ThrottleLimits {
        account_per_hour: 3,
        source_per_hour: 100,
    });
    let (secret, _) = app.with_totp("emma").await;
    for _ in 0..3 {
        let token = app.mfa_token("emma").await;
        let reply = app.second_step(OTP, &token, "otp", "000000").await;
        assert_eq!(reply.body["error"], "invalid_grant");
    }
    // The password grant waits now (the account's window saw the wrong codes)...
    app.login("emma", GOOD_PASSWORD).await.problem(429);
    // ...and once that window is cleared (as a reset by mail clears it), the second factor's own
    // window still refuses codes: a reset buys no fresh guesses.
    let emma = app.store.credentials("emma").await.unwrap().unwrap();
    let subject = shared::throttle::subject(Some(&emma), "emma");
    app.store
        .reset_counter(&shared::throttle::account_key(&subject))
        .await
        .unwrap();
    let token = app.mfa_token("emma").await;
    let code = app.next_code(&secret);
    let reply = app.second_step(OTP, &token, "otp", &code).await;
    assert_eq!(reply.body["error"], "invalid_grant", "{}", reply.raw);
}

async fn an_mfa_token_dies_when_the_password_changes<S: AppStore>(app: TestApp<S>) {
    let (secret, _) = app.with_totp("emma").await;
    let stale = app.mfa_token("emma").await;
    let bearer = app.token_after_mfa("emma", &secret).await;
    let code = app.next_code(&secret);
    let reply = app
        .account(
            Method::PUT,
            "/me/password",
            Some(&bearer),
            json!({"current_password": GOOD_PASSWORD, "new_password": NEW_PASSWORD, "code": code}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
    let (access, _) = reply.token_pair();
    assert_eq!(claims(&access)["amr"], json!(["pwd", "otp", "mfa"]));
    let code = app.next_code(&secret);
    let reply = app.second_step(OTP, &stale, "otp", &code).await;
    assert_eq!(reply.body["error"], "invalid_grant", "{}", reply.raw);
}

/// Twelve wrong codes at once on one token: at most five are checked (each claims a place
/// first), the token is dead, and exactly that many count in the account's hourly window.
async fn concurrent_wrong_codes_cannot_exceed_an_mfa_tokens_five<S: AppStore>(app: TestApp<S>) {
    let (secret, _) = app.with_totp("emma").await;
    let token = app.mfa_token("emma").await;
    let app = std::sync::Arc::new(app);
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(12));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..12 {
        let (app, token, barrier) = (app.clone(), token.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            let wrong = format!("{:06}", 100_000 + i);
            app.second_step(OTP, &token, "otp", &wrong).await.status
        });
    }
    assert!(tasks.join_all().await.iter().all(|s| *s == 400));
    let code = app.next_code(&secret);
    let reply = app.second_step(OTP, &token, "otp", &code).await;
    assert_eq!(reply.body["error"], "invalid_grant", "dead");
    let emma = app.store.credentials("emma").await.unwrap().unwrap();
    let subject = shared::throttle::subject(Some(&emma), "emma");
    let window = app
        .store
        .counters(&[&shared::throttle::account_key(&subject)], app.now())
        .await
        .unwrap()[0]
        .expect("the account's window");
    assert!(window.failures <= 5, "{window:?}");
}

fn claims(access_token: &str) -> Value {
    use base64::Engine;
    let payload = access_token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn form(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap()
}

impl<S: AppStore> TestApp<S> {
    async fn mfa(&self, method: Method, path: &str, bearer: &str, body: Value) -> Reply {
        self.account(method, path, Some(bearer), body).await
    }

    /// Enrols and confirms TOTP for `name`: the secret and the recovery codes.
    pub(crate) async fn with_totp(&self, name: &str) -> (Vec<u8>, Vec<String>) {
        self.register(name, GOOD_PASSWORD).await;
        let bearer = self.token(name, GOOD_PASSWORD).await;
        let reply = self
            .mfa(
                Method::POST,
                "/me/mfa/totp",
                &bearer,
                json!({"password": GOOD_PASSWORD}),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.raw);
        let secret = base32_decode(reply.body["secret"].as_str().unwrap());
        let code = totp::code_at(&secret, self.now());
        let reply = self
            .mfa(
                Method::POST,
                "/me/mfa/totp/confirm",
                &bearer,
                json!({"code": code}),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.raw);
        let codes = reply.body["recovery_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        (secret, codes)
    }

    /// The password grant's `mfa_token` (asserting the 403 it comes with).
    async fn mfa_token(&self, name: &str) -> String {
        let reply = self.login(name, GOOD_PASSWORD).await;
        reply.problem(403);
        assert_eq!(reply.body["error"], "mfa_required");
        assert!(reply.body.get("access_token").is_none());
        reply.body["mfa_token"].as_str().unwrap().to_string()
    }

    async fn second_step(&self, grant: &str, token: &str, field: &str, code: &str) -> Reply {
        self.login_form(&form(&[
            ("grant_type", grant),
            ("mfa_token", token),
            (field, code),
        ]))
        .await
    }

    /// The code of the step after the last one used (`advance`s the clock a step).
    pub(crate) fn next_code(&self, secret: &[u8]) -> String {
        self.advance(totp::STEP_SECONDS);
        totp::code_at(secret, self.now())
    }
}

fn base32_decode(text: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits = 0u64;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.trim_end_matches('=').bytes() {
        let value = alphabet.iter().position(|a| *a == c).expect("base32") as u64;
        bits = (bits << 5) | value;
        count += 5;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

async fn enrolment_is_pending_until_confirmed_and_then_login_asks_for_a_code<S: AppStore>(
    app: TestApp<S>,
) {
    app.register("emma", GOOD_PASSWORD).await;
    let bearer = app.token("emma", GOOD_PASSWORD).await;
    let enrol = |password: &str| {
        app.mfa(
            Method::POST,
            "/me/mfa/totp",
            &bearer,
            json!({"password": password}),
        )
    };
    enrol("wrong-password-123").await.problem(403);
    let reply = enrol(GOOD_PASSWORD).await;
    let secret_text = reply.body["secret"].as_str().unwrap().to_string();
    assert_eq!(secret_text.len(), 32, "160 bits of base32");
    let uri = reply.body["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/Sign%20in:emma?"), "{uri}");
    assert!(uri.contains(&format!("secret={secret_text}")));
    assert!(reply.body["qr_svg"].as_str().unwrap().contains("<svg"));
    // Pending: login is unchanged; enrolling again replaces the secret.
    assert_eq!(app.login("emma", GOOD_PASSWORD).await.status, 200);
    let again = enrol(GOOD_PASSWORD).await;
    assert_ne!(again.body["secret"], reply.body["secret"]);
    let secret = base32_decode(again.body["secret"].as_str().unwrap());
    let old = base32_decode(&secret_text);
    let confirm = |code: String| {
        app.mfa(
            Method::POST,
            "/me/mfa/totp/confirm",
            &bearer,
            json!({"code": code}),
        )
    };
    let wrong = confirm(totp::code_at(&old, app.now())).await;
    wrong.problem(422);
    assert_eq!(wrong.body["field"], "code");
    let reply = confirm(totp::code_at(&secret, app.now())).await;
    let codes = reply.body["recovery_codes"].as_array().unwrap();
    assert_eq!(codes.len(), 10, "{}", reply.raw);
    enrol(GOOD_PASSWORD).await.problem(409);
    // On: a right password is 403 mfa_required, a wrong one the usual 401.
    app.login("emma", "wrong-password-123").await.problem(401);
    let token = app.mfa_token("emma").await;
    // 256 random bits, then the account it continues; a changed account part names nothing.
    let (random, account) = token.split_once('.').unwrap();
    assert_eq!(random.len(), 43);
    assert!(!account.is_empty());
    let forged = format!("{random}.{}", account.replace(|c: char| c != 'A', "A"));
    app.second_step(OTP, &forged, "otp", "000000")
        .await
        .problem(400);
    let code = app.next_code(&secret);
    let reply = app.second_step(OTP, &token, "otp", &code).await;
    let (access, refresh) = reply.token_pair();
    assert_eq!(claims(&access)["amr"], json!(["pwd", "otp", "mfa"]));
    // A refresh of that session keeps its amr; a password-only login has ["pwd"].
    let refreshed = app.refresh(&refresh).await.token_pair().0;
    assert_eq!(claims(&refreshed)["amr"], json!(["pwd", "otp", "mfa"]));
    app.register("noah", GOOD_PASSWORD).await;
    let plain = app.token("noah", GOOD_PASSWORD).await;
    assert_eq!(claims(&plain)["amr"], json!(["pwd"]));
    assert_eq!(app.me(&access).await.body["username"], "emma");
}

async fn a_code_is_accepted_once_and_a_wrong_code_never<S: AppStore>(app: TestApp<S>) {
    let (secret, _) = app.with_totp("emma").await;
    let code = app.next_code(&secret);
    let first = app.mfa_token("emma").await;
    assert_eq!(app.second_step(OTP, &first, "otp", &code).await.status, 200);
    // The same code (its step was accepted) on a fresh token; the spent token.
    let second = app.mfa_token("emma").await;
    let reply = app.second_step(OTP, &second, "otp", &code).await;
    assert_eq!(
        (reply.status, &reply.body["error"]),
        (400, &json!("invalid_grant"))
    );
    let next = app.next_code(&secret);
    let reply = app.second_step(OTP, &first, "otp", &next).await;
    assert_eq!(reply.body["error"], "invalid_grant", "spent");
    // An earlier step than the last accepted, a late code, and junk are refused too.
    let earlier = totp::code_at(&secret, app.now() - 2 * totp::STEP_SECONDS);
    for bad in [earlier.as_str(), "000000", "12345", "abcdef"] {
        let reply = app.second_step(OTP, &second, "otp", bad).await;
        assert_eq!(reply.body["error"], "invalid_grant", "{bad}");
    }
    // That made five wrong codes for `second`: it is dead; a fresh token takes the next code.
    let reply = app.second_step(OTP, &second, "otp", &next).await;
    assert_eq!(reply.body["error"], "invalid_grant", "dead");
    let third = app.mfa_token("emma").await;
    assert_eq!(app.second_step(OTP, &third, "otp", &next).await.status, 200);
    app.login_form(&form(&[
        ("grant_type", OTP),
        ("mfa_token", "nope"),
        ("otp", &next),
    ]))
    .await
    .problem(400);
}

async fn an_mfa_token_dies_after_five_wrong_codes<S: AppStore>(app: TestApp<S>) {
    let (secret, _) = app.with_totp("emma").await;
    let token = app.mfa_token("emma").await;
    for _ in 0..5 {
        let reply = app.second_step(OTP, &token, "otp", "000000").await;
        assert_eq!(reply.body["error"], "invalid_grant");
    }
    let code = app.next_code(&secret);
    let reply = app.second_step(OTP, &token, "otp", &code).await;
    assert_eq!(reply.body["error"], "invalid_grant", "dead");
    // Another token works, with the same (unused) code.
    let fresh = app.mfa_token("emma").await;
    assert_eq!(app.second_step(OTP, &fresh, "otp", &code).await.status, 200);
    // And it lived five minutes at most.
    let late = app.mfa_token("emma").await;
    app.advance(301);
    let code = totp::code_at(&secret, app.now());
    assert_eq!(
        app.second_step(OTP, &late, "otp", &code).await.body["error"],
        "invalid_grant"
    );
}

async fn a_recovery_code_works_once_and_a_new_set_voids_the_old<S: AppStore>(app: TestApp<S>) {
    let (secret, codes) = app.with_totp("emma").await;
    let token = app.mfa_token("emma").await;
    let reply = app
        .second_step(RECOVERY, &token, "recovery_code", &codes[0])
        .await;
    let access = reply.token_pair().0;
    assert_eq!(claims(&access)["amr"], json!(["pwd", "otp", "mfa"]));
    let again = app.mfa_token("emma").await;
    let reply = app
        .second_step(RECOVERY, &again, "recovery_code", &codes[0])
        .await;
    assert_eq!(reply.body["error"], "invalid_grant", "used once");
    // Case and separators do not matter.
    let loose = codes[1].to_uppercase().replace('-', " ");
    assert_eq!(
        app.second_step(RECOVERY, &again, "recovery_code", &loose)
            .await
            .status,
        200
    );
    // A new set (password and a code) voids the old one.
    let bearer = app.token_after_mfa("emma", &secret).await;
    let code = app.next_code(&secret);
    let reply = app
        .mfa(
            Method::POST,
            "/me/mfa/recovery-codes",
            &bearer,
            json!({"password": GOOD_PASSWORD, "code": code}),
        )
        .await;
    let fresh: Vec<String> = reply.body["recovery_codes"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", reply.raw))
        .iter()
        .map(|c| c.as_str().unwrap().into())
        .collect();
    assert_eq!(fresh.len(), 10);
    let token = app.mfa_token("emma").await;
    let reply = app
        .second_step(RECOVERY, &token, "recovery_code", &codes[2])
        .await;
    assert_eq!(reply.body["error"], "invalid_grant", "void");
    let token = app.mfa_token("emma").await;
    assert_eq!(
        app.second_step(RECOVERY, &token, "recovery_code", &fresh[0])
            .await
            .status,
        200
    );
}

impl<S: AppStore> TestApp<S> {
    /// An access token of a two-factor login of `name`.
    async fn token_after_mfa(&self, name: &str, secret: &[u8]) -> String {
        let token = self.mfa_token(name).await;
        let code = self.next_code(secret);
        self.second_step(OTP, &token, "otp", &code)
            .await
            .token_pair()
            .0
    }
}

async fn removing_totp_needs_the_password_and_a_code<S: AppStore>(app: TestApp<S>) {
    let (secret, codes) = app.with_totp("emma").await;
    let bearer = app.token_after_mfa("emma", &secret).await;
    let remove = |password: &str, code: &str| {
        app.mfa(
            Method::DELETE,
            "/me/mfa/totp",
            &bearer,
            json!({"password": password, "code": code}),
        )
    };
    remove("wrong-password-123", &codes[0]).await.problem(403);
    let wrong = remove(GOOD_PASSWORD, "000000").await;
    wrong.problem(422);
    assert_eq!(wrong.body["field"], "code");
    assert!(app.mfa_token("emma").await.contains('.'), "still on");
    // A recovery code will do.
    assert_eq!(remove(GOOD_PASSWORD, &codes[0]).await.status, 204);
    assert_eq!(app.login("emma", GOOD_PASSWORD).await.status, 200, "off");
    remove(GOOD_PASSWORD, &codes[1]).await.problem(409);
}

async fn a_password_change_needs_the_code_and_a_reset_does_not_skip_it<S: AppStore>(
    app: TestApp<S>,
) {
    let (secret, _) = app.with_totp("emma").await;
    let bearer = app.token_after_mfa("emma", &secret).await;
    let change = |body: Value| app.account(Method::PUT, "/me/password", Some(&bearer), body);
    let reply =
        change(json!({"current_password": GOOD_PASSWORD, "new_password": NEW_PASSWORD})).await;
    reply.problem(422);
    assert_eq!(reply.body["field"], "code");
    let reply = change(json!({
        "current_password": GOOD_PASSWORD, "new_password": NEW_PASSWORD, "code": "000000"
    }))
    .await;
    reply.problem(422);
    app.login("emma", NEW_PASSWORD).await.problem(401);
    let code = app.next_code(&secret);
    let reply = change(json!({
        "current_password": GOOD_PASSWORD, "new_password": NEW_PASSWORD, "code": code
    }))
    .await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
    // The new password still asks for the code.
    let reply = app.login("emma", NEW_PASSWORD).await;
    assert_eq!(reply.body["error"], "mfa_required");
}

async fn of_two_logins_with_one_code_exactly_one_wins<S: AppStore>(app: TestApp<S>) {
    let (secret, _) = app.with_totp("emma").await;
    let tokens = [app.mfa_token("emma").await, app.mfa_token("emma").await];
    let code = app.next_code(&secret);
    let app = std::sync::Arc::new(app);
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let mut tasks = tokio::task::JoinSet::new();
    for token in tokens {
        let (app, code, barrier) = (app.clone(), code.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            app.second_step(OTP, &token, "otp", &code).await.status
        });
    }
    let mut statuses = tasks.join_all().await;
    statuses.sort();
    assert_eq!(statuses, [200, 400]);
}

/// The `mfa-otp` grant on the deployed path: at most three DynamoDB requests and one signature
/// (the TOTP secret opens with the file data key here; with `AUTH_DATA_KEY=kms:` add a KMS
/// `Decrypt`).
#[cfg(feature = "moto")]
#[tokio::test]
async fn the_mfa_otp_grant_makes_at_most_three_dynamodb_requests() {
    use crate::helpers::{Calls, DynamoApp};
    let key = format!("rt{}", uuid::Uuid::new_v4().simple());
    let app = DynamoApp::deployed(&key).await;
    let (secret, _) = app.with_totp("emma").await;
    let (token, calls) = Calls::of(&key, app.mfa_token("emma")).await;
    assert!(calls.dynamodb() <= 4, "the password step: {calls:?}");
    assert_eq!(
        calls.kms_total(),
        0,
        "the password step signs nothing: {calls:?}"
    );
    let code = app.next_code(&secret);
    let (reply, calls) = Calls::of(&key, app.second_step(OTP, &token, "otp", &code)).await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
    assert!(calls.dynamodb() <= 3, "{calls:?}");
    assert_eq!((calls.kms("Sign"), calls.kms_total()), (1, 1), "{calls:?}");
}
