//! Password hashing: bcrypt through the `bcrypt` crate, never truncated.
//!
//! bcrypt reads at most 72 bytes of its input, so two long passwords that share their first 72
//! bytes would hash alike. New hashes therefore use passlib's `bcrypt_sha256` v2 scheme, which
//! feeds bcrypt a fixed-length keyed pre-hash of the whole password:
//!
//! ```text
//! salt   = 22 characters of bcrypt base64 (16 random bytes)
//! key    = base64(HMAC-SHA256(key = salt, message = utf8(password)))   // 44 ASCII bytes
//! stored = "$bcrypt-sha256$v=2,t=2b,r=" cost "$" salt "$" bcrypt_checksum(key, salt, cost)
//! ```
//!
//! The format is passlib's, so hashes move between this service and Python apps using passlib.
//! Plain `$2a$`/`$2b$`/`$2y$` hashes (the FastAPI tutorial's `users.db`) still verify, and report
//! that they need a rehash so a successful login can upgrade them.

use base64::engine::general_purpose::{self, GeneralPurpose, STANDARD};
use base64::{Engine, alphabet};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use unicode_normalization::UnicodeNormalization;

const PREFIX: &str = "$bcrypt-sha256$v=2,t=2b,r=";
/// bcrypt's own base64 alphabet, unpadded, for salts and checksums.
const BCRYPT_B64: GeneralPurpose = GeneralPurpose::new(&alphabet::BCRYPT, general_purpose::NO_PAD);

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Wrong password (or a stored value that is not a hash we know).
    Mismatch,
    /// Right password; `needs_rehash` when the stored hash uses an older scheme or a lower cost.
    Match {
        /// Whether the stored hash should be replaced by a fresh one.
        needs_rehash: bool,
    },
}

/// Hashes and verifies passwords at a configured bcrypt cost.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    cost: u32,
    dummy: String,
}

/// A password could not be hashed (only an out-of-range cost can cause it).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

impl PasswordHasher {
    /// A hasher at `cost` (4..=31). Builds, without hashing, a dummy hash of that cost for
    /// unknown users, so they pay the same bcrypt work as known ones.
    pub fn new(cost: u32) -> Self {
        let mut salt = [0u8; 16];
        let mut checksum = [0u8; 23];
        rand::thread_rng().fill_bytes(&mut salt);
        rand::thread_rng().fill_bytes(&mut checksum);
        let dummy = format!(
            "{PREFIX}{cost}${}${}",
            BCRYPT_B64.encode(salt),
            &BCRYPT_B64.encode(checksum)[..31]
        );
        PasswordHasher { cost, dummy }
    }

    /// Hashes `password` (NFKC-normalised first) with a fresh salt in the `bcrypt_sha256` v2 format.
    pub fn hash(&self, password: &str) -> Result<String, HashError> {
        let password = &normalize(password);
        let mut salt = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        let salt_text = BCRYPT_B64.encode(salt);
        let parts = bcrypt::hash_with_salt(prehash(&salt_text, password), self.cost, salt)
            .map_err(|e| HashError(e.to_string()))?;
        let full = parts.format_for_version(bcrypt::Version::TwoB);
        // "$2b$NN$" + 22 salt characters, then the 31-character checksum.
        let checksum = &full[7 + 22..];
        Ok(format!("{PREFIX}{}${salt_text}${checksum}", self.cost))
    }

    /// Checks `password` against `stored` in constant time (the comparison is bcrypt's own).
    pub fn verify(&self, password: &str, stored: &str) -> Verification {
        if let Some(rest) = stored.strip_prefix(PREFIX) {
            let Some((cost, salt, checksum)) = split_sha256_hash(rest) else {
                return Verification::Mismatch;
            };
            let inner = format!("$2b${cost:02}${salt}{checksum}");
            match bcrypt::verify(prehash(salt, &normalize(password)), &inner) {
                Ok(true) => Verification::Match {
                    needs_rehash: cost < self.cost,
                },
                _ => Verification::Mismatch,
            }
        } else if ["$2a$", "$2b$", "$2y$"]
            .iter()
            .any(|p| stored.starts_with(p))
        {
            // Legacy hashes were made from the raw password, truncated at 72 bytes by bcrypt.
            match bcrypt::verify(password, stored) {
                Ok(true) => Verification::Match { needs_rehash: true },
                _ => Verification::Mismatch,
            }
        } else {
            Verification::Mismatch
        }
    }

    /// Burns one verification at the configured cost, for a login whose user does not exist.
    pub fn dummy_verify(&self, password: &str) {
        let _ = self.verify(password, &self.dummy);
    }
}

/// NFKC normalisation, as NIST SP 800-63B advises, so the same password typed on different
/// keyboards or input methods hashes alike.
pub fn normalize(password: &str) -> String {
    password.nfkc().collect()
}

