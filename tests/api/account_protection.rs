//! The account-protection rules that touch storage, each run against SQLite and against
//! DynamoDB on moto (the rules without storage are in `register.rs`, `login.rs`, `me.rs` and the
//! unit tests of `shared`).

use crate::helpers::{AppStore, Backend, GOOD_PASSWORD, TestApp};

on_both_backends!(
    a_made_up_name_is_throttled_as_a_real_one,
    a_throttled_address_does_not_stop_the_owner_from_another,
    the_account_wide_ceiling_stops_every_address,
    spraying_from_one_address_meets_its_ceiling,
    an_address_schedule_is_forgotten_an_hour_after_its_last_failure,
    a_stored_mixed_script_name_still_logs_in,
    usernames_are_unique_without_regard_to_case,
    after_five_failures_each_attempt_waits_and_a_success_resets,
    the_wait_is_capped_at_fifteen_minutes,
    a_tutorial_hash_logs_in_and_is_upgraded,
    a_token_of_a_deleted_user_is_refused,
    an_old_token_does_not_reach_a_new_account_of_the_same_name,
    a_lower_cost_hash_is_upgraded_to_the_configured_cost,
    correct_logins_never_fill_either_ceiling,
    a_name_too_long_once_normalised_is_an_unknown_name,
    control_characters_in_a_login_name_find_no_one,
    a_new_account_under_a_deleted_name_starts_with_no_failures,
);

/// Issue 17, point 10: the throttle counters of a deleted account do not pass to a new account
/// under its name.
async fn a_new_account_under_a_deleted_name_starts_with_no_failures<S: AppStore>(app: TestApp<S>) {
    app.register("reborn", GOOD_PASSWORD).await;
    for _ in 0..7 {
        app.login_from(ATTACKER, "reborn", "wrong-guess-123").await;
    }
    app.login_from(ATTACKER, "reborn", GOOD_PASSWORD)
        .await
        .problem(429);
    let token = app.token("reborn", GOOD_PASSWORD).await;
    assert_eq!(app.delete_me(&token, GOOD_PASSWORD).await.status, 204);
    app.register("reborn", GOOD_PASSWORD).await;
    assert_eq!(app.stored("reborn").await.1, 0);
    let reply = app.login_from(ATTACKER, "reborn", GOOD_PASSWORD).await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
}

/// Issue 17, point 1: with ceilings of 3, correct logins (one account six times, six accounts
/// from one address) all pass; wrong ones still stop at the ceiling.
async fn correct_logins_never_fill_either_ceiling<S: AppStore>(mut app: TestApp<S>) {
    app.set_throttle_limits(shared::throttle::ThrottleLimits {
        account_per_hour: 3,
        source_per_hour: 3,
    });
    const OFFICE: &str = "198.51.100.200";
    for i in 0..6 {
        app.register(&format!("clerk{i}"), GOOD_PASSWORD).await;
    }
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(app.login_from(OFFICE, "clerk0", GOOD_PASSWORD).await.status);
    }
    for i in 0..6 {
        let name = format!("clerk{i}");
        statuses.push(app.login_from(OFFICE, &name, GOOD_PASSWORD).await.status);
    }
    assert_eq!(statuses, [200; 12]);
    // Re-authentication gives its place back too.
    let mut token = app.token("clerk1", GOOD_PASSWORD).await;
    let passwords = [GOOD_PASSWORD, "another-fine-passphrase-77"];
    for i in 0..4 {
        let reply = app
            .change_password(&token, passwords[i % 2], passwords[(i + 1) % 2])
            .await;
        assert_eq!(reply.status, 200, "{}", reply.raw);
        token = reply.token_pair().0;
    }
    // Wrong guesses from as many addresses: the account's ceiling stops the fourth, and then the
    // owner waits too.
    let mut wrong = Vec::new();
    for i in 0..4 {
        let ip = format!("203.0.113.{}", 10 + i);
        wrong.push(
            app.login_from(&ip, "clerk2", "wrong-guess-123")
                .await
                .status,
        );
    }
    assert_eq!(wrong, [401, 401, 401, 429]);
    app.login_from(OFFICE, "clerk2", GOOD_PASSWORD)
        .await
        .problem(429);
    // And one address guessing at several accounts meets its own ceiling.
    let mut sprayed = Vec::new();
    for i in 3..6 {
        let name = format!("clerk{i}");
        sprayed.push(
            app.login_from("192.0.2.222", &name, "wrong-guess-123")
                .await
                .status,
        );
    }
    sprayed.push(
        app.login_from("192.0.2.222", "clerk0", GOOD_PASSWORD)
            .await
            .status,
    );
    assert_eq!(sprayed, [401, 401, 401, 429]);
}

