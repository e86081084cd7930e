//! One module per function: request in, domain calls, response out. No storage or crypto details.

pub mod discovery;
pub mod login;
pub mod logout;
pub mod me;
pub mod register;