fn split_sha256_hash(rest: &str) -> Option<(u32, &str, &str)> {
    let mut parts = rest.split('$');
    let cost = parts.next()?.parse().ok()?;
    let salt = parts.next()?;
    let checksum = parts.next()?;
    (parts.next().is_none() && salt.len() == 22 && checksum.len() == 31)
        .then_some((cost, salt, checksum))
}

fn prehash(salt: &str, password: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(salt.as_bytes()).expect("HMAC takes any key");
    mac.update(password.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const COST: u32 = 4;

    #[test]
    fn a_hash_verifies_its_password_and_nothing_else() {
        let h = PasswordHasher::new(COST);
        let stored = h.hash("correct horse battery").unwrap();
        assert!(stored.starts_with("$bcrypt-sha256$v=2,t=2b,r=4$"));
        assert_eq!(
            h.verify("correct horse battery", &stored),
            Verification::Match {
                needs_rehash: false
            }
        );
        assert_eq!(
            h.verify("correct horse batterY", &stored),
            Verification::Mismatch
        );
        assert_ne!(stored, h.hash("correct horse battery").unwrap(), "salted");
    }

    #[test]
    fn passwords_differing_after_byte_72_do_not_collide() {
        let h = PasswordHasher::new(COST);
        let base = "x".repeat(72);
        let stored = h.hash(&format!("{base}A")).unwrap();
        assert!(matches!(
            h.verify(&format!("{base}A"), &stored),
            Verification::Match { .. }
        ));
        assert_eq!(
            h.verify(&format!("{base}B"), &stored),
            Verification::Mismatch
        );
    }

    #[test]
    fn long_unicode_passwords_round_trip() {
        let h = PasswordHasher::new(COST);
        let pw: String = "пароль🔑密码".chars().cycle().take(200).collect();
        let stored = h.hash(&pw).unwrap();
        assert!(matches!(h.verify(&pw, &stored), Verification::Match { .. }));
    }

    #[test]
    fn verifies_hashes_made_by_passlib_bcrypt_sha256_v2() {
        // Produced by Python: passlib.hash.bcrypt_sha256.using(rounds=4).hash(...)
        let h = PasswordHasher::new(COST);
        let short =
            "$bcrypt-sha256$v=2,t=2b,r=4$KeGwchQ6lD9XZDq5a8jrwu$f4Jo7nVggu4DXvLHu1Qv3jUZLUezOUS";
        let long =
            "$bcrypt-sha256$v=2,t=2b,r=4$/XMpKz2dnzZX2atNKENv1e$v8IQK6G5L0lDAzj9MBpCxPPHf.onAWK";
        assert!(matches!(
            h.verify("password", short),
            Verification::Match { .. }
        ));
        assert!(matches!(
            h.verify(&"p".repeat(100), long),
            Verification::Match { .. }
        ));
        assert_eq!(h.verify(&"p".repeat(99), long), Verification::Mismatch);
    }

    #[test]
    fn tutorial_bcrypt_hashes_verify_and_ask_for_a_rehash() {
        let h = PasswordHasher::new(COST);
        for prefix in ["$2a$", "$2b$", "$2y$"] {
            let legacy = bcrypt::hash("secret-tutorial", COST)
                .unwrap()
                .replacen("$2b$", prefix, 1);
            assert_eq!(
                h.verify("secret-tutorial", &legacy),
                Verification::Match { needs_rehash: true },
                "{prefix}"
            );
            assert_eq!(h.verify("wrong", &legacy), Verification::Mismatch);
        }
    }

    #[test]
    fn passwords_are_compared_after_nfkc_normalisation() {
        let h = PasswordHasher::new(COST);
        // "é" precomposed vs "e" + combining acute; full-width vs ASCII digits.
        let stored = h.hash("caf\u{e9}-ｐａｓｓ-２０２６").unwrap();
        assert!(matches!(
            h.verify("cafe\u{301}-pass-2026", &stored),
            Verification::Match { .. }
        ));
    }

    #[test]
    fn a_lower_cost_hash_asks_for_a_rehash() {
        let old = PasswordHasher::new(COST).hash("pw-at-low-cost").unwrap();
        assert_eq!(
            PasswordHasher::new(COST + 1).verify("pw-at-low-cost", &old),
            Verification::Match { needs_rehash: true }
        );
    }

    #[test]
    fn garbage_and_the_dummy_never_match() {
        let h = PasswordHasher::new(COST);
        for stored in [
            "",
            "plain",
            "$bcrypt-sha256$v=2,t=2b,r=4$short$x",
            "$2b$04$tooshort",
        ] {
            assert_eq!(
                h.verify("plain", stored),
                Verification::Mismatch,
                "{stored}"
            );
        }
        assert_eq!(h.verify("anything", &h.dummy), Verification::Mismatch);
        assert!(h.dummy.starts_with("$bcrypt-sha256$v=2,t=2b,r=4$"));
    }
}
