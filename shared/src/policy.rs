//! What the service accepts as a username and a password (NIST SP 800-63B, OWASP ASVS V2).
//!
//! Every limit is a constant here and documented in the README.

use sha2::Digest;
use unicode_normalization::UnicodeNormalization;
use unicode_security::MixedScript;

/// An input that breaks a rule: the field it came from and why (a 422 at the HTTP edge).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct PolicyError {
    /// The offending field.
    pub field: String,
    /// Why it was refused.
    pub reason: String,
}

impl PolicyError {
    fn new(field: &str, reason: impl Into<String>) -> Self {
        PolicyError {
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    /// The same refusal, reported under another field name (e.g. `new_password`).
    pub fn for_field(self, field: &str) -> Self {
        PolicyError {
            field: field.to_string(),
            ..self
        }
    }
}

/// Shortest username, in characters.
pub const USERNAME_MIN_CHARS: usize = 3;
/// Longest username, in characters.
pub const USERNAME_MAX_CHARS: usize = 64;
/// Shortest password, in Unicode code points (NIST: at least 8).
pub const PASSWORD_MIN_CHARS: usize = 8;
/// Longest password, in Unicode code points (NIST: allow at least 64).
pub const PASSWORD_MAX_CHARS: usize = 256;
/// Longest full name, in characters.
pub const FULL_NAME_MAX_CHARS: usize = 128;
/// zxcvbn scores below this (fewer than ~10^6 guesses: common, breached or trivial) are refused.
pub const PASSWORD_MIN_SCORE: u8 = 2;
/// Only this many leading characters are given to zxcvbn, whose cost grows with length.
const STRENGTH_CHECK_CHARS: usize = 100;
/// Consecutive failed logins allowed before waits begin.
pub const FREE_FAILURES: u32 = 5;
/// The longest wait between login attempts, in seconds (15 minutes).
pub const MAX_WAIT_SECONDS: u64 = 15 * 60;

/// Default of `AUTH_ACCOUNT_FAILURES_PER_HOUR`: failures of an account in a [`WINDOW_SECONDS`]
/// window, from every source together, after which
/// every source waits for the window's end: below ASVS's 100 an hour, however many addresses an
/// attacker has, and keeping an owner out takes that many guesses every hour.
pub const ACCOUNT_FAILURE_CEILING: u32 = 50;
/// Default of `AUTH_SOURCE_FAILURES_PER_HOUR`: failed logins from one address in a
/// [`WINDOW_SECONDS`] window, across every account (and
/// names that are no account), after which that address waits for the window's end: password
/// spraying.
pub const SOURCE_FAILURE_CEILING: u32 = 100;
/// The window of [`ACCOUNT_FAILURE_CEILING`] and [`SOURCE_FAILURE_CEILING`].
pub const WINDOW_SECONDS: u64 = 3600;
/// How long an address's consecutive failures against one account are remembered after the
/// last one (the counter then expires by itself).
pub const PAIR_MEMORY_SECONDS: u64 = 3600;

/// Seconds an account with `failures` consecutive failures must wait after the last one:
/// nothing for the first [`FREE_FAILURES`], then 2^(n−5) s, capped at [`MAX_WAIT_SECONDS`].
pub fn wait_after(failures: u32) -> u64 {
    if failures < FREE_FAILURES {
        0
    } else {
        let exp = failures - FREE_FAILURES;
        if exp >= 10 {
            MAX_WAIT_SECONDS
        } else {
            (1u64 << exp).min(MAX_WAIT_SECONDS)
        }
    }
}

/// A username as shown (NFKC, as first registered) and its unique, case-insensitive key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username {
    /// NFKC form, case preserved: what `/me` shows.
    pub display: String,
    /// NFKC of the lower-cased display form: what uniqueness and lookups use.
    pub key: String,
}

/// Characters that render as nothing or reorder text: refused to stop look-alike names.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}' | '\u{E0000}'..='\u{E0FFF}')
}

