//! Errors of the codec, classified for the caller's retry decision.

use crate::schema::SchemaError;
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::RawError;

/// What a caller should do about a [`CodecError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecErrorClass {
    /// The registry is unreachable, slow, failing (5xx, 429, 408) or refuses our credentials
    /// (401, 403): nothing is wrong with the message. Retry with backoff, forever, and never
    /// dead-letter; alert instead (an expired credential must not dead-letter whole topics).
    Transient,
    /// The registry does not know the schema id (404). Usually the data is bad, but a schema
    /// registered a moment ago on another registry node may not have reached this one yet:
    /// retry for a bounded window, then treat as permanent.
    UnknownSchema,
    /// Retrying cannot help (bad framing, bytes that do not decode, a schema the registry
    /// refuses): dead-letter the message, or fail the publish loudly.
    Permanent,
}

/// Why an event could not be encoded or decoded. See [`CodecError::class`].
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The bytes do not start with magic byte 0 and a 4-byte schema id.
    #[error("not Confluent wire format: {0}")]
    NotConfluentFraming(&'static str),
    /// The registry answered 404 for this id (see [`CodecErrorClass::UnknownSchema`]).
    #[error("schema id {0} is unknown to the schema registry")]
    UnknownSchemaId(u32),
    /// The registry could not be reached, timed out, or answered 5xx/429/408.
    #[error("schema registry unavailable: {0}")]
    RegistryUnavailable(String),
    /// The registry refused our credentials (401) or their permissions (403). Transient: the
    /// fix is a credential rotation or a grant, not different data.
    #[error("schema registry refused the credentials (HTTP {status}): {message}")]
    RegistryUnauthorized { status: u16, message: String },
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
    /// The registry client could not be built from its settings (URL, credentials, TLS).
    /// Returned by the constructors, never silently replaced by a client without them.
    #[error("schema registry client settings: {0}")]
    Settings(String),
}

impl CodecError {
    /// How a caller should treat this error.
    pub fn class(&self) -> CodecErrorClass {
        match self {
            CodecError::RegistryUnavailable(_) | CodecError::RegistryUnauthorized { .. } => {
                CodecErrorClass::Transient
            }
            CodecError::UnknownSchemaId(_) => CodecErrorClass::UnknownSchema,
            CodecError::NotConfluentFraming(_)
            | CodecError::RegistryRejected { .. }
            | CodecError::Avro(_)
            | CodecError::UnknownRecordName(_)
            | CodecError::Schema(_)
            | CodecError::Settings(_) => CodecErrorClass::Permanent,
        }
    }

    /// True when retrying the same call later may succeed without any bound (registry down,
    /// 5xx, credentials refused). An unknown schema id is not transient in this sense: see
    /// [`CodecErrorClass::UnknownSchema`].
    pub fn is_transient(&self) -> bool {
        self.class() == CodecErrorClass::Transient
    }

