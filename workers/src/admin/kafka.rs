//! The broker connection the commands share: an admin client for topic operations, metadata
//! and watermarks, built from `TASKFLOW_KAFKA_*` like every other binary's clients.

use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::metadata::Metadata;
use rdkafka::ClientConfig;
use taskflow_infra::config::KafkaSettings;

use super::AdminError;

/// How long one broker request may take before the command gives up.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Connection settings plus an admin client over them.
pub struct Broker {
    settings: KafkaSettings,
    admin: AdminClient<DefaultClientContext>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("brokers", &self.settings.brokers)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// No I/O: librdkafka connects on the first request.
    pub fn new(settings: KafkaSettings) -> Result<Self, AdminError> {
        let admin = settings
            .client_config()
            .create()
            .map_err(AdminError::kafka("creating the admin client"))?;
        Ok(Self { settings, admin })
    }

    /// The connection and security settings, for the producers and consumers a command adds.
    pub fn client_config(&self) -> ClientConfig {
        self.settings.client_config()
    }

    pub(crate) fn admin(&self) -> &AdminClient<DefaultClientContext> {
        &self.admin
    }

    /// Metadata of one topic, or of every topic when `topic` is `None`.
    pub(crate) fn metadata(&self, topic: Option<&str>) -> Result<Metadata, AdminError> {
        self.admin
            .inner()
            .fetch_metadata(topic, REQUEST_TIMEOUT)
            .map_err(AdminError::kafka("fetching metadata"))
    }

    /// Partition ids of `topic`, or `NotFound` when the broker does not know it.
    pub(crate) fn partitions(&self, topic: &str) -> Result<Vec<i32>, AdminError> {
        let md = self.metadata(Some(topic))?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .ok_or_else(|| AdminError::NotFound(format!("topic {topic} does not exist")))?;
        Ok(t.partitions().iter().map(|p| p.id()).collect())
    }

    /// (low, high) watermarks of one partition.
    pub(crate) fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), AdminError> {
        self.admin
            .inner()
            .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
            .map_err(AdminError::kafka(format!(
                "fetching watermarks of {topic}/{partition}"
            )))
    }
}
