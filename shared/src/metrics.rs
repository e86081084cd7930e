//! One CloudWatch Embedded Metric Format line per outcome an operator watches: CloudWatch turns
//! each into a data point of the `JwtAuth` namespace, with the function as the only dimension
//! (no user, name or address ever becomes a dimension). The template's alarms and dashboard
//! read these metrics.

use std::sync::OnceLock;

/// The namespace of every metric.
pub const NAMESPACE: &str = "JwtAuth";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A password grant succeeded.
    LoginSucceeded,
    /// A password (login or re-authentication) was wrong.
    LoginFailed,
    /// An attempt was refused while the account waits.
    LoginThrottled,
    /// An account was created.
    Registered,
    /// A refresh grant succeeded.
    Refreshed,
    /// A rotated refresh token came back: its session was ended.
    RefreshReuseDetected,
    /// One or every session of an account was ended by logout.
    LoggedOut,
    /// An authorization code was exchanged for tokens.
    CodeExchanged,
    /// A message was handed to the mailer.
    MailSent,
    /// The mailer refused or could not be reached: the message was not sent.
    MailFailed,
    /// An address was verified.
    EmailVerified,
    /// A password was reset from a mailed link.
    PasswordReset,
    /// A second factor passed (after the right password, counted as `LoginSucceeded`).
    SecondFactorPassed,
}

impl Outcome {
    /// The metric's name.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::LoginSucceeded => "LoginSucceeded",
            Outcome::LoginFailed => "LoginFailed",
            Outcome::LoginThrottled => "LoginThrottled",
            Outcome::Registered => "Registered",
            Outcome::Refreshed => "Refreshed",
            Outcome::RefreshReuseDetected => "RefreshReuseDetected",
            Outcome::LoggedOut => "LoggedOut",
            Outcome::CodeExchanged => "CodeExchanged",
            Outcome::MailSent => "MailSent",
            Outcome::MailFailed => "MailFailed",
            Outcome::EmailVerified => "EmailVerified",
            Outcome::PasswordReset => "PasswordReset",
            Outcome::SecondFactorPassed => "SecondFactorPassed",
        }
    }
}

/// The function's name, the metrics' one dimension (`AWS_LAMBDA_FUNCTION_NAME`; `local` elsewhere).
fn function_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into())
    })
}

/// The EMF line for `outcome` at `timestamp_ms`.
pub fn line(outcome: Outcome, timestamp_ms: u128) -> String {
    let name = outcome.name();
    serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms as u64,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function"]],
                "Metrics": [{"Name": name, "Unit": "Count"}],
            }],
        },
        "Function": function_name(),
        name: 1,
    })
    .to_string()
}

/// Writes one data point for `outcome` to standard output, where Lambda collects it.
pub fn record(outcome: Outcome) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    println!("{}", line(outcome, now));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_embedded_metric_format_with_the_function_as_only_dimension() {
        let line: serde_json::Value =
            serde_json::from_str(&line(Outcome::LoginFailed, 1_700_000_000_000)).unwrap();
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "JwtAuth");
        assert_eq!(directive["Dimensions"], serde_json::json!([["Function"]]));
        assert_eq!(directive["Metrics"][0]["Name"], "LoginFailed");
        assert_eq!(line["LoginFailed"], 1);
        assert_eq!(line["_aws"]["Timestamp"], 1_700_000_000_000u64);
        assert_eq!(
            line.as_object().unwrap().len(),
            3,
            "no other member: {line}"
        );
    }
}
