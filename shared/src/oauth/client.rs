//! A registered OAuth client: its id, the redirect URIs it may ask for, and for a confidential
//! client the hash of its secret. The rules a registration must meet are here; the record is
//! stored by [`crate::store::ClientStore`].
//!
//! Redirect URIs (RFC 9700 §2.1, RFC 8252 §7): an absolute URI without a fragment, already in
//! its normal form (so what is stored is what a browser goes to), with no user name or password,
//! and one of
//! - `https`, any host;
//! - `http` on a loopback host only: `localhost`, `127.0.0.1` or `[::1]`, any port (a native
//!   app's loopback redirect, RFC 8252 §7.3);
//! - a private-use scheme, which has a dot (reverse domain name, RFC 8252 §7.1:
//!   `com.example.app:/cb`); `javascript:`, `data:`, `file:` and every other scheme without one
//!   are refused.
//!
//! A presented redirect URI is allowed only if it is one of the registered ones byte for byte:
//! no normalisation, no prefix, path, case or query matching. The one exception is RFC 8252
//! §7.3's: an `http` redirect to a loopback IP literal matches on any port.
//!
//! A client secret is 32 random bytes (base64url); only its SHA-256 is stored: a secret of that
//! entropy needs no slow hash, and a stolen hash opens nothing.

use std::net::{Ipv4Addr, Ipv6Addr};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use url::{Host, Url};

/// Longest client id, in characters.
pub const CLIENT_ID_MAX_CHARS: usize = 64;

/// Random bytes in a client secret.
const SECRET_BYTES: usize = 32;

/// A registered client. `Debug` leaves the secret's hash out.
#[derive(Clone, PartialEq, Eq)]
pub struct Client {
    /// The `client_id`: 1 to 64 of `A-Z a-z 0-9 . _ -`, compared exactly (case matters).
    pub client_id: String,
    /// Where authorization responses may go, each matched exactly.
    pub redirect_uris: Vec<String>,
    /// Where a logout may send the browser back, each matched exactly.
    pub post_logout_redirect_uris: Vec<String>,
    /// Whether the client authenticates with a secret (a server-side app) or not (a browser or
    /// native app, which must use PKCE).
    pub confidential: bool,
    /// The SHA-256 (base64url) of a confidential client's secret; `None` for a public client.
    pub secret_hash: Option<String>,
    /// When it was registered, seconds since the epoch.
    pub created_at: u64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.client_id)
            .field("redirect_uris", &self.redirect_uris)
            .field("post_logout_redirect_uris", &self.post_logout_redirect_uris)
            .field("confidential", &self.confidential)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// What an operator asks for when registering a client.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    /// The id asked for.
    pub client_id: String,
    /// At least one redirect URI.
    pub redirect_uris: Vec<String>,
    /// Post-logout redirect URIs (none is fine).
    pub post_logout_redirect_uris: Vec<String>,
    /// Whether the client gets a secret.
    pub confidential: bool,
}

/// A registration that breaks a rule: the field (its OAuth name) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ClientError {
    /// `client_id`, `redirect_uri` or `post_logout_redirect_uri`.
    pub field: &'static str,
    /// Why it was refused.
    pub reason: String,
}

impl ClientError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        ClientError {
            field,
            reason: reason.into(),
        }
    }
}

/// A confidential client's secret, as made at registration: shown to the operator once, never
/// stored. `Debug` leaves it out.
pub struct ClientSecret(String);

impl ClientSecret {
    fn generate() -> Self {
        let mut bytes = [0u8; SECRET_BYTES];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the OS random number generator is available");
        ClientSecret(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The secret itself, to hand to the client's operator.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret(…)")
    }
}

/// What is stored of a secret: its SHA-256, base64url.
fn secret_hash(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(secret.as_bytes()))
}

impl Client {
    /// Checks `registration` against every rule and makes the record, registered at `now`, with
    /// a new secret for a confidential client (its hash in the record, the secret returned once).
    pub fn register(
        registration: Registration,
        now: u64,
    ) -> Result<(Client, Option<ClientSecret>), ClientError> {
        check_client_id(&registration.client_id)?;
        if registration.redirect_uris.is_empty() {
            return Err(ClientError::new("redirect_uri", "at least one is required"));
        }
        for uri in &registration.redirect_uris {
            check_redirect_uri(uri)?;
        }
        for uri in &registration.post_logout_redirect_uris {
            check_redirect_uri(uri).map_err(|e| ClientError {
                field: "post_logout_redirect_uri",
                ..e
            })?;
        }
        let secret = registration.confidential.then(ClientSecret::generate);
        let client = Client {
            client_id: registration.client_id,
            redirect_uris: registration.redirect_uris,
            post_logout_redirect_uris: registration.post_logout_redirect_uris,
            confidential: registration.confidential,
            secret_hash: secret.as_ref().map(|s| secret_hash(s.expose())),
            created_at: now,
        };
        Ok((client, secret))
    }

