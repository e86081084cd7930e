//! Time-based one-time passwords (RFC 6238: HMAC-SHA-1, 6 digits, 30-second steps, one step of
//! skew either side) through `totp-rs`, which tells the step a code matched: the caller records
//! it, so no step is accepted twice. Also the recovery codes: ten single-use codes of 80 random
//! bits, stored only as hashes.

use ring::rand::{SecureRandom, SystemRandom};
use totp_rs::{Algorithm, Builder, Secret, Totp};

/// Digits of a code.
pub const DIGITS: u8 = 6;
/// Seconds per step.
pub const STEP_SECONDS: u64 = 30;
/// Steps accepted either side of the current one.
pub const SKEW: u16 = 1;
/// Bytes of a secret (160 bits, RFC 4226 §4's recommendation).
pub const SECRET_BYTES: usize = 20;
/// Recovery codes per set.
pub const RECOVERY_CODES: usize = 10;

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the OS random number generator is available");
    bytes
}

/// A new secret.
pub fn new_secret() -> Vec<u8> {
    random::<SECRET_BYTES>().to_vec()
}

fn totp(secret: &[u8], issuer: Option<&str>, account: &str) -> Option<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_skew(SKEW)
        .with_step_duration(STEP_SECONDS)
        .with_secret(Secret::from(secret.to_vec()))
        .with_issuer(issuer.map(label))
        .with_account_name(label(account))
        .build()
        .ok()
}

/// A label an `otpauth` URI can carry (its `issuer:account` separator replaced).
fn label(text: &str) -> String {
    text.replace(':', "-")
}

/// The secret as an authenticator app takes it by hand: base32 without padding.
pub fn base32(secret: &[u8]) -> String {
    Secret::from(secret.to_vec()).to_base32()
}

/// The `otpauth://totp/` URI naming `issuer` and `account`.
pub fn otpauth_uri(secret: &[u8], issuer: &str, account: &str) -> Option<String> {
    totp(secret, Some(issuer), account)?.to_url().ok()
}

/// The QR code of `uri`, as an SVG document.
pub fn qr_svg(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .build(),
    )
}

/// The step `code` matches at `now` (one step either side), if any. Anything but six digits
/// matches nothing.
pub fn matching_step(secret: &[u8], code: &str, now: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != usize::from(DIGITS) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    totp(secret, None, "-")?.check(code, now)
}

/// The code of the step that contains `time` (tests and the RFC's vectors).
pub fn code_at(secret: &[u8], time: u64) -> String {
    totp(secret, None, "-")
        .map(|t| t.generate(time).to_string())
        .unwrap_or_default()
}

/// A new set of recovery codes: `xxxx-xxxx-xxxx-xxxx`, base32 lower-case, 80 bits each.
pub fn new_recovery_codes() -> Vec<String> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let text = Secret::from(random::<10>().to_vec())
                .to_base32()
                .to_lowercase();
            text.as_bytes()
                .chunks(4)
                .map(|c| std::str::from_utf8(c).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

/// What the store keeps of a recovery code: the SHA-256 of its normalised form (lower case,
/// without separators), base64url. Codes hold 80 random bits, so no hash of one is worth
/// inverting.
pub fn recovery_hash(code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    crate::store::tickets::secret_hash(&normal)
}

/// Whether `code` has the shape of a recovery code (16 base32 characters, separators aside).
pub fn looks_like_recovery_code(code: &str) -> bool {
    let letters: Vec<char> = code.chars().filter(|c| !matches!(c, '-' | ' ')).collect();
    letters.len() == 16
        && letters
            .iter()
            .all(|c| c.is_ascii_alphabetic() || ('2'..='7').contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 (the 8-digit values, whose last six digits are the 6-digit
    /// code of the same step).
    #[test]
    fn rfc_6238_appendix_b_vectors() {
        let secret = b"12345678901234567890";
        for (time, eight) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(code_at(secret, time), eight[2..], "T = {time}");
            assert_eq!(
                matching_step(secret, &eight[2..], time),
                Some(time / STEP_SECONDS)
            );
        }
    }

    #[test]
    fn one_step_of_skew_either_side_and_no_more() {
        let secret = new_secret();
        let now = 1_800_000_015;
        let step = now / STEP_SECONDS;
        for (offset, accepted) in [
            (-60i64, false),
            (-30, true),
            (0, true),
            (30, true),
            (60, false),
        ] {
            let code = code_at(&secret, (now as i64 + offset) as u64);
            let expected = accepted.then(|| (step as i64 + offset / 30) as u64);
            assert_eq!(matching_step(&secret, &code, now), expected, "{offset}");
        }
        assert_eq!(matching_step(&secret, "12345", now), None);
        assert_eq!(matching_step(&secret, "abcdef", now), None);
    }

    #[test]
    fn enrolment_material_names_issuer_and_account() {
        let secret = new_secret();
        assert_eq!(base32(&secret).len(), 32);
        let uri = otpauth_uri(&secret, "Acme Sign in", "emma").unwrap();
        assert!(
            uri.starts_with("otpauth://totp/Acme%20Sign%20in:emma?"),
            "{uri}"
        );
        assert!(
            uri.contains(&format!("secret={}", base32(&secret))),
            "{uri}"
        );
        assert!(qr_svg(&uri).unwrap().contains("<svg"));
    }

    #[test]
    fn recovery_codes_are_distinct_80_bit_codes_hashed_in_normal_form() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        let distinct: std::collections::BTreeSet<_> = codes.iter().collect();
        assert_eq!(distinct.len(), 10);
        for code in &codes {
            assert_eq!(code.len(), 19, "{code}");
            assert!(looks_like_recovery_code(code));
            assert_eq!(
                recovery_hash(code),
                recovery_hash(&code.to_uppercase().replace('-', " "))
            );
        }
        assert!(!looks_like_recovery_code("123456"));
    }
}
