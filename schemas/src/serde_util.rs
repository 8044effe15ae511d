//! Serde helpers that make one set of derives work for both wire forms.
//!
//! The outbox stores events as JSON, Kafka carries them as Avro. The two
//! disagree on timestamps (Avro `timestamp-micros` is a `long`, JSON readers
//! expect RFC 3339) and, through `uuid`'s own impls, on UUIDs (bytes when the
//! serializer is not human-readable, which is apache-avro's default, while the
//! schema's `uuid` logical type is a string). So timestamps follow
//! `is_human_readable()` (RFC 3339 for JSON, micros for Avro) and UUIDs are
//! always hyphenated strings. Deserialization accepts every form, so a value
//! written either way reads back.

use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// `DateTime<Utc>` as RFC 3339 (human-readable formats) or microseconds since the epoch.
pub(crate) mod micros {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                .serialize(s)
        } else {
            s.serialize_i64(t.timestamp_micros())
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        d.deserialize_any(InstantVisitor)
    }
}

/// `Option<DateTime<Utc>>`, same encoding as [`micros`] inside the option.
pub(crate) mod micros_opt {
    use super::*;

    /// Hand-written impls, not a derived newtype: apache-avro's schema-aware
    /// serializer would expect a record for a newtype struct.
    struct Instant(DateTime<Utc>);

    impl Serialize for Instant {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            micros::serialize(&self.0, s)
        }
    }

    impl<'de> Deserialize<'de> for Instant {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            micros::deserialize(d).map(Instant)
        }
    }

    pub(crate) fn serialize<S: Serializer>(
        t: &Option<DateTime<Utc>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&Instant(*t)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        Ok(Option::<Instant>::deserialize(d)?.map(|i| i.0))
    }
}

/// `Vec<DateTime<Utc>>`, each element encoded as in [`micros`] (an Avro array of
/// `timestamp-micros`, a JSON array of RFC 3339 strings).
pub(crate) mod micros_vec {
    use super::*;

    struct Instant(DateTime<Utc>);

    impl Serialize for Instant {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            micros::serialize(&self.0, s)
        }
    }

    impl<'de> Deserialize<'de> for Instant {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            micros::deserialize(d).map(Instant)
        }
    }

    pub(crate) fn serialize<S: Serializer>(t: &[DateTime<Utc>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(t.iter().map(|t| Instant(*t)))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<DateTime<Utc>>, D::Error> {
        Ok(Vec::<Instant>::deserialize(d)?
            .into_iter()
            .map(|i| i.0)
            .collect())
    }
}

/// `Option<Uuid>`, the UUID encoded as in [`uuid_str`].
pub(crate) mod uuid_opt {
    use super::*;
    use uuid::Uuid;

    struct Id(Uuid);

    impl Serialize for Id {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            uuid_str::serialize(&self.0, s)
        }
    }

    impl<'de> Deserialize<'de> for Id {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            uuid_str::deserialize(d).map(Id)
        }
    }

    pub(crate) fn serialize<S: Serializer>(u: &Option<Uuid>, s: S) -> Result<S::Ok, S::Error> {
        match u {
            Some(u) => s.serialize_some(&Id(*u)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Uuid>, D::Error> {
        Ok(Option::<Id>::deserialize(d)?.map(|i| i.0))
    }
}

/// `Uuid` always as its hyphenated string (the Avro `uuid` logical type is a string).
pub(crate) mod uuid_str {
    use super::*;
    use uuid::Uuid;

    pub(crate) fn serialize<S: Serializer>(u: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&u.hyphenated())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        d.deserialize_any(UuidVisitor)
    }

    struct UuidVisitor;

    impl Visitor<'_> for UuidVisitor {
        type Value = Uuid;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a UUID string or 16 bytes")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Uuid, E> {
            Uuid::parse_str(v).map_err(E::custom)
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Uuid, E> {
            Uuid::from_slice(v).map_err(E::custom)
        }
    }
}

struct InstantVisitor;

impl Visitor<'_> for InstantVisitor {
    type Value = DateTime<Utc>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an RFC 3339 timestamp or microseconds since the Unix epoch")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<DateTime<Utc>, E> {
        DateTime::from_timestamp_micros(v)
            .ok_or_else(|| E::custom(format!("timestamp out of range: {v} µs")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<DateTime<Utc>, E> {
        let v = i64::try_from(v).map_err(E::custom)?;
        self.visit_i64(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<DateTime<Utc>, E> {
        DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&Utc))
            .map_err(E::custom)
    }
}
