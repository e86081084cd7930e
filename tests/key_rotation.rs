//! Signing-key rotation without downtime, in the README runbook's three phases, on SQLite with
//! PEM keys and on DynamoDB with KMS keys (moto):
//! 1. sign with A while publishing B;
//! 2. sign with B while publishing A: A's tokens still pass `/me`, the JWKS lists both;
//! 3. B alone: A's tokens are refused.

use aws_config::SdkConfig;
use integration_tests::{moto, write_test_keys};
use lambda_http::http::{Method, Request, header};
use lambda_http::{Body, Response};
use serde_json::{Value, json};
use shared::Config;
use shared::handlers::{jwks, login, me, register};
use shared::store::contract::FullStore;
use shared::store::{DynamoStore, SqliteStore};
use shared::wiring::{InitError, Wiring};

const PASSWORD: &str = "velvet-tundra-marmalade-42";

/// A key as each function is given it: `signing` to the signing functions, `published` (its
/// public half: a public PEM, the KMS key, `spki:`) to those that verify.
#[derive(Clone, Copy)]
struct Key<'a> {
    signing: &'a str,
    published: &'a str,
}

/// Settings with these keys over this store; on DynamoDB, the SDK pointed at moto.
fn wiring(store: &str, key: Key<'_>, extra: Option<&str>, aws: Option<&SdkConfig>) -> Wiring {
    let vars = [
        ("AUTH_STORE", store.to_string()),
        ("AUTH_SIGNING_KEY", key.signing.to_string()),
        ("AUTH_PUBLIC_KEY", key.published.to_string()),
        ("AUTH_EXTRA_PUBLIC_KEYS", extra.unwrap_or("").to_string()),
        ("AUTH_ISSUER", "https://auth.example.test".into()),
        ("AUTH_BCRYPT_COST", "4".into()),
    ];
    let config =
        Config::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .unwrap();
    match aws {
        Some(aws) => Wiring::with_aws(config, aws.clone()),
        None => Wiring::new(config),
    }
}

fn request(method: Method, path: &str, bearer: Option<&str>, body: Option<Value>) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("https://auth.example.test{path}"));
    if let Some(token) = bearer {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    match body {
        Some(b) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::Text(b.to_string())),
        None => builder.body(Body::Empty),
    }
    .unwrap()
}

fn json_of(resp: Response<Body>) -> (u16, Value) {
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_slice(resp.body()).unwrap_or(Value::Null),
    )
}

/// One deployment's functions, as configured during one phase.
struct Phase<S> {
    wiring: Wiring,
    store: Box<dyn Fn() -> S>,
}