    /// Whether `presented` is one of the registered redirect URIs, byte for byte; or, for a
    /// registered `http` redirect to a loopback IP literal (`127.0.0.1`, `[::1]`), the same URI
    /// on any port (RFC 8252 §7.3: a native app listens on a port the OS gives it).
    pub fn allows_redirect_uri(&self, presented: &str) -> bool {
        listed(&self.redirect_uris, presented)
            || self
                .redirect_uris
                .iter()
                .any(|registered| same_loopback_redirect(registered, presented))
    }

    /// Whether `presented` is one of the registered post-logout redirect URIs, byte for byte.
    pub fn allows_post_logout_redirect_uri(&self, presented: &str) -> bool {
        listed(&self.post_logout_redirect_uris, presented)
    }

    /// Whether `presented` is this confidential client's secret (its hash compared in constant
    /// time); always false for a public client.
    pub fn verify_secret(&self, presented: &str) -> bool {
        match (&self.secret_hash, self.confidential) {
            (Some(stored), true) => secret_hash(presented)
                .as_bytes()
                .ct_eq(stored.as_bytes())
                .into(),
            _ => false,
        }
    }
}

/// Whether `presented` is the loopback redirect `registered` on another port: both `http` to the
/// same loopback IP literal, `presented` in normal form, and everything but the port equal.
fn same_loopback_redirect(registered: &str, presented: &str) -> bool {
    let (Ok(registered), Ok(url)) = (Url::parse(registered), Url::parse(presented)) else {
        return false;
    };
    let loopback = match registered.host() {
        Some(Host::Ipv4(ip)) => ip == Ipv4Addr::LOCALHOST,
        Some(Host::Ipv6(ip)) => ip == Ipv6Addr::LOCALHOST,
        _ => false,
    };
    let mut with_port = registered.clone();
    loopback
        && registered.scheme() == "http"
        && url.as_str() == presented
        && with_port.set_port(url.port()).is_ok()
        && with_port.as_str() == presented
}

/// Exact matching: no normalisation of either side, so no prefix, path, case or query games.
fn listed(registered: &[String], presented: &str) -> bool {
    registered.iter().any(|uri| uri == presented)
}

