//! `outbox list|retry`: parked outbox rows (infra's `list_parked` / `retry_parked`).
//!
//! A parked row is the head of its task: the task's later events wait behind it. Retrying
//! makes it an ordinary head again, so the relay sends it next and its task's later rows
//! follow in order.

use serde::Serialize;
use sqlx::PgPool;
use taskflow_infra::outbox::{list_parked, retry_parked, ParkedRow};

use super::table::{opt, Table};
use super::{AdminError, Human};

#[derive(Debug, Clone, Serialize)]
pub struct Parked {
    pub rows: Vec<ParkedRow>,
}

impl Human for Parked {
    fn human(&self) -> String {
        if self.rows.is_empty() {
            return "no parked outbox rows\n".to_owned();
        }
        let mut t = Table::new(&[
            "ID",
            "TOPIC",
            "KEY",
            "TYPE",
            "ATTEMPTS",
            "PARKED_AT",
            "WAITING_BEHIND",
            "ERROR",
        ]);
        for r in &self.rows {
            t.row(vec![
                r.id.to_string(),
                r.topic.clone(),
                r.partition_key.clone(),
                r.event_type.clone(),
                r.attempts.to_string(),
                r.parked_at.to_rfc3339(),
                r.waiting_behind.to_string(),
                opt(r.last_error.as_deref()),
            ]);
        }
        t.render()
    }
}

pub async fn list(pool: &PgPool) -> Result<Parked, AdminError> {
    Ok(Parked {
        rows: list_parked(pool).await?,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Retried {
    pub unparked: u64,
}

impl Human for Retried {
    fn human(&self) -> String {
        format!(
            "unparked {} row(s); the relay publishes them next, in task order\n",
            self.unparked
        )
    }
}

/// Unparks `ids`, or every parked row when `None`.
pub async fn retry(pool: &PgPool, ids: Option<&[i64]>) -> Result<Retried, AdminError> {
    Ok(Retried {
        unparked: retry_parked(pool, ids).await?,
    })
}
