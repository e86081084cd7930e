//! `GET /openapi.json` (the repository's `openapi.yaml` as JSON), `GET /docs` (Swagger UI over
//! it) and `GET /docs/{asset}` (the files that page loads). Everything is embedded in the binary:
//! the page runs no script from another origin and works without internet.

use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Request, Response};
use shared::ApiError;
use shared::http;

/// The API description (`openapi.yaml`), converted to JSON by `build.rs` and embedded, so the
/// function needs no file and parses nothing at run time.
pub const OPENAPI_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));
/// Its `info.title`.
const TITLE: &str = include_str!(concat!(env!("OUT_DIR"), "/title.txt"));

/// Every response may be cached briefly; they change only with a deployment. (The asset paths
/// carry no version, so they are not `immutable`.)
const CACHE: &str = "public, max-age=300";

/// The page's policy: scripts, styles, images and requests from this origin only (Swagger UI's
/// stylesheet draws its icons from `data:` URLs), no inline script or style, no plugin, and no
/// other site may frame the page, which takes passwords. Sent with every response of the
/// function; only the page's matters.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

/// The body of an embedded file.
#[derive(Debug, Clone, Copy)]
enum Content<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// A file the page loads.
#[derive(Debug)]
struct Asset {
    name: &'static str,
    content_type: &'static str,
    content: Content<'static>,
}

const JS: &str = "text/javascript; charset=utf-8";

/// One file the page loads, served at `/docs/{name}`.
const fn asset(name: &'static str, content_type: &'static str, content: Content<'static>) -> Asset {
    Asset {
        name,
        content_type,
        content,
    }
}

/// What `/docs` loads: Swagger UI's files from the vendored `swagger-ui-dist` release (see
/// `assets/README.md`) and `init.js`, which starts it.
const ASSETS: &[Asset] = &[
    asset(
        "swagger-ui-bundle.js",
        JS,
        Content::Text(include_str!(
            "../assets/swagger-ui-dist/swagger-ui-bundle.js"
        )),
    ),
    asset(
        "swagger-ui.css",
        "text/css; charset=utf-8",
        Content::Text(include_str!("../assets/swagger-ui-dist/swagger-ui.css")),
    ),
    asset(
        "favicon-32x32.png",
        "image/png",
        Content::Binary(include_bytes!(
            "../assets/swagger-ui-dist/favicon-32x32.png"
        )),
    ),
    asset(
        "init.js",
        JS,
        Content::Text(include_str!("../assets/init.js")),
    ),
];

/// The page and its files, ready to send.
#[derive(Debug)]
pub struct Docs {
    page: String,
}

impl Default for Docs {
    fn default() -> Self {
        Self::new()
    }
}

impl Docs {
    /// Renders the Swagger UI page.
    pub fn new() -> Self {
        Docs {
            page: swagger_page(TITLE),
        }
    }

    /// Handles one request; every failure becomes its problem response.
    pub fn handle(&self, req: &Request) -> Response<Body> {
        self.route(req).unwrap_or_else(ApiError::into_response)
    }

    fn route(&self, req: &Request) -> Result<Response<Body>, ApiError> {
        let path = http::path(req);
        // Matched on the end of the path, so an API Gateway stage prefix changes nothing.
        let (content, content_type) = if path.ends_with("/openapi.json") {
            (Content::Text(OPENAPI_JSON), "application/json")
        } else if path.ends_with("/docs") {
            (Content::Text(&self.page), "text/html; charset=utf-8")
        } else if let Some(asset) = path
            .rsplit_once('/')
            .filter(|(dir, _)| dir.ends_with("/docs"))
            .and_then(|(_, name)| ASSETS.iter().find(|a| a.name == name))
        {
            (asset.content, asset.content_type)
        } else {
            return Err(ApiError::NotFound(path.to_string()));
        };
        http::require_method(req, "GET")?;
        let body = match content {
            Content::Text(text) => Body::Text(text.to_string()),
            Content::Binary(bytes) => Body::Binary(bytes.to_vec()),
        };
        let resp = Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CACHE_CONTROL, CACHE)
            .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
            .header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
            .header(header::REFERRER_POLICY, "no-referrer")
            .body(body)
            .expect("static headers are valid");
        Ok(resp)
    }
}

