//! The messages: one text and one HTML template (`templates/mail/`), filled with each letter's
//! sentences and its one link.

use askama::Template;

use super::Mail;

/// What a message is about.
#[derive(Debug, Clone, Copy)]
pub enum Letter<'a> {
    /// Confirm the address: the link opens the verification page (or `AUTH_VERIFY_URL`).
    Verify {
        /// The link, with its token.
        link: &'a str,
        /// How long it works, in seconds.
        seconds: u64,
    },
    /// Reset the password: the link opens the reset page.
    Reset {
        /// The link, with its token.
        link: &'a str,
        /// How long it works, in seconds.
        seconds: u64,
    },
    /// The password was changed (a reset, or a change with the old one).
    PasswordChanged,
    /// The account's address was changed away from the one this goes to.
    EmailChanged,
}

#[derive(Template)]
#[template(path = "mail/message.txt")]
struct Text<'a> {
    app_name: &'a str,
    username: &'a str,
    before: &'a [String],
    link: Option<&'a str>,
    after: &'a [String],
}

#[derive(Template)]
#[template(path = "mail/message.html")]
struct Html<'a> {
    app_name: &'a str,
    subject: &'a str,
    username: &'a str,
    before: &'a [String],
    link: Option<&'a str>,
    action: &'a str,
    after: &'a [String],
}

/// "30 minutes", "1 day".
fn lifetime(seconds: u64) -> String {
    let (n, unit) = match seconds {
        s if s % 86_400 == 0 => (s / 86_400, "day"),
        s if s % 3600 == 0 => (s / 3600, "hour"),
        s if s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// The message `letter` for `username` at `to`, from the service `app_name`.
pub fn compose(app_name: &str, username: &str, to: &str, letter: Letter<'_>) -> Mail {
    let ignore = "If you did not ask for this, ignore this message: nothing changes.".to_string();
    let (subject, before, link, action, after) = match letter {
        Letter::Verify { link, seconds } => (
            "confirm your email address",
            vec![format!(
                "Confirm that this address belongs to your {app_name} account by opening the link below. It works once, for {}.",
                lifetime(seconds)
            )],
            Some(link),
            "Confirm this address",
            vec![ignore],
        ),
        Letter::Reset { link, seconds } => (
            "reset your password",
            vec![format!(
                "Someone asked to reset the password of your {app_name} account. Open the link below to choose a new one. It works once, for {}.",
                lifetime(seconds)
            )],
            Some(link),
            "Choose a new password",
            vec![ignore],
        ),
        Letter::PasswordChanged => (
            "your password was changed",
            vec![format!(
                "The password of your {app_name} account was just changed, and every session signed in before was ended."
            )],
            None,
            "",
            vec!["If this was not you, reset your password at once and contact support.".into()],
        ),
        Letter::EmailChanged => (
            "your email address was changed",
            vec![format!(
                "The email address of your {app_name} account was just changed to another one. This address no longer receives its messages."
            )],
            None,
            "",
            vec!["If this was not you, reset your password and contact support.".into()],
        ),
    };
    let subject = format!("{app_name}: {subject}");
    let text = Text {
        app_name,
        username,
        before: &before,
        link,
        after: &after,
    }
    .render()
    .unwrap_or_default();
    let html = Html {
        app_name,
        subject: &subject,
        username,
        before: &before,
        link,
        action,
        after: &after,
    }
    .render()
    .unwrap_or_default();
    Mail {
        to: to.to_string(),
        subject,
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_letter_carries_the_link_once_in_each_part_and_escapes_html() {
        let link = "https://auth.example/reset-password?token=abc&x=1";
        let mail = compose(
            "Acme <b>",
            "ada",
            "ada@example.com",
            Letter::Reset {
                link,
                seconds: 1800,
            },
        );
        assert_eq!(mail.subject, "Acme <b>: reset your password");
        assert!(mail.text.contains(link), "{}", mail.text);
        assert!(mail.text.contains("30 minutes"));
        assert!(mail.html.contains("token=abc&#38;x=1"), "{}", mail.html);
        assert!(!mail.html.contains("<b>"), "{}", mail.html);
        let notice = compose("Acme", "ada", "a@b.c", Letter::PasswordChanged);
        assert!(!notice.text.contains("http"), "{}", notice.text);
    }

    #[test]
    fn lifetimes_read_naturally() {
        assert_eq!(lifetime(86_400), "1 day");
        assert_eq!(lifetime(1800), "30 minutes");
        assert_eq!(lifetime(7200), "2 hours");
        assert_eq!(lifetime(1), "1 second");
    }
}
