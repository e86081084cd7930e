//! A `TestApp`: every function's state over one store (a temporary SQLite file, or a fresh
//! DynamoDB table on moto), one temporary key, a fake clock, and typed request helpers. Stored
//! state is reached only through the store's test seam (`shared::store::testing`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(feature = "moto")]
use integration_tests::moto;
use integration_tests::{event, write_test_keys};
use lambda_http::http::{Method, Request as HttpRequest, header};
use lambda_http::{Body, Request, Response};
use serde_json::Value;
use shared::Config;
use shared::handlers::{account, authorize, jwks, login, logout, me, register};
use shared::signer::AnySigner;
use shared::state::{
    AccountState, AuthorizeState, JwksState, LoginState, LogoutState, MeState, RegisterState,
};
#[cfg(feature = "moto")]
use shared::store::DynamoStore;
use shared::store::SqliteStore;
use shared::store::contract::FullStore;
use shared::store::testing::TestSeam;
use shared::wiring::Wiring;

/// A password the policy accepts.
pub const GOOD_PASSWORD: &str = "velvet-tundra-marmalade-42";

/// What a test app's store must be: a full backend with its test seam.
pub trait AppStore: FullStore + TestSeam + 'static {}
impl<T: FullStore + TestSeam + 'static> AppStore for T {}

/// Which function a request goes to.
#[derive(Debug, Clone, Copy)]
pub enum Route {
    Register,
    Login,
    Me,
    Logout,
    Account,
    Jwks,
    Authorize,
}

pub struct TestApp<S> {
    pub dir: tempfile::TempDir,
    /// The store, as an operator (or another tool) would reach it.
    pub store: S,
    register: RegisterState<S>,
    login: LoginState<S, AnySigner>,
    me: MeState<S>,
    logout: LogoutState<S>,
    account: AccountState<S, AnySigner>,
    jwks: JwksState,
    authorize: AuthorizeState<S>,
    clock: Arc<AtomicU64>,
}

/// The app most tests use.
pub type SqliteApp = TestApp<SqliteStore>;
/// The same app on DynamoDB (moto).
#[cfg(feature = "moto")]
pub type DynamoApp = TestApp<DynamoStore>;

/// A message the file mailer wrote, read back.
#[derive(Debug, Clone)]
pub struct SentMail {
    pub to: String,
    pub subject: String,
    /// The text part, decoded.
    pub text: String,
    /// The HTML part, decoded.
    pub html: String,
    /// The whole file.
    pub raw: String,
}

impl SentMail {
    fn parse(raw: &str) -> Self {
        let header = |name: &str| {
            raw.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .unwrap_or("")
                .to_string()
        };
        // The parts of a multipart/alternative message, each decoded from its transfer encoding.
        let part = |kind: &str| {
            let start = raw
                .find(&format!("Content-Type: {kind}"))
                .unwrap_or_else(|| panic!("no {kind} part in {raw}"));
            let rest = &raw[start..];
            let (head, body) = rest.split_once("\r\n\r\n").expect("part body");
            let body = body.split("\r\n--").next().unwrap();
            if head.contains("quoted-printable") {
                decode_quoted_printable(body)
            } else if head.contains("base64") {
                use base64::Engine;
                let compact: String = body.split_whitespace().collect();
                String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(compact)
                        .unwrap(),
                )
                .unwrap()
            } else {
                body.to_string()
            }
        };
        SentMail {
            to: header("To"),
            subject: header("Subject"),
            text: part("text/plain"),
            html: part("text/html"),
            raw: raw.to_string(),
        }
    }

    /// The `token` of the link in the text part.
    pub fn token(&self) -> Option<String> {
        let at = self.text.find("token=")? + "token=".len();
        Some(
            self.text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
                .collect(),
        )
    }
}

fn decode_quoted_printable(body: &str) -> String {
    let joined = body.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 3 <= bytes.len()
            && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// A response with its body parsed.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: lambda_http::http::HeaderMap,
    pub body: Value,
    pub raw: String,
}

