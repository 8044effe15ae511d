//! Configuration from `TASKFLOW_*` environment variables.
//!
//! Every setting has a documented default, except secrets, which have none and
//! are read from the environment only (never from files in the repository).

use std::{fmt::Display, str::FromStr};

use rdkafka::ClientConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}={value:?} is invalid: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
    #[error("{name} is required when {because}")]
    Missing { name: String, because: String },
}

/// Reads `name` from the environment, or `default` when it is unset or empty.
pub fn env_or<T>(name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    match env_opt(name)? {
        Some(v) => Ok(v),
        None => Ok(default),
    }
}

/// Reads an optional `name`; unset and empty both mean `None`.
pub fn env_opt<T>(name: &str) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    match std::env::var(name) {
        Ok(raw) if !raw.trim().is_empty() => {
            raw.trim()
                .parse()
                .map(Some)
                .map_err(|e: T::Err| ConfigError::Invalid {
                    name: name.to_owned(),
                    value: raw.clone(),
                    reason: e.to_string(),
                })
        }
        _ => Ok(None),
    }
}

/// How the Kafka client talks to the brokers (`security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl FromStr for SecurityProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "plaintext" => Ok(Self::Plaintext),
            "ssl" => Ok(Self::Ssl),
            "sasl_plaintext" => Ok(Self::SaslPlaintext),
            "sasl_ssl" => Ok(Self::SaslSsl),
            other => Err(format!(
                "unknown protocol {other:?}; expected plaintext, ssl, sasl_plaintext or sasl_ssl"
            )),
        }
    }
}

/// SASL mechanisms hosted Redpanda and Kafka offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    ScramSha256,
    ScramSha512,
    Plain,
}

impl SaslMechanism {
    fn as_librdkafka(self) -> &'static str {
        match self {
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::Plain => "PLAIN",
        }
    }
}

impl FromStr for SaslMechanism {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "SCRAM-SHA-256" => Ok(Self::ScramSha256),
            "SCRAM-SHA-512" => Ok(Self::ScramSha512),
            "PLAIN" => Ok(Self::Plain),
            other => Err(format!(
                "unknown mechanism {other:?}; expected SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN"
            )),
        }
    }
}

/// Credentials are kept out of `Debug` output so a logged config never leaks them.
#[derive(Clone)]
pub struct SaslCredentials {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Connection settings shared by every Kafka client a binary creates.
///
/// | variable | default | meaning |
/// | --- | --- | --- |
/// | `TASKFLOW_KAFKA_BROKERS` | `localhost:9092` | bootstrap servers |
/// | `TASKFLOW_KAFKA_CLIENT_ID` | the binary's name | `client.id` |
/// | `TASKFLOW_KAFKA_SECURITY_PROTOCOL` | `plaintext` | `plaintext`, `ssl`, `sasl_plaintext`, `sasl_ssl` |
/// | `TASKFLOW_KAFKA_SASL_MECHANISM` | `SCRAM-SHA-256` | with a `sasl_*` protocol |
/// | `TASKFLOW_KAFKA_SASL_USERNAME` / `_PASSWORD` | none | required with a `sasl_*` protocol |
/// | `TASKFLOW_KAFKA_SSL_CA_LOCATION` | system store | CA bundle for TLS |
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub client_id: String,
    pub security_protocol: SecurityProtocol,
    pub sasl: Option<SaslCredentials>,
    pub ssl_ca_location: Option<String>,
}

impl KafkaSettings {
    pub fn new(brokers: &str, client_id: &str) -> Self {
        Self {
            brokers: brokers.to_owned(),
            client_id: client_id.to_owned(),
            security_protocol: SecurityProtocol::Plaintext,
            sasl: None,
            ssl_ca_location: None,
        }
    }

    pub fn from_env(default_client_id: &str) -> Result<Self, ConfigError> {
        let security_protocol: SecurityProtocol = env_or(
            "TASKFLOW_KAFKA_SECURITY_PROTOCOL",
            SecurityProtocol::Plaintext,
        )?;
        let sasl = if security_protocol.uses_sasl() {
            let required = |name: &str| -> Result<String, ConfigError> {
                env_opt::<String>(name)?.ok_or_else(|| ConfigError::Missing {
                    name: name.to_owned(),
                    because: "TASKFLOW_KAFKA_SECURITY_PROTOCOL uses SASL".to_owned(),
                })
            };
            Some(SaslCredentials {
                mechanism: env_or("TASKFLOW_KAFKA_SASL_MECHANISM", SaslMechanism::ScramSha256)?,
                username: required("TASKFLOW_KAFKA_SASL_USERNAME")?,
                password: required("TASKFLOW_KAFKA_SASL_PASSWORD")?,
            })
        } else {
            None
        };
        Ok(Self {
            brokers: env_or("TASKFLOW_KAFKA_BROKERS", "localhost:9092".to_owned())?,
            client_id: env_or("TASKFLOW_KAFKA_CLIENT_ID", default_client_id.to_owned())?,
            security_protocol,
            sasl,
            ssl_ca_location: env_opt("TASKFLOW_KAFKA_SSL_CA_LOCATION")?,
        })
    }

