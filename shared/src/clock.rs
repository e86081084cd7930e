//! The one home of time: seconds since the Unix epoch, and a replaceable clock so tests can drive
//! lockout waits and session lifetimes without sleeping.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch; replaceable so tests can drive the lockout schedule and sessions.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The system clock.
pub fn system() -> Clock {
    Arc::new(now)
}
