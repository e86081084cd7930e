//! The behaviour every [`UserStore`](super) backend must show, as functions each backend's tests
//! call with a fresh, empty store.

use super::{CredentialStore, NewUser, Profile, ProfileReader, StoreError, UserWriter};
use crate::policy;

/// A user whose username key derives from `username`, with a unique id.
pub(crate) fn new_user(id_hint: &str, username: &str) -> NewUser {
    NewUser {
        id: format!("{id_hint}-{}", uuid::Uuid::new_v4().simple()),
        username: username.into(),
        username_key: policy::username_key(username),
        password_hash: format!("$2b$04$hash-of-{id_hint}"),
        full_name: Some(format!("Full {username}")),
    }
}

pub(crate) async fn create_and_read<S: UserWriter + CredentialStore + ProfileReader>(store: &S) {
    let user = new_user("emma", "Emma");
    store.create(&user).await.unwrap();
    let creds = store
        .credentials("emma")
        .await
        .unwrap()
        .expect("found by key");
    assert_eq!(creds.id, user.id);
    assert_eq!(creds.password_hash, user.password_hash);
    assert_eq!((creds.failed_logins, creds.last_failed_at), (0, None));
    assert_eq!(
        store.profile(&user.id).await.unwrap(),
        Some(Profile {
            username: "Emma".into(),
            full_name: Some("Full Emma".into())
        })
    );
    assert!(store.credentials("nobody").await.unwrap().is_none());
    assert!(store.profile("no-such-id").await.unwrap().is_none());
    let anonymous = NewUser {
        full_name: None,
        ..new_user("anon", "anon")
    };
    store.create(&anonymous).await.unwrap();
    assert_eq!(
        store
            .profile(&anonymous.id)
            .await
            .unwrap()
            .unwrap()
            .full_name,
        None
    );
}

pub(crate) async fn duplicates_are_refused<S: UserWriter + CredentialStore>(store: &S) {
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
    assert_eq!(
        store.credentials("emma").await.unwrap().unwrap().id,
        first.id,
        "first kept"
    );
}

pub(crate) async fn failures_count_and_reset<S: UserWriter + CredentialStore>(store: &S) {
    let user = new_user("f", "fumbler");
    store.create(&user).await.unwrap();
    for n in 1..=3 {
        assert_eq!(
            store.record_failure(&user.id, 1_000 + n).await.unwrap(),
            n as u32
        );
    }
    let creds = store.credentials("fumbler").await.unwrap().unwrap();
    assert_eq!(
        (creds.failed_logins, creds.last_failed_at),
        (3, Some(1_003))
    );
    store.record_success(&user.id, None).await.unwrap();
    let creds = store.credentials("fumbler").await.unwrap().unwrap();
    assert_eq!((creds.failed_logins, creds.last_failed_at), (0, None));
    assert_eq!(creds.password_hash, user.password_hash, "no rehash asked");
}

pub(crate) async fn rehash_is_conditional<S: UserWriter + CredentialStore>(store: &S) {
    let user = new_user("r", "rehashed");
    store.create(&user).await.unwrap();
    store
        .record_success(&user.id, Some((&user.password_hash, "$new$1")))
        .await
        .unwrap();
    assert_eq!(
        store
            .credentials("rehashed")
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        "$new$1"
    );
    // A stale read (the hash changed since) must not overwrite the newer hash.
    store
        .record_success(&user.id, Some((&user.password_hash, "$stale$")))
        .await
        .unwrap();
    assert_eq!(
        store
            .credentials("rehashed")
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        "$new$1"
    );
}

pub(crate) async fn sql_looking_input_is_data<S: UserWriter + CredentialStore + ProfileReader>(
    store: &S,
) {
    let name = "robert');DROP TABLE users;--";
    let user = new_user("sql", name);
    store.create(&user).await.unwrap();
    let creds = store
        .credentials(&policy::username_key(name))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.profile(&creds.id).await.unwrap().unwrap().username,
        name
    );
    assert!(store.credentials("' OR '1'='1").await.unwrap().is_none());
    assert!(store.profile("' OR '1'='1").await.unwrap().is_none());
}