impl<S: FullStore + 'static> Phase<S> {
    async fn login(&self) -> String {
        let state = self.wiring.login((self.store)()).await.unwrap();
        let body = json!({"username": "rotor", "password": PASSWORD});
        let (status, body) =
            json_of(login::handle(&state, request(Method::POST, "/login", None, Some(body))).await);
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    async fn me(&self, token: &str) -> u16 {
        let state = self.wiring.me((self.store)()).await.unwrap();
        me::handle(&state, request(Method::GET, "/me", Some(token), None))
            .await
            .status()
            .as_u16()
    }

    async fn published_kids(&self) -> Vec<String> {
        let state = self.wiring.jwks().await.unwrap();
        let (status, body) = json_of(
            jwks::handle(
                &state,
                request(Method::GET, "/.well-known/jwks.json", None, None),
            )
            .await,
        );
        assert_eq!(status, 200);
        body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    }
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// The three phases over one store, with keys `a` and `b`; each is published (`extra`) as its
/// public half before it signs, and after.
async fn rotate<S: FullStore + 'static>(
    store_setting: &str,
    aws: Option<&SdkConfig>,
    (a, b): (Key<'_>, Key<'_>),
    store: impl Fn() -> S + Clone + 'static,
) {
    let phase = |key: Key<'_>, extra: Option<&str>| Phase {
        wiring: wiring(store_setting, key, extra, aws),
        store: Box::new(store.clone()),
    };
    let one = phase(a, Some(b.published));
    let state = one.wiring.register(store()).await.unwrap();
    let body = json!({"username": "rotor", "password": PASSWORD});
    let (status, _) = json_of(
        register::handle(&state, request(Method::POST, "/register", None, Some(body))).await,
    );
    assert_eq!(status, 201);

    // 1. Sign with A, publish B too.
    let token_a = one.login().await;
    let kids = one.published_kids().await;
    assert_eq!(kids.len(), 2);
    assert_eq!(kids[0], kid(&token_a), "the signing key comes first");
    assert_eq!(one.me(&token_a).await, 200);

    // 2. Sign with B, keep publishing A: tokens of both pass, on either phase's functions.
    let two = phase(b, Some(a.published));
    let token_b = two.login().await;
    assert_ne!(kid(&token_b), kid(&token_a));
    assert_eq!(
        kids[1],
        kid(&token_b),
        "phase 1 published the key that signs now"
    );
    assert_eq!(two.published_kids().await, [kid(&token_b), kid(&token_a)]);
    assert_eq!(two.me(&token_a).await, 200, "A's tokens still pass");
    assert_eq!(two.me(&token_b).await, 200);
    assert_eq!(
        one.me(&token_b).await,
        200,
        "B was published before it signed"
    );

    // 3. B alone: A's tokens are refused.
    let three = phase(b, None);
    assert_eq!(three.published_kids().await, [kid(&token_b)]);
    assert_eq!(three.me(&token_a).await, 401);
    assert_eq!(three.me(&token_b).await, 200);
}

#[tokio::test]
async fn sqlite_with_pem_keys_rotates_in_three_phases() {
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let (a, a_public) = write_test_keys(&a_dir);
    let (b, b_public) = write_test_keys(&b_dir);
    let db = dir.path().join("users.db");
    let setting = format!("sqlite:{}", db.display());
    let file = |p: &std::path::Path| format!("file:{}", p.display());
    let (a, a_public, b, b_public) = (file(&a), file(&a_public), file(&b), file(&b_public));
    let key = |signing, published| Key { signing, published };
    rotate(
        &setting,
        None,
        (key(&a, &a_public), key(&b, &b_public)),
        move || SqliteStore::open(&db).unwrap(),
    )
    .await;
}

#[tokio::test]
async fn dynamodb_with_kms_keys_rotates_in_three_phases() {
    let config = moto::sdk_config().await;
    let table = moto::create_users_table(&config).await;
    let a = format!("kms:{}", moto::create_signing_key(&config).await);
    let b = format!("kms:{}", moto::create_signing_key(&config).await);
    let setting = format!("dynamodb:{table}");
    let aws = config.clone();
    // A KMS key is its own public half: the verifying functions fetch it with GetPublicKey.
    let (a, b) = (
        Key {
            signing: &a,
            published: &a,
        },
        Key {
            signing: &b,
            published: &b,
        },
    );
    rotate(&setting, Some(&aws), (a, b), move || {
        DynamoStore::new(&config, &table)
    })
    .await;
}

#[tokio::test]
async fn a_key_named_twice_is_refused_at_init_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = write_test_keys(dir.path());
    let setting = format!("sqlite:{}", dir.path().join("users.db").display());
    let (private, public) = (
        format!("file:{}", private.display()),
        format!("file:{}", public.display()),
    );
    let key = Key {
        signing: &private,
        published: &public,
    };
    let w = wiring(&setting, key, Some(&public), None);
    let err = match w.public_keys().await {
        Err(e @ InitError::KeySet(_)) => e.to_string(),
        other => panic!("expected a key-set error, got {other:?}"),
    };
    assert!(err.contains("AUTH_EXTRA_PUBLIC_KEYS") && err.contains("duplicate key id"));
    assert!(!err.contains('\n'), "one line: {err}");
}

/// The base64 DER `SubjectPublicKeyInfo` of a public PEM file: what `spki:` takes.
fn spki(public_pem: &std::path::Path) -> String {
    let pem = std::fs::read_to_string(public_pem).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    format!("spki:{body}")
}

