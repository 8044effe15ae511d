//! Tasks: the model and its validation (pure), the store (SQL), the write
//! flows that pair each change with its outbox event, and thin handlers.

pub mod handlers;
pub mod model;
pub mod service;
pub mod store;
pub mod validate;

use crate::problem::ApiError;

impl From<store::TaskStoreError> for ApiError {
    fn from(e: store::TaskStoreError) -> Self {
        match e {
            store::TaskStoreError::Sql(e) => ApiError::from(e),
            corrupt @ store::TaskStoreError::Corrupt { .. } => {
                ApiError::Internal(corrupt.to_string())
            }
        }
    }
}
