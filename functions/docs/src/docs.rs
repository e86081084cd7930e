//! `GET /openapi.json` (the repository's `openapi.yaml` as JSON) and `GET /docs` (Swagger UI over
//! it). Both bodies are built once per cold start; requests only pick one.

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use shared::ApiError;
use shared::http;

/// The API description (`openapi.yaml`), converted to JSON by `build.rs` and embedded, so the
/// function needs no file and parses nothing at run time.
pub const OPENAPI_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));
/// Its `info.title`.
const TITLE: &str = include_str!(concat!(env!("OUT_DIR"), "/title.txt"));

/// Where Swagger UI's `swagger-ui.css` and `swagger-ui-bundle.js` come from unless
/// `AUTH_DOCS_ASSETS_URL` says otherwise: one pinned release of the `swagger-ui-dist` package.
pub const DEFAULT_ASSETS_URL: &str = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.35.0";

/// The environment variable naming another assets base URL (a mirror, or a local static server).
pub const ASSETS_URL_VAR: &str = "AUTH_DOCS_ASSETS_URL";

/// Both documents may be cached briefly; they change only with a deployment.
const CACHE: &str = "public, max-age=300";

/// Why the function cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DocsError {
    /// `AUTH_DOCS_ASSETS_URL` is not an http(s) URL or an absolute path.
    #[error(
        "invalid configuration: {ASSETS_URL_VAR}: expected an http(s) URL or an absolute path \
         without quotes, spaces or angle brackets, got {0:?}"
    )]
    AssetsUrl(String),
}

/// The two documents, ready to send.
#[derive(Debug)]
pub struct Docs {
    page: String,
}

impl Docs {
    /// Renders the Swagger UI page against `assets_url` (`None`: [`DEFAULT_ASSETS_URL`]).
    pub fn new(assets_url: Option<&str>) -> Result<Self, DocsError> {
        let assets = assets_base(assets_url.unwrap_or(DEFAULT_ASSETS_URL))?;
        Ok(Docs {
            page: swagger_page(TITLE, assets),
        })
    }

    /// Reads `AUTH_DOCS_ASSETS_URL` (empty counts as unset).
    pub fn from_env() -> Result<Self, DocsError> {
        let assets = std::env::var(ASSETS_URL_VAR)
            .ok()
            .filter(|v| !v.trim().is_empty());
        Self::new(assets.as_deref())
    }

    /// Handles one request; every failure becomes its problem response.
    pub fn handle(&self, req: &Request) -> Response<Body> {
        self.route(req).unwrap_or_else(ApiError::into_response)
    }

    fn route(&self, req: &Request) -> Result<Response<Body>, ApiError> {
        let path = http::path(req);
        let (body, content_type) = if path.ends_with("/openapi.json") {
            (OPENAPI_JSON, "application/json")
        } else if path.ends_with("/docs") {
            (self.page.as_str(), "text/html; charset=utf-8")
        } else {
            return Err(ApiError::NotFound(path.to_string()));
        };
        http::require_method(req, "GET")?;
        let mut resp = Response::new(Body::Text(body.to_string()));
        *resp.status_mut() = StatusCode::OK;
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE));
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        // The page takes passwords: no other site may frame it.
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        Ok(resp)
    }
}

/// Checks an assets base URL and drops a trailing slash. The value ends up in HTML attributes, so
/// characters that could leave an attribute are refused rather than escaped.
fn assets_base(raw: &str) -> Result<&str, DocsError> {
    let value = raw.trim().trim_end_matches('/');
    let scheme_ok = value.starts_with("https://")
        || value.starts_with("http://")
        || (value.starts_with('/') && !value.starts_with("//"));
    let chars_ok = !value
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '<' | '>' | '`'));
    // A bare "https://" lost its slashes above and fails the scheme test.
    if scheme_ok && chars_ok {
        Ok(value)
    } else {
        Err(DocsError::AssetsUrl(raw.to_string()))
    }
}

/// Escapes text for an HTML text node.
fn html_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The Swagger UI page. The description is fetched relative to the page (`/docs` →
/// `/openapi.json`), so it also works under an API Gateway stage prefix. Only the OAuth2
/// password flow is declared, which needs no `oauth2RedirectUrl`; `persistAuthorization` keeps
/// the token across reloads of this development page.
fn swagger_page(title: &str, assets: &str) -> String {
    let title = html_text(title);
    format!(
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} – Swagger UI</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: new URL("openapi.json", window.location.href).href,
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: true,
  tryItOutEnabled: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
}});
</script>
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
        let docs = Docs::new(None).unwrap();
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

    #[test]
    fn the_page_loads_swagger_ui_from_the_configured_assets() {
        let docs = Docs::new(Some("http://127.0.0.1:8123/swagger-ui/")).unwrap();
        let resp = docs.handle(&request(Method::GET, "/docs"));
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let page = text(&resp);
        assert!(page.contains(r#"src="http://127.0.0.1:8123/swagger-ui/swagger-ui-bundle.js""#));
        assert!(page.contains(r#"href="http://127.0.0.1:8123/swagger-ui/swagger-ui.css""#));
        assert!(page.contains(r#"new URL("openapi.json""#));
        let default = text(
            &Docs::new(None)
                .unwrap()
                .handle(&request(Method::GET, "/docs")),
        );
        assert!(default.contains(&format!("{DEFAULT_ASSETS_URL}/swagger-ui-bundle.js")));
    }

    #[test]
    fn assets_urls_that_could_break_out_of_an_attribute_are_refused() {
        for bad in [
            "cdn.example/x",
            "//cdn.example/x",
            "javascript:alert(1)",
            "https://x\"><script>",
            "https://x y",
            "https://",
        ] {
            assert!(
                matches!(Docs::new(Some(bad)), Err(DocsError::AssetsUrl(_))),
                "{bad}"
            );
        }
        assert!(Docs::new(Some("/static/swagger-ui")).is_ok());
    }

    #[test]
    fn other_methods_get_405_with_allow() {
        let docs = Docs::new(None).unwrap();
        let resp = docs.handle(&request(Method::POST, "/openapi.json"));
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers()[header::ALLOW], "GET");
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }
}