/// Whether `id` has the shape of a client id (the store looks up nothing else).
pub fn is_client_id(id: &str) -> bool {
    (1..=CLIENT_ID_MAX_CHARS).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Refuses an id that is not 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn check_client_id(id: &str) -> Result<(), ClientError> {
    if is_client_id(id) {
        Ok(())
    } else {
        Err(ClientError::new(
            "client_id",
            format!("{id:?}: must be 1 to {CLIENT_ID_MAX_CHARS} of A-Z a-z 0-9 . _ -"),
        ))
    }
}

/// Refuses a redirect URI that breaks the rules of the module's documentation.
pub fn check_redirect_uri(uri: &str) -> Result<(), ClientError> {
    redirect_uri_problem(uri).map_or(Ok(()), |reason| {
        Err(ClientError::new(
            "redirect_uri",
            format!("{uri:?}: {reason}"),
        ))
    })
}

fn redirect_uri_problem(uri: &str) -> Option<String> {
    let url = match Url::parse(uri) {
        Ok(url) => url,
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            return Some("must be an absolute URI".into());
        }
        Err(e) => return Some(format!("not a URI: {e}")),
    };
    if url.fragment().is_some() {
        return Some("must not have a fragment (#…)".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Some("must not carry a user name or password".into());
    }
    match url.scheme() {
        "https" => {}
        "http" => {
            let loopback = match url.host() {
                Some(Host::Domain(domain)) => domain == "localhost",
                Some(Host::Ipv4(ip)) => ip == Ipv4Addr::LOCALHOST,
                Some(Host::Ipv6(ip)) => ip == Ipv6Addr::LOCALHOST,
                None => false,
            };
            if !loopback {
                return Some(
                    "http only on a loopback host (localhost, 127.0.0.1 or [::1]); \
                     elsewhere https"
                        .into(),
                );
            }
        }
        // A private-use scheme (RFC 8252 §7.1): a reverse domain name, so it has a dot.
        scheme if scheme.contains('.') => {}
        scheme => {
            return Some(format!(
                "the scheme {scheme}: is refused: https, http on a loopback host, or a \
                 private-use scheme with a dot (com.example.app:/cb)"
            ));
        }
    }
    // The parser's normal form: what a browser would go to. Registering exactly that keeps the
    // exact match honest (no case, percent-encoding or backslash variants of one address).
    if url.as_str() != uri {
        return Some(format!("not in normal form: register {:?}", url.as_str()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(id: &str, uris: &[&str]) -> Registration {
        Registration {
            client_id: id.into(),
            redirect_uris: uris.iter().map(|u| u.to_string()).collect(),
            ..Registration::default()
        }
    }

    fn public(uris: &[&str]) -> Client {
        Client::register(registration("web", uris), 1_000)
            .unwrap()
            .0
    }

    #[test]
    fn a_loopback_ip_redirect_matches_on_any_port_and_nothing_else_does() {
        let client = public(&[
            "http://127.0.0.1:8080/cb",
            "http://[::1]/cb",
            "http://localhost:8080/cb",
            "https://app.example/cb",
        ]);
        for ok in [
            "http://127.0.0.1:8080/cb",
            "http://127.0.0.1:51004/cb",
            "http://127.0.0.1/cb",
            "http://[::1]:6000/cb",
        ] {
            assert!(client.allows_redirect_uri(ok), "{ok}");
        }
        for refused in [
            "http://127.0.0.1:51004/cb/",
            "http://127.0.0.1:51004/cb?x=1",
            "http://127.0.0.1:51004/CB",
            "http://localhost:51004/cb",
            "https://127.0.0.1:51004/cb",
            "http://127.0.0.2:8080/cb",
            "https://app.example:444/cb",
            "http://127.0.0.1:0080/cb",
            "http://127.0.0.1:51004/cb#x",
        ] {
            assert!(!client.allows_redirect_uri(refused), "{refused}");
        }
    }

    #[test]
    fn https_loopback_http_and_private_use_schemes_are_accepted() {
        for uri in [
            "https://app.example/cb",
            "https://app.example:8443/oauth/callback?tenant=1",
            "https://203.0.113.9/cb",
            "http://localhost:8080/cb",
            "http://localhost/cb",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:8080/callback",
            "http://[::1]:3000/cb",
            "com.example.app:/cb",
            "com.example.app:/oauth2redirect/example-provider",
        ] {
            assert_eq!(check_redirect_uri(uri), Ok(()), "{uri}");
        }
    }

    #[test]
    fn other_redirect_uris_are_refused_with_the_reason() {
        for (uri, reason) in [
            ("http://example.com/cb", "http only on a loopback host"),
            ("http://127.0.0.2/cb", "http only on a loopback host"),
            (
                "http://localhost.example/cb",
                "http only on a loopback host",
            ),
            ("http://[::2]/cb", "http only on a loopback host"),
            ("https://a.example/cb#frag", "fragment"),
            ("https://a.example/cb#", "fragment"),
            ("javascript:alert(1)", "the scheme javascript: is refused"),
            (
                "data:text/html,<script>x</script>",
                "the scheme data: is refused",
            ),
            ("file:///etc/passwd", "the scheme file: is refused"),
            ("myapp:/cb", "the scheme myapp: is refused"),
            ("ftp://a.example/cb", "the scheme ftp: is refused"),
            ("/cb", "absolute"),
            ("cb", "absolute"),
            ("//a.example/cb", "absolute"),
            ("", "absolute"),
            ("https://", "not a URI"),
            ("https://user:pw@a.example/cb", "user name or password"),
            (
                "https://good.example@evil.example/cb",
                "user name or password",
            ),
            // Not in normal form: one address, several spellings.
            ("HTTPS://a.example/cb", "register \"https://a.example/cb\""),
            ("https://A.example/cb", "register \"https://a.example/cb\""),
            ("https://a.example", "register \"https://a.example/\""),
            (
                "https://a.example:443/cb",
                "register \"https://a.example/cb\"",
            ),
            (
                "https://a.example/a b",
                "register \"https://a.example/a%20b\"",
            ),
            ("https:a.example/cb", "register \"https://a.example/cb\""),
            ("https://a.example\\cb", "register \"https://a.example/cb\""),
            ("Com.Example.App:/cb", "register \"com.example.app:/cb\""),
        ] {
            let refused = check_redirect_uri(uri).expect_err(uri);
            assert_eq!(refused.field, "redirect_uri");
            assert!(refused.reason.contains(reason), "{uri}: {refused}");
        }
    }

    #[test]
    fn a_presented_redirect_uri_must_be_a_registered_one_byte_for_byte() {
        let client = public(&["https://app.example/cb", "http://127.0.0.1:8080/callback"]);
        assert!(client.allows_redirect_uri("https://app.example/cb"));
        assert!(client.allows_redirect_uri("http://127.0.0.1:8080/callback"));
        for presented in [
            "https://app.example/cb/",
            "https://app.example/CB",
            "https://APP.example/cb",
            "https://app.example/cb?x=1",
            "https://app.example/cb?",
            "https://app.example/cb#",
            "https://app.example/c",
            "https://app.example/cb/../cb",
            "https://app.example/cb/evil",
            "https://app.example:443/cb",
            "https://app.example/%63b",
            // (Another port of a loopback IP literal is RFC 8252's case, tested above.)
            "http://127.0.0.1:8081/callbacks",
            "http://localhost:8080/callback",
            " https://app.example/cb",
            "",
        ] {
            assert!(!client.allows_redirect_uri(presented), "{presented:?}");
        }
        // A redirect URI is no post-logout URI unless registered as one.
        assert!(!client.allows_post_logout_redirect_uri("https://app.example/cb"));
    }

    #[test]
    fn client_ids_are_1_to_64_of_a_small_alphabet() {
        let (longest, too_long) = ("x".repeat(CLIENT_ID_MAX_CHARS), "x".repeat(65));
        for id in ["a", "web", "my.app_v2-beta", "A9", &longest] {
            assert_eq!(check_client_id(id), Ok(()), "{id}");
        }
        for id in [
            "",
            &too_long,
            "has space",
            "#client",
            "a/b",
            "a:b",
            "é",
            "tab\t",
            "a%20",
        ] {
            let refused = check_client_id(id).expect_err(id);
            assert_eq!(refused.field, "client_id");
            let registered = Client::register(registration(id, &["https://a.example/cb"]), 0);
            assert_eq!(registered.unwrap_err().field, "client_id", "{id}");
        }
    }

    #[test]
    fn a_registration_needs_a_redirect_uri_and_checks_every_uri() {
        let none = Client::register(registration("web", &[]), 0).unwrap_err();
        assert_eq!(none.field, "redirect_uri");
        let second = Client::register(
            registration("web", &["https://a.example/cb", "http://example.com/cb"]),
            0,
        )
        .unwrap_err();
        assert!(second.reason.contains("example.com"), "{second}");
        let logout = Client::register(
            Registration {
                post_logout_redirect_uris: vec!["javascript:alert(1)".into()],
                ..registration("web", &["https://a.example/cb"])
            },
            0,
        )
        .unwrap_err();
        assert_eq!(logout.field, "post_logout_redirect_uri");
        let (client, _) = Client::register(
            Registration {
                post_logout_redirect_uris: vec!["https://a.example/bye".into()],
                ..registration("web", &["https://a.example/cb"])
            },
            0,
        )
        .unwrap();
        assert!(client.allows_post_logout_redirect_uri("https://a.example/bye"));
        assert!(!client.allows_redirect_uri("https://a.example/bye"));
    }

    #[test]
    fn a_public_client_has_no_secret_and_verifies_none() {
        let (client, secret) =
            Client::register(registration("spa", &["https://a.example/cb"]), 1_234).unwrap();
        assert!(secret.is_none());
        assert_eq!(
            (client.confidential, &client.secret_hash, client.created_at),
            (false, &None, 1_234)
        );
        assert!(!client.verify_secret(""));
        assert!(!client.verify_secret("anything"));
    }

    #[test]
    fn a_confidential_client_gets_a_random_secret_and_only_its_hash_is_kept() {
        let confidential = || {
            Client::register(
                Registration {
                    confidential: true,
                    ..registration("server", &["https://a.example/cb"])
                },
                0,
            )
            .unwrap()
        };
        let (client, secret) = confidential();
        let secret = secret.expect("a confidential client gets a secret");
        // 32 bytes, base64url without padding.
        assert_eq!(secret.expose().len(), 43);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(secret.expose()).unwrap().len(),
            SECRET_BYTES
        );
        let hash = client.secret_hash.clone().expect("its hash is kept");
        assert_ne!(hash, secret.expose());
        assert_eq!(
            URL_SAFE_NO_PAD.decode(&hash).unwrap(),
            Sha256::digest(secret.expose().as_bytes()).to_vec()
        );
        assert!(client.verify_secret(secret.expose()));
        assert!(!client.verify_secret(&secret.expose()[1..]));
        assert!(!client.verify_secret(&hash), "the hash is no secret");
        assert!(!client.verify_secret(""));
        let (other, other_secret) = confidential();
        assert_ne!(other_secret.unwrap().expose(), secret.expose());
        assert!(!other.verify_secret(secret.expose()));
        // A record that lost its flag verifies nothing.
        let demoted = Client {
            confidential: false,
            ..client.clone()
        };
        assert!(!demoted.verify_secret(secret.expose()));
        // Neither Debug shows the secret or its hash.
        let shown = format!("{client:?} {secret:?}");
        assert!(
            !shown.contains(&hash) && !shown.contains(secret.expose()),
            "{shown}"
        );
    }
}
