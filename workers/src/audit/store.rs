//! Writing audit rows: idempotent, append-only, one statement (one transaction) per event.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Datelike, Utc};
use sqlx::PgPool;

use super::AuditRow;
pub use crate::db::{classify, classify_sqlstate, ErrorClass};

#[derive(Debug, thiserror::Error)]
#[error("audit store ({class:?}): {source}")]
pub struct AuditStoreError {
    pub class: ErrorClass,
    #[source]
    pub source: sqlx::Error,
}

impl From<sqlx::Error> for AuditStoreError {
    fn from(source: sqlx::Error) -> Self {
        Self {
            class: classify(&source),
            source,
        }
    }
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New,
    /// The event was already recorded (redelivery or replay): nothing changed.
    Duplicate,
}

/// A month as a single number, for the "partition already ensured" cache.
fn month_key(at: DateTime<Utc>) -> i64 {
    i64::from(at.year()) * 12 + i64::from(at.month0())
}

/// Writes audit rows; cheap to share (`&self` everywhere).
pub struct AuditStore {
    pool: PgPool,
    /// Months whose partition this process has ensured (or found), so the partition check runs
    /// once per month, not once per event.
    ensured_months: Mutex<HashSet<i64>>,
}

impl AuditStore {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            ensured_months: Mutex::new(HashSet::new()),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Inserts the row unless its event is already recorded.
    ///
    /// The month's partition is ensured first (`audit_ensure_partition`, idempotent); the row
    /// itself is one INSERT, hence one transaction: the effect is durable when this returns
    /// `Ok`, and only then may the caller commit the Kafka offset.
    ///
    /// The row's feed position (`insert_xid`, `seq`) and `recorded_at` come from column
    /// defaults; the service role may not supply them (see `producer/src/audit/store.rs`).
    pub async fn insert(&self, row: &AuditRow) -> Result<Inserted, AuditStoreError> {
        self.ensure_partition(row.occurred_at).await?;
        let result = sqlx::query(
            "INSERT INTO audit_log (event_id, event_type, task_id, user_id, occurred_at, version, \
             correlation_id, causation_id, payload, source_topic, source_partition, source_offset) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (event_id, occurred_at) DO NOTHING",
        )
        .bind(row.event_id)
        .bind(&row.event_type)
        .bind(row.task_id)
        .bind(row.user_id)
        .bind(row.occurred_at)
        .bind(row.version)
        .bind(&row.correlation_id)
        .bind(&row.causation_id)
        .bind(&row.payload)
        .bind(&row.source_topic)
        .bind(row.source_partition)
        .bind(row.source_offset)
        .execute(&self.pool)
        .await?;
        Ok(if result.rows_affected() == 1 {
            Inserted::New
        } else {
            Inserted::Duplicate
        })
    }

    async fn ensure_partition(&self, at: DateTime<Utc>) -> Result<(), AuditStoreError> {
        let key = month_key(at);
        let known = self
            .ensured_months
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&key);
        if known {
            return Ok(());
        }
        sqlx::query("SELECT audit_ensure_partition($1)")
            .bind(at)
            .execute(&self.pool)
            .await?;
        self.ensured_months
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn constraint_and_data_errors_are_permanent() {
        assert_eq!(classify_sqlstate("23505"), ErrorClass::Permanent); // unique_violation
        assert_eq!(classify_sqlstate("23502"), ErrorClass::Permanent); // not_null_violation
        assert_eq!(classify_sqlstate("22P02"), ErrorClass::Permanent); // invalid_text_representation
        assert_eq!(classify_sqlstate("22001"), ErrorClass::Permanent); // string_data_right_truncation
    }

    #[test]
    fn availability_errors_are_transient() {
        for code in [
            "08006", // connection_failure
            "57P01", // admin_shutdown
            "57P03", // cannot_connect_now
            "53300", // too_many_connections
            "40001", // serialization_failure
            "40P01", // deadlock_detected
            "42P01", // undefined_table: migrations not applied yet
            "55P03", // lock_not_available
            "",
        ] {
            assert_eq!(classify_sqlstate(code), ErrorClass::Transient, "{code}");
        }
    }

    #[test]
    fn client_side_errors_are_classified() {
        assert_eq!(classify(&sqlx::Error::PoolTimedOut), ErrorClass::Transient);
        assert_eq!(classify(&sqlx::Error::PoolClosed), ErrorClass::Transient);
        assert_eq!(
            classify(&sqlx::Error::Io(std::io::Error::from(
                std::io::ErrorKind::ConnectionReset
            ))),
            ErrorClass::Transient
        );
        assert_eq!(
            classify(&sqlx::Error::Encode("bad".into())),
            ErrorClass::Permanent
        );
    }

    #[test]
    fn month_keys_follow_utc_months() {
        let jan = Utc.with_ymd_and_hms(2026, 1, 31, 23, 59, 59).unwrap();
        let feb = Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap();
        let dec = Utc.with_ymd_and_hms(2025, 12, 1, 0, 0, 0).unwrap();
        assert_eq!(month_key(feb) - month_key(jan), 1);
        assert_eq!(month_key(jan) - month_key(dec), 1);
    }
}