impl Reply {
    fn from(resp: Response<Body>) -> Self {
        let raw = String::from_utf8(resp.body().to_vec()).unwrap();
        Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: serde_json::from_str(&raw).unwrap_or(Value::Null),
            raw,
        }
    }

    /// The access and refresh tokens of a 200 from the token endpoint.
    pub fn token_pair(&self) -> (String, String) {
        assert_eq!(self.status, 200, "{}", self.raw);
        let get = |k: &str| self.body[k].as_str().expect(k).to_string();
        (get("access_token"), get("refresh_token"))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    /// Asserts an RFC 9457 problem with this status, returning its detail.
    pub fn problem(&self, status: u16) -> &str {
        assert_eq!(self.status, status, "{}", self.raw);
        assert_eq!(self.header("content-type"), "application/problem+json");
        assert_eq!(self.body["status"], status);
        assert!(self.body["title"].is_string() && self.body["type"].is_string());
        self.body["detail"].as_str().expect("detail")
    }
}

impl SqliteApp {
    pub async fn new() -> Self {
        Self::with_cost(4).await
    }

    /// Each function gets its own connection to one file, as separate processes would.
    pub async fn with_cost(cost: u32) -> Self {
        let (dir, wiring) = wiring(cost, &[]);
        let path = dir.path().join("users.db");
        TestApp::build(dir, wiring, || SqliteStore::open(&path).unwrap()).await
    }
}

/// A backend a test app can be built on, at a given bcrypt cost.
pub trait Backend: AppStore + Sized {
    /// A fresh app on a fresh store of this backend.
    fn app(cost: u32) -> impl std::future::Future<Output = TestApp<Self>>;
}

impl Backend for SqliteStore {
    async fn app(cost: u32) -> TestApp<Self> {
        SqliteApp::with_cost(cost).await
    }
}

#[cfg(feature = "moto")]
impl Backend for DynamoStore {
    async fn app(cost: u32) -> TestApp<Self> {
        DynamoApp::dynamo_with_cost(cost).await
    }
}

#[cfg(feature = "moto")]
impl TestApp<DynamoStore> {
    /// The same app with its users in a fresh DynamoDB table on moto.
    pub async fn dynamo() -> Self {
        Self::dynamo_with_cost(4).await
    }

    pub async fn dynamo_with_cost(cost: u32) -> Self {
        let (dir, wiring) = wiring(cost, &[]);
        let config = moto::sdk_config().await;
        let table = moto::create_users_table(&config).await;
        TestApp::build(dir, wiring, || DynamoStore::new(&config, &table)).await
    }

    /// The deployed path: DynamoDB and a KMS signing key, every call under the access key
    /// `access_key`, which moto counts ([`calls`]).
    pub async fn deployed(access_key: &str) -> Self {
        let config = moto::sdk_config_as(access_key).await;
        let table = moto::create_users_table(&config).await;
        let key = moto::create_signing_key(&config).await;
        let signing = format!("kms:{key}");
        let (dir, wiring) = wiring(
            4,
            &[
                ("AUTH_SIGNING_KEY", &signing),
                ("AUTH_PUBLIC_KEY", &signing),
            ],
        );
        let wiring = Wiring::with_aws(wiring.config, config.clone());
        TestApp::build(dir, wiring, || DynamoStore::new(&config, &table)).await
    }
}

/// What one request cost in round trips: the calls moto counted under an access key, by
/// `X-Amz-Target` (`DynamoDB_20120810.GetItem`, `TrentService.Sign` …), as
/// `scripts/moto_atomic.py` counts them.
#[cfg(feature = "moto")]
#[derive(Debug)]
pub struct Calls(pub std::collections::BTreeMap<String, u64>);

#[cfg(feature = "moto")]
impl Calls {
    /// Runs `request` alone and counts its calls under `access_key`.
    pub async fn of<T>(
        access_key: &str,
        request: impl std::future::Future<Output = T>,
    ) -> (T, Self) {
        let url = format!("{}/__counts/{access_key}", moto::endpoint());
        ureq::delete(&url).call().unwrap();
        let out = request.await;
        let counts = ureq::get(&url)
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        (out, Calls(counts))
    }

