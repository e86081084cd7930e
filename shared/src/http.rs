//! Translating HTTP to and from the domain: body limits, content types, JSON and form fields,
//! bearer tokens, and JSON responses.

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{Map, Value};

use crate::config::Issuer;
use crate::error::ApiError;
use crate::token::{INVALID_TOKEN, MAX_TOKEN_BYTES};

/// Largest request body accepted (API Gateway itself allows far more).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The body formats the service reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/json` (or any `+json` type).
    Json,
    /// `application/x-www-form-urlencoded`, as OAuth2 clients send the password grant.
    Form,
}

/// Refuses any method but `allowed` (`"GET"`, `"POST"`) with a 405.
pub fn require_method(req: &Request, allowed: &'static str) -> Result<(), ApiError> {
    if req.method().as_str() == allowed {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed(allowed))
    }
}

/// The request path as the client sent it (without an API Gateway stage prefix).
pub fn path(req: &Request) -> &str {
    let raw = req.raw_http_path();
    if raw.is_empty() {
        req.uri().path()
    } else {
        raw
    }
}

/// The `iss` for this request: the configured URL, or `https://` + the domain API Gateway
/// received the request on. That domain comes only from the request context, which API Gateway
/// writes: the `Host` header is the client's to choose, and an issuer taken from it would let a
/// caller mint discovery documents (and tokens) naming any host. A request without it is refused.
pub fn issuer(configured: &Issuer, req: &Request) -> Result<String, ApiError> {
    match configured {
        Issuer::Fixed(url) => Ok(url.clone()),
        Issuer::FromRequest => {
            let domain = match req.request_context_ref() {
                Some(RequestContext::ApiGatewayV2(c)) => c.domain_name.as_deref(),
                Some(RequestContext::ApiGatewayV1(c)) => c.domain_name.as_deref(),
                _ => None,
            };
            match domain {
                Some(h)
                    if !h.is_empty()
                        && h.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-.:".contains(c)) =>
                {
                    Ok(format!("https://{h}"))
                }
                _ => Err(ApiError::BadRequest(
                    "The request names no API Gateway domain to issue from".into(),
                )),
            }
        }
    }
}

/// The client's address as API Gateway saw it (the request context; never a header a client
/// could write), for logs only.
pub fn source_ip(req: &Request) -> Option<&str> {
    match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(c) => c.http.source_ip.as_deref(),
        RequestContext::ApiGatewayV1(c) => c.identity.source_ip.as_deref(),
        _ => None,
    }
}

pub(crate) fn media_type(req: &Request) -> Option<String> {
    let value = req.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next()?.trim().to_ascii_lowercase())
}

pub(crate) fn body_bytes(req: &Request) -> &[u8] {
    match req.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    }
}

/// Whether the request carries a body worth reading (not absent or only whitespace).
pub fn has_body(req: &Request) -> bool {
    !body_bytes(req).iter().all(u8::is_ascii_whitespace)
}

/// Reads the body as one of `accepted` formats, checking size and emptiness first.
pub fn read_fields(req: &Request, accepted: &[BodyFormat]) -> Result<Fields, ApiError> {
    let bytes = body_bytes(req);
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
    }
    let wanted = accepted
        .iter()
        .map(|f| match f {
            BodyFormat::Json => "application/json",
            BodyFormat::Form => "application/x-www-form-urlencoded",
        })
        .collect::<Vec<_>>()
        .join(" or ");
    let format = match media_type(req).as_deref() {
        Some("application/json") => BodyFormat::Json,
        Some(t) if t.starts_with("application/") && t.ends_with("+json") => BodyFormat::Json,
        Some("application/x-www-form-urlencoded") => BodyFormat::Form,
        Some(other) => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type {other} is not supported; send {wanted}"
            )));
        }
        None => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type is missing; send {wanted}"
            )));
        }
    };
    if !accepted.contains(&format) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "this endpoint takes {wanted}"
        )));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("Request body is empty".into()));
    }
    match format {
        BodyFormat::Json => parse_json(bytes),
        BodyFormat::Form => parse_form(bytes),
    }
}

fn parse_json(bytes: &[u8]) -> Result<Fields, ApiError> {
    let malformed = |e: serde_json::Error| {
        ApiError::BadRequest(format!(
            "Malformed JSON body at line {} column {}",
            e.line(),
            e.column()
        ))
    };
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(_)) => {}
        Ok(_) => return Err(ApiError::validation("body", "must be a JSON object")),
        Err(e) => return Err(malformed(e)),
    }
    // serde_json keeps the last of repeated keys without a word; another parser in front of us
    // may keep the first. A body that means two things is refused, as a repeated form key is.
    let duplicate = std::cell::RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde::de::DeserializeSeed::deserialize(UniqueKeys(&duplicate), &mut de) {
        Ok(map) => Ok(Fields(map)),
        Err(e) => match duplicate.into_inner() {
            Some(key) => Err(ApiError::validation(&key, "must be given only once")),
            None => Err(malformed(e)),
        },
    }
}

/// Reads a JSON object, stopping at the first key given twice (recorded in the cell).
struct UniqueKeys<'a>(&'a std::cell::RefCell<Option<String>>);

