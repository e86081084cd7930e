//! Access tokens: RS256 JWTs with the RFC 9068 `typ: at+jwt`, issued through a [`Signer`] and
//! verified with the algorithm pinned, the `kid`, `typ`, `iss`, `aud` and `exp` all checked
//! (RFC 8725).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::signer::{KeySet, PublicKey, SignError, Signer};

/// The `typ` header of access tokens (RFC 9068).
pub const TOKEN_TYPE: &str = "at+jwt";
/// Longest bearer token looked at; anything longer is refused unparsed.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Clock skew tolerated on `exp`, in seconds.
const LEEWAY_SECONDS: u64 = 5;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Issuer: `AUTH_ISSUER`.
    pub iss: String,
    /// Audience: `AUTH_AUDIENCE`.
    pub aud: String,
    /// The user's random, immutable id (never the username, which a later account may reuse).
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Unique token id.
    pub jti: String,
    /// The username as registered (OIDC's claim name). Stores keyed by username find the
    /// account with it; the account must still carry the id in `sub`.
    pub preferred_username: String,
    /// The session this token belongs to: `/me` refuses it once that session has ended. Tokens
    /// without it (issued before sessions existed) do not deserialise, so they are refused.
    pub sid: String,
    /// The OAuth client it was issued to (RFC 9068), for the authorization code grant's tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The scopes granted (RFC 9068), with `client_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// How the session's sign-in authenticated (RFC 8176): see [`amr`].
    #[serde(default)]
    pub amr: Vec<String>,
}

/// Whom an access token is for: the account, its session, and how it was issued.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// `sub`.
    pub user_id: &'a str,
    /// `preferred_username`.
    pub username: &'a str,
    /// `sid`.
    pub sid: &'a str,
    /// The OAuth client and scopes (`client_id`, `scope`) of a code grant's session.
    pub client: Option<(&'a str, &'a str)>,
    /// Whether the session's sign-in passed a second factor (`amr`).
    pub mfa: bool,
}

/// The `amr` of a sign-in (RFC 8176): a password, and with a second factor also a one-time
/// password and multiple factors.
pub fn amr(mfa: bool) -> Vec<String> {
    let methods: &[&str] = if mfa {
        &["pwd", "otp", "mfa"]
    } else {
        &["pwd"]
    };
    methods.iter().map(|m| m.to_string()).collect()
}

/// The claims of an OpenID Connect id_token (Core §2), for the client `aud`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdTokenClaims {
    /// This issuer.
    pub iss: String,
    /// The account's id, as in the access token.
    pub sub: String,
    /// The client the token is for.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at.
    pub iat: u64,
    /// When the user signed in.
    pub auth_time: u64,
    /// The authorization request's `nonce`, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// How the user signed in (RFC 8176): `pwd`.
    pub amr: Vec<String>,
    /// The browser session on this provider (RP-initiated logout names it).
    pub sid: String,
    /// The left half of the access token's SHA-256, base64url (Core §3.1.3.6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    /// With the `profile` scope: the username as registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// With the `profile` scope: the full name, when the account has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `at_hash` of `access_token` (RS256: SHA-256, left half, base64url).
pub fn at_hash(access_token: &str) -> String {
    let digest = sha2::Sha256::digest(access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..16])
}

/// What an `id_token_hint` of ours says, once its signature and issuer are checked (its expiry
/// is not: a logout names a sign-in that may be long past).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IdTokenHint {
    /// The client it was issued to.
    pub aud: String,
    /// The account.
    pub sub: String,
    /// The browser session.
    pub sid: String,
}

/// A freshly issued token.
#[derive(Debug)]
pub struct IssuedToken {
    /// The compact JWS.
    pub access_token: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
}

/// Detail for any token that is not acceptable.
pub const INVALID_TOKEN: &str = "Could not validate credentials";
/// Detail for an expired token.
pub const EXPIRED_TOKEN: &str = "Token has expired";

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Forged, malformed, foreign or of another kind: one answer for all.
    #[error("{INVALID_TOKEN}")]
    Invalid,
    /// Well formed and ours, but past its `exp`.
    #[error("{EXPIRED_TOKEN}")]
    Expired,
}

/// Issues tokens for one audience.
pub struct TokenIssuer<S> {
    signer: S,
    audience: String,
    ttl: Duration,
    seal_key: std::sync::OnceLock<[u8; 32]>,
}

/// What the signer signs to derive the key that seals a rotated refresh token's successor. RSA
/// PKCS#1 v1.5 signatures are deterministic, so every instance derives the same key, and only a
/// holder of the private key (or of KMS's permission to use it) can.
const SEAL_KEY_LABEL: &[u8] = b"jwt-auth refresh-successor seal key v1";