    /// A bounded label for metrics and alerts: `registry_unavailable`,
    /// `registry_unauthorized`, `unknown_schema` or `permanent`.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            CodecError::RegistryUnavailable(_) => "registry_unavailable",
            CodecError::RegistryUnauthorized { .. } => "registry_unauthorized",
            CodecError::UnknownSchemaId(_) => "unknown_schema",
            _ => "permanent",
        }
    }

    /// Classify an HTTP status the registry answered (`schema_id`: the id asked for, when
    /// the call was a lookup by id).
    pub(crate) fn from_status(status: u16, schema_id: Option<u32>, message: String) -> CodecError {
        match (status, schema_id) {
            (404, Some(id)) => CodecError::UnknownSchemaId(id),
            (401 | 403, _) => CodecError::RegistryUnauthorized { status, message },
            (s, _) if is_transient_status(s) => CodecError::RegistryUnavailable(message),
            (s, _) => CodecError::RegistryRejected { status: s, message },
        }
    }

    /// Classify an error of `schema_registry_converter`'s registry calls.
    ///
    /// It marks connection failures and 502/503 as retriable; every other
    /// status is "non-retriable" with the status only in the message, so the
    /// status is recovered from there (`... failed with status 404 Not Found`).
    pub(crate) fn from_registry(err: SRCError, schema_id: Option<u32>) -> CodecError {
        match status_in(&err.error) {
            Some(s) => {
                let message = match s {
                    // The converter's message names the status; the registry's body says why.
                    _ if is_transient_status(s) => err.to_string(),
                    _ => raw_message(&err).unwrap_or_else(|| err.to_string()),
                };
                CodecError::from_status(s, schema_id, message)
            }
            // No status: a connection failure or timeout (retriable), or a 2xx answer that
            // was not registry JSON (e.g. a proxy page). Neither says anything about the
            // message, so retry rather than dead-letter good data.
            None => CodecError::RegistryUnavailable(err.to_string()),
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

    fn status(code: &str) -> SRCError {
        SRCError::non_retryable_without_cause(&format!(
            "HTTP request to schema registry failed with status {code}"
        ))
    }

    #[test]
    fn status_is_read_from_the_converter_message() {
        assert_eq!(
            status_in("HTTP request to schema registry failed with status 404 Not Found"),
            Some(404)
        );
        assert_eq!(status_in("http call to schema registry failed"), None);
    }

    #[test]
    fn unknown_schema_id_is_retried_for_a_window_not_forever() {
        let err = CodecError::from_registry(status("404 Not Found"), Some(7));
        assert!(matches!(err, CodecError::UnknownSchemaId(7)));
        assert_eq!(err.class(), CodecErrorClass::UnknownSchema);
        assert!(!err.is_transient());
        assert_eq!(err.metric_reason(), "unknown_schema");
    }

    #[test]
    fn refused_credentials_are_transient_never_permanent() {
        for (code, schema_id) in [
            ("401 Unauthorized", Some(7)),
            ("401 Unauthorized", None),
            ("403 Forbidden", Some(7)),
            ("403 Forbidden", None),
        ] {
            let err = CodecError::from_registry(status(code), schema_id);
            assert!(
                matches!(err, CodecError::RegistryUnauthorized { .. }),
                "{code}: {err:?}"
            );
            assert_eq!(err.class(), CodecErrorClass::Transient, "{code}");
            assert!(err.is_transient());
            assert_eq!(err.metric_reason(), "registry_unauthorized");
        }
    }

    #[test]
    fn server_errors_timeouts_and_unreachable_are_transient() {
        for code in [
            "500 Internal Server Error",
            "502 Bad Gateway",
            "503 Service Unavailable",
            "504 Gateway Timeout",
            "429 Too Many Requests",
            "408 Request Timeout",
        ] {
            let err = CodecError::from_registry(status(code), Some(7));
            assert_eq!(err.class(), CodecErrorClass::Transient, "{code}");
            assert_eq!(err.metric_reason(), "registry_unavailable");
        }
        // Connection refused, DNS failure or a client-side timeout: no status at all.
        let down = SRCError::new("http call to schema registry failed", None, true);
        assert!(CodecError::from_registry(down, Some(7)).is_transient());
    }

    #[test]
    fn refused_requests_and_bad_data_are_permanent() {
        let err = CodecError::from_registry(status("409 Conflict"), None);
        assert!(matches!(
            err,
            CodecError::RegistryRejected { status: 409, .. }
        ));
        assert_eq!(err.class(), CodecErrorClass::Permanent);
        // A 404 that is not a lookup by id (e.g. a wrong base path) is not "unknown schema".
        let err = CodecError::from_registry(status("404 Not Found"), None);
        assert!(matches!(
            err,
            CodecError::RegistryRejected { status: 404, .. }
        ));
        assert_eq!(
            CodecError::NotConfluentFraming("magic byte is not 0").class(),
            CodecErrorClass::Permanent
        );
        assert_eq!(
            CodecError::UnknownRecordName("x".into()).class(),
            CodecErrorClass::Permanent
        );
        assert_eq!(
            CodecError::Settings("bad url".into()).class(),
            CodecErrorClass::Permanent
        );
    }
}
