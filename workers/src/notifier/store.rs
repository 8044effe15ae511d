//! The notifier's one transaction: the feed entry and, for a reminder, the notification. The
//! reasoning is in the parent module's header.

use sqlx::PgPool;
use taskflow_infra::feed::{self, FeedEntry};

use super::Notification;
use crate::db::{classify, ErrorClass};
use crate::delivery::{self, email::PlannedEmail, plan::WebhookMessage};

#[derive(Debug, thiserror::Error)]
#[error("notifier store ({class:?}): {source}")]
pub struct NotifierStoreError {
    pub class: ErrorClass,
    #[source]
    pub source: sqlx::Error,
}

impl From<sqlx::Error> for NotifierStoreError {
    fn from(source: sqlx::Error) -> Self {
        Self {
            class: classify(&source),
            source,
        }
    }
}

/// What handling one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Appended {
        seq: i64,
    },
    /// The user's feed already had this event (a redelivery): nothing written.
    Duplicate,
}

pub struct NotifierStore {
    pool: PgPool,
}

impl NotifierStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Appends `entry`, inserts `notification` (if any) and plans the webhook deliveries
    /// of `webhook` and the mail `email` (if any) in one transaction.
    pub async fn apply(
        &self,
        entry: &FeedEntry,
        notification: Option<&Notification>,
        webhook: &WebhookMessage,
        email: Option<&PlannedEmail>,
    ) -> Result<Applied, NotifierStoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(seq) = feed::append(&mut tx, entry).await? else {
            tx.rollback().await?;
            return Ok(Applied::Duplicate);
        };
        if let Some(n) = notification {
            sqlx::query(
                "INSERT INTO notifications (id, user_id, event_id, kind, task_id, title, body, \
                     data, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (user_id, event_id) DO NOTHING",
            )
            .bind(n.id)
            .bind(entry.user_id)
            .bind(entry.event_id)
            .bind(n.kind)
            .bind(entry.task_id)
            .bind(&n.title)
            .bind(&n.body)
            .bind(&n.data)
            .bind(entry.occurred_at)
            .execute(&mut *tx)
            .await?;
        }
        delivery::store::plan(&mut tx, entry.user_id, entry.event_id, webhook).await?;
        if let Some(email) = email {
            delivery::store::plan_email(&mut tx, entry.user_id, entry.event_id, email).await?;
        }
        tx.commit().await?;
        Ok(Applied::Appended { seq })
    }
}
