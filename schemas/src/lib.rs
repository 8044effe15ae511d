//! The Taskflow event contract: topic names, typed events, the Avro schemas
//! (`schemas/avro/*.avsc`, the single source of truth) and the Confluent
//! wire-format codec backed by a Schema Registry.

mod codec;
mod error;
mod events;
pub mod examples;
pub mod schema;
mod serde_util;
mod wire;

pub use codec::Codec;
pub use error::{CodecError, CodecErrorClass};
pub use events::*;
pub use wire::MAGIC_BYTE;

/// Kafka topic names.
pub mod topics {
    /// Every task lifecycle event; key = task id.
    pub const TASK_EVENTS: &str = "taskflow.task-events";
    /// `ReminderDue` events; key = task id.
    pub const REMINDERS: &str = "taskflow.reminders";

    /// Dead-letter topic of a consumer group: `taskflow.dlq.<group>`.
    pub fn dlq(consumer_group: &str) -> String {
        format!("taskflow.dlq.{consumer_group}")
    }
}
