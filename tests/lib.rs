//! Helpers shared by the integration tests: event fixtures and throwaway signing keys.
//!
//! The tests themselves are `api/` (handlers driven in-process by real event files) and `e2e.rs`
//! (the functions under `cargo lambda watch`, over real HTTP).

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// `cargo` for a nested build (watch, invoke, a binary under test), run from the workspace root
/// without the variables `cargo test` sets for this test binary: build scripts watch
/// `CARGO_MANIFEST_DIR` and `CARGO_PKG_*`, and would otherwise make the nested build recompile
/// the whole dependency graph.
pub fn nested_cargo() -> std::process::Command {
    let mut cmd = std::process::Command::new("cargo");
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("CARGO_") && name != "CARGO_HOME" && name != "CARGO_TARGET_DIR" {
            cmd.env_remove(&name);
        }
    }
    cmd.env_remove("LD_LIBRARY_PATH");
    cmd.current_dir(workspace_root());
    cmd
}

/// The folder holding the event fixtures.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A fixture's JSON with `{{NAME}}` placeholders in its body and headers filled from `vars`.
/// Values must be plain (letters, digits, `-_.!~`), so they need no escaping in JSON or forms.
pub fn fixture(name: &str, vars: &[(&str, &str)]) -> String {
    let path = fixtures_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut event: Value = serde_json::from_str(&text).expect("fixture is JSON");
    let fill = |s: &str| {
        vars.iter().fold(s.to_string(), |acc, (k, v)| {
            assert!(
                v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.!~".contains(c)),
                "fixture values must be plain: {v:?}"
            );
            acc.replace(&format!("{{{{{k}}}}}"), v)
        })
    };
    let base64 = event["isBase64Encoded"].as_bool().unwrap_or(false);
    if let Some(body) = event["body"].as_str() {
        let filled = if base64 {
            let raw = String::from_utf8(STANDARD.decode(body).unwrap()).unwrap();
            STANDARD.encode(fill(&raw))
        } else {
            fill(body)
        };
        event["body"] = Value::String(filled);
    }
    for headers in ["headers", "multiValueHeaders"] {
        if let Some(map) = event[headers].as_object_mut() {
            for value in map.values_mut() {
                match value {
                    Value::String(s) => *s = fill(s),
                    Value::Array(items) => {
                        for item in items {
                            if let Value::String(s) = item {
                                *s = fill(s);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    event.to_string()
}

/// A fixture as the `lambda_http::Request` the runtime would hand a handler.
pub fn event(name: &str, vars: &[(&str, &str)]) -> lambda_http::Request {
    lambda_http::request::from_str(&fixture(name, vars)).expect("fixture is a valid event")
}

/// Writes a fresh key pair as `signing-key.pem` and `signing-key.pub.pem` into `dir`.
pub use shared::signer::test_keys::write_pair as write_test_keys;

/// moto_server, started by `make test` (`scripts/with_moto.sh`) on a free loopback port and
/// named by `MOTO_ENDPOINT`: DynamoDB and KMS for the AWS backends' tests.
#[cfg(feature = "moto")]
pub mod moto {
    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use aws_sdk_dynamodb::config::Credentials;
    use aws_sdk_kms::types::{KeySpec, KeyUsageType};

    /// The moto endpoint; tests that need it fail (never skip) without it.
    pub fn endpoint() -> String {
        std::env::var("MOTO_ENDPOINT").expect(
            "MOTO_ENDPOINT is not set: run the tests through `make test`, which starts moto_server",
        )
    }

    /// The environment a function process needs to reach moto.
    pub fn process_env() -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", endpoint()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// An SDK configuration pointing at moto, built without touching the process environment.
    /// The service's own retry and client settings, but longer timeouts: moto takes one request
    /// at a time, and with every test binary's threads queued on it a call may wait seconds
    /// (a timed-out `CreateTable` retried finds the table its first try made).
    pub async fn sdk_config() -> SdkConfig {
        sdk_config_as("testing").await
    }

    /// [`sdk_config`] with its own access key id, under which `scripts/moto_atomic.py` counts its
    /// calls (`GET /__counts/KEY`).
    pub async fn sdk_config_as(access_key: &str) -> SdkConfig {
        let service = shared::aws::load_with(
            aws_config::defaults(BehaviorVersion::latest())
                .endpoint_url(endpoint())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new(access_key, "testing", None, None, "moto")),
        )
        .await;
        service
            .into_builder()
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(std::time::Duration::from_secs(60))
                    .operation_attempt_timeout(std::time::Duration::from_secs(30))
                    .connect_timeout(std::time::Duration::from_secs(5))
                    .build(),
            )
            .build()
    }

    /// Creates a fresh users table as `template.yaml` declares it; returns its name.
    pub async fn create_users_table(config: &SdkConfig) -> String {
        let name = format!("users-{}", uuid::Uuid::new_v4().simple());
        shared::store::DynamoStore::create_table(config, &name).await;
        name
    }

    /// Creates a symmetric ENCRYPT_DECRYPT key (the data key's, the signing parameter's);
    /// returns its id.
    pub async fn create_symmetric_key(config: &SdkConfig) -> String {
        create_key(
            config,
            KeySpec::SymmetricDefault,
            KeyUsageType::EncryptDecrypt,
        )
        .await
    }

    /// Creates an RSA-2048 SIGN_VERIFY key, as `template.yaml` does; returns its id.
    pub async fn create_signing_key(config: &SdkConfig) -> String {
        create_key(config, KeySpec::Rsa2048, KeyUsageType::SignVerify).await
    }

    async fn create_key(config: &SdkConfig, spec: KeySpec, usage: KeyUsageType) -> String {
        aws_sdk_kms::Client::new(config)
            .create_key()
            .key_spec(spec)
            .key_usage(usage)
            .send()
            .await
            .expect("create key on moto")
            .key_metadata
            .expect("key metadata")
            .key_id
    }
}
