//! Converts the repository's `openapi.yaml` to JSON at build time, keeping the order it was
//! written in (Swagger UI lists routes in document order): the function serves a constant and
//! parses nothing at cold start, and a broken description fails the build, not a request.
//! OpenAPI 3.1 documents are YAML 1.2, so only `true`/`false` are booleans (YAML 1.1's `n`,
//! `no`, `off`, … stay strings).

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let source = manifest.join("../../openapi.yaml");
    println!("cargo:rerun-if-changed={}", source.display());
    let yaml = std::fs::read_to_string(&source)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", source.display()));
    let options = serde_saphyr::options! { strict_booleans: true };
    // serde_json's `preserve_order` is enabled for this build script only: build dependencies'
    // features are not unified with the crates' own.
    let spec: serde_json::Value = serde_saphyr::from_str_with_options(&yaml, options)
        .unwrap_or_else(|e| panic!("openapi.yaml is not valid YAML: {e}"));
    let title = spec
        .pointer("/info/title")
        .and_then(serde_json::Value::as_str)
        .expect("openapi.yaml has info.title");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    std::fs::write(out.join("openapi.json"), spec.to_string()).expect("write openapi.json");
    std::fs::write(out.join("title.txt"), title).expect("write title.txt");
}
