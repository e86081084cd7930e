//! The authorization request (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2.1), checked in the
//! order that decides where its errors may go: first the client and its redirect URI, whose
//! failures are shown on a page and never redirected (an open redirector otherwise); then every
//! other parameter, whose failures go back to the registered redirect URI (RFC 6749 §4.1.2.1).

use super::client::{Client, is_client_id};
use super::pkce;
use crate::error::ApiError;
use crate::store::{ClientStore, StoreError};

/// The scopes this provider grants.
pub const SCOPES: &[&str] = &["openid", "profile", "offline_access"];

/// Longest `state`, `nonce` or `login_hint` accepted, in bytes.
const MAX_PARAMETER_BYTES: usize = 512;

/// The parameters an authorization request carries, and the only ones the hosted forms repeat.
pub const PARAMETERS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "login_hint",
];

/// What `prompt` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Prompt {
    /// Nothing: sign in only if there is no browser session.
    #[default]
    Default,
    /// `none`: never show a page; without a session, `login_required`.
    None,
    /// `login`: ask for the password even with a session.
    Login,
    /// `create`: show the registration page.
    Create,
}

/// A checked authorization request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    /// The client, as registered.
    pub client_id: String,
    /// The registered redirect URI, exactly as sent.
    pub redirect_uri: String,
    /// The scopes asked for, each known, in the order sent, without repeats.
    pub scope: String,
    /// The client's `state`, returned as given.
    pub state: Option<String>,
    /// The OpenID Connect `nonce`, returned in the id_token.
    pub nonce: Option<String>,
    /// The PKCE `S256` challenge.
    pub code_challenge: String,
    /// What `prompt` asked for.
    pub prompt: Prompt,
    /// `max_age`: the longest time since the sign-in that is still good, in seconds.
    pub max_age: Option<u64>,
    /// `login_hint`: the username to fill in.
    pub login_hint: Option<String>,
    /// The client's secret's SHA-256 when it is confidential, for its codes (never a form field).
    pub client_secret_hash: Option<String>,
}

impl AuthorizationRequest {
    /// The parameters that repeat this request in a hosted form (`prompt` left out: the form's
    /// own action says what it does), as (name, value) pairs.
    pub fn form_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("response_type", "code".to_string()),
            ("client_id", self.client_id.clone()),
            ("redirect_uri", self.redirect_uri.clone()),
            ("scope", self.scope.clone()),
            ("code_challenge", self.code_challenge.clone()),
            ("code_challenge_method", "S256".to_string()),
        ];
        for (name, value) in [("state", &self.state), ("nonce", &self.nonce)] {
            if let Some(value) = value {
                fields.push((name, value.clone()));
            }
        }
        fields
    }

    /// Whether the scopes include `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        has_scope(&self.scope, scope)
    }

    /// Whether a browser session may answer this request without the user's say: not when the
    /// code goes to a private-use scheme, which any app on the device may claim (RFC 8252 §8.6),
    /// so a native app's single sign-on asks the user to continue first. An https redirect is
    /// the client's own; a loopback one is the local machine's (development, desktop apps).
    pub fn redirect_proves_the_client(&self) -> bool {
        self.redirect_uri.starts_with("https://") || self.redirect_uri.starts_with("http://")
    }
}

/// Whether the space-separated `scopes` include `scope`.
pub fn has_scope(scopes: &str, scope: &str) -> bool {
    scopes.split(' ').any(|s| s == scope)
}

/// A refused authorization request, with where its answer may go.
#[derive(Debug)]
pub enum Refused {
    /// The client or its redirect URI is not known to be registered: a page, never a redirect.
    Page(ApiError),
    /// Any other error: a redirect to the registered URI with `error` and `state`.
    Redirect {
        /// The error.
        error: ApiError,
        /// The registered redirect URI.
        redirect_uri: String,
        /// The client's `state`, if one was sent and is usable.
        state: Option<String>,
    },
}

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Self {
        Refused::Page(e.into())
    }
}

/// The parameters of a request: (name, value) in the order sent, duplicates kept.
pub type Parameters = [(String, String)];

fn single<'a>(params: &'a Parameters, name: &str) -> Result<Option<&'a str>, String> {
    let mut found = params.iter().filter(|(n, _)| n == name);
    let first = found.next().map(|(_, v)| v.as_str());
    if found.next().is_some() {
        return Err(format!("{name} is given more than once"));
    }
    // An empty value is an absent one (RFC 6749 §3.1).
    Ok(first.filter(|v| !v.is_empty()))
}

