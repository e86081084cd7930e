//! End to end: the functions under `cargo lambda watch` on a free port, with a temporary
//! database and key, driven over real HTTP; then `cargo lambda invoke --data-file` on a fixture.
//!
//! Needs `cargo lambda` on PATH (`make test` installs it into `.venv/`).

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use integration_tests::{fixture, moto, nested_cargo, write_test_keys};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Value, json};
use shared::store::testing::TestSeam;
use shared::store::{CounterStore, CredentialStore, SqliteStore, Swap};

const PASSWORD: &str = "velvet-tundra-marmalade-42";
const ISSUER: &str = "http://localhost:1";
const AUDIENCE: &str = "e2e-api";
/// The first request waits for the debug build of every function.
const STARTUP_LIMIT: Duration = Duration::from_secs(900);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `cargo lambda watch` in its own process group, stopped with everything it started on drop.
struct Watch {
    child: Child,
    port: u16,
    log: PathBuf,
}

/// One watch at a time: each compiles into the same target folder.
static ONE_WATCH: Mutex<()> = Mutex::new(());

/// SQLite in `dir` and a fresh PEM key pair there.
fn sqlite_env(dir: &Path) -> Vec<(&'static str, String)> {
    let (private, public) = write_test_keys(dir);
    vec![
        (
            "AUTH_STORE",
            format!("sqlite:{}", dir.join("users.db").display()),
        ),
        ("AUTH_SIGNING_KEY", format!("file:{}", private.display())),
        ("AUTH_PUBLIC_KEY", format!("file:{}", public.display())),
    ]
}

