//! Micro-benchmarks of the work behind each request: token issue and verify (RS256, 2048-bit),
//! password hash and verify at a test cost and at the default cost, and the whole `me` handler
//! in-process over a temporary SQLite file.
//!
//! Run with `cargo bench -p auth-shared` (or `make microbench`). These numbers are for comparing
//! changes on one machine; `make bench` measures the real release binaries as Lambda would.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, criterion_group, criterion_main};
use lambda_http::Request;
use shared::Config;
use shared::handlers::{login, me, register};
use shared::password::PasswordHasher;
use shared::signer::LocalSigner;
use shared::store::SqliteStore;
use shared::token::{TokenIssuer, TokenVerifier};
use shared::wiring::Wiring;

const ISSUER: &str = "https://auth.example.test";
const AUDIENCE: &str = "example-api";
const PASSWORD: &str = "velvet-tundra-marmalade-42";
const USER_ID: &str = "0123456789abcdef0123456789abcdef";
/// The cost tests use, and the service's default (`AUTH_BCRYPT_COST`).
const COSTS: [u32; 2] = [4, 12];

/// The `GET /me` event of the handler tests' fixtures (written by tests/fixtures/generate.py, the
/// one builder of events), with its bearer filled in, or removed.
fn me_event(authorization: Option<&str>) -> String {
    let mut event: serde_json::Value =
        serde_json::from_str(include_str!("../../tests/fixtures/v2_me.json")).expect("fixture");
    let headers = event["headers"].as_object_mut().expect("headers");
    match authorization {
        Some(value) => {
            headers.insert("authorization".into(), value.into());
        }
        None => {
            headers.remove("authorization");
        }
    }
    event.to_string()
}

fn request(event: &str) -> Request {
    lambda_http::request::from_str(event).expect("valid v2 event")
}

/// A JSON POST as the handlers receive it.
fn json_post(body: &serde_json::Value) -> Request {
    lambda_http::http::Request::builder()
        .method("POST")
        .uri("https://aaaaaaaaaa.execute-api.us-east-1.amazonaws.com/")
        .header("content-type", "application/json")
        .body(body.to_string().into())
        .expect("request")
}

fn tokens(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (private, _) = shared::signer::test_keys::write_pair(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let signer = LocalSigner::from_pem_file(&private).expect("signing key");
    let issuer = TokenIssuer::new(signer, AUDIENCE, Duration::from_secs(1800));
    let verifier = TokenVerifier::new(issuer.public_key().clone(), AUDIENCE);
    let token = rt
        .block_on(issuer.issue(ISSUER, USER_ID, "Emma", "s-1", shared::clock::now()))
        .expect("issue")
        .access_token;

    let mut group = c.benchmark_group("token");
    group.bench_function("issue", |b| {
        b.iter(|| {
            rt.block_on(issuer.issue(
                ISSUER,
                black_box(USER_ID),
                "Emma",
                "s-1",
                shared::clock::now(),
            ))
        })
    });
    group.bench_function("verify", |b| {
        b.iter(|| {
            verifier
                .verify(black_box(&token), ISSUER)
                .expect("valid token")
        })
    });
    group.finish();
}

fn passwords(c: &mut Criterion) {
    let mut group = c.benchmark_group("password");
    // Milliseconds an iteration even at the low cost: flat sampling keeps the run short.
    group.sampling_mode(SamplingMode::Flat);
    for cost in COSTS {
        if cost >= 10 {
            // ~0.3 s a hash: ten flat samples of one hash each are enough to see a change.
            group
                .sample_size(10)
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(4));
        }
        let hasher = PasswordHasher::new(cost);
        let stored = hasher.hash(PASSWORD).expect("hash");
        group.bench_function(format!("hash/cost={cost}"), |b| {
            b.iter(|| hasher.hash(black_box(PASSWORD)).expect("hash"))
        });
        group.bench_function(format!("verify/cost={cost}"), |b| {
            b.iter(|| hasher.verify(black_box(PASSWORD), black_box(&stored)))
        });
    }
    group.finish();
}

fn me_handler(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (private, public) = shared::signer::test_keys::write_pair(dir.path());
    let vars = [
        (
            "AUTH_STORE",
            format!("sqlite:{}", dir.path().join("users.db").display()),
        ),
        ("AUTH_SIGNING_KEY", format!("file:{}", private.display())),
        ("AUTH_PUBLIC_KEY", format!("file:{}", public.display())),
        ("AUTH_ISSUER", ISSUER.into()),
        ("AUTH_AUDIENCE", AUDIENCE.into()),
        ("AUTH_BCRYPT_COST", "4".into()),
    ];
    let config =
        Config::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .expect("config");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let wiring = Wiring::new(config);
    let store = || SqliteStore::open(&dir.path().join("users.db")).expect("store");
    let state = rt.block_on(wiring.me(store())).expect("state");

    // The user and the token come from the register and login handlers, as in production.
    let register = rt
        .block_on(wiring.register(store()))
        .expect("register state");
    let login = rt.block_on(wiring.login(store())).expect("login state");
    let body =
        serde_json::json!({"username": "Emma", "password": PASSWORD, "full_name": "Emma Doe"});
    let created = rt.block_on(register::handle(&register, json_post(&body)));
    assert_eq!(created.status(), 201, "register");
    let logged_in = rt.block_on(login::handle(&login, json_post(&body)));
    assert_eq!(logged_in.status(), 200, "login");
    let reply: serde_json::Value = serde_json::from_slice(logged_in.body()).expect("login JSON");
    let bearer = format!("Bearer {}", reply["access_token"].as_str().expect("token"));

    let with_token = me_event(Some(&bearer));
    let without_token = me_event(None);
    let ok = rt.block_on(me::handle(&state, request(&with_token)));
    assert_eq!(ok.status(), 200, "the benchmarked path must succeed");
    let refused = rt.block_on(me::handle(&state, request(&without_token)));
    assert_eq!(refused.status(), 401, "the floor path must be the refusal");

    let mut group = c.benchmark_group("handler/me");
    group.bench_function("valid_token", |b| {
        b.iter_batched(
            || request(&with_token),
            |req| rt.block_on(me::handle(&state, req)),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("no_token", |b| {
        b.iter_batched(
            || request(&without_token),
            |req| rt.block_on(me::handle(&state, req)),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("event_parse", |b| {
        b.iter(|| request(black_box(&with_token)))
    });
    group.finish();
}

criterion_group!(benches, tokens, passwords, me_handler);
criterion_main!(benches);
