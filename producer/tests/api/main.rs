//! API integration tests: one binary, a fresh PostgreSQL database per test.
//! Needs PostgreSQL at postgres://postgres@127.0.0.1:5432/postgres or
//! TASKFLOW_TEST_DATABASE_URL (an admin URL allowed to CREATE DATABASE).

// A panic is how a test fails, and helpers are shared between modules of this
// one binary, so these two workspace lints do not apply here.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod auth;
mod bad_input;
mod feed;
mod hardening;
mod helpers;
mod history;
mod idempotency;
mod inbox;
mod list;
mod observability;
mod preferences;
mod recurrence_preview;
mod reminders;
mod sse;
mod tasks;
mod timestamps;
mod tokens;
mod web;
mod webhooks;
mod ws;
