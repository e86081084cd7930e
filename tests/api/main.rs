//! Handler tests: each function's handler driven in-process with real event shapes and a real
//! SQLite file, exactly as the Lambda runtime would call it.

mod helpers;

mod account_protection;
mod discovery;
mod events;
mod login;
mod me;
mod register;
