//! The behaviour every user store backend must show. Each function takes a fresh, empty store;
//! the integration tests (`tests/store_contract.rs`) run the whole suite against SQLite and
//! against DynamoDB on moto. Compiled only for tests (`--features testing`).

use super::{Counter, CredentialStore, NewUser, Profile, SessionStore, StoreError, Swap};
use crate::oauth::{Client, ClientSecret, Registration};
use crate::policy;
use crate::session::{self, Grant, SessionError, SessionLimits};
use crate::throttle::{self, Attempt};

pub use crate::state::stores::Full as FullStore;

/// A user whose key derives from `username`, with a unique id.
pub fn new_user(id_hint: &str, username: &str) -> NewUser {
    NewUser {
        id: format!("{id_hint}-{}", uuid::Uuid::new_v4().simple()),
        username: username.into(),
        username_key: policy::username_key(username),
        password_hash: format!("$2b$04$hash-of-{id_hint}"),
        full_name: Some(format!("Full {username}")),
        email: None,
    }
}

/// Create, then read back by username key and by id.
pub async fn create_and_read(store: &impl FullStore) {
    let user = new_user("emma", "Emma");
    store.create(&user).await.unwrap();
    let creds = store
        .credentials("emma")
        .await
        .unwrap()
        .expect("found by key");
    assert_eq!(creds.id, user.id);
    assert_eq!(
        (creds.username.as_str(), creds.username_key.as_str()),
        ("Emma", "emma")
    );
    assert_eq!(creds.password_hash, user.password_hash);
    assert_eq!((creds.failed_logins, creds.last_failed_at), (0, None));
    assert_eq!(creds.session_epoch, 0);
    let found = store.profile(&user.id, "Emma", "no-session").await.unwrap();
    assert_eq!(
        found.map(|f| (f.profile, f.session)),
        Some((
            Profile {
                username: "Emma".into(),
                full_name: Some("Full Emma".into()),
                email: None,
                email_verified: false,
            },
            None
        ))
    );
    assert!(store.credentials("nobody").await.unwrap().is_none());
    assert!(
        store
            .profile("no-such-id", "Emma", "s")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .profile("no-such-id", "nobody", "s")
            .await
            .unwrap()
            .is_none()
    );
    let anonymous = NewUser {
        full_name: None,
        email: None,
        ..new_user("anon", "anon")
    };
    store.create(&anonymous).await.unwrap();
    let found = store
        .profile(&anonymous.id, "anon", "s")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.profile.full_name, None);
}

/// A taken key is refused whatever the case, and the first account is kept.
pub async fn duplicates_are_refused(store: &impl FullStore) {
    let first = new_user("a", "Emma");
    store.create(&first).await.unwrap();
    for again in [
        new_user("b", "Emma"),
        new_user("c", "EMMA"),
        new_user("d", "emma"),
    ] {
        assert!(matches!(
            store.create(&again).await,
            Err(StoreError::Duplicate)
        ));
    }
    let kept = store.credentials("emma").await.unwrap().unwrap();
    assert_eq!(kept.id, first.id, "first kept");
}

/// Failures count up on the account, a made-up name's count changes nothing, and a success
/// resets.
pub async fn failures_count_and_reset(store: &impl FullStore) {
    let user = new_user("f", "fumbler");
    store.create(&user).await.unwrap();
    for n in 1..=3u32 {
        let creds = store.credentials("fumbler").await.unwrap().unwrap();
        assert_eq!(creds.failed_logins, n - 1);
        store
            .count_failure("fumbler", &user.id, 1_000 + u64::from(n))
            .await
            .unwrap();
        // Another account's id, or a name that is no account: nothing changes, nothing appears.
        store
            .count_failure("fumbler", "someone-else", 5_000)
            .await
            .unwrap();
        store.count_failure("nobody", "", 5_000).await.unwrap();
    }
    assert!(store.credentials("nobody").await.unwrap().is_none());
    let creds = store.credentials("fumbler").await.unwrap().unwrap();
    assert_eq!(
        (creds.failed_logins, creds.last_failed_at),
        (3, Some(1_003))
    );
    store.record_success(&creds, None).await.unwrap();
    let creds = store.credentials("fumbler").await.unwrap().unwrap();
    assert_eq!((creds.failed_logins, creds.last_failed_at), (0, None));
    assert_eq!(creds.password_hash, user.password_hash, "no rehash asked");
}

/// An hourly window takes failures up to its ceiling and refuses the next, gives places back
/// only within the same window, and starts again once over.
pub async fn windows_add_up_to_their_ceiling(store: &impl FullStore) {
    assert_eq!(
        store.add_in_window("w", 3, 100, 1_000).await.unwrap(),
        Some(1_000)
    );
    assert_eq!(
        store.add_in_window("w", 3, 100, 1_010).await.unwrap(),
        Some(1_000)
    );
    assert_eq!(
        store.add_in_window("w", 3, 100, 1_020).await.unwrap(),
        Some(1_000)
    );
    assert_eq!(
        store.add_in_window("w", 3, 100, 1_030).await.unwrap(),
        None,
        "full"
    );
    let read = |t| async move { store.counters(&["w"], t).await.unwrap()[0] };
    assert_eq!(
        read(1_030).await.map(|c| (c.failures, c.since)),
        Some((3, 1_000))
    );
    // Given back: room for one more; a give-back of another window changes nothing.
    store.give_back("w", 1_000).await.unwrap();
    store.give_back("w", 999).await.unwrap();
    assert_eq!(read(1_031).await.map(|c| c.failures), Some(2));
    assert_eq!(
        store.add_in_window("w", 3, 100, 1_040).await.unwrap(),
        Some(1_000)
    );
    assert_eq!(store.add_in_window("w", 3, 100, 1_050).await.unwrap(), None);
    // Over: a new window begins with this failure.
    assert_eq!(
        store.add_in_window("w", 3, 100, 1_100).await.unwrap(),
        Some(1_100)
    );
    assert_eq!(
        read(1_100).await.map(|c| (c.failures, c.since)),
        Some((1, 1_100))
    );
    // Never below zero.
    store.give_back("w", 1_100).await.unwrap();
    store.give_back("w", 1_100).await.unwrap();
    assert_eq!(read(1_101).await.map(|c| c.failures), Some(0));
}

/// A rehash replaces the hash only if it is still the one read.
pub async fn rehash_is_conditional(store: &impl FullStore) {
    let user = new_user("r", "rehashed");
    store.create(&user).await.unwrap();
    let before = store.credentials("rehashed").await.unwrap().unwrap();
    store
        .record_success(&before, Some((&user.password_hash, "$new$1")))
        .await
        .unwrap();
    let after = store.credentials("rehashed").await.unwrap().unwrap();
    assert_eq!(after.password_hash, "$new$1");
    // A stale read (the hash changed since) must not overwrite the newer hash.
    store
        .record_success(&before, Some((&user.password_hash, "$stale$")))
        .await
        .unwrap();
    let last = store.credentials("rehashed").await.unwrap().unwrap();
    assert_eq!(last.password_hash, "$new$1");
}

/// A new account under an old name is not the old account: it has a new id, and the old id
/// finds nothing under the name.
pub async fn a_new_account_under_an_old_name_has_a_new_id(store: &impl FullStore) {
    let old = new_user("old", "Recycled");
    store.create(&old).await.unwrap();
    let old_creds = store.credentials("recycled").await.unwrap().unwrap();
    assert!(store.delete_account(&old_creds).await.unwrap());
    let new = new_user("new", "Recycled");
    store.create(&new).await.unwrap();
    let found = store.credentials("recycled").await.unwrap().unwrap();
    assert_eq!(found.id, new.id);
    assert_ne!(found.id, old.id);
    assert!(
        store
            .profile(&old.id, "Recycled", "s")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .profile(&new.id, "Recycled", "s")
            .await
            .unwrap()
            .is_some()
    );
}