impl<S: Signer> TokenIssuer<S> {
    /// An issuer signing with `signer`.
    pub fn new(signer: S, audience: &str, ttl: Duration) -> Self {
        TokenIssuer {
            signer,
            audience: audience.into(),
            ttl,
            seal_key: std::sync::OnceLock::new(),
        }
    }

    /// The server-held key mixed into the seal of a rotated refresh token's successor (see
    /// [`crate::session`]): SHA-256 of the signer's signature of a fixed label, made once per
    /// instance, so a copy of the store and an old refresh token together still yield nothing.
    pub async fn seal_key(&self) -> Result<[u8; 32], SignError> {
        if let Some(key) = self.seal_key.get() {
            return Ok(*key);
        }
        let signature = self.signer.sign(SEAL_KEY_LABEL).await?;
        let key: [u8; 32] = sha2::Sha256::digest(signature.as_bytes()).into();
        Ok(*self.seal_key.get_or_init(|| key))
    }

    /// The signer's public key.
    pub fn public_key(&self) -> &PublicKey {
        self.signer.public_key()
    }

    /// Issues a token from `iss` for the user `user_id` named `username` in session `sid`, at
    /// `iat` (the caller's clock: the state's in the functions).
    pub async fn issue(
        &self,
        iss: &str,
        user_id: &str,
        username: &str,
        sid: &str,
        iat: u64,
    ) -> Result<IssuedToken, SignError> {
        let subject = Subject {
            user_id,
            username,
            sid,
            client: None,
            mfa: false,
        };
        self.issue_to(iss, &subject, iat).await
    }

    /// [`issue`](Self::issue), for a [`Subject`] of a client (RFC 9068's claims) or of a
    /// sign-in with a second factor.
    pub async fn issue_to(
        &self,
        iss: &str,
        subject: &Subject<'_>,
        iat: u64,
    ) -> Result<IssuedToken, SignError> {
        let client = subject.client;
        let claims = Claims {
            iss: iss.into(),
            aud: self.audience.clone(),
            sub: subject.user_id.into(),
            iat,
            exp: iat + self.ttl.as_secs(),
            jti: uuid::Uuid::new_v4().to_string(),
            preferred_username: subject.username.into(),
            sid: subject.sid.into(),
            client_id: client.map(|(id, _)| id.to_string()),
            scope: client.map(|(_, scope)| scope.to_string()),
            amr: amr(subject.mfa),
        };
        Ok(IssuedToken {
            access_token: self.sign(TOKEN_TYPE, &claims).await?,
            expires_in: self.ttl.as_secs(),
        })
    }

    /// An id_token (`typ: JWT`) with `claims`, whose `exp` the caller sets.
    pub async fn id_token(&self, claims: &IdTokenClaims) -> Result<String, SignError> {
        self.sign("JWT", claims).await
    }

    /// How long an id_token stays valid: as long as the access token issued with it.
    pub fn ttl_seconds(&self) -> u64 {
        self.ttl.as_secs()
    }

    async fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, SignError> {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some(typ.into());
        header.kid = Some(self.signer.public_key().kid().into());
        let signing_input = format!("{}.{}", b64_json(&header), b64_json(claims));
        let signature = self.signer.sign(signing_input.as_bytes()).await?;
        Ok(format!("{signing_input}.{signature}"))
    }
}

fn b64_json<T: Serialize>(value: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("headers and claims always serialise"))
}

/// Verifies tokens against the published keys and one audience.
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    keys: KeySet,
    validation: Validation,
}

impl TokenVerifier {
    /// A verifier accepting only RS256 tokens signed by one of `keys` for `audience`.
    pub fn new(keys: impl Into<KeySet>, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECONDS;
        TokenVerifier {
            keys: keys.into(),
            validation,
        }
    }

