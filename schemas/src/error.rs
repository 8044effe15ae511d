//! Errors of the codec, classified for the caller's retry decision.

use crate::schema::SchemaError;
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::RawError;

/// Why an event could not be encoded or decoded.
///
/// Only [`CodecError::RegistryUnavailable`] is transient: retry it with
/// backoff and do not dead-letter. Every other variant is permanent for the
/// given input (dead-letter the message, or fail the publish loudly).
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The bytes do not start with magic byte 0 and a 4-byte schema id.
    #[error("not Confluent wire format: {0}")]
    NotConfluentFraming(&'static str),
    /// The registry answered 404 for this id: no retry will make it appear.
    #[error("schema id {0} is unknown to the schema registry")]
    UnknownSchemaId(u32),
    /// The registry could not be reached, timed out, or answered 5xx/429.
    #[error("schema registry unavailable: {0}")]
    RegistryUnavailable(String),
    /// The registry refused the request (e.g. 409: incompatible schema, 422: invalid schema).
    #[error("schema registry rejected the request (HTTP {status}): {message}")]
    RegistryRejected { status: u16, message: String },
    /// Serialisation, deserialisation or schema resolution failed.
    #[error("avro: {0}")]
    Avro(#[from] apache_avro::Error),
    /// The writer schema is not a record we know (e.g. another producer's type on our topic).
    #[error("unknown record name {0:?}")]
    UnknownRecordName(String),
    /// The compiled-in schemas are broken (a build defect).
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

impl CodecError {
    /// True when retrying the same call later may succeed (registry down, 5xx).
    pub fn is_transient(&self) -> bool {
        matches!(self, CodecError::RegistryUnavailable(_))
    }

    /// Classify an error of `schema_registry_converter`'s registry calls.
    ///
    /// It marks connection failures and 502/503 as retriable; every other
    /// status is "non-retriable" with the status only in the message, so the
    /// status is recovered from there (`... failed with status 404 Not Found`).
    pub(crate) fn from_registry(err: SRCError, schema_id: Option<u32>) -> CodecError {
        match (status_in(&err.error), schema_id) {
            (Some(404), Some(id)) => CodecError::UnknownSchemaId(id),
            (Some(s), _) if is_transient_status(s) => {
                CodecError::RegistryUnavailable(err.to_string())
            }
            (Some(s), _) => CodecError::RegistryRejected {
                status: s,
                message: raw_message(&err).unwrap_or_else(|| err.to_string()),
            },
            // No status: a connection failure (retriable), or a 2xx answer that
            // was not registry JSON (e.g. a proxy page). Neither says anything
            // about the message, so retry rather than dead-letter good data.
            (None, _) => CodecError::RegistryUnavailable(err.to_string()),
        }
    }
}

pub(crate) fn is_transient_status(status: u16) -> bool {
    status >= 500 || status == 429 || status == 408
}

fn status_in(message: &str) -> Option<u16> {
    let rest = message.split("status ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn raw_message(err: &SRCError) -> Option<String> {
    let source = std::error::Error::source(err)?;
    source
        .downcast_ref::<RawError>()
        .map(|raw| raw.message.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_read_from_the_converter_message() {
        assert_eq!(
            status_in("HTTP request to schema registry failed with status 404 Not Found"),
            Some(404)
        );
        assert_eq!(status_in("http call to schema registry failed"), None);
    }

    #[test]
    fn classification() {
        let not_found = SRCError::non_retryable_without_cause(
            "HTTP request to schema registry failed with status 404 Not Found",
        );
        assert!(matches!(
            CodecError::from_registry(not_found, Some(7)),
            CodecError::UnknownSchemaId(7)
        ));
        let down = SRCError::new("http call to schema registry failed", None, true);
        assert!(CodecError::from_registry(down, Some(7)).is_transient());
        let e500 = SRCError::non_retryable_without_cause(
            "HTTP request to schema registry failed with status 500 Internal Server Error",
        );
        assert!(CodecError::from_registry(e500, None).is_transient());
        let conflict = SRCError::non_retryable_without_cause(
            "HTTP request to schema registry failed with status 409 Conflict",
        );
        let err = CodecError::from_registry(conflict, None);
        assert!(matches!(
            err,
            CodecError::RegistryRejected { status: 409, .. }
        ));
        assert!(!err.is_transient());
    }
}
