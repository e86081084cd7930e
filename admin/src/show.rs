//! How accounts and names are printed: never a hash, and never a character that would hide from
//! the operator (control, invisible or direction characters are escaped; a name that could pass
//! for another script's is followed by its code points).

use std::fmt::Write;

use shared::store::Credentials;
use unicode_security::MixedScript;

/// Whether every character of `name` shows as itself on a terminal.
pub fn is_visible(name: &str) -> bool {
    name.chars().all(|c| c == ' ' || !hides(c))
}

fn hides(c: char) -> bool {
    // `escape_debug` escapes controls and what the standard library deems unprintable (format
    // characters such as U+202E included), but also quotes and backslashes, which show fine.
    c.is_whitespace() || (c.escape_debug().len() > 1 && !matches!(c, '\'' | '"' | '\\'))
}

/// `name` for a terminal: hidden characters escaped (`\u{202e}`), and a name that mixes scripts
/// or imitates plain ASCII followed by its escaped form, so `аlice` (Cyrillic а) prints as
/// `аlice [\u{430}lice]`.
pub fn shown(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c != ' ' && hides(c) {
            let _ = write!(out, "{}", c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    let imitates_ascii = || unicode_security::skeleton(name).all(|c| c.is_ascii());
    if !name.is_ascii() && (!name.is_single_script() || imitates_ascii()) {
        out.push_str(" [");
        for c in name.chars() {
            if c.is_ascii() && !hides(c) {
                out.push(c);
            } else {
                let _ = write!(out, "{}", c.escape_unicode());
            }
        }
        out.push(']');
    }
    out
}

/// A wait that applies to an account's logins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    /// The address that waits, or `None`: every address (the account-wide ceiling).
    pub from: Option<String>,
    /// Seconds more.
    pub seconds: u64,
}

/// What `auth-admin show` prints about `user` at `now`, given every wait that applies to it (the
/// account-wide ceiling, and each address's own schedule).
pub fn account(user: &Credentials, full_name: Option<&str>, waits: &[Wait], now: u64) -> String {
    let until = |w: &Wait| format!("{} s more (until {})", w.seconds, utc(now + w.seconds));
    let throttled = match waits {
        [] => "no".to_string(),
        waits => waits
            .iter()
            .map(|w| match &w.from {
                None => format!("yes, every address {}", until(w)),
                Some(from) => format!("yes, from {from} {}", until(w)),
            })
            .collect::<Vec<_>>()
            .join("\n               "),
    };
    let email = match &user.email {
        None => "-".to_string(),
        Some(address) if user.email_verified => format!("{} (verified)", shown(address)),
        Some(address) => format!("{} (not verified)", shown(address)),
    };
    let totp = match (user.totp_enabled, &user.totp_secret) {
        (true, _) => "on",
        (false, Some(_)) => "pending (not confirmed)",
        (false, None) => "off",
    };
    format!(
        "name:          {}\n\
         id:            {}\n\
         full name:     {}\n\
         email:         {email}\n\
         totp:          {totp}\n\
         failed logins: {}\n\
         last failure:  {}\n\
         throttled:     {throttled}\n\
         session epoch: {}\n",
        shown(&user.username),
        user.id,
        full_name.map(shown).unwrap_or_else(|| "-".into()),
        user.failed_logins,
        user.last_failed_at.map(utc).unwrap_or_else(|| "-".into()),
        user.session_epoch,
    )
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC` (the proleptic Gregorian calendar;
/// Howard Hinnant's `civil_from_days`).
pub fn utc(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_calendar_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_795_705_701), "2026-11-26 15:08:21 UTC");
    }

    #[test]
    fn look_alikes_and_hidden_characters_are_spelt_out() {
        assert_eq!(shown("alice"), "alice");
        assert_eq!(shown("José"), "José");
        assert_eq!(shown("\u{430}lice"), "\u{430}lice [\\u{430}lice]");
        assert_eq!(shown("аре"), "аре [\\u{430}\\u{440}\\u{435}]");
        assert_eq!(shown("ev\u{202e}il"), "ev\\u{202e}il [ev\\u{202e}il]");
        assert_eq!(shown("tab\there"), "tab\\u{9}here");
        assert!(!is_visible("a\u{200b}b"));
        assert!(is_visible("O'Brien"));
    }

    #[test]
    fn show_never_prints_the_hash_and_says_when_throttled() {
        let user = Credentials {
            id: "id-1".into(),
            username_key: "emma".into(),
            username: "Emma".into(),
            password_hash: "$2b$12$secret-hash".into(),
            failed_logins: 7,
            last_failed_at: Some(1_000),
            session_epoch: 3,
            email: Some("emma@example.com".into()),
            email_verified: true,
            totp_secret: Some("a1.sealed".into()),
            totp_enabled: true,
            totp_last_step: 9,
            full_name: Some("Emma Example".into()),
        };
        let waits = [
            Wait {
                from: None,
                seconds: 3,
            },
            Wait {
                from: Some("192.0.2.1".into()),
                seconds: 9,
            },
        ];
        let text = account(&user, Some("Emma Example"), &waits, 1_001);
        assert!(!text.contains("secret-hash"));
        assert!(
            text.contains("throttled:     yes, every address 3 s more"),
            "{text}"
        );
        assert!(
            text.contains("\n               yes, from 192.0.2.1 9 s more"),
            "{text}"
        );
        assert!(account(&user, None, &[], 2_000).contains("throttled:     no"));
        assert!(
            text.contains("email:         emma@example.com (verified)\n"),
            "{text}"
        );
        assert!(text.contains("totp:          on\n"), "{text}");
        assert!(!text.contains("a1.sealed"), "{text}");
        let unverified = Credentials {
            email_verified: false,
            ..user.clone()
        };
        assert!(account(&unverified, None, &[], 0).contains("emma@example.com (not verified)"));
    }
}