/// Checks the authorization request `params`, looking its client up in `store`.
pub async fn check<S: ClientStore>(
    store: &S,
    params: &Parameters,
) -> Result<(AuthorizationRequest, Client), Refused> {
    let page = |detail: &str| Refused::Page(ApiError::BadRequest(detail.to_string()));
    let client_id = single(params, "client_id")
        .map_err(|e| page(&e))?
        .ok_or_else(|| page("client_id is required"))?;
    if !is_client_id(client_id) {
        return Err(page("The client is not registered"));
    }
    let client = store
        .client(client_id)
        .await?
        .ok_or_else(|| page("The client is not registered"))?;
    let redirect_uri = single(params, "redirect_uri")
        .map_err(|e| page(&e))?
        .ok_or_else(|| page("redirect_uri is required"))?;
    if !client.allows_redirect_uri(redirect_uri) {
        return Err(page(
            "The redirect_uri is not one the client registered (it must match exactly)",
        ));
    }
    // From here on the redirect URI is the client's own: errors go back to it.
    let state = single(params, "state").ok().flatten();
    let state_ok = state.is_none_or(|s| s.len() <= MAX_PARAMETER_BYTES);
    let redirect = |error: ApiError| Refused::Redirect {
        error,
        redirect_uri: redirect_uri.to_string(),
        state: state.filter(|_| state_ok).map(str::to_string),
    };
    let invalid = |detail: String| redirect(ApiError::BadRequest(detail));
    if !state_ok {
        return Err(invalid(format!(
            "state must be at most {MAX_PARAMETER_BYTES} bytes"
        )));
    }
    for name in PARAMETERS {
        single(params, name).map_err(&invalid)?;
    }
    if single(params, "request").ok().flatten().is_some() {
        return Err(invalid("request objects are not supported".into()));
    }
    if single(params, "request_uri").ok().flatten().is_some() {
        return Err(invalid("request_uri is not supported".into()));
    }
    let get = |name: &str| single(params, name).ok().flatten();
    match get("response_type") {
        Some("code") => {}
        None => return Err(invalid("response_type is required".into())),
        Some(_) => return Err(redirect(ApiError::UnsupportedResponseType)),
    }
    let mut scopes: Vec<&str> = Vec::new();
    for scope in get("scope")
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
    {
        if !SCOPES.contains(&scope) {
            return Err(redirect(ApiError::InvalidScope(format!(
                "unknown scope {scope:?}; this provider grants {}",
                SCOPES.join(", ")
            ))));
        }
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    pkce::check_challenge(get("code_challenge"), get("code_challenge_method"))
        .map_err(|e| invalid(e.to_string()))?;
    let prompt = prompt(get("prompt")).map_err(&invalid)?;
    let max_age = get("max_age")
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| invalid("max_age must be a whole number of seconds".into()))
        })
        .transpose()?;
    let bounded = |name: &str| -> Result<Option<String>, Refused> {
        match get(name) {
            Some(v) if v.len() > MAX_PARAMETER_BYTES => Err(invalid(format!(
                "{name} must be at most {MAX_PARAMETER_BYTES} bytes"
            ))),
            v => Ok(v.map(str::to_string)),
        }
    };
    let request = AuthorizationRequest {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_string(),
        scope: scopes.join(" "),
        state: state.map(str::to_string),
        nonce: bounded("nonce")?,
        code_challenge: get("code_challenge").unwrap_or_default().to_string(),
        prompt,
        max_age,
        login_hint: bounded("login_hint")?,
        client_secret_hash: client.secret_hash.clone().filter(|_| client.confidential),
    };
    Ok((request, client))
}

/// `prompt`: one of `none`, `login`, `create`; `consent` and `select_account` ask for screens
/// this first-party provider does not have, and are ignored (Core §3.1.2.1 allows it).
fn prompt(value: Option<&str>) -> Result<Prompt, String> {
    let mut prompt = Prompt::Default;
    let values: Vec<&str> = value
        .unwrap_or("")
        .split(' ')
        .filter(|v| !v.is_empty())
        .collect();
    if values.contains(&"none") && values.len() > 1 {
        return Err("prompt=none cannot be combined with another value".into());
    }
    for value in values {
        prompt = match (prompt, value) {
            (_, "none") => Prompt::None,
            (Prompt::Create, "login") | (_, "create") => Prompt::Create,
            (_, "login") => Prompt::Login,
            (p, "consent" | "select_account") => p,
            (_, other) => return Err(format!("prompt={other} is not supported")),
        };
    }
    Ok(prompt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_values_are_read_and_checked() {
        assert_eq!(prompt(None), Ok(Prompt::Default));
        assert_eq!(prompt(Some("none")), Ok(Prompt::None));
        assert_eq!(prompt(Some("login consent")), Ok(Prompt::Login));
        assert_eq!(prompt(Some("create")), Ok(Prompt::Create));
        assert!(prompt(Some("none login")).is_err());
        assert!(prompt(Some("bogus")).is_err());
    }

    #[test]
    fn scopes_are_matched_whole() {
        assert!(has_scope("openid profile", "profile"));
        assert!(!has_scope("openid profiles", "profile"));
        assert!(!has_scope("", "openid"));
    }
}