/// Issue 17, point 3: a name that NFKC expands past any store's key limit is refused at
/// registration (422) and answered at login exactly as an unknown name (never a 500).
async fn a_name_too_long_once_normalised_is_an_unknown_name<S: AppStore>(app: TestApp<S>) {
    let huge = "\u{FDFA}".repeat(256);
    let reply = app.try_register(&huge, GOOD_PASSWORD).await;
    reply.problem(422);
    assert_eq!(reply.body["field"], "username");
    let oversized = app.login(&huge, GOOD_PASSWORD).await;
    let unknown = app.login("nobody-at-all", GOOD_PASSWORD).await;
    oversized.problem(401);
    assert_eq!(oversized.body, unknown.body);
    assert_eq!(
        oversized.header("www-authenticate"),
        unknown.header("www-authenticate")
    );
}

/// Issue 17, point 4: control and invisible characters in a login name find no account, even
/// one stored under exactly that key (where the SQLite migration parks colliding tutorial rows).
async fn control_characters_in_a_login_name_find_no_one<S: AppStore>(app: TestApp<S>) {
    let hash = bcrypt::hash(GOOD_PASSWORD, 4).unwrap();
    for name in ["\u{0}legacy:alice", "bob\u{200B}", "carol\u{7}"] {
        app.insert_user(name, &hash, None).await;
        let reply = app.login(name, GOOD_PASSWORD).await;
        reply.problem(401);
        assert_eq!(
            reply.body,
            app.login("nobody-at-all", GOOD_PASSWORD).await.body
        );
    }
    // Names shaped like the store's own session and counter keys, and the empty name (no key
    // DynamoDB takes), are unknown names too.
    for name in ["#session abc", "#throttle source 10.0.0.1", ""] {
        app.login(name, GOOD_PASSWORD).await.problem(401);
    }
}

/// Registration refuses names that mix scripts; a tutorial row that already has one keeps working.
async fn a_stored_mixed_script_name_still_logs_in<S: AppStore>(app: TestApp<S>) {
    let name = "p\u{430}ypal";
    let reply = app.try_register(name, GOOD_PASSWORD).await;
    reply.problem(422);
    assert_eq!(reply.body["field"], "username");
    let hash = bcrypt::hash(GOOD_PASSWORD, 4).unwrap();
    app.insert_user(name, &hash, None).await;
    let token = app.token(name, GOOD_PASSWORD).await;
    assert_eq!(app.me(&token).await.body["username"], name);
}

async fn usernames_are_unique_without_regard_to_case<S: AppStore>(app: TestApp<S>) {
    assert_eq!(app.register("Emma", GOOD_PASSWORD).await.status, 201);
    for again in ["Emma", "EMMA", "emma", "Ｅｍｍａ"] {
        let reply = app.try_register(again, "another-fine-passphrase-9").await;
        assert_eq!(reply.problem(409), "Username already registered");
    }
    // The first registration is intact: its password still works and its name keeps its case.
    let token = app.token("emma", GOOD_PASSWORD).await;
    assert_eq!(app.me(&token).await.body["username"], "Emma");
}

async fn after_five_failures_each_attempt_waits_and_a_success_resets<S: AppStore>(app: TestApp<S>) {
    app.register("target", GOOD_PASSWORD).await;
    for _ in 0..5 {
        app.login("target", "wrong-guess-123").await.problem(401);
    }
    // Locked for 2^0 = 1 s: even the right password is refused, and refusals are not counted.
    for _ in 0..3 {
        let reply = app.login("target", GOOD_PASSWORD).await;
        reply.problem(429);
        assert_eq!(reply.header("retry-after"), "1");
    }
    assert_eq!(app.stored("target").await.1, 5);
    app.advance(1);
    app.login("target", "wrong-guess-123").await.problem(401);
    let reply = app.login("target", GOOD_PASSWORD).await;
    reply.problem(429);
    assert_eq!(reply.header("retry-after"), "2");
    app.advance(2);
    assert_eq!(app.login("target", GOOD_PASSWORD).await.status, 200);
    assert_eq!(app.stored("target").await.1, 0);
    // After the reset, a failure is an ordinary 401 again.
    app.login("target", "wrong-guess-123").await.problem(401);
    assert_eq!(app.login("target", GOOD_PASSWORD).await.status, 200);
}

