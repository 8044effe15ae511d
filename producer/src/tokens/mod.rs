//! Personal access tokens: long-lived bearer tokens a user creates for
//! scripts and assistants (the MCP server acts with one), each limited to
//! [`Scope`]s and optionally expiring.
//!
//! A token reads `tfp_<lookup>_<secret>`: the lookup id finds the row by an
//! index, and only the SHA-256 of the secret is stored, compared in constant
//! time. The plain token is answered once, by the create call. Every request
//! that carries one reads its row ([`store::find_live`]): nothing is cached,
//! so a revocation or an expiry takes effect on the very next request.
//!
//! Managing tokens (create, list, revoke) needs a login session (the JWT of
//! `/auth/login`), never a personal access token: otherwise a leaked
//! read-only token could mint itself a writing one.

pub mod handlers;
pub mod model;
pub mod store;

pub use model::{Scope, TokenSecret};
