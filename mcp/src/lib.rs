//! `taskflow-mcp`: an MCP server (on the official Rust SDK, `rmcp`) that
//! gives an assistant one user's Taskflow tasks as tools, over stdio or
//! streamable HTTP.
//!
//! **Why it calls the HTTP API instead of linking the service layer.** Every
//! tool is one request to the Taskflow API made with the user's own bearer
//! token (a personal access token, or a login token). So a task created
//! through MCP goes through exactly the code an HTTP client's does: the same
//! authentication and scope check (a token without `tasks:write` cannot
//! create), the same validation (its field errors are passed on as they
//! are), the same ownership rule (another user's task is a 404), the same
//! transaction writing the task with its outbox row, hence the same
//! `TaskCreated` event. Linking `taskflow-producer`'s service layer would
//! have needed a second copy of the token check, a database connection with
//! write rights in this process, and a second place every future rule must
//! be added to; over HTTP there is one code path, and revocation is
//! immediate because the API checks the token on every call. The cost is one
//! loopback HTTP hop per call. (This crate uses `taskflow-producer` only for
//! the validation bounds its schemas advertise.)
//!
//! Module map: [`config`] settings; [`api`] the API client; [`schema`] the
//! tools' JSON Schemas; [`tools`] the tool list and each call; [`server`]
//! the MCP handler (tools and the open-tasks resource); [`http`] the
//! streamable HTTP transport; [`metrics`].

pub mod api;
pub mod config;
pub mod http;
pub mod metrics;
pub mod schema;
pub mod server;
pub mod tools;

pub use config::{Settings, Transport};
pub use server::{TaskflowMcp, TokenSource};