async fn the_wait_is_capped_at_fifteen_minutes<S: AppStore>(app: TestApp<S>) {
    app.register("patient", GOOD_PASSWORD).await;
    // A count far past the cap, as a long attack from this address would leave it.
    let source = shared::throttle::UNKNOWN_SOURCE;
    app.set_pair_failures("patient", source, 40, app.now())
        .await;
    let reply = app.login("patient", GOOD_PASSWORD).await;
    reply.problem(429);
    let wait: u64 = reply.header("retry-after").parse().unwrap();
    assert_eq!(wait, 900);
    app.advance(900);
    assert_eq!(app.login("patient", GOOD_PASSWORD).await.status, 200);
}

async fn a_tutorial_hash_logs_in_and_is_upgraded<S: AppStore>(app: TestApp<S>) {
    // A row as the FastAPI tutorial writes it: plain bcrypt of the raw password.
    let legacy = bcrypt::hash("johns-old-secret", 4).unwrap();
    app.insert_user("johndoe", &legacy, Some("John Doe")).await;
    let token = app.token("johndoe", "johns-old-secret").await;
    assert_eq!(app.me(&token).await.body["full_name"], "John Doe");
    let (upgraded, _) = app.stored("johndoe").await;
    assert!(
        upgraded.starts_with("$bcrypt-sha256$v=2,t=2b,r=4$"),
        "{upgraded}"
    );
    // The upgraded hash keeps working for the same password, and only for it.
    assert_eq!(app.login("johndoe", "johns-old-secret").await.status, 200);
    app.login("johndoe", "johns-old-secreT").await.problem(401);
}

async fn a_token_of_a_deleted_user_is_refused<S: AppStore>(app: TestApp<S>) {
    app.register("leaver", GOOD_PASSWORD).await;
    let token = app.token("leaver", GOOD_PASSWORD).await;
    assert_eq!(app.me(&token).await.status, 200);
    app.delete_all_users().await;
    let reply = app.me(&token).await;
    reply.problem(401);
    assert_eq!(
        reply.header("www-authenticate"),
        r#"Bearer error="invalid_token""#
    );
}

async fn an_old_token_does_not_reach_a_new_account_of_the_same_name<S: AppStore>(app: TestApp<S>) {
    app.register("reused", GOOD_PASSWORD).await;
    let old = app.token("reused", GOOD_PASSWORD).await;
    app.delete_all_users().await;
    assert_eq!(
        app.register("reused", "a-different-long-passphrase")
            .await
            .status,
        201
    );
    app.me(&old).await.problem(401);
    let new = app.token("reused", "a-different-long-passphrase").await;
    assert_eq!(app.me(&new).await.status, 200);
}

/// A hash made at cost 4 (the app's) logs in at cost 5 and is upgraded.
async fn a_lower_cost_hash_is_upgraded_to_the_configured_cost<S: Backend>(low: TestApp<S>) {
    low.register("frugal", GOOD_PASSWORD).await;
    let (hash, _) = low.stored("frugal").await;
    let high = S::app(5).await;
    high.insert_user("frugal", &hash, None).await;
    assert_eq!(high.login("frugal", GOOD_PASSWORD).await.status, 200);
    let (upgraded, _) = high.stored("frugal").await;
    assert!(
        upgraded.starts_with("$bcrypt-sha256$v=2,t=2b,r=5$"),
        "{upgraded}"
    );
}

const ATTACKER: &str = "198.51.100.66";
const OWNER: &str = "203.0.113.5";

async fn a_throttled_address_does_not_stop_the_owner_from_another<S: AppStore>(app: TestApp<S>) {
    app.register("victim", GOOD_PASSWORD).await;
    for _ in 0..5 {
        app.login_from(ATTACKER, "victim", "wrong-guess-123")
            .await
            .problem(401);
    }
    // The attacker's address waits, even with the right password...
    let reply = app.login_from(ATTACKER, "victim", GOOD_PASSWORD).await;
    reply.problem(429);
    assert_eq!(reply.header("retry-after"), "1");
    // ...the owner, from another address, does not.
    assert_eq!(
        app.login_from(OWNER, "victim", GOOD_PASSWORD).await.status,
        200
    );
    assert_eq!(
        app.login_from(OWNER, "victim", GOOD_PASSWORD).await.status,
        200
    );
    // The owner's success reset the owner's schedule, not the attacker's.
    app.login_from(ATTACKER, "victim", GOOD_PASSWORD)
        .await
        .problem(429);
}

