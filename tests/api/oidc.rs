//! The OpenID Connect provider, handler by handler on both stores: the authorization endpoint
//! and its hosted pages (`authorize`), the code grant at the token endpoint (`login`), userinfo
//! (`me`), revocation by client (`logout`) and RP-initiated logout. The issuer is on https, so
//! the cookies are the `__Host-` ones.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use lambda_http::Body;
use lambda_http::http::{Method, Request as HttpRequest, header};
use serde_json::Value;
use sha2::{Digest, Sha256};
use shared::oauth::{Client, Registration};

use crate::helpers::{AppStore, GOOD_PASSWORD, Reply, Route, TestApp};

const ISS: &str = "https://auth.example.test";
const CALLBACK: &str = "https://app.example.test/callback";
const SIGNED_OUT: &str = "https://app.example.test/signed-out";
/// RFC 7636 Appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

on_both_backends!(
    the_code_flow_signs_in_on_the_hosted_page_and_issues_an_id_token,
    a_second_factor_on_the_hosted_page_comes_before_the_code,
    a_confidential_client_authenticates_by_basic_or_post_and_a_wrong_secret_is_invalid_client,
    an_unregistered_client_or_redirect_uri_gets_a_page_never_a_redirect,
    other_request_errors_redirect_with_error_state_and_iss,
    a_post_without_the_browsers_csrf_token_does_nothing,
    a_wrong_password_shows_one_generic_error_and_the_throttle_applies,
    a_browser_session_signs_in_again_without_asking_unless_told_to,
    a_second_redemption_is_invalid_grant_and_ends_the_first_ones_session,
    of_eight_simultaneous_redemptions_exactly_one_wins,
    refresh_and_revocation_are_bound_to_the_client,
    the_hosted_registration_page_creates_the_account_and_signs_in,
    rp_initiated_logout_ends_the_browser_session_and_redirects_only_where_registered,
    a_password_change_ends_the_browser_session_and_voids_its_codes,
    a_native_apps_single_sign_on_asks_the_browser_to_continue_first,
);

/// A browser's cookies.
#[derive(Debug, Default, Clone)]
struct Jar(BTreeMap<String, String>);

impl Jar {
    fn take(&mut self, reply: &Reply) {
        for cookie in reply.headers.get_all(header::SET_COOKIE) {
            let cookie = cookie.to_str().unwrap();
            let (pair, attributes) = cookie.split_once(';').unwrap_or((cookie, ""));
            let (name, value) = pair.split_once('=').unwrap();
            assert!(attributes.contains("HttpOnly"), "{cookie}");
            assert!(attributes.contains("SameSite=Lax"), "{cookie}");
            assert!(attributes.contains("Secure"), "{cookie}");
            assert!(name.starts_with("__Host-"), "{cookie}");
            if attributes.contains("Max-Age=0") {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_string(), value.to_string());
            }
        }
    }

    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn has_session(&self) -> bool {
        self.0.contains_key("__Host-auth_session")
    }
}

fn encode(pairs: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push('&');
        }
        s.push_str(k);
        s.push('=');
        s.push_str(&url_encode(v));
    }
    s
}

fn url_encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query_of(location: &str) -> BTreeMap<String, String> {
    let query = location.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), percent_decode(v))
        })
        .collect()
}

