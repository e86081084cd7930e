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
    windows_add_up_to_their_ceiling,
    correct_logins_never_fill_the_ceilings,
    an_ended_session_mints_no_more_tokens,
    tickets_are_taken_once,
    a_reauthentication_of_another_account_claims_nothing,
    codes_redeem_once_for_their_client_uri_and_verifier,
    codes_start_one_session_while_the_sign_in_holds,
    a_second_step_passes_once,
    clients_are_put_read_listed_and_removed,
    a_taken_client_id_is_refused,
    a_client_key_is_never_a_username,
    a_verified_address_has_one_owner,
    second_factors_accept_each_step_and_code_once,
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

/// Takes of one ticket sent at once.
const TAKERS: usize = 8;

#[test]
fn sqlite_concurrent_takes_of_one_ticket_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let stores = sqlite_stores(&dir, TAKERS);
    on_thread(contract::put_raced_ticket(&stores[0]));
    let won: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = (stores.iter())
            .map(|store| scope.spawn(move || on_thread(contract::take_ticket_once(store))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_concurrent_take_tasks_of_one_ticket_have_one_winner() {
    let store = dynamo().await;
    contract::put_raced_ticket(&store).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TAKERS {
        let store = store.clone();
        tasks.spawn(async move { contract::take_ticket_once(&store).await });
    }
    let won = tasks.join_all().await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
}

#[test]
fn sqlite_concurrent_redemptions_of_one_code_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let stores = sqlite_stores(&dir, TAKERS);
    let code = on_thread(contract::issue_raced_code(&stores[0]));
    let won: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = (stores.iter())
            .map(|store| {
                let code = &code;
                scope.spawn(move || on_thread(contract::redeem_code_once(store, code)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_concurrent_redemption_tasks_of_one_code_have_one_winner() {
    let store = dynamo().await;
    let code = contract::issue_raced_code(&store).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TAKERS {
        let (store, code) = (store.clone(), code.clone());
        tasks.spawn(async move { contract::redeem_code_once(&store, &code).await });
    }
    let won = tasks.join_all().await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
}

#[test]
fn sqlite_concurrent_verifications_of_one_address_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let stores = sqlite_stores(&dir, TAKERS);
    on_thread(contract::prepare_address_race(&stores[0], TAKERS));
    let won: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = (stores.iter().enumerate())
            .map(|(i, store)| {
                scope.spawn(move || on_thread(contract::verify_raced_address(store, i)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_concurrent_verification_tasks_of_one_address_have_one_winner() {
    let store = dynamo().await;
    contract::prepare_address_race(&store, TAKERS).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..TAKERS {
        let store = store.clone();
        tasks.spawn(async move { contract::verify_raced_address(&store, i).await });
    }
    let won = tasks.join_all().await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
}

#[test]
fn sqlite_concurrent_uses_of_one_totp_step_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let stores = sqlite_stores(&dir, TAKERS);
    on_thread(contract::prepare_step_race(&stores[0]));
    let won: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = (stores.iter())
            .map(|store| scope.spawn(move || on_thread(contract::accept_raced_step(store))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_concurrent_use_tasks_of_one_totp_step_have_one_winner() {
    let store = dynamo().await;
    contract::prepare_step_race(&store).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TAKERS {
        let store = store.clone();
        tasks.spawn(async move { contract::accept_raced_step(&store).await });
    }
    let won = tasks.join_all().await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
}

/// Runs `f` to completion on a runtime of its own (one per thread, as each function process has).
fn on_thread<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Wrong guesses from as many addresses at an account whose window holds one below the ceiling.
const CEILING_GUESSERS: usize = 50;
const CEILING_NOW: u64 = 5_000;

#[test]
fn sqlite_concurrent_guesses_from_many_addresses_meet_the_account_ceiling_once() {
    let dir = tempfile::tempdir().unwrap();
    let stores = sqlite_stores(&dir, CEILING_GUESSERS);
    on_thread(contract::preset_account_window(
        &stores[0],
        "target",
        CEILING_NOW,
    ));
    let checked: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = (stores.iter().enumerate())
            .map(|(i, store)| {
                scope.spawn(move || {
                    on_thread(contract::wrong_guess(store, "target", i, CEILING_NOW))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let through = checked.iter().filter(|c| **c).count();
    assert!(through <= 1, "{through} guesses reached bcrypt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_concurrent_guess_tasks_from_many_addresses_meet_the_account_ceiling_once() {
    let store = dynamo().await;
    contract::preset_account_window(&store, "target", CEILING_NOW).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CEILING_GUESSERS {
        let store = store.clone();
        tasks.spawn(async move { contract::wrong_guess(&store, "target", i, CEILING_NOW).await });
    }
    let through = tasks.join_all().await.into_iter().filter(|c| *c).count();
    assert!(through <= 1, "{through} guesses reached bcrypt");
}

/// Who logs in correctly at once: every `burst…` account from one office address, and the
/// `shared` account from an address of its own each.
fn burst_logins() -> Vec<(String, String)> {
    let office = (0..contract::BURST).map(|i| (format!("burst{i}"), "198.51.100.7".to_string()));
    let roaming = (0..contract::BURST).map(|i| ("shared".to_string(), format!("192.0.2.{i}")));
    office.chain(roaming).collect()
}

#[test]
fn sqlite_a_burst_of_correct_logins_below_the_ceilings_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let logins = burst_logins();
    let stores = sqlite_stores(&dir, logins.len());
    on_thread(contract::create_burst_accounts(&stores[0]));
    let checked: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = (stores.iter().zip(&logins))
            .map(|(store, (name, source))| {
                scope.spawn(move || on_thread(contract::correct_login(store, name, source, 7_000)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(checked.iter().all(|c| *c), "{checked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_a_burst_of_correct_login_tasks_below_the_ceilings_all_succeed() {
    let store = dynamo().await;
    contract::create_burst_accounts(&store).await;
    let mut tasks = tokio::task::JoinSet::new();
    for (name, source) in burst_logins() {
        let store = store.clone();
        tasks.spawn(async move { contract::correct_login(&store, &name, &source, 7_000).await });
    }
    let checked = tasks.join_all().await;
    assert!(checked.iter().all(|c| *c), "{checked:?}");
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