    /// A client configuration with connection and security settings only;
    /// each component adds the producer or consumer settings it relies on.
    pub fn client_config(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("security.protocol", self.security_protocol.as_librdkafka());
        if let Some(sasl) = &self.sasl {
            cfg.set("sasl.mechanism", sasl.mechanism.as_librdkafka())
                .set("sasl.username", &sasl.username)
                .set("sasl.password", &sasl.password);
        }
        if let Some(ca) = &self.ssl_ca_location {
            cfg.set("ssl.ca.location", ca);
        }
        cfg
    }
}

/// The Avro codec for the registry the environment names.
///
/// | variable | default | meaning |
/// | --- | --- | --- |
/// | `TASKFLOW_SCHEMA_REGISTRY_URL` | `http://localhost:8081` | Confluent-compatible Schema Registry |
/// | `TASKFLOW_SCHEMA_REGISTRY_USERNAME` / `_PASSWORD` | none | basic auth for a hosted registry; both or neither |
///
/// A registry client that cannot be built from these settings is an error: the binary must
/// not start with its credentials silently dropped.
pub fn codec_from_env() -> Result<taskflow_schemas::Codec, ConfigError> {
    let url: String = env_or(
        "TASKFLOW_SCHEMA_REGISTRY_URL",
        "http://localhost:8081".to_owned(),
    )?;
    let user: Option<String> = env_opt("TASKFLOW_SCHEMA_REGISTRY_USERNAME")?;
    let password: Option<String> = env_opt("TASKFLOW_SCHEMA_REGISTRY_PASSWORD")?;
    codec_from_settings(&url, user.as_deref(), password.as_deref())
}

/// [`codec_from_env`] without the environment.
pub fn codec_from_settings(
    url: &str,
    user: Option<&str>,
    password: Option<&str>,
) -> Result<taskflow_schemas::Codec, ConfigError> {
    let credentials = match (user, password) {
        (None, None) => None,
        (Some(u), Some(p)) => Some((u, p)),
        (Some(_), None) => {
            return Err(ConfigError::Missing {
                name: "TASKFLOW_SCHEMA_REGISTRY_PASSWORD".to_owned(),
                because: "TASKFLOW_SCHEMA_REGISTRY_USERNAME is set".to_owned(),
            })
        }
        (None, Some(_)) => {
            return Err(ConfigError::Missing {
                name: "TASKFLOW_SCHEMA_REGISTRY_USERNAME".to_owned(),
                because: "TASKFLOW_SCHEMA_REGISTRY_PASSWORD is set".to_owned(),
            })
        }
    };
    // The error names the URL only: the credentials never reach a message.
    taskflow_schemas::Codec::with_credentials(url, credentials).map_err(|e| ConfigError::Invalid {
        name: "TASKFLOW_SCHEMA_REGISTRY_URL".to_owned(),
        value: url.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_and_mechanism_parse_case_insensitively() {
        assert_eq!(
            "SASL_SSL".parse::<SecurityProtocol>(),
            Ok(SecurityProtocol::SaslSsl)
        );
        assert_eq!(
            "scram-sha-512".parse::<SaslMechanism>(),
            Ok(SaslMechanism::ScramSha512)
        );
        assert!("kerberos".parse::<SaslMechanism>().is_err());
    }

    #[test]
    fn sasl_settings_reach_librdkafka_and_password_stays_out_of_debug() {
        let mut s = KafkaSettings::new("b:9092", "c");
        s.security_protocol = SecurityProtocol::SaslSsl;
        s.sasl = Some(SaslCredentials {
            mechanism: SaslMechanism::ScramSha256,
            username: "u".into(),
            password: "not-a-real-one".into(),
        });
        let cfg = s.client_config();
        assert_eq!(cfg.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(cfg.get("sasl.mechanism"), Some("SCRAM-SHA-256"));
        assert!(!format!("{s:?}").contains("not-a-real-one"));
    }

    #[test]
    fn registry_settings_errors_are_reported_not_dropped() {
        let err = codec_from_settings("registry:8081", Some("u"), Some("not-a-real-one"))
            .expect_err("URL without scheme");
        assert!(matches!(err, ConfigError::Invalid { .. }), "{err}");
        assert!(!err.to_string().contains("not-a-real-one"));
        assert!(matches!(
            codec_from_settings("http://r:8081", Some("u"), None),
            Err(ConfigError::Missing { .. })
        ));
        assert!(matches!(
            codec_from_settings("http://r:8081", None, Some("p")),
            Err(ConfigError::Missing { .. })
        ));
        assert!(codec_from_settings("http://r:8081", Some("u"), Some("p")).is_ok());
        assert!(codec_from_settings("http://r:8081", None, None).is_ok());
    }
}
