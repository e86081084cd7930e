//! The OpenID Connect provider (issue 19), a piece at a time. So far: the registered OAuth
//! clients ([`client`]), which live in the store ([`crate::store::clients`]) so that registering
//! one needs no redeploy, and which an operator manages with `auth-admin client`; PKCE `S256`
//! ([`pkce`]); and authorization codes as single-use tickets bound to their client, redirect
//! URI and challenge ([`code`]). The endpoints that use them (`/authorize`, the hosted pages,
//! the `authorization_code` grant) are not built yet.

pub mod authorize;
pub mod client;
pub mod code;
pub mod pkce;

pub use client::{Client, ClientError, ClientSecret, Registration};