/// Input that looks like SQL or an expression is stored and matched as plain data.
pub async fn hostile_input_is_data(store: &impl FullStore) {
    let name = "robert');DROP TABLE users;--";
    let user = new_user("sql", name);
    store.create(&user).await.unwrap();
    let creds = store
        .credentials(&policy::username_key(name))
        .await
        .unwrap()
        .unwrap();
    let found = store.profile(&creds.id, name, "' OR '1'='1").await.unwrap();
    assert_eq!(found.unwrap().profile.username, name);
    assert!(store.credentials("' OR '1'='1").await.unwrap().is_none());
    assert!(
        store
            .profile("' OR '1'='1", name, "s")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.session("' OR '1'='1").await.unwrap().is_none());
}

/// Of many stores (separate connections or clients, as separate Lambda instances have)
/// registering one name at once, exactly one succeeds. Each store runs on its own thread.
pub fn concurrent_registrations_have_one_winner<S: FullStore + 'static>(stores: Vec<S>) {
    let wins: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = stores
            .into_iter()
            .enumerate()
            .map(|(i, store)| {
                scope.spawn(move || {
                    let name = if i % 2 == 0 { "Racer" } else { "RACER" };
                    let user = new_user(&format!("racer-{i}"), name);
                    match on_thread(|| store.create(&user)) {
                        Ok(()) => 1,
                        Err(StoreError::Duplicate) => 0,
                        Err(e) => panic!("unexpected {e}"),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(wins, 1);
}

const LIMITS_DEFAULT: throttle::ThrottleLimits = throttle::ThrottleLimits {
    account_per_hour: policy::ACCOUNT_FAILURE_CEILING,
    source_per_hour: policy::SOURCE_FAILURE_CEILING,
};

/// Login attempts made at once through many stores (separate Lambda instances) on one account
/// cannot outrun the throttle: at most the free attempts are let through to a password check,
/// every other one is told to wait. Each store runs on its own thread.
pub fn concurrent_attempts_cannot_outrun_the_throttle<S: FullStore + 'static>(stores: Vec<S>) {
    let user = new_user("c", "contended");
    on_thread(|| stores[0].create(&user)).unwrap();
    let outcomes: Vec<Attempt> = std::thread::scope(|scope| {
        let handles: Vec<_> = stores
            .iter()
            .map(|store| {
                scope.spawn(move || {
                    on_thread(|| {
                        throttle::claim(store, "contended", "192.0.2.7", &LIMITS_DEFAULT, 2_000)
                    })
                    .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let checked = outcomes
        .iter()
        .filter(|o| matches!(o, Attempt::Check(..)))
        .count();
    let waiting = outcomes
        .iter()
        .filter(|o| matches!(o, Attempt::Wait(_)))
        .count();
    assert_eq!(checked, policy::FREE_FAILURES as usize, "{outcomes:?}");
    assert_eq!(checked + waiting, stores.len(), "{outcomes:?}");
    let stored = on_thread(|| stores[0].credentials("contended"))
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.failed_logins,
        policy::FREE_FAILURES,
        "the account counted each"
    );
    let subject = throttle::subject(Some(&stored), "contended");
    let pair = throttle::pair_key(&subject, "192.0.2.7");
    let keys = [pair.as_str()];
    let counted = on_thread(|| stores[0].counters(&keys, 2_000)).unwrap();
    assert_eq!(counted[0].map(|c| c.failures), Some(policy::FREE_FAILURES));
}

/// Small ceilings, so a handful of attempts meets them.
const LIMITS_SMALL: throttle::ThrottleLimits = throttle::ThrottleLimits {
    account_per_hour: 3,
    source_per_hour: 3,
};

/// One login attempt as the password grant makes it: claimed, then given back when `correct`.
/// Whether it reached a password check.
pub async fn attempt(
    store: &impl FullStore,
    name: &str,
    source: &str,
    correct: bool,
    limits: &throttle::ThrottleLimits,
    now: u64,
) -> bool {
    match throttle::claim(store, &policy::username_key(name), source, limits, now)
        .await
        .unwrap()
    {
        Attempt::Check(user, claim) => {
            if correct {
                // As the password grant settles it: with the session it starts.
                let limits = crate::session::SessionLimits::default();
                let (record, grant) = crate::session::prepare_password(&user, &limits, false, now);
                let follow = super::Follow::Session(Box::new(record));
                throttle::succeeded(store, &user, &claim, None, &follow, now)
                    .await
                    .unwrap();
                assert!(store.session(&grant.sid).await.unwrap().is_some());
            }
            true
        }
        Attempt::UnknownUser => true,
        Attempt::Wait(_) | Attempt::NotTheAccount => false,
    }
}

/// Only failures fill the hourly ceilings: correct logins, one account many times or many
/// accounts from one address, never do; wrong ones still stop at them.
pub async fn correct_logins_never_fill_the_ceilings(store: &impl FullStore) {
    for i in 0..6 {
        store
            .create(&new_user("office", &format!("office{i}")))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    for t in 0..6 {
        seen.push(
            attempt(
                store,
                "office0",
                "198.51.100.1",
                true,
                &LIMITS_SMALL,
                1_000 + t,
            )
            .await,
        );
    }
    for i in 0..6 {
        let name = format!("office{i}");
        seen.push(attempt(store, &name, "198.51.100.1", true, &LIMITS_SMALL, 1_010).await);
    }
    assert!(
        seen.iter().all(|s| *s),
        "every correct login checked: {seen:?}"
    );
    // Wrong ones, each from its own address: the account's ceiling stops the fourth.
    let mut wrong = Vec::new();
    for i in 0..4 {
        let source = format!("203.0.113.{i}");
        wrong.push(attempt(store, "office1", &source, false, &LIMITS_SMALL, 1_020).await);
    }
    assert_eq!(wrong, [true, true, true, false]);
    // And one address's wrong guesses at other accounts: its own ceiling stops the fourth.
    let mut sprayed = Vec::new();
    for i in 2..6 {
        let name = format!("office{i}");
        sprayed.push(attempt(store, &name, "192.0.2.99", false, &LIMITS_SMALL, 1_030).await);
    }
    assert_eq!(sprayed, [true, true, true, false]);
    // A correct login of an account that met no ceiling still passes from a fresh address.
    assert!(attempt(store, "office0", "198.51.100.2", true, &LIMITS_SMALL, 1_040).await);
}

/// A re-authentication that finds another account under the name (the bearer's was deleted and
/// the name registered again), or none, claims and writes nothing.
pub async fn a_reauthentication_of_another_account_claims_nothing(store: &impl FullStore) {
    let user = new_user("second", "reused");
    store.create(&user).await.unwrap();
    for expected in ["the-deleted-account", ""] {
        let attempt = throttle::claim_for(
            store,
            "reused",
            Some(expected),
            "192.0.2.5",
            &LIMITS_SMALL,
            1_000,
        )
        .await
        .unwrap();
        assert!(matches!(attempt, Attempt::NotTheAccount), "{attempt:?}");
    }
    let gone = throttle::claim_for(
        store,
        "nobody",
        Some("x"),
        "192.0.2.5",
        &LIMITS_SMALL,
        1_000,
    );
    assert!(matches!(gone.await.unwrap(), Attempt::NotTheAccount));
    let creds = store.credentials("reused").await.unwrap().unwrap();
    assert_eq!(creds.failed_logins, 0);
    let subject = throttle::subject(Some(&creds), "reused");
    let keys = [
        throttle::account_key(&subject),
        throttle::source_key("192.0.2.5"),
        throttle::pair_key(&subject, "192.0.2.5"),
    ];
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    assert_eq!(
        store.counters(&keys, 1_000).await.unwrap(),
        [None, None, None]
    );
}

/// The account window of `name` preset to one below the default ceiling, as a long distributed
/// attack leaves it.
pub async fn preset_account_window(store: &impl FullStore, name: &str, now: u64) {
    let user = new_user("ceiling", name);
    store.create(&user).await.unwrap();
    let creds = store
        .credentials(&user.username_key)
        .await
        .unwrap()
        .unwrap();
    let key = throttle::account_key(&throttle::subject(Some(&creds), &user.username_key));
    for _ in 1..policy::ACCOUNT_FAILURE_CEILING {
        store
            .add_in_window(
                &key,
                policy::ACCOUNT_FAILURE_CEILING,
                policy::WINDOW_SECONDS,
                now,
            )
            .await
            .unwrap()
            .expect("below the ceiling");
    }
}

/// Wrong guess number `i` at `name`, from an address of its own.
pub async fn wrong_guess(store: &impl FullStore, name: &str, i: usize, now: u64) -> bool {
    let source = format!("10.0.{}.{}", i / 256, i % 256);
    attempt(store, name, &source, false, &LIMITS_DEFAULT, now).await
}

/// A correct login of `name` from `source` under the burst ceilings.
pub async fn correct_login(store: &impl FullStore, name: &str, source: &str, now: u64) -> bool {
    attempt(store, name, source, true, &LIMITS_SMALL_BURST, now).await
}

/// Ceilings a burst of [`BURST`] correct logins stays below.
pub const LIMITS_SMALL_BURST: throttle::ThrottleLimits = throttle::ThrottleLimits {
    account_per_hour: BURST as u32 + 1,
    source_per_hour: BURST as u32 + 1,
};

/// Correct logins sent at once in the burst cases.
pub const BURST: usize = 8;

/// Creates the accounts of the burst cases: `burst0` … and `shared`.
pub async fn create_burst_accounts(store: &impl FullStore) {
    for i in 0..BURST {
        store
            .create(&new_user("burst", &format!("burst{i}")))
            .await
            .unwrap();
    }
    store.create(&new_user("shared", "shared")).await.unwrap();
}

/// Counters are replaced only by a compare-and-set, and are gone once expired.
pub async fn counters_swap_atomically_and_expire(store: &impl FullStore) {
    let c = |failures, since| Counter { failures, since };
    assert_eq!(
        store.counters(&["k", "other"], 100).await.unwrap(),
        [None, None]
    );
    assert!(
        store
            .swap_counter("k", Swap::new(None, c(1, 100), 200, 100))
            .await
            .unwrap()
    );
    assert!(
        !store
            .swap_counter("k", Swap::new(None, c(1, 100), 200, 100))
            .await
            .unwrap(),
        "exists"
    );
    assert!(
        !store
            .swap_counter("k", Swap::new(Some(c(7, 100)), c(8, 100), 200, 100))
            .await
            .unwrap()
    );
    assert!(
        store
            .swap_counter("k", Swap::new(Some(c(1, 100)), c(2, 150), 300, 150))
            .await
            .unwrap()
    );
    assert_eq!(
        store.counters(&["other", "k"], 299).await.unwrap(),
        [None, Some(c(2, 150))]
    );
    // Expired: refused at once, and a fresh one may take its place.
    assert_eq!(store.counters(&["k"], 300).await.unwrap(), [None]);
    assert!(
        !store
            .swap_counter("k", Swap::new(Some(c(2, 150)), c(3, 300), 400, 300))
            .await
            .unwrap()
    );
    assert!(
        store
            .swap_counter("k", Swap::new(None, c(1, 300), 400, 300))
            .await
            .unwrap()
    );
    store.reset_counter("k").await.unwrap();
    assert_eq!(store.counters(&["k"], 301).await.unwrap(), [None]);
    // A counter's key is data, never a username.
    assert!(store.credentials("#throttle k").await.unwrap().is_none());
}

/// Limits for the session cases: short, so the clock passed in can cross them.
/// The server-held seal key the session cases use.
pub const SEAL: [u8; 32] = [0x5e; 32];

pub const LIMITS: SessionLimits = SessionLimits {
    idle: 100,
    max: 250,
    reuse: 10,
};

/// An account with a started session at `t`.
async fn logged_in(store: &impl FullStore, name: &str, t: u64) -> Grant {
    let user = new_user(name, name);
    if store
        .credentials(&user.username_key)
        .await
        .unwrap()
        .is_none()
    {
        store.create(&user).await.unwrap();
    }
    let creds = store
        .credentials(&user.username_key)
        .await
        .unwrap()
        .unwrap();
    session::start(store, &creds, &LIMITS, t).await.unwrap()
}

/// Whether an access token of `grant`'s session would pass `/me` at `t`.
async fn is_open(store: &impl FullStore, grant: &Grant, t: u64) -> bool {
    store
        .profile(&grant.user_id, &grant.username, &grant.sid)
        .await
        .unwrap()
        .is_some_and(|found| session::is_open(&found, &grant.user_id, t))
}

fn refused(result: Result<Grant, SessionError>) {
    assert!(
        matches!(result, Err(SessionError::Invalid)),
        "expected invalid_grant, got {result:?}"
    );
}

/// A login's session is open; its refresh token rotates; the store keeps no presentable token.
pub async fn sessions_rotate(store: &impl FullStore) {
    let first = logged_in(store, "rotor", 1_000).await;
    assert!(is_open(store, &first, 1_000).await);
    let stored = store.session(&first.sid).await.unwrap().unwrap();
    assert_eq!(stored.generation, 1);
    let stored_text = format!(
        "{} {} {}",
        stored.current_hash, stored.family_key, stored.username_key
    );
    assert!(!stored_text.contains(&first.refresh_token));

    let second = session::refresh(store, &first.refresh_token, None, &LIMITS, &SEAL, 1_050)
        .await
        .unwrap();
    assert_eq!(
        (second.sid.as_str(), second.user_id.as_str()),
        (first.sid.as_str(), first.user_id.as_str())
    );
    assert_ne!(second.refresh_token, first.refresh_token);
    let stored = store.session(&first.sid).await.unwrap().unwrap();
    assert_eq!(stored.generation, 2);
    let previous = stored.previous.as_ref().unwrap();
    for field in [&stored.current_hash, &previous.hash, &previous.sealed_next] {
        assert!(!field.contains(&second.refresh_token) && !field.contains(&first.refresh_token));
    }
    // The idle limit moved with the refresh: still open at 1_050 + 99.
    assert!(is_open(store, &second, 1_149).await);
    let third = session::refresh(store, &second.refresh_token, None, &LIMITS, &SEAL, 1_100)
        .await
        .unwrap();
    assert_eq!(
        store.session(&first.sid).await.unwrap().unwrap().generation,
        3
    );
    assert!(is_open(store, &third, 1_100).await);
}

/// The previous token within the reuse interval gets the same successor and changes nothing;
/// after it, or two generations back, the whole session ends (and only that session).
pub async fn reuse_ends_the_session(store: &impl FullStore) {
    let other = logged_in(store, "reuser", 1_000).await;
    let first = logged_in(store, "reuser", 1_000).await;
    let second = session::refresh(store, &first.refresh_token, None, &LIMITS, &SEAL, 1_001)
        .await
        .unwrap();
    // A retry within the interval: same successor, no new generation.
    let retry = session::refresh(store, &first.refresh_token, None, &LIMITS, &SEAL, 1_011)
        .await
        .unwrap();
    assert_eq!(retry.refresh_token, second.refresh_token);
    assert_eq!(
        store.session(&first.sid).await.unwrap().unwrap().generation,
        2
    );
    // Later than the interval: reuse. The session ends, its newest token fails too.
    refused(session::refresh(store, &first.refresh_token, None, &LIMITS, &SEAL, 1_012).await);
    assert!(store.session(&first.sid).await.unwrap().is_none());
    refused(session::refresh(store, &second.refresh_token, None, &LIMITS, &SEAL, 1_012).await);
    assert!(!is_open(store, &second, 1_012).await);
    // The account's other session is untouched.
    assert!(is_open(store, &other, 1_012).await);

    // Two generations back, even at once, is reuse.
    let a = logged_in(store, "reuser", 2_000).await;
    let b = session::refresh(store, &a.refresh_token, None, &LIMITS, &SEAL, 2_000)
        .await
        .unwrap();
    let c = session::refresh(store, &b.refresh_token, None, &LIMITS, &SEAL, 2_000)
        .await
        .unwrap();
    refused(session::refresh(store, &a.refresh_token, None, &LIMITS, &SEAL, 2_000).await);
    refused(session::refresh(store, &c.refresh_token, None, &LIMITS, &SEAL, 2_000).await);
    assert!(!is_open(store, &c, 2_000).await);
}

/// Guessed, mangled or foreign tokens are refused and change nothing.
pub async fn bad_refresh_tokens_change_nothing(store: &impl FullStore) {
    let grant = logged_in(store, "guarded", 1_000).await;
    let before = store.session(&grant.sid).await.unwrap().unwrap();
    let mut mangled: Vec<char> = grant.refresh_token.chars().collect();
    let last = mangled.len() - 5;
    mangled[last] = if mangled[last] == 'A' { 'B' } else { 'A' };
    let mangled: String = mangled.into_iter().collect();
    // Same session id, an older generation, but a tag we cannot have made.
    let forged_old = {
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut bytes = engine.decode(&grant.refresh_token).unwrap();
        bytes[16..20].copy_from_slice(&0u32.to_be_bytes());
        engine.encode(bytes)
    };
    for bad in [
        "",
        "not-a-token",
        &mangled,
        &forged_old,
        &"A".repeat(grant.refresh_token.len()),
        "' OR '1'='1",
    ] {
        refused(session::refresh(store, bad, None, &LIMITS, &SEAL, 1_001).await);
        session::end_by_token(store, bad, None).await.unwrap();
    }
    assert_eq!(store.session(&grant.sid).await.unwrap().unwrap(), before);
    assert!(is_open(store, &grant, 1_001).await);
    // The genuine token still works.
    session::refresh(store, &grant.refresh_token, None, &LIMITS, &SEAL, 1_002)
        .await
        .unwrap();
}

/// Sessions end at their idle and absolute limits, and are refused from then on.
pub async fn sessions_expire(store: &impl FullStore) {
    let idle = logged_in(store, "sleeper", 1_000).await;
    assert!(is_open(store, &idle, 1_099).await);
    assert!(!is_open(store, &idle, 1_100).await);
    refused(session::refresh(store, &idle.refresh_token, None, &LIMITS, &SEAL, 1_100).await);

    // Refreshed every 90 s, it still ends 250 s after the login.
    let mut grant = logged_in(store, "marathon", 1_000).await;
    for t in [1_090, 1_180] {
        grant = session::refresh(store, &grant.refresh_token, None, &LIMITS, &SEAL, t)
            .await
            .unwrap();
    }
    assert!(is_open(store, &grant, 1_249).await);
    assert!(!is_open(store, &grant, 1_250).await);
    refused(session::refresh(store, &grant.refresh_token, None, &LIMITS, &SEAL, 1_250).await);
}

/// Logging out by token ends that session; a global logout ends every session of the account
/// in one write, sessions started after it work, and other accounts are untouched.
pub async fn logouts_end_sessions(store: &impl FullStore) {
    let one = logged_in(store, "leaver", 1_000).await;
    let two = logged_in(store, "leaver", 1_000).await;
    let stranger = logged_in(store, "stranger", 1_000).await;
    session::end_by_token(store, &one.refresh_token, None)
        .await
        .unwrap();
    assert!(!is_open(store, &one, 1_001).await);
    refused(session::refresh(store, &one.refresh_token, None, &LIMITS, &SEAL, 1_001).await);
    assert!(is_open(store, &two, 1_001).await);

    let three = logged_in(store, "leaver", 1_000).await;
    let key = policy::username_key("leaver");
    let epoch = store.end_all_sessions(&two.user_id, &key).await.unwrap();
    assert_eq!(epoch, Some(1));
    for ended in [&two, &three] {
        assert!(!is_open(store, ended, 1_001).await);
        refused(session::refresh(store, &ended.refresh_token, None, &LIMITS, &SEAL, 1_001).await);
    }
    assert!(is_open(store, &stranger, 1_001).await);
    let after = logged_in(store, "leaver", 1_001).await;
    assert!(is_open(store, &after, 1_001).await);
    session::refresh(store, &after.refresh_token, None, &LIMITS, &SEAL, 1_002)
        .await
        .unwrap();
    // An account that is gone: nothing to end.
    assert_eq!(
        store.end_all_sessions("no-such-id", &key).await.unwrap(),
        None
    );
}

/// A password change replaces the hash only if it is still the one read, resets the failure
/// count and ends every session in the same write.
pub async fn password_changes_are_conditional_and_end_sessions(store: &impl FullStore) {
    let grant = logged_in(store, "changer", 1_000).await;
    let before = store.credentials("changer").await.unwrap().unwrap();
    store
        .count_failure("changer", &before.id, 1_000)
        .await
        .unwrap();
    let before = store.credentials("changer").await.unwrap().unwrap();
    let epoch = store
        .change_password(&before, "$new-hash$")
        .await
        .unwrap()
        .expect("the hash was still the one read");
    let after = store.credentials("changer").await.unwrap().unwrap();
    assert_eq!(after.password_hash, "$new-hash$");
    assert_eq!((after.failed_logins, after.last_failed_at), (0, None));
    assert_eq!(after.session_epoch, epoch);
    assert!(!is_open(store, &grant, 1_001).await);
    refused(session::refresh(store, &grant.refresh_token, None, &LIMITS, &SEAL, 1_001).await);
    // A stale read loses: the newer hash stays.
    assert_eq!(
        store.change_password(&before, "$stale$").await.unwrap(),
        None
    );
    let kept = store.credentials("changer").await.unwrap().unwrap();
    assert_eq!(kept.password_hash, "$new-hash$");
    // A session started under the new epoch is open.
    let fresh = session::start(store, &kept, &LIMITS, 1_002).await.unwrap();
    assert!(is_open(store, &fresh, 1_002).await);
}

/// Deleting an account removes it and ends its sessions; a stale delete of a replaced account
/// deletes nothing.
pub async fn deleted_accounts_are_gone_with_their_sessions(store: &impl FullStore) {
    let grant = logged_in(store, "leaving", 1_000).await;
    let user = store.credentials("leaving").await.unwrap().unwrap();
    assert!(store.delete_account(&user).await.unwrap());
    assert!(store.credentials("leaving").await.unwrap().is_none());
    assert!(!is_open(store, &grant, 1_001).await);
    refused(session::refresh(store, &grant.refresh_token, None, &LIMITS, &SEAL, 1_001).await);
    assert!(!store.delete_account(&user).await.unwrap(), "already gone");
    // A new account under the name is not deleted by the old account's stale read.
    let again = new_user("again", "leaving");
    store.create(&again).await.unwrap();
    assert!(!store.delete_account(&user).await.unwrap());
    assert_eq!(
        store.credentials("leaving").await.unwrap().unwrap().id,
        again.id
    );
    refused(session::refresh(store, &grant.refresh_token, None, &LIMITS, &SEAL, 1_001).await);
}

/// Of many password changes made at once from one read, exactly one wins.
pub fn concurrent_password_changes_have_one_winner<S: FullStore + 'static>(stores: Vec<S>) {
    let user = new_user("p", "raced");
    on_thread(|| stores[0].create(&user)).unwrap();
    let read = on_thread(|| stores[0].credentials("raced"))
        .unwrap()
        .unwrap();
    let wins: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, store)| {
                let read = read.clone();
                scope.spawn(move || {
                    let hash = format!("$hash-{i}$");
                    on_thread(|| store.change_password(&read, &hash))
                        .unwrap()
                        .map(|_| hash)
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(wins.len(), 1, "{wins:?}");
    let stored = on_thread(|| stores[0].credentials("raced"))
        .unwrap()
        .unwrap();
    assert_eq!(stored.password_hash, wins[0]);
    assert_eq!(stored.session_epoch, 1);
}

/// N refreshes of one token at once through separate stores all succeed with the same successor,
/// make exactly one new generation and revoke nothing. Each store runs on its own thread.
pub fn concurrent_refreshes_make_one_generation<S: FullStore + 'static>(stores: Vec<S>) {
    let grant = on_thread(|| logged_in(&stores[0], "tabs", 1_000));
    let results: Vec<Result<Grant, SessionError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = stores
            .iter()
            .map(|store| {
                let token = grant.refresh_token.clone();
                scope.spawn(move || {
                    on_thread(|| async move {
                        session::refresh(store, &token, None, &LIMITS, &SEAL, 1_001).await
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    check_one_generation(&stores[0], &grant, results);
}

/// The same as [`concurrent_refreshes_make_one_generation`], as tasks on one runtime.
pub async fn concurrent_refresh_tasks_make_one_generation<S: FullStore + Clone + 'static>(
    stores: Vec<S>,
) {
    let first = stores[0].clone();
    let grant = logged_in(&first, "tasks", 1_000).await;
    let mut tasks = tokio::task::JoinSet::new();
    for store in stores {
        let token = grant.refresh_token.clone();
        tasks.spawn(
            async move { session::refresh(&store, &token, None, &LIMITS, &SEAL, 1_001).await },
        );
    }
    let results = tasks.join_all().await;
    check_one_generation_async(&first, &grant, results).await;
}

fn check_one_generation<S: FullStore>(
    store: &S,
    grant: &Grant,
    results: Vec<Result<Grant, SessionError>>,
) {
    on_thread(|| check_one_generation_async(store, grant, results));
}

async fn check_one_generation_async<S: FullStore>(
    store: &S,
    grant: &Grant,
    results: Vec<Result<Grant, SessionError>>,
) {
    let tokens: Vec<String> = results
        .into_iter()
        .map(|r| r.expect("every concurrent refresh succeeds").refresh_token)
        .collect();
    assert!(
        tokens.iter().all(|t| *t == tokens[0]),
        "all answered with one successor"
    );
    let stored = store.session(&grant.sid).await.unwrap().unwrap();
    assert_eq!(stored.generation, 2, "exactly one new generation");
    assert!(is_open(store, grant, 1_001).await, "nothing revoked");
    session::refresh(store, &tokens[0], None, &LIMITS, &SEAL, 1_002)
        .await
        .expect("the successor works");
}

fn on_thread<F: std::future::Future>(f: impl FnOnce() -> F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f())
}

/// What lands between a refresh's read of its session and its write, in [`Interleaved`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Landing {
    /// `PUT /me/password`.
    PasswordChange,
    /// Global logout.
    LogoutEverywhere,
    /// `DELETE /me`.
    Deletion,
}

/// A store that, the first time a refresh writes its session, first lets `landing` happen to
/// the session's account: a refresh paused between its read and its write while another request
/// lands.
pub struct Interleaved<'a, S> {
    inner: &'a S,
    landing: std::sync::Mutex<Option<Landing>>,
}

impl<'a, S: FullStore> Interleaved<'a, S> {
    async fn land(&self, record: &super::SessionRecord) {
        let landing = self.landing.lock().unwrap().take();
        let Some(landing) = landing else { return };
        let user = self
            .inner
            .credentials(&record.username_key)
            .await
            .unwrap()
            .unwrap();
        match landing {
            Landing::PasswordChange => {
                self.inner
                    .change_password(&user, "$changed$")
                    .await
                    .unwrap()
                    .unwrap();
            }
            Landing::LogoutEverywhere => {
                self.inner
                    .end_all_sessions(&user.id, &user.username_key)
                    .await
                    .unwrap()
                    .unwrap();
            }
            Landing::Deletion => assert!(self.inner.delete_account(&user).await.unwrap()),
        }
    }
}

impl<S: FullStore> CredentialStore for Interleaved<'_, S> {
    async fn credentials(
        &self,
        username_key: &str,
    ) -> Result<Option<super::Credentials>, StoreError> {
        self.inner.credentials(username_key).await
    }
    async fn count_failure(&self, key: &str, id: &str, at: u64) -> Result<(), StoreError> {
        self.inner.count_failure(key, id, at).await
    }
    async fn record_success(
        &self,
        user: &super::Credentials,
        rehash: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        self.inner.record_success(user, rehash).await
    }
}

impl<S: FullStore> SessionStore for Interleaved<'_, S> {
    async fn create_session(
        &self,
        session: &super::SessionRecord,
        now: u64,
    ) -> Result<(), StoreError> {
        self.inner.create_session(session, now).await
    }
    async fn session(&self, sid: &str) -> Result<Option<super::SessionRecord>, StoreError> {
        self.inner.session(sid).await
    }
    async fn rotate_session(
        &self,
        from: &super::SessionRecord,
        to: &super::SessionRecord,
    ) -> Result<bool, StoreError> {
        self.land(from).await;
        self.inner.rotate_session(from, to).await
    }
    async fn end_session(&self, sid: &str) -> Result<(), StoreError> {
        self.inner.end_session(sid).await
    }
    async fn start_code_session(
        &self,
        code_hash: &str,
        session: &super::SessionRecord,
        browser_sid: &str,
        now: u64,
    ) -> Result<super::CodeSession, StoreError> {
        self.inner
            .start_code_session(code_hash, session, browser_sid, now)
            .await
    }
    async fn end_all_sessions(
        &self,
        user_id: &str,
        username_key: &str,
    ) -> Result<Option<u64>, StoreError> {
        self.inner.end_all_sessions(user_id, username_key).await
    }
}

/// A refresh, or a retry within the reuse interval, that a password change, a global logout or
/// a deletion overtakes between its read and its write mints nothing.
pub async fn an_ended_session_mints_no_more_tokens(store: &impl FullStore) {
    for (i, landing) in [
        Landing::PasswordChange,
        Landing::LogoutEverywhere,
        Landing::Deletion,
    ]
    .into_iter()
    .enumerate()
    {
        for retry in [false, true] {
            let name = format!("overtaken{i}{}", u8::from(retry));
            let grant = logged_in(store, &name, 1_000).await;
            if retry {
                // Rotate once, so the login's token is the previous generation: a retry.
                session::refresh(store, &grant.refresh_token, None, &LIMITS, &SEAL, 1_001)
                    .await
                    .unwrap();
            }
            let presented = &grant.refresh_token;
            let paused = Interleaved {
                inner: store,
                landing: std::sync::Mutex::new(Some(landing)),
            };
            let result = session::refresh(&paused, presented, None, &LIMITS, &SEAL, 1_002).await;
            assert!(
                matches!(result, Err(SessionError::Invalid)),
                "{landing:?} (retry: {retry}) let a refresh through: {result:?}"
            );
            assert!(paused.landing.lock().unwrap().is_none(), "it landed");
        }
    }
}

/// A ticket is taken once: the record comes back to the first take and never again; it is
/// stored under its kind (a code's hash is no reset link), refused once expired, and a live one
/// cannot be put twice.
pub async fn tickets_are_taken_once(store: &impl FullStore) {
    use super::TicketKind;
    let code = TicketKind::AuthorizationCode;
    store
        .put_ticket(code, "h1", "{\"a\":1}", 2_000, 1_000)
        .await
        .unwrap();
    assert!(matches!(
        store.put_ticket(code, "h1", "other", 2_000, 1_000).await,
        Err(StoreError::Duplicate)
    ));
    assert_eq!(
        store
            .take_ticket(TicketKind::PasswordReset, "h1", 1_001)
            .await
            .unwrap(),
        None,
        "another kind"
    );
    assert_eq!(
        store
            .take_ticket(code, "h1", 1_001)
            .await
            .unwrap()
            .as_deref(),
        Some("{\"a\":1}")
    );
    assert_eq!(
        store.take_ticket(code, "h1", 1_002).await.unwrap(),
        None,
        "spent"
    );
    assert_eq!(store.take_ticket(code, "never", 1_002).await.unwrap(), None);
    // Expired: gone for good, and its hash free again.
    store
        .put_ticket(code, "h2", "r", 1_100, 1_000)
        .await
        .unwrap();
    assert_eq!(store.take_ticket(code, "h2", 1_100).await.unwrap(), None);
    store
        .put_ticket(code, "h3", "r", 1_100, 1_000)
        .await
        .unwrap();
    store
        .put_ticket(code, "h3", "again", 1_300, 1_200)
        .await
        .unwrap();
    assert_eq!(
        store
            .take_ticket(code, "h3", 1_201)
            .await
            .unwrap()
            .as_deref(),
        Some("again")
    );
    // A ticket's key is data, never a username.
    assert!(
        store
            .credentials("#ticket code h1")
            .await
            .unwrap()
            .is_none()
    );
}

/// The ticket every racer of [`take_ticket_once`] tries to take.
pub const RACED_TICKET: &str = "raced-ticket-hash";

/// Stores the ticket the racers take.
pub async fn put_raced_ticket(store: &impl FullStore) {
    use super::TicketKind;
    store
        .put_ticket(
            TicketKind::AuthorizationCode,
            RACED_TICKET,
            "won",
            9_000,
            1_000,
        )
        .await
        .unwrap();
}

/// One racer's take: whether it got the record.
pub async fn take_ticket_once(store: &impl FullStore) -> bool {
    use super::TicketKind;
    store
        .take_ticket(TicketKind::AuthorizationCode, RACED_TICKET, 1_001)
        .await
        .unwrap()
        .is_some_and(|r| r == "won")
}

/// A client registered as `id` by the domain's own rules, with its secret if `confidential`.
fn registered_client(id: &str, confidential: bool) -> (Client, Option<ClientSecret>) {
    Client::register(
        Registration {
            client_id: id.into(),
            redirect_uris: vec![
                format!("https://{}.example/cb", id.to_ascii_lowercase()),
                "http://127.0.0.1:8080/callback".into(),
            ],
            post_logout_redirect_uris: if confidential {
                vec!["https://app.example/bye".into()]
            } else {
                Vec::new()
            },
            confidential,
        },
        1_700_000_000,
    )
    .unwrap()
}

/// A client is read back as it was put (its URI lists in order, an empty one included, and a
/// confidential client's secret hash, which still verifies the secret), listed by id, and
/// removed once; a string that is no client id finds nothing.
pub async fn clients_are_put_read_listed_and_removed(store: &impl FullStore) {
    assert_eq!(store.clients().await.unwrap(), []);
    let (server, secret) = registered_client("server", true);
    let (spa, _) = registered_client("spa", false);
    let (cli, _) = registered_client("cli.tool-2_x", false);
    for client in [&spa, &server, &cli] {
        store.put_client(client).await.unwrap();
    }
    let read = store.client("server").await.unwrap().expect("stored");
    assert_eq!(read, server);
    assert!(read.secret_hash.is_some());
    assert!(
        read.verify_secret(secret.unwrap().expose()),
        "the hash round-trips"
    );
    let public = store.client("spa").await.unwrap().unwrap();
    assert_eq!(public, spa);
    assert_eq!(
        (public.secret_hash, public.post_logout_redirect_uris),
        (None, vec![])
    );
    let ids: Vec<String> = (store.clients().await.unwrap().into_iter())
        .map(|c| c.client_id)
        .collect();
    assert_eq!(ids, ["cli.tool-2_x", "server", "spa"], "ordered by id");
    assert_eq!(store.client("nobody").await.unwrap(), None);
    let too_long = "x".repeat(3_000);
    for not_an_id in ["", "has space", "#client server", too_long.as_str()] {
        assert_eq!(
            store.client(not_an_id).await.unwrap(),
            None,
            "{not_an_id:?}"
        );
        assert!(
            !store.remove_client(not_an_id).await.unwrap(),
            "{not_an_id:?}"
        );
    }
    assert!(store.remove_client("server").await.unwrap());
    assert!(
        !store.remove_client("server").await.unwrap(),
        "gone already"
    );
    assert_eq!(store.client("server").await.unwrap(), None);
    assert_eq!(store.clients().await.unwrap(), [cli, spa]);
    // Its id is free again.
    store.put_client(&server).await.unwrap();
}

/// A taken client id is refused and the stored client kept; ids are exact, so one that differs
/// by case is another client.
pub async fn a_taken_client_id_is_refused(store: &impl FullStore) {
    let (first, _) = registered_client("web", false);
    store.put_client(&first).await.unwrap();
    let (again, _) = registered_client("web", true);
    assert!(matches!(
        store.put_client(&again).await,
        Err(StoreError::Duplicate)
    ));
    assert_eq!(store.client("web").await.unwrap(), Some(first));
    let (upper, _) = registered_client("Web", true);
    store.put_client(&upper).await.unwrap();
    assert_eq!(store.client("Web").await.unwrap(), Some(upper));
    assert_eq!(store.clients().await.unwrap().len(), 2);
}

/// A client's key is data, never a username, and a user and a client may share a name.
pub async fn a_client_key_is_never_a_username(store: &impl FullStore) {
    let (client, _) = registered_client("x", true);
    store.put_client(&client).await.unwrap();
    assert!(store.credentials("#client x").await.unwrap().is_none());
    assert!(store.profile("", "#client x", "s").await.unwrap().is_none());
    let user = new_user("xavier", "xavier");
    store.create(&user).await.unwrap();
    let (named, _) = registered_client("xavier", false);
    store.put_client(&named).await.unwrap();
    assert_eq!(
        store.credentials("xavier").await.unwrap().map(|c| c.id),
        Some(user.id)
    );
    assert_eq!(store.client("xavier").await.unwrap(), Some(named));
    assert_eq!(store.clients().await.unwrap().len(), 2);
}

/// The PKCE pair of RFC 7636 Appendix B.
const PKCE_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const PKCE_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// A code grant for the cases below.
pub fn code_grant() -> crate::oauth::code::CodeGrant {
    crate::oauth::code::CodeGrant {
        client_id: "web".into(),
        redirect_uri: "http://127.0.0.1:8080/callback".into(),
        code_challenge: PKCE_CHALLENGE.into(),
        scope: "openid profile".into(),
        nonce: Some("n-0S6_WzA2Mj".into()),
        user_id: "u-1".into(),
        username_key: "emma".into(),
        username: "Emma".into(),
        sid: "s-1".into(),
        auth_time: 1_000,
        amr: vec!["pwd".into()],
        epoch: 0,
        full_name: None,
        client_secret_hash: None,
    }
}

/// An authorization code redeems once, only for its client, its exact redirect URI and the
/// right verifier, and not after its minute; a failed attempt spends it too.
pub async fn codes_redeem_once_for_their_client_uri_and_verifier(store: &impl FullStore) {
    use crate::oauth::code::{self, CODE_SECONDS, CodeError};
    let grant = code_grant();
    let uri = grant.redirect_uri.clone();
    let refused = |r: Result<_, CodeError>| assert!(matches!(r, Err(CodeError::Invalid)), "{r:?}");
    let c = code::issue(store, &grant, 1_000).await.unwrap();
    assert_eq!(c.len(), 43);
    let redeemed = code::redeem(store, &c, "web", &uri, PKCE_VERIFIER, 1_001).await;
    assert_eq!(redeemed.unwrap(), grant);
    refused(code::redeem(store, &c, "web", &uri, PKCE_VERIFIER, 1_002).await);
    for (client, redirect, verifier, at) in [
        ("other", uri.as_str(), PKCE_VERIFIER, 1_001),
        (
            "web",
            "http://127.0.0.1:8080/callback/",
            PKCE_VERIFIER,
            1_001,
        ),
        (
            "web",
            uri.as_str(),
            "wrong-verifier-wrong-verifier-wrong-verifier-x",
            1_001,
        ),
        ("web", uri.as_str(), PKCE_VERIFIER, 1_000 + CODE_SECONDS),
    ] {
        let c = code::issue(store, &grant, 1_000).await.unwrap();
        refused(code::redeem(store, &c, client, redirect, verifier, at).await);
        // Spent by the failed attempt, even for the right client.
        refused(code::redeem(store, &c, "web", &uri, PKCE_VERIFIER, 1_001).await);
    }
    refused(code::redeem(store, "not-a-code", "web", &uri, PKCE_VERIFIER, 1_001).await);
}

/// Issues the code the racers of [`redeem_code_once`] redeem.
pub async fn issue_raced_code(store: &impl FullStore) -> String {
    let (user, browser) = signed_in(store, "racer").await;
    code_for(store, &user, &browser).await
}

/// `username`'s account, created, and a browser session of it (as the hosted page starts one).
async fn signed_in(store: &impl FullStore, username: &str) -> (super::Credentials, String) {
    store.create(&new_user(username, username)).await.unwrap();
    let user = store
        .credentials(&policy::username_key(username))
        .await
        .unwrap()
        .unwrap();
    let limits = crate::session::SessionLimits::default();
    let (_, browser) = crate::session::start_browser(store, &user, &limits, false, 1_000)
        .await
        .unwrap();
    (user, browser.sid)
}

/// A code for `user`'s sign-in in the browser session `browser`, issued at 1 000.
async fn code_for(store: &impl FullStore, user: &super::Credentials, browser: &str) -> String {
    let grant = crate::oauth::code::CodeGrant {
        user_id: user.id.clone(),
        username_key: user.username_key.clone(),
        username: user.username.clone(),
        sid: browser.to_string(),
        epoch: user.session_epoch,
        ..code_grant()
    };
    crate::oauth::code::issue(store, &grant, 1_000)
        .await
        .unwrap()
}

/// Redeems `code` for `user`'s sign-in in `browser` as the code exchange does at `now`.
async fn exchange(
    store: &impl FullStore,
    user: &super::Credentials,
    browser: &str,
    code: &str,
    now: u64,
) -> super::CodeSession {
    let limits = crate::session::SessionLimits::default();
    let holder = super::Holder::Client {
        client_id: "web".into(),
        scope: "openid".into(),
    };
    let (record, _) = crate::session::prepare_code(user, &limits, holder, code, false, now);
    let hash = super::tickets::secret_hash(code);
    store
        .start_code_session(&hash, &record, browser, now)
        .await
        .unwrap()
}

/// One racer's exchange: whether it started the session.
pub async fn redeem_code_once(store: &impl FullStore, code: &str) -> bool {
    let user = store.credentials("racer").await.unwrap().unwrap();
    // As the exchange reads it: a racer that comes after the winner finds no code.
    let grant: Option<crate::oauth::code::CodeGrant> =
        super::tickets::peek(store, super::TicketKind::AuthorizationCode, code, 1_001)
            .await
            .unwrap();
    let Some(grant) = grant else {
        return false;
    };
    exchange(store, &user, &grant.sid, code, 1_001).await == super::CodeSession::Started
}

/// A code starts one session, taking the code with it, and only while the account is still
/// under the sign-in's epoch and the browser session it came from is open: a spent or expired
/// code starts nothing, and a refused one is spent.
pub async fn codes_start_one_session_while_the_sign_in_holds(store: &impl FullStore) {
    use super::CodeSession::{Refused, Spent, Started};
    let (user, browser) = signed_in(store, "coder").await;
    let code = code_for(store, &user, &browser).await;
    assert_eq!(
        exchange(store, &user, &browser, &code, 1_001).await,
        Started
    );
    let sid = crate::session::code_session_sid(&code);
    let session = store
        .session(&sid)
        .await
        .unwrap()
        .expect("the code's session");
    assert_eq!(session.life.user_id, user.id);
    assert_eq!(exchange(store, &user, &browser, &code, 1_002).await, Spent);
    // Expired: spent.
    let late = code_for(store, &user, &browser).await;
    let expired = 1_000 + crate::oauth::code::CODE_SECONDS;
    assert_eq!(
        exchange(store, &user, &browser, &late, expired).await,
        Spent
    );
    // The browser session ended since the sign-in: refused, and the code is gone.
    let orphan = code_for(store, &user, &browser).await;
    store.end_session(&browser).await.unwrap();
    assert_eq!(
        exchange(store, &user, &browser, &orphan, 1_001).await,
        Refused
    );
    assert_eq!(
        exchange(store, &user, &browser, &orphan, 1_001).await,
        Spent
    );
    // A global logout (the epoch moved) since the sign-in: refused.
    let (user, browser) = signed_in(store, "coder2").await;
    let code = code_for(store, &user, &browser).await;
    store
        .end_all_sessions(&user.id, &user.username_key)
        .await
        .unwrap();
    assert_eq!(
        exchange(store, &user, &browser, &code, 1_001).await,
        Refused
    );
    assert!(
        store
            .session(&crate::session::code_session_sid(&code))
            .await
            .unwrap()
            .is_none()
    );
}

/// A user of `username` with the address `email` (unverified), created: its credentials.
async fn with_address(store: &impl FullStore, username: &str, email: &str) -> super::Credentials {
    let user = NewUser {
        email: Some(email.into()),
        ..new_user(username, username)
    };
    store.create(&user).await.unwrap();
    store
        .credentials(&policy::username_key(username))
        .await
        .unwrap()
        .unwrap()
}

/// A verified address belongs to one account: a second account's verification is refused and
/// the first keeps it; a change of address or a deletion releases it; a link for an address the
/// account no longer has is stale; the owner is found by the verified address alone.
pub async fn a_verified_address_has_one_owner(store: &impl FullStore) {
    use super::Verified;
    let emma = with_address(store, "emma", "a@example.com").await;
    let noah = with_address(store, "noah", "a@example.com").await;
    assert_eq!(store.verified_owner("a@example.com").await.unwrap(), None);
    let verify = async |u: &super::Credentials| {
        store
            .verify_email(&u.id, &u.username_key, "a@example.com")
            .await
    };
    assert_eq!(verify(&emma).await.unwrap(), Verified::Yes);
    assert_eq!(
        verify(&emma).await.unwrap(),
        Verified::Yes,
        "again: still its own"
    );
    assert_eq!(verify(&noah).await.unwrap(), Verified::TakenElsewhere);
    let owner = store
        .verified_owner("a@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(owner.id, emma.id);
    assert!(owner.email_verified);
    // A change releases it (only from what was read: a stale read changes nothing).
    assert!(
        !store.set_email(&emma, "b@example.com").await.unwrap(),
        "read unverified"
    );
    assert!(store.set_email(&owner, "b@example.com").await.unwrap());
    assert_eq!(store.verified_owner("a@example.com").await.unwrap(), None);
    assert_eq!(verify(&emma).await.unwrap(), Verified::Stale);
    assert_eq!(verify(&noah).await.unwrap(), Verified::Yes);
    // A deletion releases it too.
    let noah = store.credentials("noah").await.unwrap().unwrap();
    assert!(store.delete_account(&noah).await.unwrap());
    assert_eq!(store.verified_owner("a@example.com").await.unwrap(), None);
    let liam = with_address(store, "liam", "a@example.com").await;
    assert_eq!(
        store
            .verify_email(&liam.id, &liam.username_key, "a@example.com")
            .await
            .unwrap(),
        Verified::Yes
    );
}

/// The address every racer of [`verify_raced_address`] verifies, on its own account.
pub const RACED_ADDRESS: &str = "raced@example.com";

/// Creates `n` accounts `racer0…` with [`RACED_ADDRESS`], unverified.
pub async fn prepare_address_race(store: &impl FullStore, n: usize) {
    for i in 0..n {
        with_address(store, &format!("racer{i}"), RACED_ADDRESS).await;
    }
}

/// Racer `i` verifies the address on its account: whether it got it.
pub async fn verify_raced_address(store: &impl FullStore, i: usize) -> bool {
    use super::Verified;
    let user = store
        .credentials(&format!("racer{i}"))
        .await
        .unwrap()
        .unwrap();
    let outcome = store
        .verify_email(&user.id, &user.username_key, RACED_ADDRESS)
        .await
        .unwrap();
    assert_ne!(outcome, Verified::Stale);
    outcome == Verified::Yes
}

/// A second factor: pending until enabled (with its sealed secret still the stored one), each
/// step accepted once and only a later one after it, each recovery code taken once, a new set
/// voiding the old, and nothing accepted once it is off. A ticket is read without being taken.
pub async fn second_factors_accept_each_step_and_code_once(store: &impl FullStore) {
    use super::TicketKind;
    let user = with_address(store, "emma", "e@example.com").await;
    assert!(store.set_pending_totp(&user, "a1.first").await.unwrap());
    assert!(
        store.set_pending_totp(&user, "a1.second").await.unwrap(),
        "replaced"
    );
    let codes = ["h1".to_string(), "h2".to_string()];
    assert!(
        !store
            .enable_totp(&user, "a1.first", 5, &codes)
            .await
            .unwrap(),
        "stale"
    );
    assert!(
        store
            .enable_totp(&user, "a1.second", 5, &codes)
            .await
            .unwrap()
    );
    assert!(
        !store.set_pending_totp(&user, "a1.third").await.unwrap(),
        "on"
    );
    let on = store.credentials("emma").await.unwrap().unwrap();
    assert!(on.totp_enabled && on.totp_last_step == 5);
    assert_eq!(on.totp_secret.as_deref(), Some("a1.second"));
    assert!(
        !store.accept_step(&on, 5).await.unwrap(),
        "the step confirmation used"
    );
    assert!(store.accept_step(&on, 7).await.unwrap());
    assert!(
        !store.accept_step(&on, 6).await.unwrap(),
        "earlier than the last"
    );
    assert!(!store.accept_step(&on, 7).await.unwrap(), "replay");
    assert!(store.take_recovery_code(&on, "h1").await.unwrap());
    assert!(!store.take_recovery_code(&on, "h1").await.unwrap());
    assert!(
        store
            .replace_recovery_codes(&on, &["h3".into()])
            .await
            .unwrap()
    );
    assert!(!store.take_recovery_code(&on, "h2").await.unwrap(), "void");
    assert!(store.take_recovery_code(&on, "h3").await.unwrap());
    assert!(store.disable_totp(&on).await.unwrap());
    let off = store.credentials("emma").await.unwrap().unwrap();
    assert!(!off.totp_enabled && off.totp_secret.is_none());
    assert!(!store.accept_step(&off, 9).await.unwrap());
    assert!(!store.disable_totp(&off).await.unwrap());
    // Peeking leaves a ticket in place; taking does not.
    store
        .put_ticket(TicketKind::PasswordReset, "h", "rec", 2_000, 1_000)
        .await
        .unwrap();
    for _ in 0..2 {
        let seen = store
            .peek_ticket(TicketKind::PasswordReset, "h", 1_001)
            .await;
        assert_eq!(seen.unwrap().as_deref(), Some("rec"));
    }
    assert_eq!(
        store
            .peek_ticket(TicketKind::PasswordReset, "h", 2_000)
            .await
            .unwrap(),
        None,
        "expired"
    );
    assert!(
        store
            .take_ticket(TicketKind::PasswordReset, "h", 1_002)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store
            .peek_ticket(TicketKind::PasswordReset, "h", 1_003)
            .await
            .unwrap(),
        None
    );
}

/// Turns TOTP on for `racer` (last step 10): the account every racer of [`accept_raced_step`]
/// logs in to.
pub async fn prepare_step_race(store: &impl FullStore) {
    let user = with_address(store, "racer", "r@example.com").await;
    store.set_pending_totp(&user, "a1.s").await.unwrap();
    assert!(store.enable_totp(&user, "a1.s", 10, &[]).await.unwrap());
}

/// One racer accepts step 11: whether it won it.
pub async fn accept_raced_step(store: &impl FullStore) -> bool {
    let user = store.credentials("racer").await.unwrap().unwrap();
    store.accept_step(&user, 11).await.unwrap()
}

/// A second step reads the token, the account and the counters in one call, and passes once:
/// the step accepted only if later than the last, the `mfa_token` taken once, the windows'
/// places given back, and the session it starts written with them.
pub async fn a_second_step_passes_once(store: &impl FullStore) {
    use super::mfa::SecondStepPass;
    use super::{Follow, TicketKind, WindowAdd};
    let user = with_address(store, "emma", "e@example.com").await;
    assert!(store.set_pending_totp(&user, "a1.sealed").await.unwrap());
    assert!(store.enable_totp(&user, "a1.sealed", 5, &[]).await.unwrap());
    let on = store.credentials("emma").await.unwrap().unwrap();
    let window = format!("second factor id {}", on.id);
    let counters = [window.as_str()];
    let ticket = |hash: &'static str| async move {
        store
            .put_ticket(TicketKind::MfaToken, hash, "{\"r\":1}", 1_300, 1_000)
            .await
            .unwrap();
    };
    ticket("t1").await;
    let read = store
        .second_step("t1", "emma", &counters, 1_001)
        .await
        .unwrap();
    assert_eq!(read.record.as_deref(), Some("{\"r\":1}"));
    assert_eq!(
        read.user.as_ref().map(|u| u.id.as_str()),
        Some(on.id.as_str())
    );
    assert_eq!(read.counters, [None]);
    let add = WindowAdd {
        key: &window,
        seen: None,
        ceiling: 3,
        window: 3_600,
    };
    let starts = store.claim_places(&[add], 1_001).await.unwrap().unwrap();
    let read = store
        .second_step("t1", "emma", &counters, 1_001)
        .await
        .unwrap();
    assert_eq!(read.counters[0].map(|c| c.failures), Some(1));
    let limits = crate::session::SessionLimits::default();
    let (record, grant) = crate::session::prepare_password(&on, &limits, true, 1_001);
    let follow = Follow::Session(Box::new(record));
    let give_back = [(window.as_str(), starts[0])];
    let pass = |step, hash| SecondStepPass {
        user: &on,
        step,
        ticket_hash: hash,
        give_back: &give_back,
        follow: &follow,
        now: 1_001,
    };
    assert!(store.pass_second_step(&pass(Some(7), "t1")).await.unwrap());
    assert!(
        store
            .session(&grant.sid)
            .await
            .unwrap()
            .is_some_and(|s| s.mfa)
    );
    let read = store
        .second_step("t1", "emma", &counters, 1_002)
        .await
        .unwrap();
    assert!(read.record.is_none(), "the token is spent");
    assert_eq!(read.counters[0].map(|c| c.failures), Some(0), "given back");
    assert_eq!(read.user.unwrap().totp_last_step, 7);
    // A spent token, a replayed step: nothing passes, and the spent token cost no step.
    assert!(!store.pass_second_step(&pass(Some(8), "t1")).await.unwrap());
    ticket("t2").await;
    assert!(!store.pass_second_step(&pass(Some(7), "t2")).await.unwrap());
    ticket("t3").await;
    let (record, _) = crate::session::prepare_password(&on, &limits, true, 1_001);
    let follow = Follow::Session(Box::new(record));
    let next = SecondStepPass {
        follow: &follow,
        ..pass(Some(8), "t3")
    };
    assert!(store.pass_second_step(&next).await.unwrap());
    // An unknown account and an expired token read as nothing.
    let read = store
        .second_step("t2", "nobody", &counters, 1_300)
        .await
        .unwrap();
    assert!(read.record.is_none() && read.user.is_none());
}
