//! What the workers' stores share about PostgreSQL errors: whether one may heal by itself
//! (retry, never dead-letter) or never will (dead-letter).

/// Whether an error may go away by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Retry later: connection lost, pool exhausted, server shutting down, deadlock,
    /// serialisation failure, missing table (a deployment still migrating).
    Transient,
    /// Retrying cannot help: a constraint or data error of this row.
    Permanent,
}

impl ErrorClass {
    /// The runtime's verdict for a failure of this class: retried, or dead-lettered.
    pub fn handler_error(self, reason: String) -> crate::runtime::HandlerError {
        match self {
            ErrorClass::Transient => crate::runtime::HandlerError::Transient(reason),
            ErrorClass::Permanent => crate::runtime::HandlerError::Permanent(reason),
        }
    }
}

/// Classifies a SQLSTATE. Only integrity-constraint (class 23) and data (class 22) errors are
/// permanent; everything else may heal, and wrongly calling it permanent would dead-letter
/// a good event.
pub fn classify_sqlstate(code: &str) -> ErrorClass {
    match code.get(..2) {
        Some("22") | Some("23") => ErrorClass::Permanent,
        _ => ErrorClass::Transient,
    }
}

pub fn classify(err: &sqlx::Error) -> ErrorClass {
    match err {
        sqlx::Error::Database(db) => db
            .code()
            .map_or(ErrorClass::Transient, |code| classify_sqlstate(&code)),
        // The row's values could not be encoded: the same row will never encode.
        sqlx::Error::Encode(_) => ErrorClass::Permanent,
        _ => ErrorClass::Transient,
    }
}
