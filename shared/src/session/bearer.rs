//! The bearer check's part of a session: whether an access token's session is still open.

use crate::store::ProfileWithSession;

/// Whether the session of an access token for `user_id` is still open.
pub fn is_open(found: &ProfileWithSession, user_id: &str, now: u64) -> bool {
    found.session.as_ref().is_some_and(|s| {
        s.user_id == user_id && s.epoch == found.account_epoch && now < s.expires_at
    })
}
