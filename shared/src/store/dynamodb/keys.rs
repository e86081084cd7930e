//! The table's key scheme, in one place: one partition key, `username_key`. An account's item
//! is keyed by its username key itself; every other item's key starts with a reserved prefix,
//! `#` + a word + a space, which no username key can carry (registered names hold no
//! whitespace, and a login name of that shape gets a stand-in key, see
//! [`crate::policy::login_key`]). `template.yaml` grants each function its kinds of key by
//! these prefixes (`dynamodb:LeadingKeys`).

use aws_sdk_dynamodb::types::AttributeValue;

/// The table's partition key attribute.
pub const KEY: &str = "username_key";
/// The table's TTL attribute (seconds since the epoch): set on sessions, counters and tickets.
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// The partition key prefix of session items.
pub const SESSION_PREFIX: &str = "#session ";
/// The partition key prefix of throttle counters.
pub const COUNTER_PREFIX: &str = "#throttle ";
/// The partition key prefix of single-use tickets (then the kind, a space, the hash).
pub const TICKET_PREFIX: &str = "#ticket ";
/// The partition key prefix of registered OAuth clients (then the client id).
pub const CLIENT_PREFIX: &str = "#client ";

/// The partition key prefix of verified addresses' claims (then the normalised address).
pub const EMAIL_PREFIX: &str = "#email ";

/// The partition key prefixes of the items that are not accounts: every other key is an
/// account's (`template.yaml` names account keys as those that start with none of these).
pub const RESERVED_PREFIXES: [&str; 5] = [
    SESSION_PREFIX,
    COUNTER_PREFIX,
    TICKET_PREFIX,
    CLIENT_PREFIX,
    EMAIL_PREFIX,
];

/// Whether `key` is a session's, a counter's, a ticket's, a client's or an address claim's,
/// never an account's.
pub fn is_reserved(key: &str) -> bool {
    RESERVED_PREFIXES
        .iter()
        .any(|prefix| key.starts_with(prefix))
}

/// The key of an account's item.
pub(in crate::store) fn account_item_key(username_key: &str) -> AttributeValue {
    AttributeValue::S(username_key.to_string())
}

/// The key of the throttle counter named `key`.
pub(in crate::store) fn counter_key(key: &str) -> AttributeValue {
    AttributeValue::S(format!("{COUNTER_PREFIX}{key}"))
}

/// The key of session `sid`.
pub(in crate::store) fn session_key(sid: &str) -> AttributeValue {
    AttributeValue::S(format!("{SESSION_PREFIX}{sid}"))
}

/// The key of the ticket of `kind` whose secret hashes to `hash`.
pub(in crate::store) fn ticket_key(kind: &str, hash: &str) -> AttributeValue {
    AttributeValue::S(format!("{TICKET_PREFIX}{kind} {hash}"))
}

/// The key of the claim on the verified address `email`.
pub(in crate::store) fn email_key(email: &str) -> AttributeValue {
    AttributeValue::S(format!("{EMAIL_PREFIX}{email}"))
}

/// The key of the OAuth client `client_id`.
pub(in crate::store) fn client_key(client_id: &str) -> AttributeValue {
    AttributeValue::S(format!("{CLIENT_PREFIX}{client_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy;

    #[test]
    fn no_login_name_reaches_a_reserved_key() {
        for name in [
            "#session x",
            "#throttle pair 1 id y",
            "#ticket code h",
            "#client web",
            "#email a@example.com",
            "#SESSION x",
            "",
        ] {
            assert!(!is_reserved(&policy::login_key(name)), "{name}");
        }
        assert!(!is_reserved(&policy::login_key("#emma")), "an account key");
        assert_eq!(policy::login_key("#emma"), "#emma");
    }
}