/// Stores the PEM private key `pem_file` as the `SecureString` parameter `name`, encrypted under
/// the symmetric KMS key `key_id`, as the README's runbook does with the AWS CLI.
async fn put_signing_parameter(
    config: &SdkConfig,
    name: &str,
    key_id: &str,
    pem_file: &std::path::Path,
) {
    aws_sdk_ssm::Client::new(config)
        .put_parameter()
        .name(name)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .key_id(key_id)
        .value(std::fs::read_to_string(pem_file).unwrap())
        .overwrite(true)
        .send()
        .await
        .expect("put the signing key parameter on moto");
}

#[tokio::test]
async fn dynamodb_with_ssm_keys_rotates_in_three_phases() {
    let config = moto::sdk_config().await;
    let table = moto::create_users_table(&config).await;
    let parameter_key = moto::create_symmetric_key(&config).await;
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let (a_private, a_public) = write_test_keys(&a_dir);
    let (b_private, b_public) = write_test_keys(&b_dir);
    let stack = uuid::Uuid::new_v4().simple().to_string();
    let (a, b) = (
        format!("/{stack}/signing-key-a"),
        format!("/{stack}/signing-key-b"),
    );
    put_signing_parameter(&config, &a, &parameter_key, &a_private).await;
    put_signing_parameter(&config, &b, &parameter_key, &b_private).await;
    let setting = format!("dynamodb:{table}");
    let aws = config.clone();
    let store = {
        let (config, table) = (config.clone(), table.clone());
        move || DynamoStore::new(&config, &table)
    };
    let (a, b) = (format!("ssm:{a}"), format!("ssm:{b}"));
    let (a_spki, b_spki) = (spki(&a_public), spki(&b_public));
    let (a_key, b_key) = (
        Key {
            signing: &a,
            published: &a_spki,
        },
        Key {
            signing: &b,
            published: &b_spki,
        },
    );
    rotate(&setting, Some(&aws), (a_key, b_key), store.clone()).await;

    // The verifying functions need only the public key: `me` and `jwks` start and verify with
    // `AUTH_PUBLIC_KEY=spki:` while the parameter they are never allowed to read is missing; one
    // given the parameter as its public key is refused (it would read the private key).
    let signing = Phase {
        wiring: wiring(&setting, a_key, None, Some(&aws)),
        store: Box::new(store.clone()),
    };
    let token = signing.login().await;
    let unreadable = format!("ssm:/{stack}/not-readable-here");
    let verifying = Phase {
        wiring: wiring(
            &setting,
            Key {
                signing: &unreadable,
                published: &a_spki,
            },
            None,
            Some(&aws),
        ),
        store: Box::new(store.clone()),
    };
    assert_eq!(verifying.me(&token).await, 200);
    assert_eq!(verifying.published_kids().await, [kid(&token)]);
    let private_as_public = wiring(
        &setting,
        Key {
            signing: &a,
            published: &a,
        },
        None,
        Some(&aws),
    );
    let Err(e) = private_as_public.me(store()).await else {
        panic!("a verifying function was given the private key's parameter");
    };
    assert!(e.to_string().contains("holds the private key"), "{e}");
    // A signing function cannot start without its parameter, nor from a plain String one.
    assert!(verifying.wiring.login(store()).await.is_err());
    aws_sdk_ssm::Client::new(&config)
        .put_parameter()
        .name(format!("/{stack}/plain"))
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .value(std::fs::read_to_string(&a_private).unwrap())
        .send()
        .await
        .unwrap();
    let plain = format!("ssm:/{stack}/plain");
    let plain = wiring(
        &setting,
        Key {
            signing: &plain,
            published: &a_spki,
        },
        None,
        Some(&aws),
    );
    let Err(e) = plain.login(store()).await else {
        panic!("a plain String parameter was accepted as a signing key");
    };
    assert!(e.to_string().contains("not a SecureString"), "{e}");
}
