//! PKCE (RFC 7636) with `S256` only: `plain` gives no protection against a stolen code, so a
//! public client must send `S256` and a confidential one gains nothing from `plain` either.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Why a PKCE parameter is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    /// No `code_challenge`.
    #[error("code_challenge is required (PKCE with S256)")]
    MissingChallenge,
    /// A method other than `S256`.
    #[error("code_challenge_method must be S256")]
    UnsupportedMethod,
    /// Not 43 characters of base64url (a SHA-256).
    #[error("code_challenge must be the base64url SHA-256 of the verifier (43 characters)")]
    MalformedChallenge,
}

/// Checks the authorization request's `code_challenge` and `code_challenge_method` (absent
/// means `plain` in RFC 7636, refused here).
pub fn check_challenge(challenge: Option<&str>, method: Option<&str>) -> Result<(), PkceError> {
    let challenge = challenge
        .filter(|c| !c.is_empty())
        .ok_or(PkceError::MissingChallenge)?;
    if method != Some("S256") {
        return Err(PkceError::UnsupportedMethod);
    }
    let decoded = URL_SAFE_NO_PAD.decode(challenge).ok();
    if challenge.len() != 43 || decoded.is_none_or(|d| d.len() != 32) {
        return Err(PkceError::MalformedChallenge);
    }
    Ok(())
}

/// Whether `verifier` (43–128 unreserved characters) is the one `challenge` was made from.
pub fn verifies(challenge: &str, verifier: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    well_formed && bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn the_rfc_example_verifies_and_nothing_else_does() {
        assert_eq!(check_challenge(Some(CHALLENGE), Some("S256")), Ok(()));
        assert!(verifies(CHALLENGE, VERIFIER));
        assert!(!verifies(CHALLENGE, &VERIFIER.replace('d', "e")));
        assert!(!verifies(CHALLENGE, "short"));
        assert!(!verifies(CHALLENGE, &format!("{VERIFIER}!")));
    }

    #[test]
    fn plain_missing_and_malformed_challenges_are_refused() {
        assert_eq!(
            check_challenge(None, Some("S256")),
            Err(PkceError::MissingChallenge)
        );
        assert_eq!(
            check_challenge(Some(VERIFIER), Some("plain")),
            Err(PkceError::UnsupportedMethod)
        );
        assert_eq!(
            check_challenge(Some(CHALLENGE), None),
            Err(PkceError::UnsupportedMethod)
        );
        assert_eq!(
            check_challenge(Some("abc"), Some("S256")),
            Err(PkceError::MalformedChallenge)
        );
    }
}
