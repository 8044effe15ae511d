//! The Taskflow task API: HTTP (axum), accounts and bearer tokens, the task
//! store, and the transactional outbox writes that turn every change into an
//! event. The binary (`taskflow-api`) is a thin `main` over [`Application`].
//!
//! Module map: [`config`] settings from the environment; [`app`] router and
//! lifecycle; [`auth`] signup/login/JWT; [`tasks`] model, validation, store,
//! write flows and handlers; [`audit`] task history and activity feed read
//! from the audit log; [`extract`] problem-returning extractors;
//! [`problem`] problem+json errors; [`openapi`]; [`metrics`]; [`middleware`]
//! (panic catching, timeout); [`ratelimit`] signup/login limits; [`tokens`]
//! personal access tokens and their scopes; [`feed`] the live stream of the
//! user's feed (Server-Sent Events); [`inbox`] notifications and their read state;
//! [`web`] the web page for people (embedded static assets).

pub mod app;
pub mod audit;
pub mod auth;
pub mod config;
pub mod extract;
pub mod feed;
pub mod inbox;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod preferences;
pub mod problem;
pub mod ratelimit;
pub mod recurrence;
pub mod tasks;
pub mod tokens;
pub mod web;
pub mod webhooks;

pub use app::{router, AppState, Application};
pub use config::Settings;