/// The lookup key of a username, for logins: no validation, so an invalid name simply finds no one.
pub fn username_key(raw: &str) -> String {
    let display: String = raw.nfkc().collect();
    display.to_lowercase().nfkc().collect()
}

/// The longest username key, in bytes, that any store is given: registration refuses longer
/// ones, and a login or operator lookup of a longer one finds no one without asking the store
/// (DynamoDB refuses keys over 2,048 bytes, and NFKC can expand a name eighteenfold).
pub const USERNAME_KEY_MAX_BYTES: usize = 1024;

/// The key a login looks up for `raw`: its [`username_key`], or, for a name no account can
/// have (control or invisible characters, a key longer than [`USERNAME_KEY_MAX_BYTES`], or the
/// shape of the store's own keys, `#` and whitespace), a
/// stand-in of fixed length that starts with a control character, so it is looked up, counted
/// and answered exactly as an unknown name, and reaches no row (the SQLite migration parks
/// colliding tutorial names under `"\u{0}legacy:"` keys, which no login can produce).
pub fn login_key(raw: &str) -> String {
    let key = username_key(raw);
    // `#` then whitespace is how the DynamoDB store keys its sessions and counters; no
    // registered name holds whitespace, so only such a non-account key could look like one.
    let store_shaped = key.starts_with('#') && key.contains(char::is_whitespace);
    let impossible = key.is_empty()
        || key.len() > USERNAME_KEY_MAX_BYTES
        || key.chars().any(|c| c.is_control() || is_invisible(c));
    if !impossible && !store_shaped {
        return key;
    }
    let digest = sha2::Sha256::digest(raw.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("\u{1}no-account:{hex}")
}

/// Validates and normalises a username for registration.
pub fn username(raw: &str) -> Result<Username, PolicyError> {
    let fail = |reason: &str| Err(PolicyError::new("username", reason));
    let display: String = raw.nfkc().collect();
    let len = display.chars().count();
    if !(USERNAME_MIN_CHARS..=USERNAME_MAX_CHARS).contains(&len) {
        return fail(&format!(
            "must be {USERNAME_MIN_CHARS} to {USERNAME_MAX_CHARS} characters long"
        ));
    }
    if display.chars().any(char::is_whitespace) {
        return fail("must not contain spaces or other whitespace");
    }
    if display.chars().any(char::is_control) {
        return fail("must not contain control characters");
    }
    if display.chars().any(is_invisible) {
        return fail("must not contain invisible or text-direction characters");
    }
    // UTS #39 single-script restriction: "pаypal" with a Cyrillic "а" looks like "paypal" but
    // is another key. Digits and punctuation go with any script.
    if !display.as_str().is_single_script() {
        return fail("must be written in one script (no look-alike letters from another)");
    }
    let key = username_key(&display);
    if key.len() > USERNAME_KEY_MAX_BYTES {
        return fail(&format!(
            "is too long once normalised (at most {USERNAME_KEY_MAX_BYTES} bytes of UTF-8)"
        ));
    }
    Ok(Username { display, key })
}

/// Longest e-mail address, in characters (RFC 5321's path limit less its brackets).
pub const EMAIL_MAX_CHARS: usize = 254;
/// Mails a forgot-password or resend request may send one account: one a minute…
pub const MAILS_PER_MINUTE: u32 = 1;
/// …and five an hour.
pub const MAILS_PER_HOUR: u32 = 5;
/// Forgot-password requests one address may make an hour (matching or not), unless
/// `AUTH_FORGOT_PER_SOURCE_HOUR` says otherwise.
pub const FORGOT_PER_SOURCE_HOUR: u32 = 30;

/// Validates and normalises an e-mail address: NFKC, trimmed, the domain lower-cased (the local
/// part is the mailbox's own business, RFC 5321 §2.4), at most [`EMAIL_MAX_CHARS`], and of the
/// syntax a mailer accepts (`lettre`'s parser: one `@`, a dot-atom or quoted local part, a
/// domain or an address literal).
pub fn email(raw: &str) -> Result<String, PolicyError> {
    let fail = |reason: &str| Err(PolicyError::new("email", reason));
    let address: String = raw.nfkc().collect();
    let address = address.trim();
    if address.chars().count() > EMAIL_MAX_CHARS {
        return fail("must be at most 254 characters long");
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return fail("must be an email address");
    };
    let normalised = format!("{local}@{}", domain.to_lowercase());
    if local.is_empty()
        || domain.is_empty()
        || normalised
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
        || normalised.parse::<lettre::Address>().is_err()
    {
        return fail("must be an email address");
    }
    Ok(normalised)
}

/// Validates a full name: optional, bounded, printable.
pub fn full_name(raw: Option<&str>) -> Result<Option<String>, PolicyError> {
    let Some(raw) = raw else { return Ok(None) };
    let name: String = raw.nfkc().collect();
    let name = name.trim();
    if name.chars().count() > FULL_NAME_MAX_CHARS {
        return Err(PolicyError::new(
            "full_name",
            format!("must be at most {FULL_NAME_MAX_CHARS} characters long"),
        ));
    }
    if name.chars().any(|c| c.is_control() || is_invisible(c)) {
        return Err(PolicyError::new(
            "full_name",
            "must not contain control or invisible characters",
        ));
    }
    Ok((!name.is_empty()).then(|| name.to_string()))
}

/// Checks a new password: length in code points, not the username, not common or guessable.
/// No composition rules. Lengths count code points after NFKC normalisation.
pub fn password(
    raw: &str,
    username: &Username,
    full_name: Option<&str>,
) -> Result<(), PolicyError> {
    let password = &crate::password::normalize(raw);
    let fail = |reason: String| Err(PolicyError::new("password", reason));
    let len = password.chars().count();
    if len < PASSWORD_MIN_CHARS {
        return fail(format!(
            "must be at least {PASSWORD_MIN_CHARS} characters long"
        ));
    }
    if len > PASSWORD_MAX_CHARS {
        return fail(format!(
            "must be at most {PASSWORD_MAX_CHARS} characters long"
        ));
    }
    if username_key(password) == username.key {
        return fail("must not be the username".into());
    }
    let checked: String = password.chars().take(STRENGTH_CHECK_CHARS).collect();
    let mut inputs = vec![username.display.as_str()];
    inputs.extend(full_name);
    let estimate = zxcvbn::zxcvbn(&checked, &inputs);
    if u8::from(estimate.score()) < PASSWORD_MIN_SCORE {
        let why = estimate
            .feedback()
            .and_then(|f| f.warning())
            .map(|w| w.to_string())
            .unwrap_or_else(|| "This password is too easy to guess.".into());
        return fail(format!(
            "is too common or easy to guess ({}); try a longer phrase of unrelated words",
            why.trim_end_matches('.')
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised_and_checked() {
        assert_eq!(email(" Ada@Example.COM ").unwrap(), "Ada@example.com");
        assert_eq!(
            email("ａｄａ@ｅｘａｍｐｌｅ.com").unwrap(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "a b@example.com",
            "ada@@x.com",
        ] {
            assert_eq!(email(bad).unwrap_err().field, "email", "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(email(&long).is_err());
    }

    #[test]
    fn waits_double_after_five_failures_and_stop_at_fifteen_minutes() {
        let waits: Vec<u64> = (0..=16).map(wait_after).collect();
        assert_eq!(
            waits,
            [
                0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900
            ]
        );
        assert_eq!(wait_after(u32::MAX), MAX_WAIT_SECONDS);
    }

    #[test]
    fn the_schedule_keeps_failures_under_100_an_hour() {
        // An attacker who retries the moment each wait ends.
        let (mut t, mut failures) = (0u64, 0u32);
        while t < 3600 {
            failures += 1;
            t += wait_after(failures).max(1);
        }
        assert!(failures < 100, "{failures} failures in an hour");
    }

    fn reason(e: PolicyError) -> String {
        e.reason
    }

    #[test]
    fn usernames_are_unique_without_regard_to_case_or_width() {
        let a = username("Emma").unwrap();
        assert_eq!(a.display, "Emma");
        assert_eq!(a.key, username("EMMA").unwrap().key);
        // Full-width letters normalise (NFKC) to the same account.
        assert_eq!(a.key, username("Ｅｍｍａ").unwrap().key);
    }

    #[test]
    fn usernames_with_hidden_or_spacing_characters_are_refused() {
        for (raw, why) in [
            ("em ma", "whitespace"),
            (" emma", "whitespace"),
            ("emma\t", "whitespace"),
            ("em\u{0007}ma", "control"),
            ("em\u{200B}ma", "invisible"),
            ("em\u{202E}ma", "direction"),
            ("ab", "3 to 64"),
        ] {
            assert!(reason(username(raw).unwrap_err()).contains(why), "{raw:?}");
        }
        assert!(username(&"a".repeat(65)).is_err());
        assert!(
            username(&"é".repeat(64)).is_ok(),
            "length counts characters, not bytes"
        );
    }

    #[test]
    fn look_alike_names_mixing_scripts_are_refused() {
        // Cyrillic "а" (U+0430) in a Latin name, and Greek "ο" in another.
        for raw in ["p\u{430}ypal", "g\u{3bf}ogle", "admin\u{430}"] {
            assert!(
                reason(username(raw).unwrap_err()).contains("one script"),
                "{raw:?}"
            );
        }
        assert!(username("ελένη.k").is_err(), "Greek with a Latin k");
        // One script, with digits and punctuation, is fine in any script.
        for raw in ["paypal", "пример", "émile-2024", "山田_太郎", "ελένη.7"] {
            assert!(username(raw).is_ok(), "{raw:?}");
        }
    }

    #[test]
    fn the_tutorials_example_password_is_refused_as_common() {
        let emma = username("emma").unwrap();
        let why = reason(password("123456", &emma, None).unwrap_err());
        assert!(why.contains("at least 8"), "{why}");
        for common in ["12345678", "password1", "qwertyuiop"] {
            let why = reason(password(common, &emma, None).unwrap_err());
            assert!(why.contains("too common"), "{common}: {why}");
        }
    }

    #[test]
    fn the_username_is_not_a_password() {
        let u = username("Kestrel-Harbour-42").unwrap();
        let why = reason(password("kestrel-harbour-42", &u, None).unwrap_err());
        assert!(why.contains("username"), "{why}");
    }

    #[test]
    fn long_unicode_passphrases_are_accepted_up_to_the_limit() {
        let u = username("emma").unwrap();
        assert!(password("velvet tundra marmalade", &u, None).is_ok());
        let long: String = "ключ-🔑-鍵-"
            .chars()
            .cycle()
            .take(PASSWORD_MAX_CHARS)
            .collect();
        assert!(password(&long, &u, None).is_ok());
        let too_long: String = "x".repeat(PASSWORD_MAX_CHARS + 1);
        assert!(reason(password(&too_long, &u, None).unwrap_err()).contains("at most"));
    }

    #[test]
    fn full_names_are_optional_bounded_and_trimmed() {
        assert_eq!(full_name(None).unwrap(), None);
        assert_eq!(full_name(Some("  ")).unwrap(), None);
        assert_eq!(
            full_name(Some(" Emma Doe ")).unwrap().as_deref(),
            Some("Emma Doe")
        );
        assert!(full_name(Some(&"n".repeat(129))).is_err());
        assert!(full_name(Some("a\u{202E}b")).is_err());
    }
}
