//! Authentication: proving who a request is for. One module per way of proving it; each
//! decides, in one place, what a proof leads to (start a session, or — later — ask for another
//! factor), so every route that checks a password does it the same way.

pub mod email;
pub mod mfa;
pub mod password;
pub mod recovery;
pub mod registration;
pub mod totp;
