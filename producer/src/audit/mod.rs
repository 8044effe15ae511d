//! Read side of the audit log the audit worker writes (`audit_log`):
//! per-task history and the caller's activity feed. The rows are immutable
//! event records; the API turns them into field-level changes (pure mapping
//! in [`model`]) without ever writing to the table.

pub mod handlers;
pub mod model;
pub mod query;
pub mod store;

use crate::problem::ApiError;

impl From<model::MappingError> for ApiError {
    fn from(e: model::MappingError) -> Self {
        ApiError::Internal(e.to_string())
    }
}