fn percent_decode(v: &str) -> String {
    let bytes = v.replace('+', " ").into_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() + 1 {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// The hidden fields of the page's form, unescaped.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .map(|rest| {
            let name = rest
                .split("name=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let value = rest
                .split("value=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            (name.to_string(), unescape(value))
        })
        .collect()
}

fn unescape(v: &str) -> String {
    v.replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

/// Registers the public client `spa` and the confidential client `webapp` (its secret returned).
async fn clients<S: AppStore>(app: &TestApp<S>) -> String {
    for (id, confidential) in [("spa", false), ("webapp", true)] {
        let (client, secret) = Client::register(
            Registration {
                client_id: id.into(),
                redirect_uris: vec![CALLBACK.into()],
                post_logout_redirect_uris: vec![SIGNED_OUT.into()],
                confidential,
            },
            app.now(),
        )
        .unwrap();
        app.store.put_client(&client).await.unwrap();
        if let Some(secret) = secret {
            return secret.expose().to_string();
        }
    }
    unreachable!()
}

fn authorization(client_id: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", CALLBACK),
        ("scope", "openid profile offline_access"),
        ("state", "st-42"),
        ("nonce", "n-0S6_WzA2Mj"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        params.retain(|(n, _)| n != k);
        if !v.is_empty() {
            params.push((k.to_string(), v.to_string()));
        }
    }
    params
}

fn pairs(params: &[(String, String)]) -> Vec<(&str, &str)> {
    params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

impl<S: AppStore> TestApp<S> {
    async fn browser(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, &str)],
        jar: &mut Jar,
    ) -> Reply {
        let mut uri = format!("{ISS}{path}");
        let mut builder = HttpRequest::builder();
        let body = if method == Method::GET {
            if !params.is_empty() {
                uri = format!("{uri}?{}", encode(params));
            }
            Body::Empty
        } else {
            builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            Body::Text(encode(params))
        };
        if !jar.0.is_empty() {
            builder = builder.header(header::COOKIE, jar.header());
        }
        let req = builder.method(method).uri(uri).body(body).unwrap();
        let reply = self.send(Route::Authorize, req).await;
        jar.take(&reply);
        reply
    }

    /// `GET /authorize` with `params`.
    async fn authorize(&self, params: &[(String, String)], jar: &mut Jar) -> Reply {
        self.browser(Method::GET, "/authorize", &pairs(params), jar)
            .await
    }

    /// Posts the page's form with `fields` filled in.
    async fn post_form(&self, page: &Reply, fields: &[(&str, &str)], jar: &mut Jar) -> Reply {
        let mut form = hidden_fields(&page.raw);
        for (k, v) in fields {
            form.retain(|(n, _)| n != k);
            form.push((k.to_string(), v.to_string()));
        }
        self.browser(Method::POST, "/authorize", &pairs(&form), jar)
            .await
    }

    /// Signs `username` in through the hosted page (or the browser's session): the code of the
    /// redirect.
    async fn sign_in(&self, client_id: &str, username: &str, jar: &mut Jar) -> String {
        self.sign_in_with(client_id, &[], username, jar).await
    }

    /// [`TestApp::sign_in`] to a request with `extra` parameters.
    async fn sign_in_with(
        &self,
        client_id: &str,
        extra: &[(&str, &str)],
        username: &str,
        jar: &mut Jar,
    ) -> String {
        let page = self.authorize(&authorization(client_id, extra), jar).await;
        if page.status == 303 {
            return code_of(&page);
        }
        assert_eq!(page.status, 200, "{}", page.raw);
        let done = self
            .post_form(
                &page,
                &[("username", username), ("password", GOOD_PASSWORD)],
                jar,
            )
            .await;
        code_of(&done)
    }

    async fn token_form(&self, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> Reply {
        let mut builder = HttpRequest::builder()
            .method(Method::POST)
            .uri(format!("{ISS}/login"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some((id, secret)) = basic {
            let credentials = STANDARD.encode(format!("{id}:{secret}"));
            builder = builder.header(header::AUTHORIZATION, format!("Basic {credentials}"));
        }
        let req = builder.body(Body::Text(encode(form))).unwrap();
        self.send(Route::Login, req).await
    }

    async fn exchange(&self, code: &str, client_id: &str) -> Reply {
        self.token_form(
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", CALLBACK),
                ("code_verifier", VERIFIER),
                ("client_id", client_id),
            ],
            None,
        )
        .await
    }

    async fn userinfo(&self, token: &str) -> Reply {
        let req = HttpRequest::builder()
            .method(Method::GET)
            .uri(format!("{ISS}/userinfo"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::Empty)
            .unwrap();
        self.send(Route::Me, req).await
    }

    async fn jwks(&self) -> JwkSet {
        let reply = self.send_event(Route::Jwks, "v2_jwks", &[]).await;
        serde_json::from_value(reply.body).unwrap()
    }
}

/// The code of a 303 to the callback, after checking `state` and `iss`.
fn code_of(reply: &Reply) -> String {
    assert_eq!(reply.status, 303, "{}", reply.raw);
    let location = reply.header("location");
    assert!(location.starts_with(&format!("{CALLBACK}?")), "{location}");
    let query = query_of(location);
    assert_eq!(query["state"], "st-42");
    assert_eq!(query["iss"], ISS);
    query["code"].clone()
}

/// The `error` of a 303 to the callback, after checking `state` and `iss`.
fn error_of(reply: &Reply) -> String {
    assert_eq!(reply.status, 303, "{}", reply.raw);
    let query = query_of(reply.header("location"));
    assert!(reply.header("location").starts_with(CALLBACK));
    assert_eq!(query["state"], "st-42");
    assert_eq!(query["iss"], ISS);
    assert!(!query.contains_key("code"));
    assert!(query.contains_key("error_description"));
    query["error"].clone()
}

fn assert_page(reply: &Reply, status: u16) {
    assert_eq!(reply.status, status, "{}", reply.raw);
    assert!(
        reply.header("location").is_empty(),
        "a page, not a redirect"
    );
    assert_eq!(reply.header("content-type"), "text/html; charset=utf-8");
    let csp = reply.header("content-security-policy");
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(reply.header("cache-control"), "no-store");
    assert_eq!(reply.header("referrer-policy"), "no-referrer");
    assert!(!reply.raw.contains("<script"), "no script on a hosted page");
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The fields of the page's first form (the second-step page has two: the code's and the
/// recovery code's, with the same request).
fn first_form(html: &str) -> Vec<(String, String)> {
    let first = html.split("</form>").next().unwrap();
    hidden_fields(first)
}

async fn a_second_factor_on_the_hosted_page_comes_before_the_code<S: AppStore>(app: TestApp<S>) {
    let (secret, codes) = app.with_totp("emma").await;
    clients(&app).await;
    let mut jar = Jar::default();
    let page = app.authorize(&authorization("spa", &[]), &mut jar).await;
    let second = app
        .post_form(
            &page,
            &[("username", "emma"), ("password", GOOD_PASSWORD)],
            &mut jar,
        )
        .await;
    // The right password shows the code's form: no session, no code yet.
    assert_eq!(second.status, 200, "{}", second.raw);
    assert!(
        second.raw.contains(r#"autocomplete="one-time-code""#),
        "{}",
        second.raw
    );
    assert!(second.raw.contains(r#"name="recovery_code""#));
    assert!(!jar.has_session());
    let mut form = first_form(&second.raw);
    form.push(("otp".into(), "000000".into()));
    let wrong = app
        .browser(Method::POST, "/authorize", &pairs(&form), &mut jar)
        .await;
    assert_eq!(wrong.status, 401, "{}", wrong.raw);
    assert!(wrong.raw.contains("not right"));
    let mut form = first_form(&wrong.raw);
    form.push(("otp".into(), app.next_code(&secret)));
    let done = app
        .browser(Method::POST, "/authorize", &pairs(&form), &mut jar)
        .await;
    let code = code_of(&done);
    assert!(jar.has_session());
    let tokens = app.exchange(&code, "spa").await;
    let id_token = tokens.body["id_token"].as_str().unwrap();
    assert_eq!(
        claims(id_token)["amr"],
        serde_json::json!(["pwd", "otp", "mfa"])
    );
    let access = tokens.body["access_token"].as_str().unwrap();
    assert_eq!(
        claims(access)["amr"],
        serde_json::json!(["pwd", "otp", "mfa"])
    );
    // The browser's session carries the second factor to single sign-on's next code.
    let sso = app.sign_in("spa", "emma", &mut jar).await;
    let id_token = app.exchange(&sso, "spa").await.body["id_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        claims(&id_token)["amr"],
        serde_json::json!(["pwd", "otp", "mfa"])
    );
    // A recovery code on the other form does as well, in another browser.
    let mut other = Jar::default();
    let page = app.authorize(&authorization("spa", &[]), &mut other).await;
    let second = app
        .post_form(
            &page,
            &[("username", "emma"), ("password", GOOD_PASSWORD)],
            &mut other,
        )
        .await;
    let recovery_form = second.raw.split("</form>").nth(1).unwrap();
    let mut form = hidden_fields(recovery_form);
    form.push(("recovery_code".into(), codes[0].clone()));
    let done = app
        .browser(Method::POST, "/authorize", &pairs(&form), &mut other)
        .await;
    code_of(&done);
}

async fn the_code_flow_signs_in_on_the_hosted_page_and_issues_an_id_token<S: AppStore>(
    app: TestApp<S>,
) {
    let reg = app
        .register_json(serde_json::json!({
            "username": "emma", "password": GOOD_PASSWORD, "full_name": "Emma Example"
        }))
        .await;
    assert_eq!(reg.status, 201);
    clients(&app).await;
    let mut jar = Jar::default();

    // GIVEN the sign-in page of an authorization request
    let page = app
        .authorize(&authorization("spa", &[("login_hint", "emma")]), &mut jar)
        .await;
    assert_page(&page, 200);
    assert!(
        page.header("content-security-policy")
            .contains("form-action 'self' https://app.example.test")
    );
    for needle in [
        "name=\"username\"",
        "autocomplete=\"username\"",
        "name=\"password\"",
        "autocomplete=\"current-password\"",
        "<label for=\"username\">",
        "<label for=\"password\">",
        "value=\"emma\"",
        "Create account",
        "action=\"https://auth.example.test/authorize\"",
        "href=\"https://auth.example.test/authorize/pages.css\"",
        "spa",
    ] {
        assert!(page.raw.contains(needle), "{needle} in {}", page.raw);
    }
    assert!(jar.0.contains_key("__Host-auth_csrf") && !jar.has_session());

    // WHEN the user signs in
    let done = app
        .post_form(
            &page,
            &[("username", "emma"), ("password", GOOD_PASSWORD)],
            &mut jar,
        )
        .await;
    // THEN the browser goes back with a code and holds a session
    let code = code_of(&done);
    assert!(code.len() >= 22, "at least 128 bits");
    assert!(jar.has_session());

    // AND the code buys the tokens
    let tokens = app.exchange(&code, "spa").await;
    assert_eq!(tokens.status, 200, "{}", tokens.raw);
    assert_eq!(tokens.header("cache-control"), "no-store");
    assert_eq!(tokens.body["token_type"], "bearer");
    assert_eq!(tokens.body["scope"], "openid profile offline_access");
    assert!(tokens.body["expires_in"].as_u64().unwrap() > 0);
    let access = tokens.body["access_token"].as_str().unwrap();
    let id_token = tokens.body["id_token"].as_str().unwrap();
    assert!(tokens.body["refresh_token"].is_string());

    // The id_token verifies with the JWKS, for the client.
    let jwks = app.jwks().await;
    let header = decode_header(id_token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let key = DecodingKey::from_jwk(jwks.find(&header.kid.unwrap()).unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["spa"]);
    validation.set_issuer(&[ISS]);
    let id = decode::<Value>(id_token, &key, &validation).unwrap().claims;
    assert_eq!(id["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(id["amr"], serde_json::json!(["pwd"]));
    assert_eq!(id["preferred_username"], "emma");
    assert_eq!(id["name"], "Emma Example");
    assert_eq!(id["auth_time"], app.now());
    assert!(id["sid"].as_str().unwrap().len() >= 32);
    let digest = Sha256::digest(access.as_bytes());
    assert_eq!(id["at_hash"], URL_SAFE_NO_PAD.encode(&digest[..16]));

    // The access token keeps the API audience and names the client and scopes.
    let at = claims(access);
    assert_eq!(at["aud"], "example-api");
    assert_eq!(at["client_id"], "spa");
    assert_eq!(at["scope"], "openid profile offline_access");
    assert_eq!(at["sub"], id["sub"]);
    assert_eq!(app.me(access).await.status, 200);

    // userinfo answers for the same token, GET and POST
    let info = app.userinfo(access).await;
    assert_eq!(info.status, 200, "{}", info.raw);
    assert_eq!(
        info.body,
        serde_json::json!({"sub": id["sub"], "preferred_username": "emma", "name": "Emma Example"})
    );
    let no_bearer = app.raw(Route::Me, Method::GET, None, "").await;
    assert_eq!(no_bearer.status, 401);

    // Without openid and offline_access: no id_token and no refresh token.
    let page = app
        .authorize(&authorization("spa", &[("scope", "profile")]), &mut jar)
        .await;
    let code = code_of(&page);
    let bare = app.exchange(&code, "spa").await;
    assert_eq!(bare.status, 200, "{}", bare.raw);
    assert!(bare.body.get("id_token").is_none() && bare.body.get("refresh_token").is_none());
    assert_eq!(bare.body["scope"], "profile");
    // userinfo needs openid: a client's token without it is 403 insufficient_scope.
    let no_openid = app
        .userinfo(bare.body["access_token"].as_str().unwrap())
        .await;
    assert_eq!(
        no_openid.problem(403),
        "The token was not granted the openid scope"
    );
    assert_eq!(no_openid.body["error"], "insufficient_scope");
    assert!(
        no_openid
            .header("www-authenticate")
            .contains("insufficient_scope")
    );

    // Discovery names every endpoint, at both well-known paths.
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let req = HttpRequest::builder()
            .uri(format!("{ISS}{path}"))
            .body(Body::Empty)
            .unwrap();
        let doc = app.send(Route::Jwks, req).await;
        assert_eq!(doc.status, 200, "{path}");
        assert_eq!(
            doc.body["authorization_endpoint"],
            format!("{ISS}/authorize")
        );
        assert_eq!(doc.body["userinfo_endpoint"], format!("{ISS}/userinfo"));
        assert_eq!(
            doc.body["end_session_endpoint"],
            format!("{ISS}/end-session")
        );
        assert_eq!(
            doc.body["response_types_supported"],
            serde_json::json!(["code"])
        );
        assert_eq!(
            doc.body["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert_eq!(
            doc.body["authorization_response_iss_parameter_supported"],
            true
        );
        assert!(
            doc.body["grant_types_supported"]
                .as_array()
                .unwrap()
                .contains(&"authorization_code".into())
        );
    }
}

async fn a_confidential_client_authenticates_by_basic_or_post_and_a_wrong_secret_is_invalid_client<
    S: AppStore,
>(
    app: TestApp<S>,
) {
    app.register("emma", GOOD_PASSWORD).await;
    let secret = clients(&app).await;
    let mut jar = Jar::default();
    let grant = |code: &str| {
        vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.to_string()),
            ("redirect_uri", CALLBACK.to_string()),
            ("code_verifier", VERIFIER.to_string()),
        ]
    };
    let as_pairs = |v: &Vec<(&'static str, String)>| -> Vec<(&'static str, String)> { v.clone() };

    // client_secret_basic
    let code = app.sign_in("webapp", "emma", &mut jar).await;
    let form = as_pairs(&grant(&code));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let ok = app.token_form(&form, Some(("webapp", &secret))).await;
    assert_eq!(ok.status, 200, "{}", ok.raw);

    // client_secret_post
    let code = app.sign_in("webapp", "emma", &mut jar).await;
    let mut form = grant(&code);
    form.push(("client_id", "webapp".into()));
    form.push(("client_secret", secret.clone()));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(app.token_form(&form, None).await.status, 200);

    // A wrong secret, a missing one, and a public client with a secret: invalid_client, and
    // the code is not spent by them.
    let code = app.sign_in("webapp", "emma", &mut jar).await;
    let form = grant(&code);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let wrong = app
        .token_form(&form, Some(("webapp", "not-the-secret")))
        .await;
    assert_eq!(wrong.problem(401), "Client authentication failed");
    assert_eq!(wrong.body["error"], "invalid_client");
    assert!(wrong.header("www-authenticate").starts_with("Basic"));
    let mut missing = form.clone();
    missing.push(("client_id", "webapp"));
    assert_eq!(
        app.token_form(&missing, None).await.body["error"],
        "invalid_client"
    );
    assert_eq!(
        app.token_form(&form, Some(("spa", "anything"))).await.body["error"],
        "invalid_client"
    );
    assert_eq!(
        app.token_form(&form, None).await.body["error"],
        "invalid_client"
    );
    assert_eq!(
        app.token_form(&form, Some(("webapp", &secret)))
            .await
            .status,
        200
    );
}

async fn an_unregistered_client_or_redirect_uri_gets_a_page_never_a_redirect<S: AppStore>(
    app: TestApp<S>,
) {
    clients(&app).await;
    let mut jar = Jar::default();
    for (name, params) in [
        ("unknown client", authorization("nobody", &[])),
        ("no client", authorization("spa", &[("client_id", "")])),
        (
            "no redirect_uri",
            authorization("spa", &[("redirect_uri", "")]),
        ),
        (
            "trailing slash",
            authorization(
                "spa",
                &[("redirect_uri", "https://app.example.test/callback/")],
            ),
        ),
        (
            "prefix",
            authorization(
                "spa",
                &[("redirect_uri", "https://app.example.test/callback/evil")],
            ),
        ),
        (
            "case",
            authorization(
                "spa",
                &[("redirect_uri", "https://APP.example.test/callback")],
            ),
        ),
        (
            "path case",
            authorization(
                "spa",
                &[("redirect_uri", "https://app.example.test/Callback")],
            ),
        ),
        (
            "extra query",
            authorization(
                "spa",
                &[("redirect_uri", "https://app.example.test/callback?x=1")],
            ),
        ),
        (
            "port",
            authorization(
                "spa",
                &[("redirect_uri", "https://app.example.test:8443/callback")],
            ),
        ),
        (
            "scheme",
            authorization(
                "spa",
                &[("redirect_uri", "http://app.example.test/callback")],
            ),
        ),
        (
            "fragment",
            authorization(
                "spa",
                &[("redirect_uri", "https://app.example.test/callback#x")],
            ),
        ),
        (
            "other host",
            authorization("spa", &[("redirect_uri", "https://evil.example/callback")]),
        ),
    ] {
        let reply = app.authorize(&params, &mut jar).await;
        assert_page(&reply, 400);
        assert!(!reply.raw.contains("evil"), "{name}");
    }
    // Twice the same client_id: a page too.
    let mut twice = authorization("spa", &[]);
    twice.push(("client_id".into(), "spa".into()));
    assert_page(&app.authorize(&twice, &mut jar).await, 400);
}

async fn other_request_errors_redirect_with_error_state_and_iss<S: AppStore>(app: TestApp<S>) {
    clients(&app).await;
    let mut jar = Jar::default();
    for (params, error) in [
        (
            authorization("spa", &[("code_challenge", "")]),
            "invalid_request",
        ),
        (
            authorization("spa", &[("code_challenge_method", "plain")]),
            "invalid_request",
        ),
        (
            authorization("spa", &[("code_challenge_method", "")]),
            "invalid_request",
        ),
        (
            authorization("spa", &[("code_challenge", "short")]),
            "invalid_request",
        ),
        (
            authorization("webapp", &[("code_challenge", "")]),
            "invalid_request",
        ),
        (
            authorization("spa", &[("response_type", "token")]),
            "unsupported_response_type",
        ),
        (
            authorization("spa", &[("response_type", "")]),
            "invalid_request",
        ),
        (
            authorization("spa", &[("scope", "openid email")]),
            "invalid_scope",
        ),
        (
            authorization("spa", &[("prompt", "none")]),
            "login_required",
        ),
        (
            authorization("spa", &[("prompt", "bogus")]),
            "invalid_request",
        ),
        (
            authorization("spa", &[("max_age", "-1")]),
            "invalid_request",
        ),
        (
            authorization("spa", &[("request", "eyJ.x.y")]),
            "invalid_request",
        ),
    ] {
        let reply = app.authorize(&params, &mut jar).await;
        assert_eq!(error_of(&reply), error, "{params:?}");
    }
    // Twice the same parameter (not the client's): invalid_request.
    let mut twice = authorization("spa", &[]);
    twice.push(("scope".into(), "openid".into()));
    assert_eq!(
        error_of(&app.authorize(&twice, &mut jar).await),
        "invalid_request"
    );
}

async fn a_post_without_the_browsers_csrf_token_does_nothing<S: AppStore>(app: TestApp<S>) {
    app.register("emma", GOOD_PASSWORD).await;
    clients(&app).await;
    let mut jar = Jar::default();
    let page = app.authorize(&authorization("spa", &[]), &mut jar).await;
    let creds = [("username", "emma"), ("password", GOOD_PASSWORD)];

    // No csrf field, a wrong one, and the right field without the cookie (another browser).
    let mut no_field = hidden_fields(&page.raw);
    no_field.retain(|(n, _)| n != "csrf");
    let mut no_field: Vec<(&str, &str)> = pairs(&no_field);
    no_field.extend(creds);
    let reply = app
        .browser(Method::POST, "/authorize", &no_field, &mut jar)
        .await;
    assert_page(&reply, 403);
    let wrong = app
        .post_form(
            &page,
            &[creds[0], creds[1], ("csrf", "A".repeat(43).as_str())],
            &mut jar,
        )
        .await;
    assert_page(&wrong, 403);
    let mut other_browser = Jar::default();
    let elsewhere = app.post_form(&page, &creds, &mut other_browser).await;
    assert_page(&elsewhere, 403);
    assert!(!jar.has_session() && !other_browser.has_session());
    // Nothing was counted either: the five free failures are all still there.
    for _ in 0..5 {
        let r = app
            .post_form(
                &page,
                &[creds[0], ("password", "wrong-password-here")],
                &mut jar,
            )
            .await;
        assert_eq!(r.status, 401, "{}", r.raw);
    }
    // And the real form still works.
    let page = app.authorize(&authorization("spa", &[]), &mut jar).await;
    app.advance(3600);
    code_of(&app.post_form(&page, &creds, &mut jar).await);
}

async fn a_wrong_password_shows_one_generic_error_and_the_throttle_applies<S: AppStore>(
    app: TestApp<S>,
) {
    app.register("emma", GOOD_PASSWORD).await;
    clients(&app).await;
    let mut jar = Jar::default();
    let page = app.authorize(&authorization("spa", &[]), &mut jar).await;
    let wrong = app
        .post_form(
            &page,
            &[("username", "emma"), ("password", "not-the-password")],
            &mut jar,
        )
        .await;
    assert_page(&wrong, 401);
    assert!(wrong.raw.contains("Incorrect username or password"));
    assert!(
        !wrong.raw.contains("not-the-password"),
        "the password is never echoed"
    );
    assert!(wrong.raw.contains("value=\"emma\""), "the name is kept");
    let unknown = app
        .post_form(
            &page,
            &[("username", "nobody"), ("password", "not-the-password")],
            &mut jar,
        )
        .await;
    assert_page(&unknown, 401);
    assert_eq!(
        wrong.raw.replace("emma", "X"),
        unknown.raw.replace("nobody", "X"),
        "an unknown name reads exactly like a wrong password"
    );
    for _ in 0..4 {
        app.post_form(
            &page,
            &[("username", "emma"), ("password", "nope-nope-nope")],
            &mut jar,
        )
        .await;
    }
    let throttled = app
        .post_form(
            &page,
            &[("username", "emma"), ("password", GOOD_PASSWORD)],
            &mut jar,
        )
        .await;
    assert_page(&throttled, 429);
    assert!(throttled.header("retry-after").parse::<u64>().unwrap() > 0);
    assert!(!jar.has_session());
}

async fn a_browser_session_signs_in_again_without_asking_unless_told_to<S: AppStore>(
    app: TestApp<S>,
) {
    app.register("emma", GOOD_PASSWORD).await;
    clients(&app).await;
    let mut jar = Jar::default();
    app.sign_in("spa", "emma", &mut jar).await;
    // SSO: a code at once, for another client too.
    code_of(&app.authorize(&authorization("spa", &[]), &mut jar).await);
    code_of(&app.authorize(&authorization("webapp", &[]), &mut jar).await);
    code_of(
        &app.authorize(&authorization("spa", &[("prompt", "none")]), &mut jar)
            .await,
    );
    // prompt=login and an old enough sign-in ask again.
    assert_page(
        &app.authorize(&authorization("spa", &[("prompt", "login")]), &mut jar)
            .await,
        200,
    );
    code_of(
        &app.authorize(&authorization("spa", &[("max_age", "60")]), &mut jar)
            .await,
    );
    app.advance(61);
    assert_page(
        &app.authorize(&authorization("spa", &[("max_age", "60")]), &mut jar)
            .await,
        200,
    );
    let none = app
        .authorize(
            &authorization("spa", &[("max_age", "60"), ("prompt", "none")]),
            &mut jar,
        )
        .await;
    assert_eq!(error_of(&none), "login_required");
    // A forged cookie is no session.
    let mut forged = Jar::default();
    forged
        .0
        .insert("__Host-auth_session".into(), "A".repeat(91));
    assert_page(
        &app.authorize(&authorization("spa", &[]), &mut forged).await,
        200,
    );
}

async fn a_second_redemption_is_invalid_grant_and_ends_the_first_ones_session<S: AppStore>(
    app: TestApp<S>,
) {
    app.register("emma", GOOD_PASSWORD).await;
    clients(&app).await;
    let mut jar = Jar::default();
    let code = app.sign_in("spa", "emma", &mut jar).await;
    let first = app.exchange(&code, "spa").await;
    assert_eq!(first.status, 200, "{}", first.raw);
    let (access, refresh) = first.token_pair();
    let again = app.exchange(&code, "spa").await;
    assert_eq!(
        again.problem(400),
        "The authorization code is invalid, expired or spent"
    );
    assert_eq!(again.body["error"], "invalid_grant");
    assert_eq!(
        app.me(&access).await.status,
        401,
        "the first redemption's tokens are dead"
    );
    assert_eq!(app.userinfo(&access).await.status, 401);
    let refreshed = app
        .token_form(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("client_id", "spa"),
            ],
            None,
        )
        .await;
    assert_eq!(refreshed.body["error"], "invalid_grant");

    // A wrong verifier, another redirect URI or another client spend the code too.
    for form in [
        [
            ("code_verifier", "x".repeat(43)),
            ("redirect_uri", CALLBACK.into()),
            ("client_id", "spa".into()),
        ],
        [
            ("code_verifier", VERIFIER.into()),
            ("redirect_uri", SIGNED_OUT.into()),
            ("client_id", "spa".into()),
        ],
    ] {
        let code = app.sign_in("spa", "emma", &mut jar).await;
        let mut full = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
        ];
        full.extend(form.iter().map(|(k, v)| (*k, v.as_str())));
        assert_eq!(
            app.token_form(&full, None).await.body["error"],
            "invalid_grant"
        );
        assert_eq!(
            app.exchange(&code, "spa").await.body["error"],
            "invalid_grant"
        );
    }
    // A code expires after a minute.
    let code = app.sign_in("spa", "emma", &mut jar).await;
    app.advance(61);
    assert_eq!(
        app.exchange(&code, "spa").await.body["error"],
        "invalid_grant"
    );
}

async fn of_eight_simultaneous_redemptions_exactly_one_wins<S: AppStore>(app: TestApp<S>) {
    app.register("emma", GOOD_PASSWORD).await;
    clients(&app).await;
    let mut jar = Jar::default();
    let code = app.sign_in("spa", "emma", &mut jar).await;
    let app = Arc::new(app);
    let mut tasks = tokio::task::JoinSet::new();
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    for _ in 0..8 {
        let (app, code, barrier) = (app.clone(), code.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            app.exchange(&code, "spa").await.status
        });
    }
    let statuses: Vec<u16> = tasks.join_all().await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        7,
        "{statuses:?}"
    );
}

async fn refresh_and_revocation_are_bound_to_the_client<S: AppStore>(app: TestApp<S>) {
    app.register("emma", GOOD_PASSWORD).await;
    let secret = clients(&app).await;
    let mut jar = Jar::default();
    let code = app.sign_in("spa", "emma", &mut jar).await;
    let (_, refresh) = app.exchange(&code, "spa").await.token_pair();
    let refresh_as = |client: Option<(&'static str, Option<String>)>, token: String| {
        let app = &app;
        async move {
            let mut form = vec![
                ("grant_type", "refresh_token".to_string()),
                ("refresh_token", token),
            ];
            if let Some((id, secret)) = client {
                form.push(("client_id", id.to_string()));
                if let Some(secret) = secret {
                    form.push(("client_secret", secret));
                }
            }
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            app.token_form(&form, None).await
        }
    };
    // Another client, no client, and a made-up client id: invalid_grant.
    assert_eq!(
        refresh_as(Some(("webapp", Some(secret.clone()))), refresh.clone())
            .await
            .body["error"],
        "invalid_grant"
    );
    assert_eq!(
        refresh_as(None, refresh.clone()).await.body["error"],
        "invalid_grant"
    );
    assert_eq!(
        refresh_as(Some(("made-up", None)), refresh.clone())
            .await
            .body["error"],
        "invalid_grant"
    );
    // Its own client: rotates, with the client's claims again.
    let own = refresh_as(Some(("spa", None)), refresh.clone()).await;
    assert_eq!(own.status, 200, "{}", own.raw);
    assert_eq!(
        claims(own.body["access_token"].as_str().unwrap())["client_id"],
        "spa"
    );
    assert_eq!(own.body["scope"], "openid profile offline_access");
    let (_, rotated) = own.token_pair();

    // Revocation by another client is refused and changes nothing; by its own it ends it.
    let other = app
        .logout(
            None,
            Some("application/x-www-form-urlencoded"),
            &format!("token={rotated}&client_id=webapp&client_secret={secret}"),
        )
        .await;
    assert_eq!(
        other.problem(400),
        "The token was not issued to this client"
    );
    assert_eq!(other.body["error"], "unauthorized_client");
    let none = app
        .logout(
            None,
            Some("application/x-www-form-urlencoded"),
            &format!("token={rotated}"),
        )
        .await;
    assert_eq!(none.status, 400);
    let still = refresh_as(Some(("spa", None)), rotated.clone()).await;
    assert_eq!(still.status, 200, "{}", still.raw);
    let (_, latest) = still.token_pair();
    let revoked = app
        .logout(
            None,
            Some("application/x-www-form-urlencoded"),
            &format!("token={latest}&client_id=spa"),
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.raw);
    assert_eq!(
        refresh_as(Some(("spa", None)), latest).await.body["error"],
        "invalid_grant"
    );

    // The password grant's tokens refresh for any caller, as before clients existed.
    let (_, password_refresh) = app.tokens("emma", GOOD_PASSWORD).await;
    let legacy = refresh_as(Some(("some-library", None)), password_refresh).await;
    assert_eq!(legacy.status, 200, "{}", legacy.raw);
    assert!(legacy.body.get("scope").is_none());
}

async fn the_hosted_registration_page_creates_the_account_and_signs_in<S: AppStore>(
    app: TestApp<S>,
) {
    clients(&app).await;
    let mut jar = Jar::default();
    let page = app
        .authorize(&authorization("spa", &[("prompt", "create")]), &mut jar)
        .await;
    assert_page(&page, 200);
    for needle in [
        "value=\"register\"",
        "autocomplete=\"new-password\"",
        "autocomplete=\"name\"",
        "<label for=\"full_name\">",
    ] {
        assert!(page.raw.contains(needle), "{needle}");
    }
    // The registration policy: a weak password is a 422 page naming the field, nothing created.
    let weak = app
        .post_form(
            &page,
            &[
                ("username", "zoe"),
                ("password", "password1"),
                ("full_name", "Zoë"),
            ],
            &mut jar,
        )
        .await;
    assert_page(&weak, 422);
    assert!(weak.raw.contains("password"));
    assert!(weak.raw.contains("value=\"Zoë\""));
    assert_eq!(app.login("zoe", "password1").await.status, 401);
    let done = app
        .post_form(
            &page,
            &[
                ("username", "zoe"),
                ("password", GOOD_PASSWORD),
                ("full_name", "Zoë"),
            ],
            &mut jar,
        )
        .await;
    let code = code_of(&done);
    let tokens = app.exchange(&code, "spa").await;
    assert_eq!(
        claims(tokens.body["id_token"].as_str().unwrap())["name"],
        "Zoë"
    );
    // Taken: a 409 page.
    let taken = app
        .post_form(
            &page,
            &[("username", "ZOE"), ("password", GOOD_PASSWORD)],
            &mut jar,
        )
        .await;
    assert_page(&taken, 409);
    assert_eq!(app.login("zoe", GOOD_PASSWORD).await.status, 200);
}

async fn rp_initiated_logout_ends_the_browser_session_and_redirects_only_where_registered<
    S: AppStore,
>(
    app: TestApp<S>,
) {
    app.register("emma", GOOD_PASSWORD).await;
    clients(&app).await;
    let mut jar = Jar::default();
    let code = app.sign_in("spa", "emma", &mut jar).await;
    let tokens = app.exchange(&code, "spa").await;
    let id_token = tokens.body["id_token"].as_str().unwrap().to_string();

    // An unregistered post-logout URI: a page, and still signed out.
    let mut copy = jar.clone();
    let refused = app
        .browser(
            Method::GET,
            "/end-session",
            &[
                ("id_token_hint", &id_token),
                ("post_logout_redirect_uri", "https://evil.example/"),
                ("state", "s1"),
            ],
            &mut copy,
        )
        .await;
    assert_page(&refused, 400);
    assert!(!copy.has_session());
    // A forged hint: a page.
    let forged = app
        .browser(
            Method::GET,
            "/end-session",
            &[("id_token_hint", "e30.e30.sig")],
            &mut jar.clone(),
        )
        .await;
    assert_page(&forged, 400);

    // WHEN the client sends the browser to end the session with its registered URI
    let out = app
        .browser(
            Method::GET,
            "/end-session",
            &[
                ("id_token_hint", &id_token),
                ("post_logout_redirect_uri", SIGNED_OUT),
                ("state", "s1"),
            ],
            &mut jar,
        )
        .await;
    // THEN it goes back there with the state, and the session is over
    assert_eq!(out.status, 303, "{}", out.raw);
    assert_eq!(out.header("location"), format!("{SIGNED_OUT}?state=s1"));
    assert!(!jar.has_session());
    assert_page(
        &app.authorize(&authorization("spa", &[]), &mut jar).await,
        200,
    );
    assert_eq!(
        error_of(
            &app.authorize(&authorization("spa", &[("prompt", "none")]), &mut jar)
                .await
        ),
        "login_required"
    );
    // The hint alone ends the browser session it names, even without the cookie.
    let mut jar = Jar::default();
    let code = app.sign_in("spa", "emma", &mut jar).await;
    let id_token = app.exchange(&code, "spa").await.body["id_token"]
        .as_str()
        .unwrap()
        .to_string();
    let page = app
        .browser(
            Method::POST,
            "/end-session",
            &[("id_token_hint", &id_token), ("client_id", "spa")],
            &mut Jar::default(),
        )
        .await;
    assert_page(&page, 200);
    assert_page(
        &app.authorize(&authorization("spa", &[]), &mut jar).await,
        200,
    );
}

async fn a_password_change_ends_the_browser_session_and_voids_its_codes<S: AppStore>(
    app: TestApp<S>,
) {
    app.register("emma", GOOD_PASSWORD).await;
    clients(&app).await;
    let mut jar = Jar::default();
    let code = app.sign_in("spa", "emma", &mut jar).await;
    let bearer = app.token("emma", GOOD_PASSWORD).await;
    let changed = app
        .change_password(&bearer, GOOD_PASSWORD, "another-tundra-velvet-77")
        .await;
    assert_eq!(changed.status, 200, "{}", changed.raw);
    assert_eq!(
        app.exchange(&code, "spa").await.body["error"],
        "invalid_grant"
    );
    assert_page(
        &app.authorize(&authorization("spa", &[]), &mut jar).await,
        200,
    );
}

async fn a_native_apps_single_sign_on_asks_the_browser_to_continue_first<S: AppStore>(
    app: TestApp<S>,
) {
    const NATIVE: &str = "com.example.app:/oauth2redirect";
    app.register("emma", GOOD_PASSWORD).await;
    clients(&app).await;
    let (native, _) = Client::register(
        Registration {
            client_id: "mobile".into(),
            redirect_uris: vec![NATIVE.into()],
            ..Registration::default()
        },
        app.now(),
    )
    .unwrap();
    app.store.put_client(&native).await.unwrap();
    let mut jar = Jar::default();
    let first_sid = {
        let code = app.sign_in("spa", "emma", &mut jar).await;
        claims(
            app.exchange(&code, "spa").await.body["id_token"]
                .as_str()
                .unwrap(),
        )["sid"]
            .clone()
    };
    let request = authorization("mobile", &[("redirect_uri", NATIVE)]);
    // GIVEN a signed-in browser, WHEN a native app asks: a page to continue, no code yet
    let page = app.authorize(&request, &mut jar).await;
    assert_page(&page, 200);
    assert!(page.raw.contains("value=\"continue\"") && page.raw.contains("mobile"));
    assert!(
        page.header("content-security-policy")
            .contains("form-action 'self' com.example.app:")
    );
    let mut none = request.clone();
    none.push(("prompt".into(), "none".into()));
    let silent = app.authorize(&none, &mut jar).await;
    assert_eq!(silent.status, 303);
    assert_eq!(
        query_of(silent.header("location"))["error"],
        "interaction_required"
    );
    // A post from another browser (no CSRF cookie) does nothing; the user's own continues.
    assert_page(&app.post_form(&page, &[], &mut Jar::default()).await, 403);
    let done = app.post_form(&page, &[], &mut jar).await;
    assert_eq!(done.status, 303, "{}", done.raw);
    let location = done.header("location");
    assert!(
        location.starts_with(&format!("{NATIVE}?code=")),
        "{location}"
    );
    // Signing in again replaces the browser's session: the first one is over.
    let page = app
        .authorize(&authorization("spa", &[("prompt", "login")]), &mut jar)
        .await;
    let code = code_of(
        &app.post_form(
            &page,
            &[("username", "emma"), ("password", GOOD_PASSWORD)],
            &mut jar,
        )
        .await,
    );
    let second = claims(
        app.exchange(&code, "spa").await.body["id_token"]
            .as_str()
            .unwrap(),
    );
    assert_ne!(second["sid"], first_sid);
    // An empty client_secret is no secret: the public client's exchange goes through.
    let code = app.sign_in("spa", "emma", &mut jar).await;
    let empty = app
        .token_form(
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CALLBACK),
                ("code_verifier", VERIFIER),
                ("client_id", "spa"),
                ("client_secret", ""),
            ],
            None,
        )
        .await;
    assert_eq!(empty.status, 200, "{}", empty.raw);
    // userinfo gives the profile claims only with profile granted.
    let code = code_of(
        &app.authorize(&authorization("spa", &[("scope", "openid")]), &mut jar)
            .await,
    );
    let token = app.exchange(&code, "spa").await.body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let info = app.userinfo(&token).await;
    assert_eq!(info.status, 200, "{}", info.raw);
    assert!(info.body.get("preferred_username").is_none() && info.body["sub"].is_string());
}

/// The code exchange on the deployed path: at most two DynamoDB requests, and one signature per
/// token issued (the access token; the id_token is a second JWS when `openid` is asked for).
#[cfg(feature = "moto")]
#[tokio::test]
async fn a_code_exchange_makes_at_most_two_dynamodb_requests() {
    use crate::helpers::{Calls, DynamoApp};
    let key = format!("rt{}", uuid::Uuid::new_v4().simple());
    let app = DynamoApp::deployed(&key).await;
    clients(&app).await;
    app.register("emma", GOOD_PASSWORD).await;
    for (scope, signatures) in [("profile offline_access", 1), ("openid profile", 2)] {
        let mut jar = Jar::default();
        let code = app
            .sign_in_with("spa", &[("scope", scope)], "emma", &mut jar)
            .await;
        let (reply, calls) = Calls::of(&key, app.exchange(&code, "spa")).await;
        assert_eq!(reply.status, 200, "{}", reply.raw);
        assert!(calls.dynamodb() <= 2, "{scope}: {calls:?}");
        assert_eq!(calls.kms("Sign"), signatures, "{scope}: {calls:?}");
        assert_eq!(calls.kms_total(), signatures, "{scope}: {calls:?}");
    }
}
