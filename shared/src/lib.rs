//! Everything the auth Lambda functions share: configuration, the error model, password hashing,
//! token issue and verification, the storage and signing traits with their backends, and the
//! handlers that translate HTTP requests into calls on them.
//!
//! Each binary in `functions/` builds its state once per cold start (see [`wiring`]) and hands
//! every request to one handler in [`handlers`].

pub mod authn;
pub mod aws;
pub mod clock;
pub mod config;
pub mod error;
pub mod handlers;
pub mod http;
pub mod mail;
pub mod metrics;
pub mod oauth;
pub mod pages;
pub mod password;
pub mod policy;
pub mod seal;
pub mod session;
pub mod signer;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod throttle;
pub mod token;
pub mod wiring;

pub use config::{Config, Issuer};
pub use error::ApiError;
