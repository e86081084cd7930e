//! Helpers shared by the integration tests: event fixtures and throwaway signing keys.
//!
//! The tests themselves are `api/` (handlers driven in-process by real event files) and `e2e.rs`
//! (the functions under `cargo lambda watch`, over real HTTP).

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::Value;

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

/// Writes a fresh 2048-bit RSA key pair as `signing-key.pem` (PKCS#8) and `signing-key.pub.pem`
/// (SPKI) into `dir`, returning both paths. Keys exist only for the test's lifetime.
pub fn write_test_keys(dir: &Path) -> (PathBuf, PathBuf) {
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("key generation");
    let private = dir.join("signing-key.pem");
    let public = dir.join("signing-key.pub.pem");
    std::fs::write(
        &private,
        key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    std::fs::write(
        &public,
        key.to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    (private, public)
}