impl Watch {
    /// Starts the functions with the `backend` settings (store, keys, AWS endpoint).
    fn start(dir: &Path, backend: &[(&'static str, String)]) -> Watch {
        Self::start_with(dir, backend, 1)
    }

    /// Starts the functions with up to `concurrency` instances of each, as Lambda scales out.
    fn start_with(dir: &Path, backend: &[(&'static str, String)], concurrency: u32) -> Watch {
        let port = free_port();
        let log = dir.join("watch.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = nested_cargo()
            // Edits to the tree while a test runs must not restart the functions under it.
            .args(["lambda", "watch", "--ignore-changes"])
            .args(["--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &port.to_string()])
            .args(["--concurrency", &concurrency.to_string()])
            .envs(backend.iter().map(|(k, v)| (k, v)))
            .env("AUTH_ISSUER", ISSUER)
            .env("AUTH_AUDIENCE", AUDIENCE)
            .env("AUTH_BCRYPT_COST", "4")
            .env("RUST_LOG", "info")
            // The functions at the most verbose level there is (watch itself stays at info): even
            // so, no secret may reach the logs.
            .args(["--env-var", "AWS_LAMBDA_LOG_LEVEL=trace"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("cargo lambda is installed (make test installs it)");
        Watch { child, port, log }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log_text(&self) -> String {
        let mut text = String::new();
        std::fs::File::open(&self.log)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let signal = |name: &str| {
            // Quiet: the group may already be gone, which is the point.
            let _ = Command::new("kill")
                .args([name, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Whatever of the group outlived the TERM (a function process watch left behind).
        signal("-KILL");
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(STARTUP_LIMIT))
        .build()
        .into()
}

struct Reply {
    status: u16,
    headers: ureq::http::HeaderMap,
    body: Value,
}

fn reply(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut resp = resp.expect("HTTP exchange");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.body_mut().read_to_string().unwrap();
    Reply {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

/// Waits until every function answers (each first request compiles and starts it).
fn wait_until_ready(watch: &mut Watch, http: &ureq::Agent) {
    let deadline = Instant::now() + STARTUP_LIMIT;
    loop {
        if let Ok(Some(status)) = watch.child.try_wait() {
            panic!(
                "cargo lambda watch exited ({status}):\n{}",
                watch.log_text()
            );
        }
        match http.get(watch.url("/.well-known/jwks.json")).call() {
            Ok(r) if r.status() == 200 => return,
            _ if Instant::now() > deadline => panic!("watch never answered:\n{}", watch.log_text()),
            _ => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// register → login (form and JSON) → me over HTTP, and the JWKS verifies the token.
/// Returns the token.
fn flow(watch: &mut Watch) -> String {
    let http = agent();
    wait_until_ready(watch, &http);
    // Register (201), then a duplicate in another case (409).
    let r = reply(http.post(watch.url("/register")).send_json(json!({
        "username": "Emma", "password": PASSWORD, "full_name": "Emma Doe"
    })));
    assert_eq!(
        (r.status, &r.body),
        (201, &json!({"message": "User registered successfully"}))
    );
    let r = reply(http.post(watch.url("/register")).send_json(json!({
        "username": "EMMA", "password": PASSWORD
    })));
    assert_eq!(r.status, 409);
    assert_eq!(r.headers["content-type"], "application/problem+json");

    // Log in with the OAuth2 form, as Swagger UI sends it, and with JSON.
    let form = reply(http.post(watch.url("/login")).send_form([
        ("grant_type", "password"),
        ("username", "emma"),
        ("password", PASSWORD),
        ("scope", ""),
    ]));
    assert_eq!(form.status, 200, "{}", form.body);
    assert_eq!(form.headers["cache-control"], "no-store");
    let token = form.body["access_token"].as_str().unwrap().to_string();
    let json_login = reply(http.post(watch.url("/login")).send_json(json!({
        "username": "Emma", "password": PASSWORD
    })));
    assert_eq!(json_login.status, 200);
    assert_eq!(json_login.body["token_type"], "bearer");

    // The refresh grant rotates the refresh token; logging out with it ends the session.
    // (The JSON login's session: the form login's token is used below.)
    let refresh_token = json_login.body["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let refreshed = reply(http.post(watch.url("/login")).send_form([
        ("grant_type", "refresh_token"),
        ("refresh_token", &refresh_token),
    ]));
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_eq!(refreshed.headers["cache-control"], "no-store");
    let rotated = refreshed.body["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(rotated, refresh_token);
    let refreshed_access = refreshed.body["access_token"].as_str().unwrap().to_string();
    let me = reply(
        http.get(watch.url("/me"))
            .header("Authorization", format!("Bearer {refreshed_access}"))
            .call(),
    );
    assert_eq!(me.status, 200, "{}", me.body);
    let out = reply(
        http.post(watch.url("/logout"))
            .send_form([("token", &rotated)]),
    );
    assert_eq!(out.status, 200, "{}", out.body);
    let after = reply(
        http.post(watch.url("/login"))
            .send_form([("grant_type", "refresh_token"), ("refresh_token", &rotated)]),
    );
    assert_eq!(
        (after.status, &after.body["error"]),
        (400, &json!("invalid_grant"))
    );
    let me = reply(
        http.get(watch.url("/me"))
            .header("Authorization", format!("Bearer {refreshed_access}"))
            .call(),
    );
    assert_eq!(me.status, 401, "an ended session's access token is refused");

    // A wrong password: 401 with the challenge.
    let wrong = reply(
        http.post(watch.url("/login"))
            .send_form([("username", "emma"), ("password", "nope-nope-nope")]),
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.headers["www-authenticate"], "Bearer");
    assert_eq!(wrong.body["detail"], "Incorrect username or password");

    // /me with the token; without it, 401.
    let me = reply(
        http.get(watch.url("/me"))
            .header("Authorization", format!("Bearer {token}"))
            .call(),
    );
    assert_eq!(
        (me.status, &me.body),
        (200, &json!({"username": "Emma", "full_name": "Emma Doe"}))
    );
    let anon = reply(http.get(watch.url("/me")).call());
    assert_eq!(anon.status, 401);
    assert_eq!(anon.headers["www-authenticate"], "Bearer");

    // The published JWKS alone verifies the token.
    let discovery = reply(
        http.get(watch.url("/.well-known/openid-configuration"))
            .call(),
    );
    assert_eq!(discovery.body["issuer"], ISSUER);
    let jwks = reply(http.get(watch.url("/.well-known/jwks.json")).call());
    let set: JwkSet = serde_json::from_value(jwks.body).unwrap();
    let kid = decode_header(&token).unwrap().kid.unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    let key = DecodingKey::from_jwk(set.find(&kid).expect("kid published")).unwrap();
    // This process verifies with the same `ring` backend the functions use.
    shared::signer::provider::install();
    decode::<Value>(&token, &key, &validation).expect("token verifies with the JWKS");

    token
}

/// A second account changes its password, then deletes itself, over HTTP.
fn account_lifecycle(watch: &Watch) {
    let http = agent();
    let new_password = "copper-lantern-orchard-17";
    let r = reply(http.post(watch.url("/register")).send_json(json!({
        "username": "lifecycle", "password": PASSWORD
    })));
    assert_eq!(r.status, 201, "{}", r.body);
    let login = |password: &str| {
        reply(
            http.post(watch.url("/login"))
                .send_form([("username", "lifecycle"), ("password", password)]),
        )
    };
    let first = login(PASSWORD);
    let bearer = |r: &Reply| format!("Bearer {}", r.body["access_token"].as_str().unwrap());

    let wrong = reply(
        http.put(watch.url("/me/password"))
            .header("Authorization", bearer(&first))
            .send_json(json!({"current_password": "not-it-at-all", "new_password": new_password})),
    );
    assert_eq!(wrong.status, 403, "{}", wrong.body);
    let changed = reply(
        http.put(watch.url("/me/password"))
            .header("Authorization", bearer(&first))
            .send_json(json!({"current_password": PASSWORD, "new_password": new_password})),
    );
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert!(changed.body["refresh_token"].is_string());
    let me = |auth: &str| {
        reply(
            http.get(watch.url("/me"))
                .header("Authorization", auth)
                .call(),
        )
    };
    assert_eq!(me(&bearer(&first)).status, 401, "the old session ended");
    assert_eq!(me(&bearer(&changed)).status, 200);
    assert_eq!(login(PASSWORD).status, 401);

    let deleted = reply(
        http.delete(watch.url("/me"))
            .header("Authorization", bearer(&changed))
            .force_send_body()
            .send_json(json!({"password": new_password})),
    );
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(me(&bearer(&changed)).status, 401);
    assert_eq!(login(new_password).status, 401);
    let refresh = reply(http.post(watch.url("/login")).send_form([
        ("grant_type", "refresh_token"),
        (
            "refresh_token",
            changed.body["refresh_token"].as_str().unwrap(),
        ),
    ]));
    assert_eq!(refresh.status, 400);
}

/// A watch on a fresh SQLite file (the attacks below each get their own), ready to serve, with
/// the user `polyglot` registered under a long Unicode password; returns its access token.
struct Target {
    _one: std::sync::MutexGuard<'static, ()>,
    dir: tempfile::TempDir,
    watch: Watch,
    http: ureq::Agent,
    token: String,
}

const UNICODE_PASSWORD_CHARS: usize = 160;

fn unicode_password() -> String {
    "ключ-🔑-鍵-"
        .chars()
        .cycle()
        .take(UNICODE_PASSWORD_CHARS)
        .collect()
}

impl Target {
    fn start() -> Target {
        let one = ONE_WATCH.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let mut watch = Watch::start(dir.path(), &sqlite_env(dir.path()));
        let http = agent();
        wait_until_ready(&mut watch, &http);
        let r = reply(
            http.post(watch.url("/register"))
                .send_json(json!({"username": "polyglot", "password": unicode_password()})),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        let r = reply(
            http.post(watch.url("/login"))
                .send_json(json!({"username": "polyglot", "password": unicode_password()})),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let token = r.body["access_token"].as_str().unwrap().to_string();
        Target {
            _one: one,
            dir,
            watch,
            http,
            token,
        }
    }

    fn post_json(&self, path: &str, body: Value) -> Reply {
        reply(self.http.post(self.watch.url(path)).send_json(body))
    }

    fn post_raw(&self, path: &str, content_type: &str, body: &str) -> Reply {
        reply(
            self.http
                .post(self.watch.url(path))
                .header("Content-Type", content_type)
                .send(body.as_bytes()),
        )
    }

    fn login_form(&self, username: &str, password: &str) -> Reply {
        reply(
            self.http
                .post(self.watch.url("/login"))
                .send_form([("username", username), ("password", password)]),
        )
    }

    fn me_with(&self, bearer: &str) -> Reply {
        reply(
            self.http
                .get(self.watch.url("/me"))
                .header("Authorization", format!("Bearer {bearer}"))
                .call(),
        )
    }
}

/// Forged tokens (alg none, HS256 keyed with our public key, a tampered payload) are refused.
#[test]
fn forged_tokens_are_refused_over_http() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;
    let t = Target::start();
    assert_eq!(t.me_with(&t.token).status, 200, "the genuine token passes");
    let public_pem = std::fs::read(t.dir.path().join("signing-key.pub.pem")).unwrap();
    let parts: Vec<&str> = t.token.split('.').collect();
    let claims = parts[1];

    let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#);
    assert_eq!(
        t.me_with(&format!("{none}.{claims}.")).status,
        401,
        "alg none"
    );
    let header =
        json!({"alg": "HS256", "typ": "at+jwt", "kid": decode_header(&t.token).unwrap().kid});
    let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(&public_pem).unwrap();
    mac.update(input.as_bytes());
    let hs256 = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(t.me_with(&hs256).status, 401, "HS256 with the public key");
    let mut forged = payload.clone();
    forged["sub"] = "someone-else".into();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(forged.to_string()),
        parts[2]
    );
    assert_eq!(t.me_with(&forged).status, 401, "tampered payload");
}

/// Oversized, mistyped, malformed and wrongly typed bodies are 4xx with no bcrypt.
#[test]
fn unreadable_bodies_are_4xx_over_http() {
    let t = Target::start();
    let big = format!(
        r#"{{"username":"big","password":"{}"}}"#,
        "x".repeat(70_000)
    );
    let r = t.post_raw("/register", "application/json", &big);
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(
        t.post_raw("/register", "text/plain", "username=a").status,
        415
    );
    assert_eq!(
        t.post_raw("/register", "application/json", "{\"username\": ")
            .status,
        400
    );
    let r = t.post_json("/register", json!({"username": 7, "password": []}));
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (422, Some("username"))
    );
}

/// The tutorial's example password and an over-long one are refused; a long Unicode one works.
#[test]
fn the_password_rules_hold_over_http() {
    let t = Target::start();
    let r = t.post_json(
        "/register",
        json!({"username": "tutorial", "password": "123456"}),
    );
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (422, Some("password"))
    );
    let r = t.post_json(
        "/register",
        json!({"username": "verbose", "password": "y".repeat(300)}),
    );
    assert_eq!(r.status, 422);
    // Target::start registered and logged in with a 160-character Unicode password.
    assert_eq!(t.me_with(&t.token).status, 200);
}

/// A name that looks like SQL is just a name.
#[test]
fn sql_looking_names_are_data_over_http() {
    let t = Target::start();
    let sql = "x');DROP_TABLE_users;--";
    let r = t.post_json("/register", json!({"username": sql, "password": PASSWORD}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(t.login_form(sql, PASSWORD).status, 200);
    assert_eq!(t.login_form("polyglot", &unicode_password()).status, 200);
}

/// An unknown user and a wrong password look the same; after five failures the account waits,
/// and an account a long attack has left at ten failures waits 2^5 s, even for the right
/// password. (The schedule itself runs on a fake clock in `api/account_protection.rs`; here the
/// wall clock could cross a second.)
#[test]
fn enumeration_and_brute_force_over_http() {
    let t = Target::start();
    let wrong = t.login_form("polyglot", "not-it-at-all");
    let unknown = t.login_form("nobody-at-all", "not-it-at-all");
    assert_eq!((wrong.status, &wrong.body), (unknown.status, &unknown.body));
    for _ in 0..4 {
        assert_eq!(t.login_form("polyglot", "not-it-at-all").status, 401);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // The schedule of this address (watch's requests come from loopback) against the account.
    let store = SqliteStore::open(&t.dir.path().join("users.db")).unwrap();
    let account = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(store.credentials("polyglot"))
        .unwrap()
        .unwrap();
    let subject = shared::throttle::subject(Some(&account), "polyglot");
    let pair = shared::throttle::pair_key(&subject, "127.0.0.1");
    let counter = shared::store::Counter {
        failures: 10,
        since: now,
    };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        store.reset_counter(&pair).await.unwrap();
        let expires = now + shared::policy::PAIR_MEMORY_SECONDS;
        assert!(
            store
                .swap_counter(&pair, Swap::new(None, counter, expires, now))
                .await
                .unwrap()
        );
    });
    let r = t.post_json(
        "/login",
        json!({"username": "polyglot", "password": unicode_password()}),
    );
    assert_eq!(r.status, 429);
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((25..=32).contains(&wait), "{wait}");
}

#[test]
fn sqlite_register_login_me_over_http_and_invoke_a_fixture() {
    let _one = ONE_WATCH.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut watch = Watch::start(dir.path(), &sqlite_env(dir.path()));
    let token = flow(&mut watch);
    account_lifecycle(&watch);

    // `cargo lambda invoke --data-file` with a real HTTP API event.
    let event = dir.path().join("me-event.json");
    std::fs::write(&event, fixture("v2_me", &[("TOKEN", &token)])).unwrap();
    let out = nested_cargo()
        .args(["lambda", "invoke", "me", "--data-file"])
        .arg(&event)
        .args([
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &watch.port.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let response: Value = serde_json::from_slice(&out.stdout).expect("invoke prints the response");
    assert_eq!(response["statusCode"], 200, "{response}");
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["username"], "Emma");

    // Nothing secret reached the logs, though every function logged at debug level.
    let log = watch.log_text();
    assert!(
        log.contains("login succeeded"),
        "functions' logs are captured:\n{log}"
    );
    // The operator's view: one metric line per outcome, the failed login's source address.
    for metric in [
        r#""LoginSucceeded":1"#,
        r#""LoginFailed":1"#,
        r#""Refreshed":1"#,
    ] {
        assert!(log.contains(metric), "no {metric} metric line:\n{log}");
    }
    assert!(log.contains(r#""Namespace":"JwtAuth""#));
    assert!(
        log.lines().any(|l| l.contains("login failed")
            && l.contains("source_ip=")
            && !l.contains("source_ip=-")),
        "the failed login's line names its source address:\n{log}"
    );
    let (hash, _) = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(
            SqliteStore::open(&dir.path().join("users.db"))
                .unwrap()
                .stored("emma"),
        )
        .expect("emma is stored");
    let signature = token.rsplit('.').next().unwrap();
    for (what, secret) in [
        ("password", PASSWORD),
        ("token", signature),
        ("hash", &hash[30..]),
    ] {
        assert!(!log.contains(secret), "the {what} appears in the logs");
    }
    let private_key = std::fs::read_to_string(dir.path().join("signing-key.pem")).unwrap();
    assert!(
        !log.contains(private_key.lines().nth(1).unwrap()),
        "the key appears in the logs"
    );
}

#[test]
fn dynamodb_and_kms_register_login_me_over_http() {
    let _one = ONE_WATCH.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (table, key_id) = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let config = moto::sdk_config().await;
        (
            moto::create_users_table(&config).await,
            moto::create_signing_key(&config).await,
        )
    });
    let mut env = moto::process_env();
    env.push(("AUTH_STORE", format!("dynamodb:{table}")));
    env.push(("AUTH_SIGNING_KEY", format!("kms:{key_id}")));
    let mut watch = Watch::start(dir.path(), &env);
    let token = flow(&mut watch);
    account_lifecycle(&watch);
    assert_eq!(
        decode_header(&token).unwrap().typ.as_deref(),
        Some("at+jwt")
    );
    let log = watch.log_text();
    assert!(!log.contains(PASSWORD), "the password appears in the logs");
}

/// Wrong-password logins sent at once to several instances sharing one SQLite file cannot
/// outrun the throttle: at most the free attempts are checked (401), the rest wait (429).
///
/// The account's hourly ceiling is set to the five free failures, so the bound holds however
/// slowly the burst is served: the pair's own schedule lets a sixth guess through once its
/// one-second wait has passed, which a loaded machine can reach within the burst.
#[test]
fn sqlite_concurrent_guesses_across_instances_are_throttled() {
    let _one = ONE_WATCH.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut env = sqlite_env(dir.path());
    env.push(("AUTH_ACCOUNT_FAILURES_PER_HOUR", "5".into()));
    let mut watch = Watch::start_with(dir.path(), &env, 4);
    let http = agent();
    wait_until_ready(&mut watch, &http);
    let r = reply(http.post(watch.url("/register")).send_json(json!({
        "username": "besieged", "password": PASSWORD
    })));
    assert_eq!(r.status, 201, "{}", r.body);
    // Warm every instance first, so the burst meets running processes, not cold builds.
    let warm: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> =
            (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        reply(http.post(watch.url("/login")).send_form([
                            ("username", "nobody-here"),
                            ("password", "not-it-at-all"),
                        ]))
                        .status
                    })
                })
                .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(warm.iter().all(|s| *s == 401), "{warm:?}");

    const GUESSES: usize = 20;
    let barrier = std::sync::Barrier::new(GUESSES);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..GUESSES)
            .map(|i| {
                let (barrier, http, watch) = (&barrier, &http, &watch);
                scope.spawn(move || {
                    barrier.wait();
                    reply(http.post(watch.url("/login")).send_form([
                        ("username", "besieged"),
                        ("password", &format!("wrong-guess-{i}")),
                    ]))
                    .status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert!(checked <= 5, "{checked} guesses were checked: {statuses:?}");
    assert_eq!(checked + throttled, GUESSES, "{statuses:?}");
}