    fn service(&self, prefix: &str) -> u64 {
        self.0
            .iter()
            .filter(|(target, _)| target.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }

    /// DynamoDB requests, of any kind.
    pub fn dynamodb(&self) -> u64 {
        self.service("DynamoDB_20120810.")
    }

    /// KMS requests of one operation (`Sign`, `Decrypt` …).
    pub fn kms(&self, operation: &str) -> u64 {
        self.service(&format!("TrentService.{operation}"))
    }

    /// Every KMS request.
    pub fn kms_total(&self) -> u64 {
        self.service("TrentService.")
    }
}

/// A temporary folder with a fresh key pair, and the settings of a test app (`overrides` replace
/// the defaults of the same name).
fn wiring(cost: u32, overrides: &[(&str, &str)]) -> (tempfile::TempDir, Wiring) {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = write_test_keys(dir.path());
    let data_key = dir.path().join("data-key");
    std::fs::write(&data_key, uuid::Uuid::new_v4().as_bytes().repeat(2)).unwrap();
    let vars = [
        (
            "AUTH_STORE",
            format!("sqlite:{}", dir.path().join("users.db").display()),
        ),
        ("AUTH_SIGNING_KEY", format!("file:{}", private.display())),
        ("AUTH_PUBLIC_KEY", format!("file:{}", public.display())),
        ("AUTH_ISSUER", "https://auth.example.test".into()),
        ("AUTH_AUDIENCE", "example-api".into()),
        ("AUTH_BCRYPT_COST", cost.to_string()),
        (
            "AUTH_MAILER",
            format!("file:{}", dir.path().join("mail").display()),
        ),
        ("AUTH_MAIL_FROM", "Example <auth@example.test>".into()),
        ("AUTH_FORGOT_MIN_MS", "20".into()),
        ("AUTH_DATA_KEY", format!("file:{}", data_key.display())),
    ];
    let config = Config::from_lookup(|k| {
        let set = overrides
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string());
        set.or_else(|| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
    })
    .unwrap();
    (dir, Wiring::new(config))
}

impl<S: AppStore> TestApp<S> {
    async fn build(dir: tempfile::TempDir, wiring: Wiring, store: impl Fn() -> S) -> Self {
        // A frozen clock that only `advance` moves: a slow machine must not open a lockout early
        // or end a session.
        let clock = Arc::new(AtomicU64::new(shared::clock::now()));
        let frozen = || -> shared::clock::Clock {
            let clock = clock.clone();
            Arc::new(move || clock.load(Ordering::SeqCst))
        };
        let mut login = wiring.login(store()).await.unwrap();
        login.clock = frozen();
        let mut me = wiring.me(store()).await.unwrap();
        me.clock = frozen();
        let mut logout = wiring.logout(store()).await.unwrap();
        logout.clock = frozen();
        let mut account = wiring.account(store()).await.unwrap();
        account.clock = frozen();
        let mut authorize = wiring.authorize(store()).await.unwrap();
        authorize.clock = frozen();
        TestApp {
            authorize,
            register: wiring.register(store()).await.unwrap(),
            jwks: wiring.jwks().await.unwrap(),
            store: store(),
            login,
            me,
            logout,
            account,
            dir,
            clock,
        }
    }

    /// Deletes every user behind the service's back.
    pub async fn delete_all_users(&self) {
        self.store.delete_all_users().await;
    }

    /// The stored hash and failure count of `key`.
    pub async fn stored(&self, key: &str) -> (String, u64) {
        let (hash, count) = self.store.stored(key).await.expect("user exists");
        (hash, u64::from(count))
    }

    /// Sets the failures of `source` against the account `key` (the per-address schedule), as a
    /// long attack from that address would leave them.
    pub async fn set_pair_failures(&self, key: &str, source: &str, count: u32, at: u64) {
        let user = self.store.credentials(key).await.unwrap();
        let subject = shared::throttle::subject(user.as_ref(), key);
        let pair = shared::throttle::pair_key(&subject, source);
        self.store.reset_counter(&pair).await.unwrap();
        let counter = shared::store::Counter {
            failures: count,
            since: at,
        };
        let expires = at + shared::policy::PAIR_MEMORY_SECONDS;
        assert!(
            self.store
                .swap_counter(&pair, shared::store::Swap::new(None, counter, expires, at))
                .await
                .unwrap()
        );
    }