impl<'de> serde::de::DeserializeSeed<'de> for UniqueKeys<'_> {
    type Value = Map<String, Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for UniqueKeys<'_> {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Map::new();
        while let Some((key, value)) = map.next_entry::<String, Value>()? {
            if out.contains_key(&key) {
                *self.0.borrow_mut() = Some(key);
                return Err(serde::de::Error::custom("a key is given twice"));
            }
            out.insert(key, value);
        }
        Ok(out)
    }
}

fn parse_form(bytes: &[u8]) -> Result<Fields, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(bytes)
        .map_err(|_| ApiError::BadRequest("Malformed form body".into()))?;
    let mut map = Map::new();
    for (k, v) in pairs {
        if map.insert(k.clone(), Value::String(v)).is_some() {
            return Err(ApiError::validation(&k, "must be given only once"));
        }
    }
    Ok(Fields(map))
}

/// The fields of a JSON object or form body (none for a request without a body).
#[derive(Debug, Default)]
pub struct Fields(Map<String, Value>);

impl Fields {
    /// A required string field.
    pub fn string(&self, name: &str) -> Result<&str, ApiError> {
        match self.0.get(name) {
            Some(Value::String(s)) => Ok(s),
            None | Some(Value::Null) => Err(ApiError::validation(name, "field required")),
            Some(_) => Err(ApiError::validation(name, "must be a string")),
        }
    }

    /// An optional string field (absent or null is `None`).
    pub fn optional_string(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::validation(name, "must be a string or null")),
        }
    }
}

/// The bearer token of the `Authorization` header (scheme case-insensitive, RFC 6750). No
/// header, or another scheme, is [`ApiError::Unauthenticated`] (a challenge without an error
/// code); a malformed bearer is an invalid token.
pub fn bearer_token(req: &Request) -> Result<&str, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthenticated)?
        .to_str()
        .map_err(|_| ApiError::InvalidToken(INVALID_TOKEN))?
        .trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::Unauthenticated);
    }
    let token = token.trim_start();
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES || token.contains(char::is_whitespace) {
        return Err(ApiError::InvalidToken(INVALID_TOKEN));
    }
    Ok(token)
}

/// 204 with no body.
pub fn no_content() -> Response<Body> {
    let mut resp = Response::new(Body::Empty);
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A JSON response with `Cache-Control: no-store` (RFC 6749 §5.1 for tokens, sensible for profiles).
pub fn json(status: StatusCode, body: &Value) -> Response<Body> {
    json_cached(status, body, "no-store")
}

/// A JSON response with the given `Cache-Control`.
pub fn json_cached(
    status: StatusCode,
    body: &Value,
    cache_control: &'static str,
) -> Response<Body> {
    let mut resp = Response::new(Body::Text(body.to_string()));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    if cache_control == "no-store" {
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::request::from_str;

    fn json_request(body: &str) -> Request {
        lambda_http::http::Request::builder()
            .method("POST")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::Text(body.into()))
            .unwrap()
    }

    #[test]
    fn a_json_key_given_twice_is_refused_like_a_form_key() {
        let err = read_fields(
            &json_request(r#"{"username":"emma","password":"a","password":"b"}"#),
            &[BodyFormat::Json],
        )
        .unwrap_err();
        assert!(
            matches!(&err, ApiError::Validation { field, .. } if field == "password"),
            "{err:?}"
        );
        // Nested repeats are the field's own business; distinct keys pass.
        let ok = read_fields(&json_request(r#"{"a":1,"b":{"c":1}}"#), &[BodyFormat::Json]);
        assert!(ok.is_ok());
        let bad = read_fields(&json_request(r#"{"a":1,"#), &[BodyFormat::Json]).unwrap_err();
        assert!(matches!(bad, ApiError::BadRequest(_)), "{bad:?}");
    }

    fn v2_event(domain: Option<&str>, host: &str) -> Request {
        let context = match domain {
            Some(d) => format!(r#","domainName":"{d}""#),
            None => String::new(),
        };
        from_str(&format!(
            r#"{{"version":"2.0","routeKey":"GET /x","rawPath":"/x","rawQueryString":"",
                "headers":{{"host":"{host}"}},
                "requestContext":{{"accountId":"1","apiId":"a","http":{{"method":"GET","path":"/x",
                "protocol":"HTTP/1.1","sourceIp":"192.0.2.1","userAgent":"t"}},"requestId":"r",
                "routeKey":"GET /x","stage":"$default","time":"","timeEpoch":0{context}}},
                "isBase64Encoded":false}}"#
        ))
        .unwrap()
    }

    #[test]
    fn a_request_issuer_comes_from_the_gateways_domain_never_from_host() {
        let issuer = |req: &Request| super::issuer(&Issuer::FromRequest, req);
        assert_eq!(
            issuer(&v2_event(Some("auth.example.com"), "evil.example")).unwrap(),
            "https://auth.example.com"
        );
        assert!(matches!(
            issuer(&v2_event(None, "evil.example")),
            Err(ApiError::BadRequest(_))
        ));
        assert!(issuer(&v2_event(Some("bad host<>"), "x")).is_err());
    }
}