async fn the_account_wide_ceiling_stops_every_address<S: AppStore>(app: TestApp<S>) {
    app.register("popular", GOOD_PASSWORD).await;
    // A distributed attack: one guess from each of many addresses, none of them throttled alone.
    let ceiling = shared::policy::ACCOUNT_FAILURE_CEILING;
    for i in 0..ceiling {
        let ip = format!("198.51.{}.{}", 100 + i / 200, i % 200 + 1);
        app.login_from(&ip, "popular", "wrong-guess-123")
            .await
            .problem(401);
    }
    assert_eq!(app.stored("popular").await.1, u64::from(ceiling));
    // Now every address waits, the owner's included.
    let reply = app.login_from(OWNER, "popular", GOOD_PASSWORD).await;
    reply.problem(429);
    assert_eq!(reply.header("retry-after"), "3600");
    app.advance(1800);
    app.login_from(OWNER, "popular", GOOD_PASSWORD)
        .await
        .problem(429);
    // The window ends by itself.
    app.advance(1800);
    assert_eq!(
        app.login_from(OWNER, "popular", GOOD_PASSWORD).await.status,
        200
    );
    assert_eq!(
        app.stored("popular").await.1,
        0,
        "a success resets the account"
    );
}

async fn spraying_from_one_address_meets_its_ceiling<S: AppStore>(app: TestApp<S>) {
    let ceiling = shared::policy::SOURCE_FAILURE_CEILING;
    // One guess at each of many accounts (half of them real, half made up: the same price).
    for i in 0..ceiling / 2 {
        app.register(&format!("user-{i}"), GOOD_PASSWORD).await;
    }
    for i in 0..ceiling {
        let name = format!("user-{i}");
        app.login_from(ATTACKER, &name, "wrong-guess-123")
            .await
            .problem(401);
    }
    for name in ["user-1", "user-77", "nobody-at-all"] {
        let reply = app.login_from(ATTACKER, name, GOOD_PASSWORD).await;
        reply.problem(429);
        assert_eq!(reply.header("retry-after"), "3600", "{name}");
    }
    // Other addresses are untouched; the sprayer's window ends by itself.
    assert_eq!(
        app.login_from(OWNER, "user-1", GOOD_PASSWORD).await.status,
        200
    );
    app.advance(3600);
    assert_eq!(
        app.login_from(ATTACKER, "user-1", GOOD_PASSWORD)
            .await
            .status,
        200
    );
}

async fn an_address_schedule_is_forgotten_an_hour_after_its_last_failure<S: AppStore>(
    app: TestApp<S>,
) {
    app.register("forgotten", GOOD_PASSWORD).await;
    for _ in 0..5 {
        app.login_from(ATTACKER, "forgotten", "wrong-guess-123")
            .await
            .problem(401);
    }
    app.login_from(ATTACKER, "forgotten", "wrong-guess-123")
        .await
        .problem(429);
    // An hour after the last failure the counter has expired: five free attempts again.
    app.advance(shared::policy::PAIR_MEMORY_SECONDS);
    for _ in 0..5 {
        app.login_from(ATTACKER, "forgotten", "wrong-guess-123")
            .await
            .problem(401);
    }
    app.login_from(ATTACKER, "forgotten", GOOD_PASSWORD)
        .await
        .problem(429);
}

async fn a_made_up_name_is_throttled_as_a_real_one<S: AppStore>(app: TestApp<S>) {
    app.register("real-one", GOOD_PASSWORD).await;
    let mut answers = Vec::new();
    for name in ["real-one", "made-up-one"] {
        for _ in 0..5 {
            app.login_from(ATTACKER, name, "wrong-guess-123")
                .await
                .problem(401);
        }
        let reply = app.login_from(ATTACKER, name, GOOD_PASSWORD).await;
        reply.problem(429);
        answers.push((reply.header("retry-after").to_string(), reply.raw));
    }
    // The sixth guess at a name that exists and at one that does not: the same answer.
    assert_eq!(answers[0], answers[1]);
}