    /// A JSON login from the address `ip` (an HTTP API event, as API Gateway sends it).
    pub async fn login_from(&self, ip: &str, username: &str, password: &str) -> Reply {
        let mut event: Value = serde_json::from_str(&integration_tests::fixture(
            "v2_login_json",
            &[("USERNAME", username), ("PASSWORD", password)],
        ))
        .unwrap();
        event["requestContext"]["http"]["sourceIp"] = ip.into();
        let req = lambda_http::request::from_str(&event.to_string()).unwrap();
        self.send(Route::Login, req).await
    }

    /// Inserts a user row as another tool wrote it: the FastAPI tutorial's plain bcrypt hash, or
    /// a hash made at another cost.
    pub async fn insert_user(&self, username: &str, hash: &str, full_name: Option<&str>) {
        let id = format!("imported-{}", shared::policy::username_key(username));
        self.store.seed_user(&id, username, hash, full_name).await;
    }

    /// Other hourly ceilings for the functions that check passwords.
    pub fn set_throttle_limits(&mut self, limits: shared::throttle::ThrottleLimits) {
        self.login.throttle = limits;
        self.account.throttle = limits;
        self.authorize.throttle = limits;
    }

    /// Shorter session limits for the login function (the other functions need none).
    pub fn set_session_limits(&mut self, limits: shared::session::SessionLimits) {
        self.login.sessions = limits;
    }

    /// Every message the file mailer wrote so far.
    pub fn mails(&self) -> Vec<SentMail> {
        let dir = self.dir.path().join("mail");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .map(|p| SentMail::parse(&std::fs::read_to_string(p).unwrap()))
            .collect()
    }

    /// The messages to `to` whose subject ends with `subject`.
    pub fn mails_to(&self, to: &str, subject: &str) -> Vec<SentMail> {
        self.mails()
            .into_iter()
            .filter(|m| m.to.contains(to) && m.subject.ends_with(subject))
            .collect()
    }

    /// The token of the one link mailed to `to` under `subject` (exactly one such message).
    pub fn mailed_token(&self, to: &str, subject: &str) -> String {
        let mails = self.mails_to(to, subject);
        assert_eq!(mails.len(), 1, "{mails:#?}");
        mails[0].token().expect("a link with a token")
    }

    /// A JSON request to a route of the account function, from address `ip`.
    pub async fn account_from(
        &self,
        ip: &str,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Value,
    ) -> Reply {
        let mut event: Value = serde_json::from_str(&integration_tests::fixture(
            "v2_login_json",
            &[("USERNAME", "x"), ("PASSWORD", "y")],
        ))
        .unwrap();
        event["requestContext"]["http"]["sourceIp"] = ip.into();
        event["requestContext"]["http"]["method"] = method.as_str().into();
        event["requestContext"]["http"]["path"] = path.into();
        event["rawPath"] = path.into();
        event["routeKey"] = format!("{} {path}", method.as_str()).into();
        event["body"] = body.to_string().into();
        if let Some(token) = bearer {
            event["headers"]["authorization"] = format!("Bearer {token}").into();
        }
        let req = lambda_http::request::from_str(&event.to_string()).unwrap();
        self.send(Route::Account, req).await
    }

    /// The login function's (frozen) time.
    pub fn now(&self) -> u64 {
        self.clock.load(Ordering::SeqCst)
    }

    /// Moves the login function's clock forward.
    pub fn advance(&self, seconds: u64) {
        self.clock.fetch_add(seconds, Ordering::SeqCst);
    }

    pub async fn send(&self, route: Route, req: Request) -> Reply {
        Reply::from(match route {
            Route::Register => register::handle(&self.register, req).await,
            Route::Login => login::handle(&self.login, req).await,
            Route::Me => me::handle(&self.me, req).await,
            Route::Logout => logout::handle(&self.logout, req).await,
            Route::Account => account::handle(&self.account, req).await,
            Route::Jwks => jwks::handle(&self.jwks, req).await,
            Route::Authorize => authorize::handle(&self.authorize, req).await,
        })
    }

    /// Sends a fixture event with placeholders filled.
    pub async fn send_event(&self, route: Route, fixture: &str, vars: &[(&str, &str)]) -> Reply {
        self.send(route, event(fixture, vars)).await
    }

