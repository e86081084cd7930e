//! One contract suite (`shared::store::contract`), run against every store backend: an SQLite
//! file and a DynamoDB table on moto.

use integration_tests::moto;
use shared::store::contract;
use shared::store::{CredentialStore, DynamoStore, SqliteStore, StoreError};

/// A fresh SQLite store in its own folder (kept alive with the store).
fn sqlite() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("users.db")).unwrap();
    (dir, store)
}

/// A fresh DynamoDB table on moto.
async fn dynamo() -> DynamoStore {
    let config = moto::sdk_config().await;
    let table = moto::create_users_table(&config).await;
    DynamoStore::new(&config, &table)
}

macro_rules! contract_suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite_backend {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    let (_dir, store) = sqlite();
                    contract::$case(&store).await;
                }
            )*
        }
        mod dynamodb_backend {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    contract::$case(&dynamo().await).await;
                }
            )*
        }
    };
}

contract_suite!(
    create_and_read,
    duplicates_are_refused,
    failures_count_and_reset,
    rehash_is_conditional,
    a_new_account_under_an_old_name_has_a_new_id,
    hostile_input_is_data,
    sessions_rotate,
    reuse_ends_the_session,
    bad_refresh_tokens_change_nothing,
    sessions_expire,
    logouts_end_sessions,
    password_changes_are_conditional_and_end_sessions,
    deleted_accounts_are_gone_with_their_sessions,
    counters_swap_atomically_and_expire,
);

const RACERS: usize = 12;

/// `n` stores on one new SQLite file, one connection each, as separate function processes have.
fn sqlite_stores(dir: &tempfile::TempDir, n: usize) -> Vec<SqliteStore> {
    let path = dir.path().join("users.db");
    (0..n).map(|_| SqliteStore::open(&path).unwrap()).collect()
}

/// `n` stores on one new DynamoDB table, as separate Lambda instances have.
fn dynamo_stores(n: usize) -> Vec<DynamoStore> {
    let (config, table) = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let config = moto::sdk_config().await;
        let table = moto::create_users_table(&config).await;
        (config, table)
    });
    (0..n).map(|_| DynamoStore::new(&config, &table)).collect()
}

#[test]
fn sqlite_concurrent_registrations_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    contract::concurrent_registrations_have_one_winner(sqlite_stores(&dir, RACERS));
}

#[test]
fn dynamodb_concurrent_registrations_have_one_winner() {
    contract::concurrent_registrations_have_one_winner(dynamo_stores(RACERS));
}

/// Wrong-password logins sent at once by an attacker.
const GUESSERS: usize = 20;

#[test]
fn sqlite_concurrent_attempts_cannot_outrun_the_throttle() {
    let dir = tempfile::tempdir().unwrap();
    contract::concurrent_attempts_cannot_outrun_the_throttle(sqlite_stores(&dir, GUESSERS));
}

#[test]
fn dynamodb_concurrent_attempts_cannot_outrun_the_throttle() {
    contract::concurrent_attempts_cannot_outrun_the_throttle(dynamo_stores(GUESSERS));
}

#[test]
fn sqlite_concurrent_password_changes_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    contract::concurrent_password_changes_have_one_winner(sqlite_stores(&dir, RACERS));
}

#[test]
fn dynamodb_concurrent_password_changes_have_one_winner() {
    contract::concurrent_password_changes_have_one_winner(dynamo_stores(RACERS));
}

/// Tabs refreshing one token at once.
const TABS: usize = 8;

#[test]
fn sqlite_concurrent_refreshes_make_one_generation() {
    let dir = tempfile::tempdir().unwrap();
    contract::concurrent_refreshes_make_one_generation(sqlite_stores(&dir, TABS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_concurrent_refresh_tasks_make_one_generation() {
    let config = moto::sdk_config().await;
    let table = moto::create_users_table(&config).await;
    let stores = (0..TABS)
        .map(|_| DynamoStore::new(&config, &table))
        .collect();
    contract::concurrent_refresh_tasks_make_one_generation(stores).await;
}

#[tokio::test]
async fn an_unreachable_dynamodb_is_unavailable_not_a_hang() {
    // A closed loopback port: every attempt is refused; retries and timeouts are bounded.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let loaded = shared::aws::load_with(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "t", "t", None, None, "test",
            )),
    )
    .await;
    let store = DynamoStore::new(&loaded, "users");
    match store.credentials("emma").await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
}
