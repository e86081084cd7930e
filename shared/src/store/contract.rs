//! The behaviour every user store backend must show. Each function takes a fresh, empty store;
//! the integration tests (`tests/store_contract.rs`) run the whole suite against SQLite and
//! against DynamoDB on moto. Compiled only for tests (`--features testing`).

use super::{CredentialStore, NewUser, Profile, ProfileReader, StoreError, UserWriter};
use crate::policy;

/// Everything a full backend implements.
pub trait FullStore: UserWriter + CredentialStore + ProfileReader {}
impl<T: UserWriter + CredentialStore + ProfileReader> FullStore for T {}

/// A user whose key derives from `username`, with a unique id.
pub fn new_user(id_hint: &str, username: &str) -> NewUser {
    NewUser {
        id: format!("{id_hint}-{}", uuid::Uuid::new_v4().simple()),
        username: username.into(),
        username_key: policy::username_key(username),
        password_hash: format!("$2b$04$hash-of-{id_hint}"),
        full_name: Some(format!("Full {username}")),
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
    assert_eq!(
        store.profile(&user.id, "Emma").await.unwrap(),
        Some(Profile {
            username: "Emma".into(),
            full_name: Some("Full Emma".into())
        })
    );
    assert!(store.credentials("nobody").await.unwrap().is_none());
    assert!(store.profile("no-such-id", "Emma").await.unwrap().is_none());
    assert!(
        store
            .profile("no-such-id", "nobody")
            .await
            .unwrap()
            .is_none()
    );
    let anonymous = NewUser {
        full_name: None,
        ..new_user("anon", "anon")
    };
    store.create(&anonymous).await.unwrap();
    let profile = store.profile(&anonymous.id, "anon").await.unwrap().unwrap();
    assert_eq!(profile.full_name, None);
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

/// Failures count up atomically and a success resets them.
pub async fn failures_count_and_reset(store: &impl FullStore) {
    let user = new_user("f", "fumbler");
    store.create(&user).await.unwrap();
    for n in 1..=3u32 {
        let creds = store.credentials("fumbler").await.unwrap().unwrap();
        assert_eq!(
            store
                .record_failure(&creds, 1_000 + u64::from(n))
                .await
                .unwrap(),
            n
        );
    }
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

/// A new account under an old name is not the old account.
pub async fn a_new_account_under_an_old_name_has_a_new_id(store: &impl FullStore) {
    let user = new_user("old", "Recycled");
    store.create(&user).await.unwrap();
    assert!(store.profile(&user.id, "Recycled").await.unwrap().is_some());
    assert!(
        store
            .profile(&user.id, "someone-else")
            .await
            .unwrap()
            .is_none()
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
    let profile = store.profile(&creds.id, name).await.unwrap().unwrap();
    assert_eq!(profile.username, name);
    assert!(store.credentials("' OR '1'='1").await.unwrap().is_none());
    assert!(store.profile("' OR '1'='1", name).await.unwrap().is_none());
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

/// Failures recorded at once through many stores are all counted (no lost update): the
/// returned counts are exactly 1..=n in some order.
pub fn concurrent_failures_are_all_counted<S: FullStore + 'static>(stores: Vec<S>) {
    let n = stores.len() as u32;
    let user = new_user("c", "contended");
    on_thread(|| stores[0].create(&user)).unwrap();
    let mut counts: Vec<u32> = std::thread::scope(|scope| {
        let handles: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, store)| {
                scope.spawn(move || {
                    on_thread(|| async {
                        let creds = store.credentials("contended").await?.expect("created");
                        store.record_failure(&creds, 2_000 + i as u64).await
                    })
                    .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    counts.sort_unstable();
    assert_eq!(counts, (1..=n).collect::<Vec<u32>>());
}

fn on_thread<F: std::future::Future>(f: impl FnOnce() -> F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f())
}