    /// Sends a hand-built request.
    pub async fn raw(
        &self,
        route: Route,
        method: Method,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> Reply {
        let mut builder = HttpRequest::builder()
            .method(method)
            .uri("https://api.example.test/");
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        self.send(route, builder.body(body.into()).unwrap()).await
    }

    pub async fn register_json(&self, body: Value) -> Reply {
        self.raw(
            Route::Register,
            Method::POST,
            Some("application/json"),
            body.to_string(),
        )
        .await
    }

    /// Registers a user as set-up for a test: anything but 201 fails the test here.
    pub async fn register(&self, username: &str, password: &str) -> Reply {
        let reply = self.try_register(username, password).await;
        assert_eq!(reply.status, 201, "{}", reply.raw);
        reply
    }

    /// A registration whose refusal the test checks.
    pub async fn try_register(&self, username: &str, password: &str) -> Reply {
        self.register_json(serde_json::json!({
            "username": username, "password": password, "full_name": format!("{username} Example")
        }))
        .await
    }

    pub async fn login_form(&self, form: &str) -> Reply {
        self.raw(
            Route::Login,
            Method::POST,
            Some("application/x-www-form-urlencoded"),
            form.to_string(),
        )
        .await
    }

    pub async fn login_json(&self, body: Value) -> Reply {
        self.raw(
            Route::Login,
            Method::POST,
            Some("application/json"),
            body.to_string(),
        )
        .await
    }

    pub async fn login(&self, username: &str, password: &str) -> Reply {
        self.raw(
            Route::Login,
            Method::POST,
            Some("application/json"),
            serde_json::json!({"username": username, "password": password}).to_string(),
        )
        .await
    }

    /// Logs in and returns the access token.
    pub async fn token(&self, username: &str, password: &str) -> String {
        self.tokens(username, password).await.0
    }

    /// Logs in and returns the access and refresh tokens.
    pub async fn tokens(&self, username: &str, password: &str) -> (String, String) {
        let reply = self.login(username, password).await;
        assert_eq!(reply.status, 200, "{}", reply.raw);
        reply.token_pair()
    }

    /// The refresh grant, as a form.
    pub async fn refresh(&self, refresh_token: &str) -> Reply {
        self.login_form(&format!(
            "grant_type=refresh_token&refresh_token={refresh_token}"
        ))
        .await
    }

    /// `PUT /me/password` or `DELETE /me` with an optional bearer and a JSON body.
    pub async fn account(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Value,
    ) -> Reply {
        let mut builder = HttpRequest::builder()
            .method(method)
            .uri(format!("https://api.example.test{path}"))
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = bearer {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        self.send(
            Route::Account,
            builder.body(Body::Text(body.to_string())).unwrap(),
        )
        .await
    }

    pub async fn change_password(&self, bearer: &str, current: &str, new: &str) -> Reply {
        self.account(
            Method::PUT,
            "/me/password",
            Some(bearer),
            serde_json::json!({"current_password": current, "new_password": new}),
        )
        .await
    }

    pub async fn delete_me(&self, bearer: &str, password: &str) -> Reply {
        self.account(
            Method::DELETE,
            "/me",
            Some(bearer),
            serde_json::json!({"password": password}),
        )
        .await
    }

    /// `POST /logout` with an optional bearer, a content type and a body.
    pub async fn logout(
        &self,
        bearer: Option<&str>,
        content_type: Option<&str>,
        body: &str,
    ) -> Reply {
        let mut builder = HttpRequest::builder()
            .method(Method::POST)
            .uri("https://api.example.test/logout");
        if let Some(token) = bearer {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        let body = if body.is_empty() {
            Body::Empty
        } else {
            Body::Text(body.into())
        };
        self.send(Route::Logout, builder.body(body).unwrap()).await
    }

    pub async fn me_with(&self, authorization: Option<&str>) -> Reply {
        let mut builder = HttpRequest::builder()
            .method(Method::GET)
            .uri("https://api.example.test/me");
        if let Some(a) = authorization {
            builder = builder.header(header::AUTHORIZATION, a);
        }
        self.send(Route::Me, builder.body(Body::Empty).unwrap())
            .await
    }

    pub async fn me(&self, token: &str) -> Reply {
        self.me_with(Some(&format!("Bearer {token}"))).await
    }
}