    /// Checks a compact JWS from issuer `iss` and returns its claims. The header is untrusted
    /// input: only `alg: RS256`, `typ: at+jwt` and a `kid` we publish get as far as a signature
    /// check, and only with that key.
    pub fn verify(&self, token: &str, iss: &str) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES || token.split('.').count() != 3 {
            return Err(TokenError::Invalid);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(TOKEN_TYPE) || t.eq_ignore_ascii_case("application/at+jwt")
        });
        let key = header.kid.as_deref().and_then(|kid| self.keys.find(kid));
        let (Some(key), Algorithm::RS256, true) = (key, header.alg, typ_ok) else {
            return Err(TokenError::Invalid);
        };
        let claims = jsonwebtoken::decode::<Claims>(token, key.decoding_key(), &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        if claims.iss != iss {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }

    /// Checks an `id_token_hint` (RP-initiated logout): one of our id_tokens from `iss`, its
    /// signature good; its expiry and audience are not checked here (the caller matches `aud`
    /// against the client). `None` for anything else.
    pub fn id_token_hint(&self, token: &str, iss: &str) -> Option<IdTokenHint> {
        if token.len() > MAX_TOKEN_BYTES || token.split('.').count() != 3 {
            return None;
        }
        let header = jsonwebtoken::decode_header(token).ok()?;
        let key = self.keys.find(header.kid.as_deref()?)?;
        let jwt = header
            .typ
            .as_deref()
            .is_none_or(|t| t.eq_ignore_ascii_case("JWT"));
        if header.alg != Algorithm::RS256 || !jwt {
            return None;
        }
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["iss", "sub", "aud"]);
        validation.set_issuer(&[iss]);
        #[derive(Deserialize)]
        struct Hint {
            aud: String,
            sub: String,
            sid: String,
            // Access tokens have no nonce-free `auth_time`: an id_token has one.
            #[allow(dead_code)]
            auth_time: u64,
        }
        let hint = jsonwebtoken::decode::<Hint>(token, key.decoding_key(), &validation)
            .ok()?
            .claims;
        Some(IdTokenHint {
            aud: hint.aud,
            sub: hint.sub,
            sid: hint.sid,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::clock::now;
    use crate::signer::LocalSigner;
    use crate::signer::test_keys;
    use hmac::{Hmac, Mac};
    use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
    use std::sync::OnceLock;

    const ISS: &str = "https://auth.example.test";
    const AUD: &str = "api.example.test";

    /// A 2048-bit key generated once per test run; never written anywhere.
    pub(crate) fn test_key_pem() -> &'static str {
        static PEM: OnceLock<String> = OnceLock::new();
        PEM.get_or_init(test_keys::private_pem)
    }

    fn other_key_pem() -> &'static str {
        static PEM: OnceLock<String> = OnceLock::new();
        PEM.get_or_init(test_keys::private_pem)
    }

    fn issuer() -> TokenIssuer<LocalSigner> {
        let signer = LocalSigner::from_pem(test_key_pem()).unwrap();
        TokenIssuer::new(signer, AUD, Duration::from_secs(1800))
    }

    fn verifier(issuer: &TokenIssuer<LocalSigner>) -> TokenVerifier {
        TokenVerifier::new(issuer.public_key().clone(), AUD)
    }

    fn assert_refused(v: &TokenVerifier, token: &str, why: &str) {
        match v.verify(token, ISS) {
            Err(TokenError::Invalid) => {}
            other => panic!("{why}: expected refusal, got {other:?}"),
        }
    }

    fn b64(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    /// A token with any header and claims, validly signed with the service's own key.
    async fn signed_by_us(header: &serde_json::Value, claims: &serde_json::Value) -> String {
        let s = LocalSigner::from_pem(test_key_pem()).unwrap();
        let input = format!("{}.{}", b64(header), b64(claims));
        let sig = s.sign(input.as_bytes()).await.unwrap();
        format!("{input}.{sig}")
    }

    fn claims_now(sub: &str) -> serde_json::Value {
        let t = now();
        serde_json::json!({"iss": ISS, "aud": AUD, "sub": sub, "iat": t, "exp": t + 600, "jti": "x", "preferred_username": "emma", "sid": "s-1"})
    }

    #[tokio::test]
    async fn an_issued_token_verifies_and_has_the_rfc9068_shape() {
        let i = issuer();
        let t = i.issue(ISS, "user-1", "emma", "s-1", now()).await.unwrap();
        assert_eq!(t.expires_in, 1800);
        let header = jsonwebtoken::decode_header(&t.access_token).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some(i.public_key().kid()));
        let claims = verifier(&i).verify(&t.access_token, ISS).unwrap();
        assert_eq!(
            (
                claims.sub.as_str(),
                claims.iss.as_str(),
                claims.aud.as_str()
            ),
            ("user-1", ISS, AUD)
        );
        assert_eq!(claims.exp - claims.iat, 1800);
        assert_eq!(claims.jti.len(), 36);
    }

    #[test]
    fn the_kid_is_the_rfc7638_thumbprint() {
        use sha2::{Digest, Sha256};
        let i = issuer();
        let jwk = serde_json::to_value(i.public_key().jwk()).unwrap();
        let canonical = format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            jwk["e"].as_str().unwrap(),
            jwk["n"].as_str().unwrap()
        );
        let expected = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        assert_eq!(i.public_key().kid(), expected);
        assert_eq!(jwk["kid"], expected);
        assert_eq!(jwk["alg"], "RS256");
        assert_eq!(jwk["use"], "sig");
    }

    #[tokio::test]
    async fn expired_tokens_are_refused() {
        let i = issuer();
        let old = i
            .issue(ISS, "user-1", "emma", "s-1", now() - 3600)
            .await
            .unwrap();
        assert!(matches!(
            verifier(&i).verify(&old.access_token, ISS),
            Err(TokenError::Expired)
        ));
    }

    #[test]
    fn alg_none_is_refused() {
        let i = issuer();
        let header =
            serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": i.public_key().kid()});
        let token = format!("{}.{}.", b64(&header), b64(&claims_now("user-1")));
        assert_refused(&verifier(&i), &token, "alg none");
    }

    #[test]
    fn hs256_keyed_with_our_public_key_is_refused() {
        let i = issuer();
        let pubkey = rsa::RsaPrivateKey::from_pkcs8_pem(test_key_pem())
            .unwrap()
            .to_public_key();
        let public_pem = pubkey.to_public_key_pem(LineEnding::LF).unwrap();
        let header =
            serde_json::json!({"alg": "HS256", "typ": "at+jwt", "kid": i.public_key().kid()});
        let input = format!("{}.{}", b64(&header), b64(&claims_now("user-1")));
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(public_pem.as_bytes()).unwrap();
        mac.update(input.as_bytes());
        let token = format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        );
        assert_refused(&verifier(&i), &token, "HS256 with public key");
    }

    #[tokio::test]
    async fn tampered_payloads_are_refused() {
        let i = issuer();
        let t = i
            .issue(ISS, "user-1", "emma", "s-1", now())
            .await
            .unwrap()
            .access_token;
        let parts: Vec<&str> = t.split('.').collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["sub"] = "admin".into();
        let forged = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
        assert_refused(&verifier(&i), &forged, "tampered payload");
    }

    #[tokio::test]
    async fn tokens_of_another_key_or_an_unknown_kid_are_refused() {
        let i = issuer();
        let foreign = TokenIssuer::new(
            LocalSigner::from_pem(other_key_pem()).unwrap(),
            AUD,
            Duration::from_secs(600),
        );
        assert_refused(
            &verifier(&i),
            &foreign
                .issue(ISS, "user-1", "emma", "s-1", now())
                .await
                .unwrap()
                .access_token,
            "foreign key",
        );
        // Signed with our key but naming a kid we do not publish.
        let header =
            serde_json::json!({"alg": "RS256", "typ": "at+jwt", "kid": "../../etc/passwd"});
        assert_refused(
            &verifier(&i),
            &signed_by_us(&header, &claims_now("user-1")).await,
            "unknown kid",
        );
        // A header with no kid at all.
        let header = serde_json::json!({"alg": "RS256", "typ": "at+jwt"});
        assert_refused(
            &verifier(&i),
            &signed_by_us(&header, &claims_now("user-1")).await,
            "no kid",
        );
    }

    #[tokio::test]
    async fn wrong_issuer_audience_or_type_is_refused() {
        let signer = || LocalSigner::from_pem(test_key_pem()).unwrap();
        let ttl = Duration::from_secs(600);
        let v = verifier(&issuer());
        let wrong_iss = TokenIssuer::new(signer(), AUD, ttl);
        assert_refused(
            &v,
            &wrong_iss
                .issue("https://evil.example", "u", "emma", "s-1", now())
                .await
                .unwrap()
                .access_token,
            "wrong iss",
        );
        let wrong_aud = TokenIssuer::new(signer(), "other-api", ttl);
        assert_refused(
            &v,
            &wrong_aud
                .issue(ISS, "u", "emma", "s-1", now())
                .await
                .unwrap()
                .access_token,
            "wrong aud",
        );

        // Right key, kid, iss and aud, but typ JWT (an ID token or another kind of JWT).
        let kid = signer().public_key().kid().to_string();
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": kid});
        assert_refused(
            &v,
            &signed_by_us(&header, &claims_now("u")).await,
            "typ JWT",
        );
        let header = serde_json::json!({"alg": "RS256", "kid": kid});
        assert_refused(&v, &signed_by_us(&header, &claims_now("u")).await, "no typ");
        // The same header with typ at+jwt passes, so the refusals above are about typ alone.
        let header = serde_json::json!({"alg": "RS256", "typ": "at+jwt", "kid": kid});
        assert!(
            v.verify(&signed_by_us(&header, &claims_now("u")).await, ISS)
                .is_ok()
        );
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        let v = verifier(&issuer());
        for t in [
            "",
            ".",
            "..",
            "a.b.c",
            "eyJ.eyJ.sig",
            &"a".repeat(5000),
            "💥.💥.💥",
        ] {
            assert_refused(&v, t, t);
        }
    }
}
