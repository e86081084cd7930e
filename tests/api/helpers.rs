//! A `TestApp`: the four functions' states over one temporary SQLite file and key, a fake clock,
//! and typed request helpers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use integration_tests::{event, write_test_keys};
use lambda_http::http::{Method, Request as HttpRequest, header};
use lambda_http::{Body, Request, Response};
use serde_json::Value;
use shared::Config;
use shared::handlers::{discovery, login, me, register};
use shared::signer::AnySigner;
use shared::state::{AnyStore, DiscoveryState, LoginState, MeState, RegisterState};

/// A password the policy accepts.
pub const GOOD_PASSWORD: &str = "velvet-tundra-marmalade-42";

/// Which function a request goes to.
#[derive(Debug, Clone, Copy)]
pub enum Route {
    Register,
    Login,
    Me,
    Discovery,
}

pub struct TestApp {
    pub dir: tempfile::TempDir,
    register: RegisterState<AnyStore>,
    login: LoginState<AnyStore, AnySigner>,
    me: MeState<AnyStore>,
    discovery: DiscoveryState,
    clock_offset: Arc<AtomicU64>,
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

impl TestApp {
    pub async fn new() -> Self {
        Self::with_cost(4).await
    }

    pub async fn with_cost(cost: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = write_test_keys(dir.path());
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
        ];
        let config =
            Config::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
                .unwrap();
        let clock_offset = Arc::new(AtomicU64::new(0));
        let mut login = LoginState::from_config(&config).await.unwrap();
        let offset = clock_offset.clone();
        login.clock = Arc::new(move || shared::token::now() + offset.load(Ordering::SeqCst));
        TestApp {
            register: RegisterState::from_config(&config).await.unwrap(),
            me: MeState::from_config(&config).await.unwrap(),
            discovery: DiscoveryState::from_config(&config).await.unwrap(),
            login,
            dir,
            clock_offset,
        }
    }

    /// Moves the login function's clock forward.
    pub fn advance(&self, seconds: u64) {
        self.clock_offset.fetch_add(seconds, Ordering::SeqCst);
    }

    pub async fn send(&self, route: Route, req: Request) -> Reply {
        Reply::from(match route {
            Route::Register => register::handle(&self.register, req).await,
            Route::Login => login::handle(&self.login, req).await,
            Route::Me => me::handle(&self.me, req).await,
            Route::Discovery => discovery::handle(&self.discovery, req).await,
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

    pub async fn register(&self, username: &str, password: &str) -> Reply {
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
        let reply = self.login(username, password).await;
        assert_eq!(reply.status, 200, "{}", reply.raw);
        reply.body["access_token"].as_str().unwrap().to_string()
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

    /// Direct access to the database file, as an operator would have.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.path().join("users.db")).unwrap()
    }
}