/// Escapes text for an HTML text node.
fn html_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The Swagger UI page: no inline script or style, and every URL relative to the page (`/docs` →
/// `/docs/swagger-ui.css`), so it also works under an API Gateway stage prefix.
fn swagger_page(title: &str) -> String {
    let title = html_text(title);
    format!(
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} – Swagger UI</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/init.js"></script>
</body>
</html>
"##
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http::Method;
    use serde_json::Value;

    /// The paths `cargo lambda watch` routes (the root Cargo.toml's router): the same list the
    /// template and API Gateway serve.
    fn routed_paths() -> Vec<String> {
        let manifest = include_str!("../../../Cargo.toml");
        let router = manifest
            .split("[workspace.metadata.lambda.watch.router]")
            .nth(1)
            .expect("the workspace has a watch router");
        router
            .lines()
            .take_while(|l| !l.starts_with('['))
            .filter_map(|l| l.strip_prefix('"')?.split('"').next())
            .map(str::to_string)
            .collect()
    }

    fn request(method: Method, path: &str) -> Request {
        let mut req = Request::new(Body::Empty);
        *req.method_mut() = method;
        *req.uri_mut() = path.parse().unwrap();
        req
    }

    fn text(resp: &Response<Body>) -> String {
        String::from_utf8(resp.body().to_vec()).unwrap()
    }

    #[test]
    fn the_yaml_description_is_served_as_the_same_json() {
        let docs = Docs::new();
        let resp = docs.handle(&request(Method::GET, "/openapi.json"));
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let spec: Value = serde_json::from_str(&text(&resp)).unwrap();
        assert!(spec["openapi"].as_str().unwrap().starts_with("3.1."));
        // Status codes stay strings, as JSON object keys must be.
        assert!(spec["paths"]["/register"]["post"]["responses"]["201"].is_object());
        let routed = routed_paths();
        assert!(routed.len() >= 8, "{routed:?}");
        for path in &routed {
            assert!(spec["paths"][path].is_object(), "{path} is described");
        }
        // And nothing is described that is not routed.
        let described = spec["paths"].as_object().unwrap();
        assert_eq!(described.len(), routed.len(), "{:?}", described.keys());
        // The components came through as JSON objects, not strings.
        assert_eq!(spec["components"]["schemas"]["Profile"]["type"], "object");
        assert_eq!(
            spec["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"]["tokenUrl"],
            "/login"
        );
    }

    #[test]
    fn conversion_keeps_the_written_order() {
        // Routes are listed as written, not alphabetically.
        let json = OPENAPI_JSON;
        let at = |path: &str| json.find(&format!("\"{path}\":{{")).unwrap();
        assert!(at("/register") < at("/login") && at("/login") < at("/me"));
        assert!(at("/me") < at("/.well-known/jwks.json"));
    }

    fn value(resp: &Response<Body>, name: header::HeaderName) -> &str {
        resp.headers()[name].to_str().unwrap()
    }

    #[test]
    fn the_page_loads_only_its_own_files_under_a_strict_policy() {
        let resp = Docs::new().handle(&request(Method::GET, "/docs"));
        assert_eq!(resp.status(), 200);
        assert_eq!(
            value(&resp, header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
        assert_eq!(value(&resp, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        let csp = value(&resp, header::CONTENT_SECURITY_POLICY);
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(
                csp.split("; ").any(|d| d == directive),
                "{directive}: {csp}"
            );
        }
        assert!(!csp.contains("unsafe") && !csp.contains("http"), "{csp}");

        let page = text(&resp);
        assert!(page.contains(r#"<script src="docs/swagger-ui-bundle.js"></script>"#));
        assert!(page.contains(r#"<script src="docs/init.js"></script>"#));
        assert!(page.contains(r#"<link rel="stylesheet" href="docs/swagger-ui.css">"#));
        // No inline script or style, which the policy would block anyway.
        assert_eq!(page.matches("<script").count(), 2, "{page}");
        assert_eq!(page.matches("<script src=").count(), 2, "{page}");
        assert!(
            !page.contains("<style") && !page.contains("style="),
            "{page}"
        );
        assert!(!page.contains(" on"), "no event handler attribute: {page}");
        // Nothing from another origin: every URL is relative to the page.
        assert!(!page.contains("//"), "{page}");
    }

    #[test]
    fn every_file_the_page_names_is_served_with_its_type() {
        let docs = Docs::new();
        let page = text(&docs.handle(&request(Method::GET, "/docs")));
        for asset in ASSETS {
            assert!(
                page.contains(&format!("\"docs/{}\"", asset.name)),
                "{}",
                asset.name
            );
            // Under an API Gateway stage prefix too.
            for path in [
                format!("/docs/{}", asset.name),
                format!("/prod/docs/{}", asset.name),
            ] {
                let resp = docs.handle(&request(Method::GET, &path));
                assert_eq!(resp.status(), 200, "{path}");
                assert_eq!(value(&resp, header::CONTENT_TYPE), asset.content_type);
                assert_eq!(value(&resp, header::CACHE_CONTROL), CACHE);
                assert_eq!(value(&resp, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
                let expected: &[u8] = match asset.content {
                    Content::Text(s) => s.as_bytes(),
                    Content::Binary(b) => b,
                };
                assert_eq!(resp.body().as_ref(), expected, "{path}");
            }
        }
        let types = |name: &str| {
            let resp = docs.handle(&request(Method::GET, &format!("/docs/{name}")));
            value(&resp, header::CONTENT_TYPE).to_string()
        };
        assert_eq!(
            types("swagger-ui-bundle.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(types("swagger-ui.css"), "text/css; charset=utf-8");
        assert_eq!(types("favicon-32x32.png"), "image/png");
        let png = docs.handle(&request(Method::GET, "/docs/favicon-32x32.png"));
        assert!(matches!(png.body(), Body::Binary(b) if b.starts_with(b"\x89PNG")));
    }

    #[test]
    fn swagger_ui_starts_without_persisting_authorization_or_calling_out() {
        let resp = Docs::new().handle(&request(Method::GET, "/docs/init.js"));
        let init = text(&resp);
        assert!(init.contains("persistAuthorization: false,"), "{init}");
        assert!(!init.contains("persistAuthorization: true"), "{init}");
        assert!(init.contains("validatorUrl: null,"), "{init}");
        assert!(init.contains(r#"url: new URL("openapi.json", window.location.href).href"#));
    }

    #[test]
    fn the_vendored_bundle_is_the_release_the_conformance_suite_pins() {
        let package: Value =
            serde_json::from_str(include_str!("../../../tests/conformance/package.json")).unwrap();
        let version = package["dependencies"]["swagger-ui-dist"].as_str().unwrap();
        let Content::Text(bundle) = ASSETS[0].content else {
            panic!("the bundle is text")
        };
        assert_eq!(ASSETS[0].name, "swagger-ui-bundle.js");
        assert!(
            bundle.contains(&format!("PACKAGE_VERSION:\"{version}\"")),
            "swagger-ui-bundle.js is not swagger-ui-dist {version}"
        );
    }

    #[test]
    fn unknown_files_get_404() {
        let docs = Docs::new();
        for path in [
            "/docs/",
            "/docs/index.html",
            "/docs/swagger-ui.css.map",
            "/docs/init.js/x",
            "/docs/../Cargo.toml",
            "/other/init.js",
            "/init.js",
        ] {
            let resp = docs.handle(&request(Method::GET, path));
            assert_eq!(resp.status(), 404, "{path}");
            assert_eq!(
                value(&resp, header::CONTENT_TYPE),
                "application/problem+json"
            );
        }
    }

    #[test]
    fn other_methods_get_405_with_allow() {
        let docs = Docs::new();
        for path in ["/openapi.json", "/docs", "/docs/swagger-ui-bundle.js"] {
            for method in [Method::POST, Method::HEAD, Method::DELETE] {
                let resp = docs.handle(&request(method.clone(), path));
                assert_eq!(resp.status(), 405, "{method} {path}");
                assert_eq!(resp.headers()[header::ALLOW], "GET");
                assert_eq!(
                    resp.headers()[header::CONTENT_TYPE],
                    "application/problem+json"
                );
            }
        }
    }
}
